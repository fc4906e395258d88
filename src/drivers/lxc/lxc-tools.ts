// Thin typed wrappers over the lxc-* command-line tools; argv builders are pure, runners go through Host.
import { AppError } from '../../shared/errors.js';
import type { ExecResult, Host } from '../../host/host.js';
import { parseLxcInfo, type LxcInfo } from './parse.js';

/** A container as the lxc-* tools address it: -P lxcPath -n name. */
export interface LxcTarget {
  /** Must be absolute: LXC derives the name of the container's command socket from this exact string. */
  lxcPath: string;
  name: string;
}

/** PATH given to attached commands when the caller sets none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// Fixed script: the directory and the command arrive as positional parameters, never inside the script text.
const CWD_WRAPPER = 'cd "$1" || exit 126; shift; exec "$@"';

const base = (t: LxcTarget): string[] => {
  if (!t.lxcPath.startsWith('/')) throw new AppError('INVALID_ARGUMENT', `Invalid LXC path ${JSON.stringify(t.lxcPath)}: must be absolute`);
  return ['-P', t.lxcPath, '-n', t.name];
};

/** lxc-start -d: daemonizes a monitor that outlives the caller and returns once the container runs (or failed). */
export function lxcStartArgv(t: LxcTarget, opts: { logFile?: string; logLevel?: string; pidFile?: string } = {}): string[] {
  const argv = ['lxc-start', '-d', ...base(t)];
  if (opts.pidFile) argv.push('-p', opts.pidFile);
  if (opts.logFile) argv.push('-o', opts.logFile);
  if (opts.logLevel) argv.push('-l', opts.logLevel);
  return argv;
}

/** lxc-stop: kill at once (-k), or send the halt signal and wait up to timeoutS seconds without killing (--nokill). */
export function lxcStopArgv(t: LxcTarget, opts: { kill: true } | { kill?: false; timeoutS: number }): string[] {
  if (opts.kill) return ['lxc-stop', ...base(t), '-k'];
  return ['lxc-stop', ...base(t), '-t', String(Math.max(1, Math.ceil(opts.timeoutS))), '--nokill'];
}

/** lxc-info asking for the state and the init pid only. */
export function lxcInfoArgv(t: LxcTarget): string[] {
  return ['lxc-info', ...base(t), '-s', '-p', '-H'];
}

/** lxc-freeze. */
export function lxcFreezeArgv(t: LxcTarget): string[] {
  return ['lxc-freeze', ...base(t)];
}

/** lxc-unfreeze. */
export function lxcUnfreezeArgv(t: LxcTarget): string[] {
  return ['lxc-unfreeze', ...base(t)];
}

/** What to run with lxc-attach. */
export interface AttachSpec {
  command: readonly string[];
  env?: Record<string, string>;
  /** Working directory inside the container (absolute). */
  cwd?: string;
  /** Adds TERM when the caller sets none. */
  tty?: boolean;
}

/**
 * lxc-attach with a clean environment (--clear-env, then -v K=V each). lxc-attach has no cwd option (it tries the
 * caller's own cwd, else "/"), and busybox env has no -C: a cwd is applied by a fixed /bin/sh script that gets the
 * directory and the command as positional parameters.
 */
export function lxcAttachArgv(t: LxcTarget, spec: AttachSpec): string[] {
  if (spec.command.length === 0) throw new AppError('INVALID_ARGUMENT', 'Empty command');
  const env: Record<string, string> = { PATH: DEFAULT_PATH, HOME: '/root', ...(spec.tty ? { TERM: 'xterm-256color' } : {}), ...(spec.env ?? {}) };
  const argv = ['lxc-attach', ...base(t), '--clear-env'];
  for (const [k, v] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new AppError('INVALID_ARGUMENT', `Invalid environment variable name ${JSON.stringify(k)}`);
    if (v.includes('\0')) throw new AppError('INVALID_ARGUMENT', `Invalid value for environment variable ${k}: contains a NUL byte`);
    argv.push('-v', `${k}=${v}`);
  }
  argv.push('--');
  if (spec.cwd !== undefined) {
    if (!spec.cwd.startsWith('/')) throw new AppError('INVALID_ARGUMENT', `Invalid working directory ${JSON.stringify(spec.cwd)}: must be absolute`);
    argv.push('/bin/sh', '-c', CWD_WRAPPER, 'hangar-cwd', spec.cwd);
  }
  argv.push(...spec.command);
  return argv;
}

/** lxc-console on tty 0 (/dev/console, the one whose output is logged). */
export function lxcConsoleArgv(t: LxcTarget, tty = 0): string[] {
  return ['lxc-console', ...base(t), '-t', String(tty)];
}

/** Runs lxc-start -d; returns the result instead of throwing so the caller can add the log tail. */
export function lxcStart(host: Host, t: LxcTarget, opts: { logFile?: string; logLevel?: string; pidFile?: string } = {}): Promise<ExecResult> {
  return host.exec(lxcStartArgv(t, opts), { allowFailure: true, timeoutMs: 120_000 });
}

/** Runs lxc-stop; returns the result (a graceful stop that timed out exits non-zero). */
export function lxcStop(host: Host, t: LxcTarget, opts: { kill: true } | { kill?: false; timeoutS: number }): Promise<ExecResult> {
  const wait = opts.kill ? 60_000 : Math.ceil(opts.timeoutS) * 1000 + 30_000;
  return host.exec(lxcStopArgv(t, opts), { allowFailure: true, timeoutMs: wait });
}

/** Runs lxc-info; a container LXC does not know reads as STOPPED. */
export async function lxcInfo(host: Host, t: LxcTarget): Promise<LxcInfo> {
  const res = await host.exec(lxcInfoArgv(t), { allowFailure: true, timeoutMs: 30_000 });
  if (res.code !== 0) {
    if (/doesn't exist|does not exist/.test(res.stderr)) return { state: 'STOPPED', pid: null };
    throw new AppError('BACKEND_FAILED', `Failed to query the state of container "${t.name}"`, { cause: new Error(res.stderr.trim() || `exit code ${res.code}`) });
  }
  return parseLxcInfo(res.stdout);
}

/** Runs lxc-freeze. */
export async function lxcFreeze(host: Host, t: LxcTarget): Promise<void> {
  await host.exec(lxcFreezeArgv(t), { timeoutMs: 60_000 });
}

/** Runs lxc-unfreeze. */
export async function lxcUnfreeze(host: Host, t: LxcTarget): Promise<void> {
  await host.exec(lxcUnfreezeArgv(t), { timeoutMs: 60_000 });
}

/** LXC's version from `lxc-start --version`, or null with the reason when the tools are missing. */
export async function lxcVersion(host: Host): Promise<{ version: string | null; reason: string | null }> {
  try {
    const res = await host.exec(['lxc-start', '--version'], { allowFailure: true, timeoutMs: 30_000 });
    const v = res.stdout.trim();
    if (res.code === 0 && /^\d+(\.\d+)*/.test(v)) return { version: v, reason: null };
    return { version: null, reason: `lxc-start --version failed: ${res.stderr.trim() || `exit code ${res.code}`}` };
  } catch (e) {
    return { version: null, reason: `lxc-start not found (install the lxc package): ${e instanceof Error ? e.message : String(e)}` };
  }
}
