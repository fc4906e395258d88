// Shared helpers for the benchmarks: running commands, timing, statistics, the subject interface, small HTTP-over-unix calls and writing report sections.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, release, totalmem } from 'node:os';

/** Result of a finished command. */
export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Options for run(). */
export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  allowFail?: boolean;
  timeoutMs?: number;
}

/** Runs argv synchronously (no shell); throws on a non-zero exit unless allowFail. */
export function run(argv: string[], opts: RunOptions = {}): RunResult {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('run: empty argv');
  const r = spawnSync(cmd, args, {
    env: opts.env ?? process.env,
    input: opts.input,
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 300_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) {
    if (opts.allowFail) return { status: null, stdout: '', stderr: String(r.error) };
    throw new Error(`${argv.join(' ')}: ${r.error.message}`);
  }
  const res = { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  if (!opts.allowFail && r.status !== 0) {
    throw new Error(`${argv.join(' ')} exited ${r.status ?? r.signal}: ${res.stderr.trim() || res.stdout.trim()}`);
  }
  return res;
}

/** True when a command of that name is on PATH. */
export function haveCommand(name: string): boolean {
  return run(['sh', '-c', 'command -v "$0"', name], { allowFail: true }).status === 0;
}

/** Milliseconds since an hrtime.bigint() reading. */
export function msSince(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Sleeps ms milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Retries an attempt (true = success) until it succeeds or the deadline passes. */
export async function until(what: string, attempt: () => Promise<boolean> | boolean, timeoutMs = 30_000, pauseMs = 2): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let tries = 0;
  for (;;) {
    tries++;
    let err: unknown = null;
    try {
      if (await attempt()) return tries;
    } catch (e) {
      err = e;
    }
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what} after ${tries} tries${err ? `: ${String(err)}` : ''}`);
    await sleep(pauseMs);
  }
}

/** Median of a sample (mean of the middle pair for even sizes). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  if (s.length === 0) return NaN;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Minimum of a sample. */
export function min(xs: number[]): number {
  return xs.length ? Math.min(...xs) : NaN;
}

/** One system under test, driven through the same lifecycle by the bench. */
export interface Subject {
  readonly id: string;
  readonly label: string;
  /** Prepares everything (daemon, image, bridge); throws with a reason to skip the subject. */
  setup(): Promise<void>;
  /** Instance name for round r. */
  name(round: number): string;
  /** Creates and starts from the cached image; returns when the first exec of `true` succeeded. */
  launch(name: string, round: number): Promise<void>;
  /** Runs `true` inside once. */
  exec(name: string): Promise<void>;
  /** Starts a stopped instance; returns when the first exec of `true` succeeded. */
  start(name: string): Promise<void>;
  /** Stops (force = kill, otherwise the init's halt signal). */
  stop(name: string, force: boolean): Promise<void>;
  /** Deletes a stopped instance. */
  remove(name: string): Promise<void>;
  /** Removes everything the subject created except caches; must be safe to call twice and after a failed setup. */
  cleanup(): Promise<void>;
  /** Bytes the instance's root volume owns alone (not shared with its image), or null when unknown; not timed. */
  ownStorageBytes?(name: string): Promise<number | null>;
}

/** GET over a unix socket; resolves to status and body, rejects when nothing answers. */
export function unixGet(socketPath: string, path: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timeout`)));
    req.on('error', reject);
    req.end();
  });
}

/** Waits for a pid to exit (polling kill 0); true when it did. */
export async function waitPidExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!pidAlive(pid)) return true;
    await sleep(50);
  }
  return !pidAlive(pid);
}

/** True while a pid exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Ends a daemon the bench started: SIGTERM, then SIGKILL if it is still there after 20 s. */
export async function stopStartedProcess(pid: number, what: string): Promise<void> {
  if (!pidAlive(pid)) return;
  process.kill(pid, 'SIGTERM');
  if (!(await waitPidExit(pid, 20_000))) {
    console.error(`cleanup: ${what} ${pid} ignored SIGTERM for 20 s; sending SIGKILL`);
    process.kill(pid, 'SIGKILL');
    await sleep(200);
  }
}

/** Appends one sample (ms) to samples[id][metric]. */
export function recordSample<I, M>(samples: Map<I, Map<M, number[]>>, id: I, metric: M, ms: number): void {
  let m = samples.get(id);
  if (!m) samples.set(id, (m = new Map()));
  let xs = m.get(metric);
  if (!xs) m.set(metric, (xs = []));
  xs.push(ms);
}

/** The machine line of the VM benchmarks' reports: OS, kernel, vCPUs, memory, the accelerator Hangar chose and Node. */
export function machineNote(accel: string): string {
  let os = 'Linux';
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os;
  } catch {
    /* keep the default */
  }
  return `${os}, kernel ${release()}, ${cpus().length} vCPU, ${Math.round(totalmem() / 1024 ** 3)} GiB, accelerator ${accel.toUpperCase()} (as Hangar chose it), Node ${process.version}`;
}

/** Replaces (or appends) the section starting with `heading` in a markdown file, keeping every other section. */
export function writeSection(file: string, heading: string, section: string): void {
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const start = old.indexOf(heading);
  let next: string;
  if (start < 0) next = `${old.replace(/\s*$/, '')}\n\n${section}`;
  else {
    const after = old.indexOf('\n## ', start + heading.length);
    next = old.slice(0, start) + section + (after < 0 ? '' : `\n${old.slice(after + 1)}`);
  }
  writeFileSync(file, next.replace(/\s*$/, '\n'));
}

/** A positive integer flag value, or a clear error naming the flag. */
export function positiveInt(v: string | undefined, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} needs a positive integer`);
  return n;
}

/**
 * Parses a benchmark's command line into a (defaulted) args object: each flag's handler may take its value with next();
 * --out FILE, --no-write and -h/--help are common to every benchmark.
 */
export function parseBenchFlags<T extends { out: string | null }>(argv: string[], a: T, flags: Record<string, (next: () => string | undefined) => void>, usage: () => never): T {
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    const next = () => argv[++i];
    if (f === '--out') a.out = next() ?? null;
    else if (f === '--no-write') a.out = null;
    else if (f === '-h' || f === '--help') usage();
    else if (Object.hasOwn(flags, f)) flags[f]!(next);
    else throw new Error(`Unknown option ${f} (try --help)`);
  }
  return a;
}

/** Ctrl-C for a benchmark: the first signal stops the run after its current step (cleanup still runs), a second exits at once. */
export class Interrupt {
  aborted = false;

  /** Listens for SIGINT, SIGTERM and SIGHUP. */
  install(): void {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(sig, () => {
        if (this.aborted) {
          console.error(`\n${sig} again: exiting without cleanup; rerun the bench to clean up leftovers`);
          process.exit(130);
        }
        this.aborted = true;
        console.error(`\n${sig}: finishing the current step, then cleaning up (again to exit at once)`);
      });
    }
  }

  /** Runs a benchmark's main and exits with its code (1 on an error, 130 when interrupted). */
  exitWith(main: () => Promise<number>): void {
    main().then(
      (code) => process.exit(code),
      (e: unknown) => {
        console.error(`bench: ${e instanceof Error ? e.message : String(e)}`);
        process.exit(this.aborted ? 130 : 1);
      },
    );
  }

  /** Throws when the user interrupted the run; called between steps so cleanup runs in the finally. */
  check(): void {
    if (this.aborted) throw new Error('Interrupted');
  }
}
