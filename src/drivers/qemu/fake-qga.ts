// FakeQgaAgent: a scripted guest-agent side for unit tests (sync sentinel, junk, stale replies, a silent agent, guest-exec).
import type { Duplex } from 'node:stream';
import { OneClientPeer, type PeerConn } from './fake-one-client.js';

// Protocol logic only: tests own the listening socket (net.createServer(c => agent.accept(c))), because drivers
// may not import node:net (dependency-cruiser rule), and this file is not a *.test.ts.

/** A command as the agent received it. */
export interface FakeQgaRequest {
  execute: string;
  arguments?: Record<string, unknown>;
  /** 1-based number of the connection it arrived on. */
  connection: number;
}

/** A reply the agent sends. */
export type FakeQgaReply = { return: unknown } | { error: { class: string; desc: string } };

/** What a handler answers: a reply now, 'hang' for never, or undefined when it replies later itself (agent.reply). */
export type FakeQgaAnswer = FakeQgaReply | 'hang' | undefined;

/** Scripts the answer to one command. */
export type FakeQgaHandler = (req: FakeQgaRequest, agent: FakeQgaAgent) => FakeQgaAnswer;

/** A guest-exec request, decoded. */
export interface FakeQgaExec {
  path: string;
  arg: string[];
  env: string[] | undefined;
  input: Buffer | undefined;
  captureOutput: boolean;
}

/** How a scripted guest process ends. */
export interface FakeQgaProcess {
  stdout?: string | Buffer;
  stderr?: string | Buffer;
  exitcode?: number;
  signal?: number;
  /** guest-exec-status answers exited:false this many times first (default 0; Infinity never exits). */
  pollsUntilExit?: number;
  outTruncated?: boolean;
  errTruncated?: boolean;
}

interface Conn extends PeerConn {
  buf: Buffer;
}

/** A scripted guest agent behind QEMU's virtio-serial chardev socket, serving one client at a time. */
export class FakeQgaAgent extends OneClientPeer<Conn> {
  /** Every command received, in order. */
  readonly received: FakeQgaRequest[] = [];
  /** 0xFF bytes received from clients (each resets the parser, as in qemu-ga). */
  sentinels = 0;
  /** Raw bytes written before the 0xFF of every guest-sync-delimited reply (stale junk in the channel). */
  syncPrefix: string | Buffer = '';
  /** pid → guest-exec-status calls it got. */
  readonly statusPolls = new Map<number, number>();
  private running: boolean;
  // Bytes that arrived while the agent was not running: the guest reads them once the agent starts.
  private backlog: Buffer[] = [];
  private readonly handlers = new Map<string, FakeQgaHandler>();
  private readonly commandWaiters: { name: string; resolve: (r: FakeQgaRequest) => void }[] = [];
  private readonly processes = new Map<number, FakeQgaProcess & { polls: number }>();
  private nextPid = 1000;

  /** running:false models a booting guest whose agent does not read the channel yet. */
  constructor(opts: { running?: boolean } = {}) {
    super();
    this.running = opts.running ?? true;
    this.handle('guest-ping', { return: {} });
  }

  /** Scripts the answer to command (replacing an earlier script). */
  handle(command: string, handler: FakeQgaHandler | FakeQgaReply): this {
    this.handlers.set(command, typeof handler === 'function' ? handler : () => handler);
    return this;
  }

  /** Scripts guest-exec and guest-exec-status with qemu-ga's semantics (output reported once, with the exit). */
  handleExec(fn: (exec: FakeQgaExec) => FakeQgaProcess): this {
    this.handle('guest-exec', (req) => {
      const a = req.arguments ?? {};
      const input = typeof a['input-data'] === 'string' ? Buffer.from(a['input-data'], 'base64') : undefined;
      const proc = fn({
        path: String(a.path), arg: (a.arg as string[] | undefined) ?? [], env: a.env as string[] | undefined,
        input, captureOutput: a['capture-output'] === true,
      });
      const pid = this.nextPid++;
      this.processes.set(pid, { ...proc, polls: 0 });
      return { return: { pid } };
    });
    this.handle('guest-exec-status', (req) => {
      const pid = req.arguments?.pid as number;
      const proc = this.processes.get(pid);
      if (!proc) return { error: { class: 'GenericError', desc: "Invalid parameter 'pid'" } };
      proc.polls++;
      this.statusPolls.set(pid, proc.polls);
      if (proc.polls <= (proc.pollsUntilExit ?? 0)) return { return: { exited: false } };
      this.processes.delete(pid);
      const ret: Record<string, unknown> = { exited: true };
      if (proc.signal !== undefined) ret.signal = proc.signal;
      else ret.exitcode = proc.exitcode ?? 0;
      if (proc.stdout !== undefined) ret['out-data'] = Buffer.from(proc.stdout).toString('base64');
      if (proc.stderr !== undefined) ret['err-data'] = Buffer.from(proc.stderr).toString('base64');
      if (proc.outTruncated) ret['out-truncated'] = true;
      if (proc.errTruncated) ret['err-truncated'] = true;
      return { return: ret };
    });
    return this;
  }

