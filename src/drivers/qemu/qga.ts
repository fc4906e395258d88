// QgaClient: Hangar's QEMU guest agent client over a Host unix-socket connection (sync, queued commands, guest-exec).
import { randomInt } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import { JsonLines, openSocket } from './json-lines.js';

/** Options of QgaClient.connect. */
export interface QgaConnectOptions {
  /** Budget for opening the socket (default 10 s). */
  timeoutMs?: number;
  /** Default per-command timeout (default 30 s). */
  commandTimeoutMs?: number;
  /** Names the guest in messages, e.g. 'instance "web1"' (default: the socket path). */
  name?: string;
}

/** Options of a single command. */
export interface QgaCommandOptions {
  /** Reject with TIMEOUT after this long, counted from sending (default: the client's commandTimeoutMs). */
  timeoutMs?: number;
  /** The command answers nothing on success (guest-shutdown, guest-suspend-*): resolve once it is sent. */
  noReply?: boolean;
}

/** Options of QgaClient.run. */
export interface QgaRunOptions {
  /** Written to the process's stdin, which is then closed. */
  input?: Buffer;
  /** The whole environment of the process (QGA replaces the agent's environment, PATH included). */
  env?: Record<string, string>;
  /** Reject with TIMEOUT when the process has not exited after this long (default: no limit). */
  timeoutMs?: number;
  /** Longest interval between guest-exec-status polls (default 250 ms; polling starts faster). */
  pollMs?: number;
  /** Told the guest pid as soon as the agent started the process. */
  onPid?: (pid: number) => void;
}

/** Result of QgaClient.run. */
export interface QgaRunResult {
  /** Exit code, or 128 + signal when killed by a signal. */
  code: number;
  signal: number | null;
  stdout: Buffer;
  stderr: Buffer;
  /** True when the agent cut stdout or stderr short (its capture limit is 16 MiB each). */
  truncated: boolean;
}

/** The answer of guest-exec-status. */
export interface QgaExecStatus {
  exited: boolean;
  exitcode?: number;
  signal?: number;
  'out-data'?: string;
  'err-data'?: string;
  'out-truncated'?: boolean;
  'err-truncated'?: boolean;
}

// What the one request in flight is; its answer waits in the transport under REPLY.
type Current = { kind: 'sync'; id: number; sawSentinel: boolean } | { kind: 'command'; command: string };

const SENTINEL = 0xff;
const REPLY = 'reply';
// Captured output is up to 16 MiB per stream, base64-encoded in one reply line.
const MAX_LINE = 64 * 1024 * 1024;
const SYNC_TRY_MS = 1000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** True when err is the rejection of a command because the guest agent connection ended. */
export function isQgaDisconnect(err: unknown): boolean {
  return err instanceof AppError && err.details?.disconnected === true;
}

/** argv that runs argv in directory cwd (guest-exec has no cwd); cwd and argv are passed as arguments, never as script. */
export function withCwd(argv: readonly string[], cwd: string): string[] {
  if (argv.length === 0) throw new AppError('INVALID_ARGUMENT', 'Cannot run an empty command in the guest');
  // A relative or "-"-prefixed directory would be read by cd relative to the agent or as an option.
  if (!cwd.startsWith('/')) throw new AppError('INVALID_ARGUMENT', `Working directory "${cwd}" must be an absolute path`);
  return ['/bin/sh', '-c', 'cd "$1" && shift && exec "$@"', 'sh', cwd, ...argv];
}

/** A connection to a guest agent; commands go one at a time because replies carry no usable id. */
export class QgaClient {
  private synced = false;
  private posix: Promise<boolean> | undefined;
  private current: Current | undefined;
  private tail: Promise<void> = Promise.resolve();
  private readonly link: JsonLines;
  private readonly commandTimeoutMs: number;
  private readonly subject: string;

  private constructor(sock: Duplex, readonly path: string, opts: QgaConnectOptions) {
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 30_000;
    this.subject = opts.name ?? path;
    this.link = new JsonLines(sock, path, { protocol: 'guest agent', maxLineBytes: MAX_LINE, resetByte: SENTINEL }, {
      message: (msg) => this.onMessage(msg),
      reset: () => { if (this.current?.kind === 'sync') this.current.sawSentinel = true; },
      closeError: (label) => this.disconnectError(label),
      closed: () => { this.synced = false; this.current = undefined; },
    });
  }

