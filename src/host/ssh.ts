// SshHost: the Host interface on a remote machine over one kept-alive SSH connection (ssh2): a channel per command, SFTP for files.
import { PassThrough, Transform, type Duplex } from 'node:stream';
import type { ClientChannel } from 'ssh2';
import { AppError, isAppError } from '../shared/errors.js';
import type { ExecOptions, ExecResult, Host, HostProcess, SpawnOptions } from './host.js';
import { argvForDisplay, baseEnvFrom } from './local.js';
import { SshConnection, type SshConnectOptions, type SshStats } from './ssh/connection.js';
import { NOT_STARTED, PidMarker, remoteCommand } from './ssh/remote-command.js';
import { SftpFs } from './ssh/sftp-fs.js';

/** First contact (probeHostKey) and fingerprints, for whoever pins a host's key. */
export { probeHostKey, sshFingerprint, type ProbedHostKey } from './ssh/host-key.js';
/** The connection's options and counters. */
export type { SshConnectOptions, SshStats } from './ssh/connection.js';

const MAX_OUTPUT = 64 * 1024 * 1024;
// After a timeout's SIGTERM, how long the command may take to go before it is killed and its channel closed.
const KILL_GRACE_MS = 2_000;
// How often the wait() of a detached process asks whether it still runs.
const DETACHED_POLL_MS = 500;

// Builtin kill, with `--` (dash refuses a negative pid without it) or without (busybox ash refuses `--`).
const KILL_SCRIPT = 'kill -s "$1" -- "$2" 2>/dev/null || kill -s "$1" "$2" 2>/dev/null';
// The whole process group first (sshd makes each session's process a group leader), then the process alone.
const KILL_GROUP_SCRIPT = 'for t in "-$2" "$2"; do kill -s "$1" -- "$t" 2>/dev/null || kill -s "$1" "$t" 2>/dev/null && exit 0; done; exit 1';

// Waits for a process of the host to end through a pidfd (pidfd_open is syscall 434 on every Linux architecture since
// 5.3), with perl, which every Debian system has (perl-base is essential): prints "gone" once it ended, or at once
// when there is no such process; exits 2 where pidfd_open is missing, so that the caller knows it cannot watch.
const WATCH_EXIT_SCRIPT = [
  'my $fd = syscall(434, $ARGV[0] + 0, 0);',
  'if ($fd < 0) { if ($! == 3) { print "gone\\n"; exit 0 } exit 2 }',
  'my $rin = ""; vec($rin, $fd, 1) = 1;',
  'select($rin, undef, undef, undef);',
  'print "gone\\n";',
].join(' ');

/** Options of an SshHost: how to reach and trust the host, and the base environment of its commands. */
export interface SshHostOptions extends SshConnectOptions {
  /** The base environment of every command (default: BASE_ENV plus hangard's proxies, as LocalHost). */
  env?: Record<string, string>;
}

/** A remote host as the daemon stores it. */
export interface SshHostRecord {
  name: string;
  address: string;
  port: number;
  user: string;
  identityFile: string;
  /** The pinned host key fingerprint (SHA256:...). */
  fingerprint: string;
  /** The pinned key's type, when known. */
  keyType?: string;
}

/** SshHost options from a stored host record. */
export function sshOptionsFromRecord(r: SshHostRecord): SshHostOptions {
  return { name: r.name, host: r.address, port: r.port, username: r.user, identityFile: r.identityFile, hostKeyFingerprint: r.fingerprint, ...(r.keyType ? { hostKeyType: r.keyType } : {}) };
}

/** "SIGTERM" → "TERM", for kill -s; refuses anything that is no signal name. */
function signalName(signal: NodeJS.Signals | 0): string {
  if (signal === 0) return '0';
  if (!/^SIG[A-Z0-9]+$/.test(signal)) throw new AppError('INVALID_ARGUMENT', `Invalid signal ${JSON.stringify(signal)}`);
  return signal.slice(3);
}

/**
 * The exit a channel's 'close' event carries (ssh2 repeats the exit-status or exit-signal there, so it is not lost when
 * those requests arrived before anyone listened), as Node reports a child's; undefined when the server sent none.
 */
