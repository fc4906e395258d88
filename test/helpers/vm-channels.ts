// Helpers for tests that start QEMU by hand: a newline-JSON client for QMP and the guest agent, and a polling wait.
import { connect, type Socket } from 'node:net';

/** A line-oriented JSON client: replies (and the QMP greeting) in order, events collected aside; a leading 0xFF (qemu-ga's sync) is skipped. */
export class JsonLineClient {
  private buf = '';
  private waiters: ((msg: Record<string, unknown>) => void)[] = [];
  readonly events: Record<string, unknown>[] = [];

  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).replace(/^\xff/, '').trim();
        this.buf = this.buf.slice(i + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('event' in msg) this.events.push(msg);
        else this.waiters.shift()?.(msg);
      }
    });
    sock.on('error', () => undefined);
  }

  /** Connects to a unix socket. */
  static async open(path: string): Promise<JsonLineClient> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path, () => resolve(s));
      s.once('error', reject);
    });
    return new JsonLineClient(sock);
  }

  /** The next reply (or greeting); rejects after timeoutMs naming what was awaited. */
  next(timeoutMs: number, what = 'a reply'): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const done = (m: Record<string, unknown>) => { clearTimeout(t); resolve(m); };
      this.waiters.push(done);
    });
  }

  /** Sends one command and resolves with its reply. */
  call(cmd: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const reply = this.next(timeoutMs, cmd);
    this.sock.write(JSON.stringify(args ? { execute: cmd, arguments: args } : { execute: cmd }) + '\n');
    return reply;
  }

  close(): void { this.sock.destroy(); }
}

/** Polls fn until it answers something other than undefined; ignoreErrors treats a throw as "not yet" instead of failing. */
export async function waitFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, opts: { everyMs?: number; ignoreErrors?: boolean } = {}): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = opts.ignoreErrors ? await fn().catch(() => undefined) : await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, opts.everyMs ?? 100));
  }
}
