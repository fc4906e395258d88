// The command strings SshHost sends: a clean environment, a fixed wrapper script that reports the pid, checks cwd and the program, then execs it.
import { AppError } from '../../shared/errors.js';
import { shellQuoteArgv } from './quote.js';

/**
 * The wrapper, run by /bin/sh with its parameters: mode ("run" or "detach"), cwd ("" for none), log file, the
 * variables to unset (sh exports PWD and OLDPWD of its own; they go unless the caller set them), argv.
 * Its text is fixed: everything variable arrives as a positional parameter, never inside the script.
 * - A missing cwd or program exits 127 with a "hangar-exec:" line, so exec() can fail as LocalHost fails to spawn.
 * - "run" prints the pid marker, then execs argv: the pid is the program's own (sh, env and the login shell all exec).
 * - "detach" starts argv in the background in its own session (setsid, when the host has it) with stdio on the log
 *   file, prints that child's pid and exits at once, so the channel closes and the program outlives the connection.
 *   (Without job control sh starts it with SIGINT and SIGQUIT ignored, as nohup-like tools do.)
 */
export const WRAPPER_SCRIPT = [
  'm=$1 d=$2 l=$3 u=$4',
  'shift 4',
  `if [ -n "$d" ] && ! cd "$d" 2>/dev/null; then printf 'hangar-exec: cannot change directory to %s\\n' "$d" >&2; exit 127; fi`,
  'case $1 in */*) [ -f "$1" ] && [ -x "$1" ] ;; *) command -v "$1" >/dev/null 2>&1 ;; esac ||',
  `  { printf 'hangar-exec: cannot run %s: not found\\n' "$1" >&2; exit 127; }`,
  '[ -z "$u" ] || unset $u',
  'if [ "$m" = detach ]; then',
  '  [ -n "$l" ] || l=/dev/null',
  `  { : >>"$l"; } 2>/dev/null || { printf 'hangar-exec: cannot open %s\\n' "$l" >&2; exit 127; }`,
  '  if command -v setsid >/dev/null 2>&1; then setsid "$@" </dev/null >>"$l" 2>&1 & else "$@" </dev/null >>"$l" 2>&1 & fi',
  `  printf '\\036hangar-pid=%s\\n' "$!"`,
  '  exit 0',
  'fi',
  `printf '\\036hangar-pid=%s\\n' "$$"`,
  'exec "$@"',
].join('\n');

/** The exit status and stderr prefix of a wrapper that could not start the program (missing cwd or program). */
export const NOT_STARTED = { code: 127, prefix: 'hangar-exec: ' } as const;

/** What to run remotely. */
export interface RemoteCommandSpec {
  argv: readonly string[];
  /** The complete environment of the program (nothing of the remote login environment is kept). */
  env: Readonly<Record<string, string>>;
  cwd?: string;
  mode: 'run' | 'detach';
  /** detach: where stdout and stderr go (appended; default /dev/null). */
  logFile?: string;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Variables /bin/sh exports by itself (dash: always PWD, OLDPWD after cd).
const SHELL_OWN = ['PWD', 'OLDPWD'];

/** The command string of one SSH exec request: `exec env -i K=V... /bin/sh -c WRAPPER hangar-exec MODE CWD LOG ARGV...`. */
export function remoteCommand(spec: RemoteCommandSpec): string {
  if (spec.argv.length === 0) throw new AppError('INVALID_ARGUMENT', 'Empty command');
  const assignments: string[] = [];
  for (const [k, v] of Object.entries(spec.env)) {
    if (!ENV_NAME.test(k)) throw new AppError('INVALID_ARGUMENT', `Invalid environment variable name ${JSON.stringify(k)}`);
    assignments.push(`${k}=${v}`);
  }
  // The login shell runs this line; `exec` keeps one process from it down to the program, so its pid is the program's.
  const unset = SHELL_OWN.filter((k) => !Object.hasOwn(spec.env, k)).join(' ');
  return `exec env -i ${shellQuoteArgv([...assignments, '/bin/sh', '-c', WRAPPER_SCRIPT, 'hangar-exec', spec.mode, spec.cwd ?? '', spec.logFile ?? '', unset, ...spec.argv])}`;
}

/** A remote shell one-liner (fixed script text, quoted arguments) run with the same clean environment. */
export function remoteScript(env: Readonly<Record<string, string>>, script: string, args: readonly string[]): string {
  return remoteCommand({ argv: ['/bin/sh', '-c', script, 'hangar-sh', ...args], env, mode: 'run' });
}

const MARKER = Buffer.from('\x1ehangar-pid=');
// Output before the marker can only be the login shell's own (rc files): it is dropped, but never held without bound.
const MAX_HELD = 1024 * 1024;

/** Splits a wrapper's stdout: learns the pid from the marker line and passes on only what the program wrote after it. */
export class PidMarker {
  /** The pid once the marker was seen. */
  pid: number | undefined;
  private held = Buffer.alloc(0);

  /** Feeds a chunk of stdout; answers the bytes that belong to the program (empty while the marker is still ahead). */
  push(chunk: Buffer): Buffer {
    if (this.pid !== undefined) return chunk;
    this.held = Buffer.concat([this.held, chunk]);
    const at = this.held.indexOf(MARKER);
    if (at >= 0) {
      const nl = this.held.indexOf(0x0a, at + MARKER.length);
      if (nl < 0) return Buffer.alloc(0);
      const pid = Number(this.held.subarray(at + MARKER.length, nl).toString('latin1').replace(/\r$/, ''));
      this.pid = Number.isInteger(pid) && pid > 0 ? pid : -1;
      const rest = this.held.subarray(nl + 1);
      this.held = Buffer.alloc(0);
      return rest;
    }
    if (this.held.length > MAX_HELD) this.held = this.held.subarray(this.held.length - MARKER.length);
    return Buffer.alloc(0);
  }
}