function exitOf(args: unknown[]): { code: number | null; signal: string | null } | undefined {
  const [code, signal] = args;
  if (typeof code === 'number') return { code, signal: null };
  if (typeof signal === 'string') return { code: null, signal: signal.startsWith('SIG') ? signal : `SIG${signal}` };
  return undefined;
}

/** A machine reached over SSH. Built with `new` it connects in the background (HOST_UNREACHABLE until it is up); SshHost.connect waits. */
export class SshHost implements Host {
  readonly name: string;
  readonly fs: SftpFs;
  private readonly conn: SshConnection;
  private readonly env: Record<string, string>;

  constructor(opts: SshHostOptions) {
    this.name = opts.name;
    this.env = opts.env ?? baseEnvFrom(process.env);
    this.conn = new SshConnection(opts);
    this.fs = new SftpFs(this.conn, this.name, (argv, o) => this.exec(argv, o));
    this.conn.start();
  }

  /** Connects and waits for the first connection; a refused key or an unreachable host throws HOST_UNREACHABLE (and nothing is left open). */
  static async connect(opts: SshHostOptions): Promise<SshHost> {
    const host = new SshHost(opts);
    try {
      await host.conn.ready(true);
    } catch (e) {
      host.close();
      throw e;
    }
    return host;
  }

  /** Resolves once connected (at once when up). */
  ready(): Promise<void> { return this.conn.ready(); }

  /** True while the connection is up. */
  get connected(): boolean { return this.conn.up; }

  /** Where it connects: user@address:port. */
  get address(): string { return this.conn.address; }

  /** Connections, channels and SFTP requests made so far. */
  get stats(): Readonly<SshStats> { return this.conn.stats; }

  /** Closes the connection for good; detached processes keep running on the host. */
  close(): void { this.conn.close(); }

