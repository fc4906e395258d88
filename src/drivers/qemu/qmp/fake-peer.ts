// FakeQmpPeer: a scripted QMP server side for unit tests (greeting, negotiation, scripted/deferred/split replies, events, drops).
import type { Duplex } from 'node:stream';
import type { QmpGreeting } from './types.js';
import { OneClientPeer, type PeerConn } from '../fake-one-client.js';

// Protocol logic only: tests own the listening socket (net.createServer(c => peer.accept(c))), because drivers
// may not import node:net (dependency-cruiser rule), and this file is not a *.test.ts.

/** A command as the peer received it. */
export interface FakeQmpRequest {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: unknown;
  /** 1-based number of the connection it arrived on. */
  connection: number;
}

/** What a handler answers: a reply now, 'hang' for never, or undefined when it replies later itself (peer.reply). */
export type FakeQmpAnswer = { return: unknown } | { error: { class: string; desc: string } } | 'hang' | undefined;

/** Scripts the answer to one command. */
export type FakeQmpHandler = (req: FakeQmpRequest, peer: FakeQmpPeer) => FakeQmpAnswer;

/** The greeting QEMU 7.2 sends. */
export const QEMU_72_GREETING: QmpGreeting = {
  QMP: { version: { qemu: { micro: 22, minor: 2, major: 7 }, package: 'Debian 1:7.2+dfsg-7+deb12u18+b3' }, capabilities: ['oob'] },
};

interface Conn extends PeerConn {
  negotiated: boolean;
  buf: string;
}

/** A scripted QMP peer serving one client at a time, like QEMU's -chardev socket,server=on,wait=off. */
export class FakeQmpPeer extends OneClientPeer<Conn> {
  /** Every command received, in order. */
  readonly received: FakeQmpRequest[] = [];
  /** Protocol violations seen (e.g. a command before qmp_capabilities). */
  readonly protocolErrors: string[] = [];
  /** Number of connections that got a greeting so far. */
  greeted = 0;
  private readonly handlers = new Map<string, FakeQmpHandler>();
  private readonly commandWaiters: { name: string; resolve: (r: FakeQmpRequest) => void }[] = [];
  private readonly disconnectWaiters: (() => void)[] = [];
  constructor(private readonly greeting: QmpGreeting = QEMU_72_GREETING) {
    super();
  }

  /** Scripts the answer to command (replacing an earlier script); a plain value is sent as {"return": value}. */
  handle(command: string, handler: FakeQmpHandler | { return: unknown } | { error: { class: string; desc: string } }): this {
    this.handlers.set(command, typeof handler === 'function' ? handler : () => handler);
    return this;
  }

  protected open(sock: Duplex, no: number): Conn {
    const conn: Conn = { no, sock, negotiated: false, buf: '' };
    this.greeted++;
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.onData(conn, chunk));
    sock.write(`${JSON.stringify(this.greeting)}\r\n`);
    return conn;
  }

  protected override closed(): void {
    for (const w of this.disconnectWaiters.splice(0)) w();
  }

  /** Resolves with the next command called name that arrives. */
  waitForCommand(name: string): Promise<FakeQmpRequest> {
    return new Promise((resolve) => this.commandWaiters.push({ name, resolve }));
  }

  /** Resolves when the current client goes away (at once when none is connected). */
  waitForDisconnect(): Promise<void> {
    if (!this.active) return Promise.resolve();
    return new Promise((resolve) => this.disconnectWaiters.push(resolve));
  }

  /** The reply line for req (to batch or split yourself with sendRaw). */
  replyLine(req: FakeQmpRequest, answer: { return: unknown } | { error: { class: string; desc: string } }): string {
    return `${JSON.stringify({ ...answer, id: req.id })}\r\n`;
  }

  /** Sends a deferred reply to req. */
  reply(req: FakeQmpRequest, answer: { return: unknown } | { error: { class: string; desc: string } }): void {
    this.sendRaw(this.replyLine(req, answer));
  }

  /** The event line QEMU would send (timestamp defaults to now). */
  eventLine(event: string, data?: Record<string, unknown>, timestamp?: { seconds: number; microseconds: number }): string {
    const now = Date.now();
    const ts = timestamp ?? { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 };
    return `${JSON.stringify({ timestamp: ts, event, ...(data ? { data } : {}) })}\r\n`;
  }

  /** Emits an event to the current client. */
  emitEvent(event: string, data?: Record<string, unknown>, timestamp?: { seconds: number; microseconds: number }): void {
    this.sendRaw(this.eventLine(event, data, timestamp));
  }

  private onData(conn: Conn, chunk: string): void {
    conn.buf += chunk;
    let nl: number;
    while ((nl = conn.buf.indexOf('\n')) >= 0) {
      const line = conn.buf.slice(0, nl).trim();
      conn.buf = conn.buf.slice(nl + 1);
      if (line) this.onRequest(conn, line);
    }
  }

  private onRequest(conn: Conn, line: string): void {
    let raw: { execute?: unknown; arguments?: Record<string, unknown>; id?: unknown };
    try {
      raw = JSON.parse(line) as typeof raw;
    } catch {
      this.protocolErrors.push(`invalid JSON: ${line}`);
      conn.sock.write(`${JSON.stringify({ error: { class: 'GenericError', desc: 'JSON parse error' } })}\r\n`);
      return;
    }
    if (typeof raw.execute !== 'string') {
      this.protocolErrors.push(`no execute member: ${line}`);
      conn.sock.write(`${JSON.stringify({ id: raw.id, error: { class: 'GenericError', desc: "QMP input lacks member 'execute'" } })}\r\n`);
      return;
    }
    const req: FakeQmpRequest = {
      execute: raw.execute, connection: conn.no,
      ...(raw.arguments !== undefined ? { arguments: raw.arguments } : {}), ...('id' in raw ? { id: raw.id } : {}),
    };
    this.received.push(req);
    for (let i = 0; i < this.commandWaiters.length; i++) {
      const w = this.commandWaiters[i]!;
      if (w.name === req.execute) { this.commandWaiters.splice(i--, 1); w.resolve(req); }
    }
    let answer: FakeQmpAnswer;
    if (!conn.negotiated) {
      if (req.execute === 'qmp_capabilities') {
        conn.negotiated = true;
        answer = { return: {} };
      } else {
        this.protocolErrors.push(`${req.execute} before qmp_capabilities`);
        answer = { error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" } };
      }
    } else {
      const handler = this.handlers.get(req.execute);
      if (handler) answer = handler(req, this);
      else if (req.execute === 'qmp_capabilities') answer = { error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' } };
      else answer = { error: { class: 'CommandNotFound', desc: `The command ${req.execute} has not been found` } };
    }
    if (answer && answer !== 'hang') conn.sock.write(this.replyLine(req, answer));
  }
}
