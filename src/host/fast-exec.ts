// The fast path of LocalHost.exec: the native fast-exec addon (posix_spawn, exit seen through a pidfd) where it is built, child_process otherwise.
import * as fs from 'node:fs';
import { Socket } from 'node:net';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HostProcess } from './host.js';

/** The addon's functions (native/fast-exec.c). */
interface FastExecAddon {
  run(path: string, argv: string[], envp: string[], cwd: string | null, input: Buffer | null, maxOut: number,
    cb: (code: number, signal: number, stdout: Buffer, stderr: Buffer) => void): number;
  /** Starts a command with three pipes, which are the caller's: [pid, stdin, stdout, stderr]; cb when it exits. */
  spawn(path: string, argv: string[], envp: string[], cwd: string | null, cb: (code: number, signal: number) => void, group: boolean): [number, number, number, number];
  /** Calls cb once the process (any, not only a child) ends; answers the watch's id. Throws when there is no such process. */
  watch(pid: number, cb: () => void): number;
  unwatch(id: number): void;
}

/** How a command ended: as child_process reports it (code -1 with the signal's name when a signal ended it). */
export interface FastExecResult {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** What a fast exec is given: the host's environment merged already. */
export interface FastExecSpec {
  argv: readonly string[];
  env: Record<string, string>;
  cwd?: string | undefined;
  input?: string | Buffer | undefined;
  timeoutMs?: number | undefined;
  maxOutput: number;
  /** Set on the one retry after a cached command path vanished. */
  retried?: boolean;
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(Object.entries(constants.signals).map(([k, v]) => [v, k as NodeJS.Signals]));

let addon: FastExecAddon | null | undefined;

/** Where the addon is: beside the bundle (dist/native), or in dist/ when running from the sources (tests). */
function addonPaths(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  return [join(here, 'native', 'fast-exec.node'), join(here, '..', '..', 'dist', 'native', 'fast-exec.node')];
}

/** The addon, loaded once; null when it is not built or HANGAR_FAST_EXEC=0 (then child_process runs every command). */
export function fastExecAddon(): FastExecAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  if (process.env.HANGAR_FAST_EXEC === '0') return addon;
  const file = addonPaths().find((p) => fs.existsSync(p));
  if (!file) return addon;
  try {
    addon = createRequire(import.meta.url)(file) as FastExecAddon;
  } catch {
    // Built for another Node or libc: the portable path is as correct, only slower.
    addon = null;
  }
  return addon;
}

/** Commands found in PATH before, by PATH and name: a launch runs the same few tools again and again. */
const resolved = new Map<string, string>();

/** The file a command name runs, searched in PATH as execvp does (a name with a slash is taken as it is); null when none is executable. */
export function resolveCommand(cmd: string, path: string | undefined): string | null {
  if (cmd.includes('/')) return cmd;
  const key = `${path ?? ''}\0${cmd}`;
  const known = resolved.get(key);
  if (known !== undefined) return known;
  const file = searchPath(cmd, path);
  if (file !== null) resolved.set(key, file);
  return file;
}

/** Forgets where a command was (it was removed or moved since): the next run searches PATH again. */
function forgetCommand(cmd: string, path: string | undefined): void {
  resolved.delete(`${path ?? ''}\0${cmd}`);
}

function searchPath(cmd: string, path: string | undefined): string | null {
  for (const dir of (path ?? '').split(':')) {
    if (!dir) continue;
    const file = join(dir, cmd);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // Not in this directory.
    }
  }
  return null;
}

/** An error like the one child_process gives for a command that cannot be started (code ENOENT, EACCES, ...). */
function spawnError(cmd: string, errno: number | undefined, message: string): NodeJS.ErrnoException {
  const code = Object.entries(constants.errno).find(([, v]) => v === errno)?.[0] ?? 'EIO';
  const e: NodeJS.ErrnoException = new Error(`spawn ${cmd} ${code}${message ? ` (${message})` : ''}`);
  e.code = code;
  if (errno !== undefined) e.errno = -errno;
  e.syscall = `spawn ${cmd}`;
  return e;
}

/**
 * Runs a command to completion through the addon. It costs ~0.2 ms of the event loop against ~2 ms for
 * child_process.spawn in a daemon of hangard's size (which forks the whole process and waits for the exec).
 * Rejects with a child_process-like error when the command cannot be started; a timeout sends SIGTERM, as spawn's does.
 */