  async exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const command = remoteCommand({ argv, env: { ...this.env, ...opts.env }, ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}), mode: 'run' });
    return (await this.run(command, argv, opts)).result;
  }

  /** Runs one wrapped command line on its own channel to completion; answers the result and the pid its marker named. */
  private async run(command: string, argv: readonly string[], opts: ExecOptions): Promise<{ result: ExecResult; pid: number | undefined }> {
    const ch = await this.conn.session((c, cb) => c.exec(command, cb));
    return new Promise((resolve, reject) => {
      const marker = new PidMarker();
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let size = 0;
      let exit: { code: number | null; signal: string | null } | undefined;
      let timedOut = false;
      let timer: NodeJS.Timeout | undefined;
      let grace: NodeJS.Timeout | undefined;
      ch.on('data', (d: Buffer) => {
        const mine = marker.push(d);
        size += mine.length;
        if (mine.length > 0 && size < MAX_OUTPUT) out.push(mine);
      });
      ch.stderr.on('data', (d: Buffer) => { err.push(d); });
      ch.on('error', () => undefined);
      if (opts.timeoutMs !== undefined && opts.timeoutMs > 0) {
        timer = setTimeout(() => {
          timedOut = true;
          this.signalChannel(ch, marker.pid, 'SIGTERM', true);
          grace = setTimeout(() => {
            this.signalChannel(ch, marker.pid, 'SIGKILL', true);
            exit ??= { code: null, signal: 'SIGKILL' };
            ch.close();
          }, KILL_GRACE_MS);
        }, opts.timeoutMs);
      }
      ch.on('close', (...args: unknown[]) => {
        exit = exitOf(args) ?? exit;
        clearTimeout(timer);
        clearTimeout(grace);
        const stderr = Buffer.concat(err).toString('utf8');
        if (!exit && !timedOut) {
          reject(this.conn.up
            ? new AppError('HOST_FAILED', `Failed to run ${argvForDisplay(argv)} on host "${this.name}": the channel closed without an exit status`)
            : new AppError('HOST_UNREACHABLE', `Host "${this.name}" is unreachable: the connection dropped while running ${argvForDisplay(argv)}`, { cause: this.conn.unreachable(), details: { host: this.name } }));
          return;
        }
        const res: ExecResult = { code: exit?.code ?? -1, signal: exit?.signal ?? (timedOut ? 'SIGTERM' : null), stdout: Buffer.concat(out).toString('utf8'), stderr };
        if (marker.pid === undefined && res.code === NOT_STARTED.code && stderr.startsWith(NOT_STARTED.prefix)) {
          reject(new AppError('HOST_FAILED', `Failed to run ${argvForDisplay(argv)}`, { cause: new Error(`${stderr.trim()} (host "${this.name}")`) }));
          return;
        }
        if (res.code !== 0 && !opts.allowFailure) {
          const detail = res.stderr.trim() || res.stdout.trim() || (res.signal ? `killed by ${res.signal}` : `exit code ${res.code}`);
          reject(new AppError('HOST_FAILED', `Command failed: ${argvForDisplay(argv)}`, { cause: new Error(detail), details: { code: res.code } }));
          return;
        }
        resolve({ result: res, pid: marker.pid });
      });
      if (opts.input !== undefined) ch.end(opts.input);
      else ch.end();
    });
  }

  /** Signals what runs on a channel: the SSH signal request, and a remote kill of the process (group) once its pid is known. */
  private signalChannel(ch: ClientChannel, pid: number | undefined, signal: NodeJS.Signals, group: boolean): void {
    try { ch.signal(signal.slice(3)); } catch { /* the channel is gone already */ }
    if (pid !== undefined && pid > 0) void this.signalRemote(pid, signal, group).catch(() => false);
  }

  private async signalRemote(pid: number, signal: NodeJS.Signals | 0, group: boolean): Promise<boolean> {
    if (!Number.isInteger(pid)) throw new AppError('INVALID_ARGUMENT', `Invalid pid ${pid}`);
    const res = await this.exec(['/bin/sh', '-c', group ? KILL_GROUP_SCRIPT : KILL_SCRIPT, 'hangar-kill', signalName(signal), String(pid)], { allowFailure: true });
    return res.code === 0;
  }

  spawn(argv: readonly string[], opts: SpawnOptions = {}): HostProcess {
    const env: Record<string, string> = { ...(opts.pty ? { TERM: 'xterm-256color' } : {}), ...this.env, ...opts.env };
    const command = remoteCommand({
      argv, env, mode: opts.detached ? 'detach' : 'run',
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}), ...(opts.logFile !== undefined ? { logFile: opts.logFile } : {}),
    });
    // Fails fast, before any stream exists, when the host is down.
    this.conn.usable();
    return opts.detached ? this.spawnDetached(command, argv) : this.spawnAttached(command, opts);
  }

  /** The wrapper starts the program in the background and exits at once, printing that program's pid. */
  private spawnDetached(command: string, argv: readonly string[]): HostProcess {
    const pid = this.run(command, argv, { allowFailure: true }).then(({ pid: p }) => p ?? -1, () => -1);
    let exited: Promise<{ code: number | null; signal: string | null }> | undefined;
    const wait = () => {
      // Polled only once someone waits: the process is no child of this connection, its exit status is not ours to learn.
      exited ??= pid.then(async (p) => {
        if (p <= 0) return { code: 127, signal: null };
        for (;;) {
          // While the host is unreachable the process may well still run; once the SshHost is closed nobody can tell.
          const alive = await this.kill(p, 0).catch((e: unknown) => (isAppError(e, 'HOST_UNREACHABLE') && !this.conn.isClosed ? true : Promise.reject(e)));
          if (!alive) return { code: null, signal: null };
          await new Promise((r) => setTimeout(r, DETACHED_POLL_MS));
        }
      }).catch(() => ({ code: null, signal: null }));
      return exited;
    };
    return {
      pid, stdin: null, stdout: null, stderr: null, wait,
      kill: (s) => { void pid.then((p) => (p > 0 ? this.kill(p, s ?? 'SIGTERM') : false)).catch(() => false); },
    };
  }

  private spawnAttached(command: string, opts: SpawnOptions): HostProcess {
    const marker = new PidMarker();
    let resolvePid!: (pid: number) => void;
    const pid = new Promise<number>((r) => { resolvePid = r; });
    const stdin = new PassThrough();
    stdin.on('error', () => undefined);
    const pty = opts.pty;
    const stdout = new Transform({
      transform(chunk: Buffer, _enc, done) {
        const had = marker.pid;
        const mine = marker.push(chunk);
        if (had === undefined && marker.pid !== undefined) resolvePid(marker.pid);
        done(null, mine.length > 0 ? mine : undefined);
      },
    });
    const stderr = pty ? null : new PassThrough();
    let channel: ClientChannel | undefined;
    let size = pty ? { cols: pty.cols, rows: pty.rows } : undefined;
    let finished = false;
    let resolveExit!: (e: { code: number | null; signal: string | null }) => void;
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) => { resolveExit = r; });
    const fail = (e: unknown) => {
      finished = true;
      resolvePid(-1);
      const msg = `hangar: ${e instanceof Error ? e.message : String(e)}\n`;
      (stderr ?? stdout).end(msg);
      if (stderr) stdout.end();
      // 255, as ssh(1) exits when the connection fails.
      resolveExit({ code: 255, signal: null });
    };
    this.conn.session((c, cb) => c.exec(command, pty ? { pty: { cols: pty.cols, rows: pty.rows, term: 'xterm-256color' } } : {}, cb)).then((ch) => {
      channel = ch;
      ch.on('error', () => undefined);
      ch.pipe(stdout);
      if (stderr) ch.stderr.pipe(stderr);
      if (size && pty && (size.cols !== pty.cols || size.rows !== pty.rows)) ch.setWindow(size.rows, size.cols, 0, 0);
      // A terminal echoes what is typed: input waits for the pid line, so the echo cannot come before it.
      if (pty) void pid.then(() => { if (!finished) stdin.pipe(ch); });
      else stdin.pipe(ch);
      ch.on('close', (...args: unknown[]) => {
        const exit = exitOf(args);
        finished = true;
        resolvePid(-1);
        stdin.unpipe(ch);
        if (!stdout.writableEnded) stdout.end();
        if (stderr && !stderr.writableEnded) stderr.end();
        if (!exit && !this.conn.up) { resolveExit({ code: 255, signal: null }); return; }
        resolveExit(exit ?? { code: null, signal: null });
      });
    }, fail);
    return {
      pid, stdin, stdout, stderr,
      wait: () => exited,
      kill: (s) => {
        void pid.then((p) => {
          if (finished) return;
          if (p > 0) void this.signalRemote(p, s ?? 'SIGTERM', false).catch(() => false);
          else channel?.close();
        });
      },
      ...(pty ? {
        resize: (cols: number, rows: number) => {
          size = { cols, rows };
          channel?.setWindow(rows, cols, 0, 0);
        },
      } : {}),
    };
  }

  async connectUnix(path: string): Promise<Duplex> {
    try {
      return await this.conn.forwardUnix(path);
    } catch (e) {
      if (isAppError(e)) throw e;
      // The server only says the forward failed: whether the socket exists tells ENOENT (keep waiting for it) from ECONNREFUSED.
      const st = await this.fs.stat(path).catch(() => undefined);
      const code = st ? 'ECONNREFUSED' : 'ENOENT';
      // OpenSSH also refuses every unix-socket forward unless both of these allow it.
      const hint = st ? '; the server must allow AllowStreamLocalForwarding and AllowTcpForwarding local' : '';
      throw Object.assign(new Error(`connect ${code} ${path} (host "${this.name}"${hint})`, { cause: e }), { code, address: path });
    }
  }

  async kill(pid: number, signal: NodeJS.Signals | 0 = 'SIGTERM'): Promise<boolean> {
    return this.signalRemote(pid, signal, false);
  }

  /** A pidfd on the host, held by a perl there (one channel per watched process); a lost connection ends the watch without calling onExit. */
  watchExit(pid: number, onExit: () => void): (() => void) | undefined {
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    let done = false;
    const proc = this.spawn(['perl', '-e', WATCH_EXIT_SCRIPT, String(pid)]);
    proc.stdin?.end();
    let out = '';
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      if (!done && out.includes('gone\n')) { done = true; onExit(); }
    });
    proc.stderr?.resume();
    void proc.wait().catch(() => undefined);
    return () => { if (!done) { done = true; proc.kill('SIGKILL'); } };
  }
}