  protected open(sock: Duplex, no: number): Conn {
    const conn: Conn = { no, sock, buf: Buffer.alloc(0) };
    sock.on('data', (chunk: Buffer) => {
      if (this.running) this.onData(conn, chunk);
      else this.backlog.push(chunk);
    });
    // Unread requests of a gone client stay in the virtio channel: the backlog is kept when it leaves.
    return conn;
  }

  /** Starts the agent: it reads (and answers) whatever piled up in the channel first. */
  start(): void {
    this.running = true;
    const pending = Buffer.concat(this.backlog.splice(0));
    if (this.active && pending.length) this.onData(this.active, pending);
  }

  /** Resolves with the next command called name that arrives. */
  waitForCommand(name: string): Promise<FakeQgaRequest> {
    return new Promise((resolve) => this.commandWaiters.push({ name, resolve }));
  }

  /** The reply line for a command. */
  replyLine(answer: FakeQgaReply): string {
    return `${JSON.stringify(answer)}\n`;
  }

  /** The bytes qemu-ga sends for guest-sync-delimited with id: 0xFF, then the reply. */
  syncReply(id: unknown): Buffer {
    return Buffer.concat([Buffer.from([0xff]), Buffer.from(this.replyLine({ return: id }))]);
  }

  /** Sends a deferred reply. */
  reply(answer: FakeQgaReply): void {
    this.sendRaw(this.replyLine(answer));
  }

  private onData(conn: Conn, chunk: Buffer): void {
    let buf = Buffer.concat([conn.buf, chunk]);
    for (;;) {
      const ff = buf.indexOf(0xff);
      const nl = buf.indexOf(0x0a);
      if (ff >= 0 && (nl < 0 || ff < nl)) {
        // qemu-ga resets its JSON parser on 0xFF, dropping any partial request.
        this.sentinels++;
        buf = buf.subarray(ff + 1);
      } else if (nl >= 0) {
        const line = buf.subarray(0, nl).toString('utf8').trim();
        buf = buf.subarray(nl + 1);
        if (line) this.onRequest(conn, line);
      } else {
        break;
      }
    }
    conn.buf = Buffer.from(buf);
  }

  private onRequest(conn: Conn, line: string): void {
    let raw: { execute?: unknown; arguments?: Record<string, unknown> };
    try {
      raw = JSON.parse(line) as typeof raw;
    } catch {
      conn.sock.write(this.replyLine({ error: { class: 'GenericError', desc: 'JSON parse error' } }));
      return;
    }
    if (typeof raw.execute !== 'string') {
      conn.sock.write(this.replyLine({ error: { class: 'GenericError', desc: "QMP input lacks member 'execute'" } }));
      return;
    }
    const req: FakeQgaRequest = { execute: raw.execute, connection: conn.no, ...(raw.arguments !== undefined ? { arguments: raw.arguments } : {}) };
    this.received.push(req);
    for (let i = 0; i < this.commandWaiters.length; i++) {
      const w = this.commandWaiters[i]!;
      if (w.name === req.execute) { this.commandWaiters.splice(i--, 1); w.resolve(req); }
    }
    const handler = this.handlers.get(req.execute);
    let answer: FakeQgaAnswer;
    if (handler) {
      answer = handler(req, this);
    } else if (req.execute === 'guest-sync-delimited') {
      conn.sock.write(Buffer.concat([Buffer.from(this.syncPrefix), this.syncReply(req.arguments?.id)]));
      return;
    } else {
      answer = { error: { class: 'CommandNotFound', desc: `The command ${req.execute} has not been found` } };
    }
    if (answer && answer !== 'hang') conn.sock.write(this.replyLine(answer));
  }
}
