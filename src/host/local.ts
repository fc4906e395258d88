// LocalHost: the Host implementation for the machine hangard runs on.
import { spawn as cpSpawn } from 'node:child_process';
import * as fs from 'node:fs';
import { connect } from 'node:net';
import { dirname, basename, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { PassThrough } from 'node:stream';
import { createRequire } from 'node:module';
import { AppError } from '../shared/errors.js';
import { fastExec, fastExecAddon, fastSpawn, watchExit } from './fast-exec.js';
import type { ExecOptions, ExecResult, Host, HostFs, HostProcess, HostStat, SpawnOptions } from './host.js';

const MAX_OUTPUT = 64 * 1024 * 1024;

/** Renders argv for messages (not for execution). */
export function argvForDisplay(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

// Synchronous calls on purpose: on local disks and kernel pseudo-files a sync call costs ~10 µs against ~250 µs
// through libuv's thread pool, and the hot paths (launch, exec, list) make dozens of them. Large transfers go
// through exec/spawn of tools instead, so nothing here blocks the event loop for long.
class LocalFs implements HostFs {
  async readFile(path: string) { return fs.readFileSync(path); }
  async readText(path: string) { return fs.readFileSync(path, 'utf8'); }
  async readTextIfExists(path: string) {
    try {
      return fs.readFileSync(path, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ESRCH' || code === 'ENOTDIR') return undefined;
      throw e;
    }
  }
  async writeAtomic(path: string, data: string | Buffer, mode = 0o644) {
    const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
    // Created private, then given exactly its mode: neither the umask nor a reader between the two sees more.
    fs.writeFileSync(tmp, data, { mode: 0o600 });
    fs.chmodSync(tmp, mode);
    fs.renameSync(tmp, path);
  }
  async appendFile(path: string, data: string | Buffer) { fs.appendFileSync(path, data); }
  async mkdir(path: string, opts: { recursive?: boolean; mode?: number } = {}) {
    const existed = fs.existsSync(path);
    fs.mkdirSync(path, { recursive: opts.recursive ?? true, ...(opts.mode !== undefined ? { mode: opts.mode } : {}) });
    // The mode asked for, exactly, whatever the umask (hangard runs with 022; created parents get mode & ~umask).
    if (opts.mode !== undefined && !existed) fs.chmodSync(path, opts.mode);
  }
  async rm(path: string, opts: { recursive?: boolean; force?: boolean } = {}) { fs.rmSync(path, { recursive: opts.recursive ?? false, force: opts.force ?? false }); }
  async rmdir(path: string) { fs.rmdirSync(path); }
  async rename(from: string, to: string) { fs.renameSync(from, to); }
  async stat(path: string): Promise<HostStat | undefined> {
    try {
      const s = fs.lstatSync(path);
      return { size: s.size, mode: s.mode, uid: s.uid, gid: s.gid, isDirectory: s.isDirectory(), isFile: s.isFile(), isSymbolicLink: s.isSymbolicLink(), mtimeMs: s.mtimeMs };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw e;
    }
  }
  async readdir(path: string) { return fs.readdirSync(path); }
  async readMany(paths: readonly string[]) { return Promise.all(paths.map((p) => this.readTextIfExists(p).catch(() => undefined))); }
  async symlink(target: string, path: string) { fs.symlinkSync(target, path); }
  async readlink(path: string) { return fs.readlinkSync(path); }
  async chown(path: string, uid: number, gid: number) { fs.lchownSync(path, uid, gid); }
  async chmod(path: string, mode: number) { fs.chmodSync(path, mode); }
}

/** What every command gets as its environment: nothing else of hangard's own environment leaks into what it runs. */
export const BASE_ENV: Readonly<Record<string, string>> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8' };

/** Variables passed on from hangard's environment when set: proxies, which downloads (apt-get, debootstrap) need. */
export const PASSED_ENV = ['http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY'] as const;

/** The base environment of a host's commands: BASE_ENV plus the PASSED_ENV variables set in `from`. */
export function baseEnvFrom(from: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const env: Record<string, string> = { ...BASE_ENV };
  for (const k of PASSED_ENV) if (from[k] !== undefined) env[k] = from[k]!;
  return env;
}

/** An exec's result from how its command ended; a non-zero exit is HOST_FAILED unless allowFailure. */
function execResult(argv: readonly string[], opts: ExecOptions, code: number, signal: NodeJS.Signals | null, stdout: Buffer, stderr: Buffer): ExecResult {
  const res: ExecResult = { code, signal, stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8') };
  if (res.code !== 0 && !opts.allowFailure) {
    const detail = res.stderr.trim() || res.stdout.trim() || (signal ? `killed by ${signal}` : `exit code ${res.code}`);
    throw new AppError('HOST_FAILED', `Command failed: ${argvForDisplay(argv)}`, { cause: new Error(detail), details: { code: res.code } });
  }
  return res;
}

/** The local machine. */
export class LocalHost implements Host {
  readonly name = 'local';
  readonly fs: HostFs = new LocalFs();
  private readonly env: Record<string, string>;

  private readonly fast: boolean;

  /** env: the base environment of every command (default: BASE_ENV plus the proxies of this process); fastExec: false runs every exec through child_process. */
  constructor(opts: { env?: Record<string, string>; fastExec?: boolean } = {}) {
    this.env = opts.env ?? baseEnvFrom(process.env);
    this.fast = opts.fastExec ?? true;
  }

  exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const fast = this.fast && argv.length > 0 ? fastExecAddon() : null;
    if (fast) {
      return fastExec(fast, { argv, env: { ...this.env, ...opts.env }, cwd: opts.cwd, input: opts.input, timeoutMs: opts.timeoutMs, maxOutput: MAX_OUTPUT }).then(
        (r) => execResult(argv, opts, r.code, r.signal, r.stdout, r.stderr),
        (e: unknown) => { throw new AppError('HOST_FAILED', `Failed to run ${argvForDisplay(argv)}`, { cause: e }); },
      );
    }
    return new Promise((resolve, reject) => {
      const [cmd, ...args] = argv;
      if (!cmd) { reject(new AppError('INVALID_ARGUMENT', 'Empty command')); return; }
      const child = cpSpawn(cmd, args, {
        cwd: opts.cwd,
        env: { ...this.env, ...opts.env },
        stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        timeout: opts.timeoutMs,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let size = 0;
      child.stdout!.on('data', (d: Buffer) => { size += d.length; if (size < MAX_OUTPUT) out.push(d); });
      child.stderr!.on('data', (d: Buffer) => { err.push(d); });
      if (opts.input !== undefined) {
        child.stdin!.on('error', () => undefined);
        child.stdin!.end(opts.input);
      }
      child.on('error', (e) => reject(new AppError('HOST_FAILED', `Failed to run ${argvForDisplay(argv)}`, { cause: e })));
      child.on('close', (code, signal) => {
        try {
          resolve(execResult(argv, opts, code ?? -1, signal ?? null, Buffer.concat(out), Buffer.concat(err)));
        } catch (e) {
          reject(e);
        }
      });
    });
  }

  spawn(argv: readonly string[], opts: SpawnOptions = {}): HostProcess {
    const [cmd, ...args] = argv;
    if (!cmd) throw new AppError('INVALID_ARGUMENT', 'Empty command');
    const env: Record<string, string> = { ...this.env, ...opts.env };
    if (opts.pty) return spawnPty(cmd, args, env, opts);
    if (opts.detached) {
      const fd = opts.logFile ? fs.openSync(opts.logFile, 'a') : 'ignore';
      const child = cpSpawn(cmd, args, { cwd: opts.cwd, env, detached: true, stdio: ['ignore', fd, fd] });
      if (typeof fd === 'number') fs.closeSync(fd);
      child.unref();
      const exited = new Promise<{ code: number | null; signal: string | null }>((res) => {
        child.on('exit', (code, signal) => res({ code, signal }));
        child.on('error', () => res({ code: -1, signal: null }));
      });
      return { pid: Promise.resolve(child.pid ?? -1), stdin: null, stdout: null, stderr: null, wait: () => exited, kill: (s) => { child.kill(s); } };
    }
    const fast = this.fast ? fastExecAddon() : null;
    const quick = fast ? fastSpawn(fast, argv, env, opts.cwd, opts.group ?? false) : null;
    if (quick) return quick;
    // detached: a session of its own (setsid), so its pid is its group's; it still has its pipes to hangard.
    const child = cpSpawn(cmd, args, { cwd: opts.cwd, env, stdio: ['pipe', 'pipe', 'pipe'], ...(opts.group ? { detached: true } : {}) });
    const exited = new Promise<{ code: number | null; signal: string | null }>((res) => {
      child.on('close', (code, signal) => res({ code, signal }));
      child.on('error', () => res({ code: 127, signal: null }));
    });
    child.stdin.on('error', () => undefined);
    const kill = (s?: NodeJS.Signals) => {
      if (!opts.group || child.pid === undefined) { child.kill(s); return; }
      try { process.kill(-child.pid, s ?? 'SIGTERM'); } catch { /* gone already */ }
    };
    return { pid: Promise.resolve(child.pid ?? -1), stdin: child.stdin, stdout: child.stdout, stderr: child.stderr, wait: () => exited, kill };
  }

  connectUnix(path: string): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      sock.once('connect', () => { sock.removeListener('error', reject); resolve(sock); });
      sock.once('error', reject);
    });
  }

  watchExit(pid: number, onExit: () => void): (() => void) | undefined {
    const a = this.fast ? fastExecAddon() : null;
    return (a && watchExit(a, pid, onExit)) ?? undefined;
  }

  async kill(pid: number, signal: NodeJS.Signals | 0 = 'SIGTERM'): Promise<boolean> {
    try { process.kill(pid, signal); return true; } catch { return false; }
  }
}

type PtyModule = typeof import('node-pty');
let ptyModule: PtyModule | undefined;

function spawnPty(cmd: string, args: string[], env: Record<string, string>, opts: SpawnOptions): HostProcess {
  // node-pty is native and only needed for terminals, so it is loaded on first use.
  ptyModule ??= createRequire(import.meta.url)('node-pty') as PtyModule;
  const term = ptyModule.spawn(cmd, args, { cols: opts.pty!.cols, rows: opts.pty!.rows, cwd: opts.cwd, env: { TERM: 'xterm-256color', ...env }, name: 'xterm-256color' });
  const stdout = new PassThrough();
  const stdin = new PassThrough();
  term.onData((d) => stdout.write(d));
  stdin.on('data', (d: Buffer) => term.write(d.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: string | null }>((res) => {
    term.onExit(({ exitCode, signal }) => { stdout.end(); res({ code: exitCode, signal: signal ? String(signal) : null }); });
  });
  return { pid: Promise.resolve(term.pid), stdin, stdout, stderr: null, wait: () => exited, kill: (s) => term.kill(s), resize: (c, r) => term.resize(c, r) };
}