  /** Opens the agent's socket on host; the agent itself may not run yet (see waitReady). */
  static async connect(host: Host, path: string, opts: QgaConnectOptions = {}): Promise<QgaClient> {
    const sock = await openSocket(host, path, { protocol: 'guest agent', timeoutMs: opts.timeoutMs ?? 10_000 });
    return new QgaClient(sock, path, opts);
  }

  /** True until the connection ends. */
  get connected(): boolean {
    return this.link.connected;
  }

  /** Resolves once the connection has ended (for any reason). */
  get closed(): Promise<void> {
    return this.link.closed;
  }

  /** Retries guest-sync-delimited with short tries until the agent answers; TIMEOUT when it never does. */
  waitReady(timeoutMs: number, opts: { tryMs?: number } = {}): Promise<void> {
    return this.enqueue('guest-sync-delimited', async () => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0) throw this.noAnswerError(timeoutMs);
        try {
          await this.sync(Math.min(opts.tryMs ?? SYNC_TRY_MS, left));
          return;
        } catch (e) {
          if (!(e instanceof AppError && e.code === 'TIMEOUT')) throw e;
        }
      }
    });
  }

  /** Sends a command (after a sync when needed) and resolves with its "return"; errors become BACKEND_FAILED. */
  execute<T = unknown>(command: string, args?: object, opts: QgaCommandOptions = {}): Promise<T> {
    return this.enqueue(command, async () => {
      const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
      const started = Date.now();
      if (!this.synced) await this.sync(timeoutMs);
      const left = Math.max(1, timeoutMs - (Date.now() - started));
      return await this.send<T>(command, args, left, opts.noReply === true);
    });
  }

  /** guest-ping: resolves when the agent answers. */
  async ping(opts: QgaCommandOptions = {}): Promise<void> {
    await this.execute('guest-ping', undefined, opts);
  }

  /**
   * guest-exec with captured output, stdin and env, then polls guest-exec-status until the process exited.
   * The agent cannot kill a process: on TIMEOUT it keeps running in the guest (its pid is in the details).
   */
  async run(argv: readonly string[], opts: QgaRunOptions = {}): Promise<QgaRunResult> {
    if (argv.length === 0) throw new AppError('INVALID_ARGUMENT', 'Cannot run an empty command in the guest');
    const deadline = opts.timeoutMs !== undefined && opts.timeoutMs > 0 ? Date.now() + opts.timeoutMs : undefined;
    const args: Record<string, unknown> = { path: argv[0], arg: argv.slice(1), 'capture-output': true };
    if (opts.env) args.env = Object.entries(opts.env).map(([k, v]) => `${k}=${v}`);
    if (opts.input !== undefined) args['input-data'] = opts.input.toString('base64');
    const { pid } = await this.execute<{ pid: number }>('guest-exec', args);
    opts.onPid?.(pid);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let truncated = false;
    const maxPoll = opts.pollMs ?? 250;
    let interval = Math.min(10, maxPoll);
    for (;;) {
      const st = await this.execute<QgaExecStatus>('guest-exec-status', { pid });
      // The agent sends the captured output with the final status, but collecting every reply costs nothing.
      if (st['out-data']) stdout.push(Buffer.from(st['out-data'], 'base64'));
      if (st['err-data']) stderr.push(Buffer.from(st['err-data'], 'base64'));
      truncated ||= st['out-truncated'] === true || st['err-truncated'] === true;
      if (st.exited) {
        const signal = typeof st.signal === 'number' ? st.signal : null;
        const code = signal !== null ? 128 + signal : typeof st.exitcode === 'number' ? st.exitcode : -1;
        return { code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr), truncated };
      }
      if (deadline !== undefined && Date.now() + interval > deadline) {
        throw new AppError('TIMEOUT', `Command "${argv[0]}" in the guest of ${this.subject} did not finish within ${opts.timeoutMs} ms (pid ${pid} keeps running)`, {
          details: { socket: this.path, pid, argv: [...argv] },
        });
      }
      await sleep(interval);
      interval = Math.min(interval * 2, maxPoll);
    }
  }

  /** True when the guest's kernel is not Windows (guest-get-osinfo), asked once per connection: a POSIX shell and kill are there. */
  async isPosix(): Promise<boolean> {
    this.posix ??= this.execute<{ 'kernel-name'?: string; id?: string }>('guest-get-osinfo')
      .then((o) => !/windows/i.test(`${o['kernel-name'] ?? ''} ${o.id ?? ''}`), () => false);
    return this.posix;
  }

  /** Sends a signal to a guest process group (its leader's pid), else to the process: the agent has no kill of its own, so a guest kill does it. */
  async signal(pid: number, signal: string): Promise<void> {
    if (!Number.isInteger(pid) || pid <= 1) throw new AppError('INVALID_ARGUMENT', `Invalid guest pid ${pid}`);
    const name = signal.replace(/^SIG/, '');
    if (!/^[A-Z0-9]+$/.test(name)) throw new AppError('INVALID_ARGUMENT', `Invalid signal ${JSON.stringify(signal)}`);
    await this.execute('guest-exec', { path: '/bin/sh', arg: ['-c', 'kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" -"$2" 2>/dev/null || kill -s "$1" "$2"', 'sh', name, String(pid)] });
  }

  /** Closes the connection; the current and queued commands reject. */
  close(): void {
    void this.link.close();
  }

  // Runs fn after every earlier command settled: replies carry no id, so only one request may be in flight.
  private enqueue<T>(command: string, fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      if (!this.link.usable) throw this.disconnectError(command);
      return fn();
    });
    this.tail = run.then(() => undefined, () => undefined);
    return run;
  }

  // Sends data as the one request in flight; a timeout forgets it, so a late answer finds nobody.
  private ask<T>(cur: Current, data: Buffer, timeoutMs: number, timeoutError: () => AppError): Promise<T> {
    this.current = cur;
    return this.link.request<T>(REPLY, data, {
      label: cur.kind === 'sync' ? 'guest-sync-delimited' : cur.command, timeoutMs,
      timeoutError: () => { this.current = undefined; return timeoutError(); },
    });
  }

  // One guest-sync-delimited try: 0xFF first resets the agent's parser, the reply follows the agent's own 0xFF.
  private sync(timeoutMs: number): Promise<void> {
    const id = randomInt(1, 2 ** 47);
    const line = `${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`;
    return this.ask<void>({ kind: 'sync', id, sawSentinel: false }, Buffer.concat([Buffer.from([SENTINEL]), Buffer.from(line)]), timeoutMs, () => this.noAnswerError(timeoutMs));
  }

  private send<T>(command: string, args: object | undefined, timeoutMs: number, noReply: boolean): Promise<T> {
    const line = `${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`;
    if (noReply) {
      // Nothing comes back to tell a late error reply from silence: resync before the next command.
      this.synced = false;
      this.link.send(line);
      return Promise.resolve(undefined as T);
    }
    return this.ask<T>({ kind: 'command', command }, Buffer.from(line), timeoutMs, () => {
      // A late reply would be taken for the next command's: resync first.
      this.synced = false;
      return new AppError('TIMEOUT', `Guest agent ${command} timed out after ${timeoutMs} ms on ${this.subject}`, { details: { socket: this.path, command } });
    });
  }

  private onMessage(msg: Record<string, unknown>): void {
    const cur = this.current;
    // Nothing asked (or the asker timed out): a stale or late reply.
    if (!cur) return;
    if (cur.kind === 'sync') {
      // Replies before the agent's sentinel, and to earlier syncs (ours that timed out, or a previous client's), are stale.
      if (!cur.sawSentinel || msg.return !== cur.id) return;
      this.current = undefined;
      this.synced = true;
      this.link.take(REPLY)?.resolve(undefined);
    } else if ('return' in msg) {
      this.current = undefined;
      this.link.take(REPLY)?.resolve(msg.return);
    } else if ('error' in msg) {
      this.current = undefined;
      const err = (msg.error ?? {}) as { class?: string; desc?: string };
      const desc = err.desc ?? 'unknown error';
      this.link.take(REPLY)?.reject(new AppError('BACKEND_FAILED', `Guest agent ${cur.command} failed: ${desc}`, {
        details: { class: err.class ?? 'GenericError', desc, command: cur.command, socket: this.path },
      }));
    }
  }

  private noAnswerError(timeoutMs: number): AppError {
    return new AppError('TIMEOUT', `The guest agent of ${this.subject} did not answer within ${timeoutMs} ms `
      + '(the guest may still be booting, or qemu-guest-agent is not installed or not running in it)', {
      details: { socket: this.path, noAgent: true },
    });
  }

  private disconnectError(command: string): AppError {
    return this.link.disconnectError(`Guest agent ${command} failed: ${this.link.endText(this.subject)}`, { command });
  }
}
