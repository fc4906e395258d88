// The JSON-lines transport of QEMU's sockets (QMP, guest agent): connecting through Host, line framing, JSON parsing, pending requests with timeouts, and the end of the connection.
import type { Duplex } from 'node:stream';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';

const RETRY_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);
const RETRY_INTERVAL_MS = 25;
const NEWLINE = 0x0a;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** How to open a socket. */
export interface OpenSocketOptions {
  /** Names the socket in messages: "QMP", "guest agent". */
  protocol: string;
  /** Budget of one connection attempt. */
  timeoutMs: number;
  /** Keep retrying while the socket is missing or refuses (ENOENT/ECONNREFUSED/EAGAIN) for this long (default 0). */
  retryForMs?: number;
}

function connectOnce(host: Host, path: string, opts: OpenSocketOptions): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(new AppError('TIMEOUT', `Connecting to ${opts.protocol} socket ${path} timed out after ${opts.timeoutMs} ms`, { details: { socket: path } }));
    }, opts.timeoutMs);
    host.connectUnix(path).then(
      (s) => { if (done) { s.destroy(); return; } done = true; clearTimeout(timer); resolve(s); },
      (e: unknown) => { if (done) return; done = true; clearTimeout(timer); reject(e); },
    );
  });
}

/** Opens the unix socket path on host; BACKEND_FAILED when it cannot be reached, TIMEOUT when an attempt hangs. */
export async function openSocket(host: Host, path: string, opts: OpenSocketOptions): Promise<Duplex> {
  const retryUntil = Date.now() + (opts.retryForMs ?? 0);
  for (;;) {
    try {
      return await connectOnce(host, path, opts);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== undefined && RETRY_CODES.has(code) && Date.now() + RETRY_INTERVAL_MS <= retryUntil) {
        await sleep(RETRY_INTERVAL_MS);
        continue;
      }
      if (e instanceof AppError) throw e;
      throw new AppError('BACKEND_FAILED', `Cannot connect to ${opts.protocol} socket ${path}`, { cause: e, details: { socket: path, code } });
    }
  }
}

/** How a connection frames its lines. */
export interface JsonLinesOptions {
  /** Names the peer in messages: "QMP", "guest agent". */
  protocol: string;
  /** A longer line (or unterminated rest) ends the connection. */
  maxLineBytes: number;
  /** A byte that resynchronises the stream: whatever came before it is dropped unparsed (the guest agent's 0xFF). */
  resetByte?: number;
}

/** What a protocol client plugs into a connection. */
export interface JsonLinesHandlers {
  /** Every line that parses as JSON to an object, in order. */
  message(msg: Record<string, unknown>): void;
  /** The reset byte arrived (and what came before it was dropped). */
  reset?(): void;
  /** The error a request called label fails with once the connection ended or close() was called. */
  closeError(label: string): AppError;
  /** The connection ended: called after the pending requests were rejected, before `closed` resolves. */
  closed?(): void;
}

/** Options of one request. */
export interface JsonLinesRequestOptions {
  /** Names the request (the command) for closeError. */
  label: string;
  /** Give up after this long (0 waits forever); the request is forgotten first, so a late answer finds nobody. */
  timeoutMs: number;
  /** The error a timed-out request rejects with. */
  timeoutError(): AppError;
}

/** A request waiting for its answer, handed over by take() to be settled. */
export interface JsonLinesPending {
  readonly label: string;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

interface Pending extends JsonLinesPending {
  timer?: NodeJS.Timeout;
}

/** One connection carrying one JSON value per line, with requests waiting under keys the protocol chooses. */
export class JsonLines {
  private ended = false;
  private closing = false;
  private readonly pending = new Map<string | number, Pending>();
  // Bytes of the incomplete line; concatenated only once a newline arrives (replies can be tens of MiB).
  private chunks: Buffer[] = [];
  private chunkBytes = 0;
  private lastSocketError: Error | undefined;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  constructor(private readonly sock: Duplex, readonly path: string, private readonly opts: JsonLinesOptions, private readonly on: JsonLinesHandlers) {
    this.closedPromise = new Promise((r) => { this.resolveClosed = r; });
    sock.on('data', (chunk: Buffer | string) => this.onData(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk));
    sock.on('error', (e: Error) => { this.lastSocketError = e; });
    // Some Duplex implementations end without closing; a half-open session is useless.
    sock.on('end', () => { sock.destroy(); });
    sock.on('close', () => this.onClose());
  }

  /** True until the connection ends. */
  get connected(): boolean {
    return !this.ended;
  }

  /** True once close() was called. */
  get closedByClient(): boolean {
    return this.closing;
  }