export function fastExec(a: FastExecAddon, spec: FastExecSpec): Promise<FastExecResult> {
  return new Promise((resolve, reject) => {
    const cmd = spec.argv[0]!;
    const file = resolveCommand(cmd, spec.env.PATH);
    if (file === null) { reject(spawnError(cmd, constants.errno.ENOENT, '')); return; }
    const envp = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`);
    const input = spec.input === undefined ? null : Buffer.isBuffer(spec.input) ? spec.input : Buffer.from(spec.input);
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    let pid: number;
    try {
      pid = a.run(file, [...spec.argv], envp, spec.cwd ?? null, input, spec.maxOutput, (code, signal, stdout, stderr) => {
        done = true;
        if (timer) clearTimeout(timer);
        resolve({ code, signal: signal ? SIGNAL_NAMES.get(signal) ?? null : null, stdout, stderr });
      });
    } catch (e) {
      const err = e as Error & { errno?: number };
      // Where it was found before it is no more (a package removed or upgraded): found again, once.
      if (err.errno === constants.errno.ENOENT && !cmd.includes('/') && !spec.retried) {
        forgetCommand(cmd, spec.env.PATH);
        fastExec(a, { ...spec, retried: true }).then(resolve, reject);
        return;
      }
      reject(spawnError(cmd, err.errno, err.message));
      return;
    }
    if (spec.timeoutMs !== undefined && spec.timeoutMs > 0) {
      // The addon reaps the child only after the callback cleared this timer: the pid cannot be another process's.
      timer = setTimeout(() => { if (!done) { try { process.kill(pid, 'SIGTERM'); } catch { /* gone already */ } } }, spec.timeoutMs);
    }
  });
}

/**
 * Starts a command with pipes for stdin, stdout and stderr through the addon, as a HostProcess: wait() resolves once
 * it exited and its output streams closed (child_process's 'close'); kill() signals it only until its exit was seen
 * (the addon reaps it after that callback, so the pid is never another process's). Null when it cannot be started
 * (the caller's child_process path then reports that as it always has).
 */
export function fastSpawn(a: FastExecAddon, argv: readonly string[], env: Record<string, string>, cwd: string | undefined, group = false): HostProcess | null {
  const file = resolveCommand(argv[0]!, env.PATH);
  if (file === null) return null;
  let exit!: (v: { code: number | null; signal: string | null }) => void;
  const exited = new Promise<{ code: number | null; signal: string | null }>((res) => { exit = res; });
  let done = false;
  let fds: [number, number, number, number];
  try {
    fds = a.spawn(file, [...argv], Object.entries(env).map(([k, v]) => `${k}=${v}`), cwd ?? null, (code, signal) => {
      done = true;
      exit(signal ? { code: null, signal: SIGNAL_NAMES.get(signal) ?? String(signal) } : { code, signal: null });
    }, group);
  } catch {
    return null;
  }
  const [pid, inFd, outFd, errFd] = fds;
  const stdin = new Socket({ fd: inFd, readable: false, writable: true });
  const stdout = new Socket({ fd: outFd, readable: true, writable: false });
  const stderr = new Socket({ fd: errFd, readable: true, writable: false });
  stdin.on('error', () => undefined);
  const closed = (s: Socket) => new Promise<void>((res) => { s.once('close', () => res()); });
  const all = Promise.all([exited, closed(stdout), closed(stderr)]).then(([e]) => {
    // The command is gone: its stdin is of no more use (child_process closes it too).
    stdin.destroy();
    return e;
  });
  return {
    pid: Promise.resolve(pid), stdin, stdout, stderr,
    wait: () => all,
    // A group leader's signal goes to its whole group, which outlives it where what it started stays.
    kill: (sig) => { if (!done || group) { try { process.kill(group ? -pid : pid, sig ?? 'SIGTERM'); } catch { /* gone already */ } } },
  };
}

/** Calls onExit once process pid ends (at once when it is gone already), through a pidfd: no poll. Answers the cancel, or null when pid is no process. */
export function watchExit(a: FastExecAddon, pid: number, onExit: () => void): (() => void) | null {
  let id: number;
  try {
    id = a.watch(pid, onExit);
  } catch {
    return null;
  }
  return () => a.unwatch(id);
}
