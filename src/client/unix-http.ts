// HTTP/1.1 over the daemon's unix socket with node:net alone: requests, framed answers, kept-alive connections, upgrades.
// node:http costs ~3 ms of every CLI command's start-up (BENCHMARKS.md, issue 14) for what the client uses of it:
// one request at a time per connection to hangard, answers framed by Content-Length or chunked encoding.
import { connect, type Socket } from 'node:net';

/** An answer's status line and headers (names lower-case; repeated headers joined by ", "). */
export interface UnixResponse {
  status: number;
  headers: Record<string, string>;
}

/** Where an answer's parts go: its head once, then its body in pieces, then end (or error). */
export interface ResponseSink {
  head(res: UnixResponse): void;
  data(chunk: Buffer): void;
  end(): void;
  error(err: Error & { staleKeepAlive?: boolean }): void;
}

/** One request: method, path (with query), headers and an optional body. */
export interface UnixRequest {
  method: string;
  path: string;
  headers?: Record<string, string | number>;
  body?: Buffer;
}

const MAX_HEAD = 64 * 1024;
/** What ends a parked connection: the daemon closing it, an error, or bytes nobody asked for. */
const IDLE_EVENTS = ['close', 'end', 'error', 'data'] as const;
const CRLF2 = Buffer.from('\r\n\r\n');

/** Serialises a request head (and body) as HTTP/1.1 bytes. */
export function encodeRequest(req: UnixRequest, extra: Record<string, string> = {}): Buffer {
  const lines = [`${req.method} ${req.path} HTTP/1.1`, 'host: localhost'];
  const headers: Record<string, string | number> = { ...req.headers, ...extra };
  const hasBody = req.body !== undefined || ['POST', 'PUT', 'PATCH'].includes(req.method);
  if (hasBody) headers['content-length'] = req.body?.length ?? 0;
  for (const [k, v] of Object.entries(headers)) {
    // A header value with CR or LF would smuggle a second request onto the connection.
    if (/[\r\n]/.test(`${k}${v}`)) throw new Error(`Invalid header ${JSON.stringify(k)}`);
    lines.push(`${k}: ${v}`);
  }
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  return req.body?.length ? Buffer.concat([head, req.body]) : head;
}