  /** True while requests can be sent: the connection has not ended and close() was not called. */
  get usable(): boolean {
    return !this.ended && !this.closing;
  }

  /** Resolves once the connection has ended (for any reason). */
  get closed(): Promise<void> {
    return this.closedPromise;
  }

  /**
   * Registers a request under key, then writes data (none: an answer the peer sends unasked, like QMP's greeting); the
   * protocol settles it through take(key). Rejects at once with closeError when the connection is not usable.
   */
  request<T>(key: string | number, data: string | Buffer | undefined, opts: JsonLinesRequestOptions): Promise<T> {
    if (!this.usable) return Promise.reject(this.on.closeError(opts.label));
    return new Promise<T>((resolve, reject) => {
      const p: Pending = { label: opts.label, resolve: resolve as (v: unknown) => void, reject };
      if (opts.timeoutMs > 0) {
        p.timer = setTimeout(() => {
          this.pending.delete(key);
          reject(opts.timeoutError());
        }, opts.timeoutMs);
      }
      this.pending.set(key, p);
      if (data !== undefined) this.sock.write(data);
    });
  }

  /** Removes the request waiting under key and hands it over to be settled; undefined when none waits (it timed out, or was never made). */
  take(key: string | number): JsonLinesPending | undefined {
    const p = this.pending.get(key);
    if (!p) return undefined;
    this.pending.delete(key);
    if (p.timer) clearTimeout(p.timer);
    return p;
  }

  /** Writes data that expects no answer; nothing is written once the connection ended. */
  send(data: string | Buffer): void {
    if (!this.ended) this.sock.write(data);
  }

  /** Closes the connection; pending requests reject with closeError. */
  close(): Promise<void> {
    if (!this.ended) {
      this.closing = true;
      this.sock.destroy();
    }
    return this.closedPromise;
  }

  /** How the connection ended, for messages: `<protocol> connection to <subject> was closed by the client`, or lost. */
  endText(subject: string): string {
    return this.closing
      ? `${this.opts.protocol} connection to ${subject} was closed by the client`
      : `${this.opts.protocol} connection to ${subject} lost (QEMU exited or closed the socket)`;
  }

  /** BACKEND_FAILED for the end of the connection: the socket's last error as cause; socket, disconnected and closedByClient in details. */
  disconnectError(message: string, details: Record<string, unknown> = {}): AppError {
    return new AppError('BACKEND_FAILED', message, {
      ...(this.lastSocketError ? { cause: this.lastSocketError } : {}),
      details: { socket: this.path, disconnected: true, closedByClient: this.closing, ...details },
    });
  }

  private onData(chunk: Buffer): void {
    const reset = this.opts.resetByte;
    if (reset !== undefined) {
      let at: number;
      while ((at = chunk.indexOf(reset)) >= 0) {
        // Everything before a reset byte is stale (earlier clients' replies, a partial line): drop it unparsed.
        this.chunks = [];
        this.chunkBytes = 0;
        this.on.reset?.();
        chunk = chunk.subarray(at + 1);
      }
    }
    if (chunk.indexOf(NEWLINE) < 0) {
      this.chunks.push(chunk);
      this.chunkBytes += chunk.length;
    } else {
      let buf = this.chunks.length ? Buffer.concat([...this.chunks, chunk]) : chunk;
      this.chunks = [];
      this.chunkBytes = 0;
      let nl: number;
      // A newline byte never occurs inside a UTF-8 sequence, so each line decodes on its own.
      while ((nl = buf.indexOf(NEWLINE)) >= 0) {
        const line = buf.subarray(0, nl).toString('utf8').trim();
        buf = buf.subarray(nl + 1);
        if (line) this.onLine(line);
      }
      if (buf.length) { this.chunks.push(buf); this.chunkBytes = buf.length; }
    }
    if (this.chunkBytes > this.opts.maxLineBytes) {
      const p = this.opts.protocol;
      this.lastSocketError = new Error(`${p.charAt(0).toUpperCase()}${p.slice(1)} message longer than ${this.opts.maxLineBytes} bytes`);
      this.sock.destroy();
    }
  }

  private onLine(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      // QEMU and its agent only send valid JSON; a garbled line cannot be matched to a request, so skip it.
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    this.on.message(msg as Record<string, unknown>);
  }

  private onClose(): void {
    if (this.ended) return;
    this.ended = true;
    for (const [key, p] of this.pending) {
      this.pending.delete(key);
      if (p.timer) clearTimeout(p.timer);
      p.reject(this.on.closeError(p.label));
    }
    this.on.closed?.();
    this.resolveClosed();
  }
}