/** Parses a response head; null when the blank line has not arrived yet. */
export function parseHead(buf: Buffer): { res: UnixResponse; size: number } | null {
  const end = buf.indexOf(CRLF2);
  if (end < 0) {
    if (buf.length > MAX_HEAD) throw new Error('response head too large');
    return null;
  }
  const [statusLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(statusLine ?? '');
  if (!m) throw new Error(`malformed status line ${JSON.stringify(statusLine)}`);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`malformed header line ${JSON.stringify(line)}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { res: { status: Number(m[1]), headers }, size: end + 4 };
}

/** Decodes a body framed by Content-Length, chunked encoding or the connection's end; push() answers true once complete. */
export class BodyDecoder {
  private left: number;
  private chunked: boolean;
  private buf: Buffer = Buffer.alloc(0);
  /** Inside chunked encoding: bytes of the current chunk still to come, or -1 while reading a size line, -2 trailers. */
  private chunkLeft = -1;
  /** True once the body is complete. */
  done = false;

  constructor(res: UnixResponse, method: string, private readonly out: (chunk: Buffer) => void) {
    this.chunked = /\bchunked\b/i.test(res.headers['transfer-encoding'] ?? '');
    const len = res.headers['content-length'];
    const none = method === 'HEAD' || res.status === 204 || res.status === 304 || (res.status >= 100 && res.status < 200);
    if (!this.chunked && len !== undefined && !/^\d+$/.test(len)) throw new Error(`invalid content-length ${JSON.stringify(len)}`);
    this.left = none ? 0 : this.chunked ? Infinity : len !== undefined ? Number(len) : Infinity;
    if (this.left === 0 && !this.chunked) this.done = true;
  }

  /** True when the body ends only with the connection (no length, not chunked): the connection cannot be reused. */
  get untilClose(): boolean {
    return !this.chunked && this.left === Infinity;
  }

  /** Feeds bytes; answers what was not part of the body (bytes of a next answer) once done. */
  push(chunk: Buffer): Buffer {
    if (this.done) return chunk;
    if (!this.chunked) {
      if (this.left === Infinity) {
        if (chunk.length) this.out(chunk);
        return Buffer.alloc(0);
      }
      const take = Math.min(this.left, chunk.length);
      if (take) this.out(chunk.subarray(0, take));
      this.left -= take;
      if (this.left === 0) this.done = true;
      return chunk.subarray(take);
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (!this.done) {
      if (this.chunkLeft > 0) {
        if (!this.buf.length) break;
        const take = Math.min(this.chunkLeft, this.buf.length);
        this.out(this.buf.subarray(0, take));
        this.buf = this.buf.subarray(take);
        this.chunkLeft -= take;
        if (this.chunkLeft === 0) this.chunkLeft = -3;
        continue;
      }
      const nl = this.buf.indexOf('\r\n');
      if (nl < 0) {
        if (this.buf.length > 4096) throw new Error('chunk size line too long');
        break;
      }
      const line = this.buf.subarray(0, nl).toString('latin1');
      this.buf = this.buf.subarray(nl + 2);
      if (this.chunkLeft === -3) {
        // The CRLF after a chunk's data.
        if (line !== '') throw new Error('missing CRLF after a chunk');
        this.chunkLeft = -1;
      } else if (this.chunkLeft === -2) {
        if (line === '') this.done = true;
      } else {
        const size = /^([0-9a-fA-F]{1,8})(?:;.*)?$/.exec(line);
        if (!size) throw new Error(`malformed chunk size ${JSON.stringify(line)}`);
        const n = parseInt(size[1]!, 16);
        this.chunkLeft = n === 0 ? -2 : n;
      }
    }
    return this.done ? this.buf : Buffer.alloc(0);
  }
}

/** Kept-alive connections to one unix socket, one request at a time on each. */
export class UnixHttpPool {
  private readonly idle: Array<{ sock: Socket; drop: () => void }> = [];
  /** Connections with a request under way: close() ends them too, as a client that goes away must. */
  private readonly busy = new Set<Socket>();

  constructor(readonly socketPath: string) {}

  /** Sends req and streams its answer into sink; a failure on a reused connection before any answer is marked staleKeepAlive. */
  send(req: UnixRequest, sink: ResponseSink): void {
    let payload: Buffer;
    try {
      payload = encodeRequest(req);
    } catch (err) {
      return sink.error(err as Error);
    }
    const reused = this.take();
    const sock = reused ?? connect(this.socketPath);
    let buf: Buffer = Buffer.alloc(0);
    let decoder: BodyDecoder | undefined;
    let keepAlive = false;
    let answered = false;
    let finished = false;
    this.busy.add(sock);
    const cleanup = (): void => {
      this.busy.delete(sock);
      sock.off('data', onData);
      sock.off('error', onError);
      sock.off('close', onClose);
      sock.off('end', onEnd);
    };
    const fail = (err: Error & { staleKeepAlive?: boolean }): void => {
      if (finished) return;
      finished = true;
      cleanup();
      sock.destroy();
      if (reused && !answered) err.staleKeepAlive = true;
      sink.error(err);
    };
    const complete = (rest: Buffer, reusable: boolean): void => {
      finished = true;
      cleanup();
      if (reusable && rest.length === 0 && !sock.destroyed) this.park(sock);
      else sock.destroy();
      sink.end();
    };
    const onData = (chunk: Buffer): void => {
      answered = true;
      try {
        if (!decoder) {
          buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
          const head = parseHead(buf);
          if (!head) return;
          const rest = buf.subarray(head.size);
          buf = Buffer.alloc(0);
          decoder = new BodyDecoder(head.res, req.method, (c) => sink.data(c));
          const keep = !/\bclose\b/i.test(head.res.headers.connection ?? '');
          sink.head(head.res);
          if (finished) return;
          const left = decoder.push(rest);
          if (decoder.done) complete(left, keep && !decoder.untilClose);
          else keepAlive = keep;
          return;
        }
        const left = decoder.push(chunk);
        if (decoder.done) complete(left, keepAlive && !decoder.untilClose);
      } catch (err) {
        fail(new Error(`Malformed answer from hangard to ${req.method} ${req.path}: ${(err as Error).message}`));
      }
    };
    const onEnd = (): void => {
      if (finished) return;
      if (decoder?.untilClose) return complete(Buffer.alloc(0), false);
      fail(Object.assign(new Error(decoder ? 'connection closed in the middle of an answer' : 'socket hang up'), { code: 'ECONNRESET' }));
    };
    const onError = (err: Error): void => fail(err);
    const onClose = (): void => onEnd();
    sock.on('data', onData);
    sock.on('error', onError);
    sock.on('end', onEnd);
    sock.on('close', onClose);
    sock.ref();
    sock.write(payload);
  }

  /** Sends req and answers status, headers and the whole body. */
  request(req: UnixRequest): Promise<UnixResponse & { body: Buffer }> {
    return new Promise((resolve, reject) => {
      let head: UnixResponse | undefined;
      const chunks: Buffer[] = [];
      this.send(req, {
        head: (res) => (head = res),
        data: (c) => chunks.push(c),
        end: () => resolve({ ...head!, body: Buffer.concat(chunks) }),
        error: reject,
      });
    });
  }

  /** Closes every connection: idle ones, and those of requests under way (which then fail). */
  close(): void {
    for (const e of this.idle.splice(0)) e.sock.destroy();
    for (const s of [...this.busy]) s.destroy();
  }

  /** Keeps a finished connection for the next request, not holding the process open; one the daemon closes is dropped. */
  private park(sock: Socket): void {
    const drop = (): void => {
      const i = this.idle.findIndex((e) => e.sock === sock);
      if (i >= 0) this.idle.splice(i, 1);
      sock.destroy();
    };
    for (const ev of IDLE_EVENTS) sock.once(ev, drop);
    sock.unref();
    this.idle.push({ sock, drop });
  }

  /** The most recently parked connection, its idle listeners removed; undefined when none. */
  private take(): Socket | undefined {
    const e = this.idle.pop();
    if (!e) return undefined;
    for (const ev of IDLE_EVENTS) e.sock.off(ev, e.drop);
    return e.sock;
  }
}
