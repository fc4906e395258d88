// Container lifecycle benchmark: Hangar vs raw lxc-* vs LXD, interleaved rounds, plus CLI start-up; writes BENCHMARKS.md.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIG_PAYLOAD_MIB, Hangar } from './hangar.js';
import { Lxd } from './lxd.js';
import { RawLxc } from './raw-lxc.js';
import { median, min, msSince, parseBenchFlags, positiveInt, recordSample, type Subject, Interrupt } from './util.js';

const SECTION = '## Containers (bench/containers)';
const STATE_DIR = '/var/lib/hangar-bench';

const METRICS = [
  ['launch', 'launch → first exec `true`'],
  ['launchBig', `launch → first exec \`true\` (${BIG_PAYLOAD_MIB} MiB image)`],
  ['exec', 'exec `true`'],
  ['stopForce', 'stop (force)'],
  ['start', 'start stopped → first exec'],
  ['stopGraceful', 'stop (graceful: halt signal to busybox init)'],
  ['delete', 'delete (stopped)'],
] as const;
type Metric = (typeof METRICS)[number][0];

interface Args {
  rounds: number;
  execs: number;
  cliRuns: number;
  only: Set<string>;
  graceful: boolean;
  install: boolean;
  privileged: boolean;
  out: string | null;
}

const bundleDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = existsSync(join(process.cwd(), 'package.json')) ? process.cwd() : resolve(bundleDir, '..');
const distDir = join(repoRoot, 'dist');

function usage(): never {
  console.log(`Usage: node dist/bench-containers.mjs [options]
  --rounds N        interleaved rounds (default 11, at least 1)
  --execs N         exec \`true\` calls per round and subject (default 5)
  --cli-runs N      runs each of \`hangar --version\` and \`node -e 0\` (default 20)
  --only LIST       comma-separated subset of hangar,raw-lxc,lxd,cli (default all)
  --no-graceful     skip the start + graceful stop step
  --privileged      raw LXC privileged (default unprivileged, like Hangar's and LXD's default)
  --no-install      do not apt-get install lxd when missing
  --out FILE        where to write the results section (default ${join(repoRoot, 'BENCHMARKS.md')})
  --no-write        only print the results`);
  process.exit(0);
}

function parseArgs(argv: string[]): Args {
  const a: Args = { rounds: 11, execs: 5, cliRuns: 20, only: new Set(['hangar', 'raw-lxc', 'lxd', 'cli']), graceful: true, install: true, privileged: false, out: join(repoRoot, 'BENCHMARKS.md') };
  return parseBenchFlags(argv, a, {
    '--rounds': (next) => { a.rounds = positiveInt(next(), '--rounds'); },
    '--execs': (next) => { a.execs = positiveInt(next(), '--execs'); },
    '--cli-runs': (next) => { a.cliRuns = positiveInt(next(), '--cli-runs'); },
    '--only': (next) => { a.only = new Set((next() ?? '').split(',').filter(Boolean)); },
    '--no-graceful': () => { a.graceful = false; },
    '--no-install': () => { a.install = false; },
    '--privileged': () => { a.privileged = true; },
  }, usage);
}

const interrupt = new Interrupt();

/** Samples per subject id and metric. */
type Samples = Map<string, Map<Metric, number[]>>;

const record = (samples: Samples, id: string, metric: Metric, ms: number): void => recordSample(samples, id, metric, ms);

async function step(samples: Samples, s: Subject, metric: Metric, fn: () => Promise<void>): Promise<void> {
  // The raw and LXD steps are synchronous underneath: give the event loop a turn so signal handlers can run.
  await new Promise((resolve) => setImmediate(resolve));
  interrupt.check();
  const t0 = process.hrtime.bigint();
  await fn();
  record(samples, s.id, metric, msSince(t0));
}

/** Own storage right after launch, bytes per key ("hangar", "hangar-big"). */
type Storage = Map<string, number[]>;

async function recordStorage(storage: Storage, key: string, s: Subject, name: string): Promise<void> {
  const bytes = s.ownStorageBytes ? await s.ownStorageBytes(name) : null;
  if (bytes === null) return;
  let xs = storage.get(key);
  if (!xs) storage.set(key, (xs = []));
  xs.push(bytes);
}

/** One full lifecycle of subject s in round r. */
async function cycle(samples: Samples, storage: Storage, s: Subject, r: number, args: Args): Promise<void> {
  const name = s.name(r);
  await step(samples, s, 'launch', () => s.launch(name, r));
  await recordStorage(storage, s.id, s, name);
  for (let i = 0; i < args.execs; i++) await step(samples, s, 'exec', () => s.exec(name));
  await step(samples, s, 'stopForce', () => s.stop(name, true));
  if (args.graceful) {
    await step(samples, s, 'start', () => s.start(name));
    await step(samples, s, 'stopGraceful', () => s.stop(name, false));
  }
  await step(samples, s, 'delete', () => s.remove(name));
}

/** Launch from the big image until the first exec (timed), its storage (untimed), then force delete (untimed). */
async function bigCycle(samples: Samples, storage: Storage, h: Hangar, r: number): Promise<void> {
  const name = h.bigName(r);
  await step(samples, h, 'launchBig', () => h.launchBig(name));
  await recordStorage(storage, `${h.id}-big`, h, name);
  await h.remove(name);
}

/** Interleaved runs of `node dist/hangar.cjs --version` and `node -e 0`. */
function cliStartup(runs: number): { cli: number[]; node: number[] } | string {
  const cliMain = join(distDir, 'hangar.cjs');
  if (!existsSync(cliMain)) return `${cliMain} does not exist (npm run build)`;
  const once = (argv: string[]): number => {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    const ms = msSince(t0);
    if (r.status !== 0) throw new Error(`node ${argv.join(' ')} exited ${r.status}: ${String(r.stderr).trim()}`);
    return ms;
  };
  // Warm the page cache for both before measuring.
  once([cliMain, '--version']);
  once(['-e', '0']);
  const cli: number[] = [];
  const node: number[] = [];
  for (let i = 0; i < runs; i++) {
    interrupt.check();
    if (i % 2) {
      node.push(once(['-e', '0']));
      cli.push(once([cliMain, '--version']));
    } else {
      cli.push(once([cliMain, '--version']));
      node.push(once(['-e', '0']));
    }
  }
  return { cli, node };
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(x < 10 ? 1 : 0) : '—');
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');

function machineNote(): string {
  const cg = existsSync('/sys/fs/cgroup/unified') ? 'hybrid cgroups (v1 + v2)' : existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'cgroup v2' : 'cgroup v1';
  let kvm = 'no KVM';
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
    kvm = 'KVM usable';
  } catch {
    /* no KVM: VMs would run under TCG; irrelevant for containers */
  }
  let os = 'Linux';
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os;
  } catch {
    /* keep the default */
  }
  return `${os}, kernel ${release()}, ${cpus().length} vCPU, ${Math.round(totalmem() / 1024 ** 3)} GiB, ${kvm}, ${cg}, Node ${process.version}`;
}

interface Report {
  started: Date;
  args: Args;
  roundsDone: number;
  subjects: Subject[];
  skipped: Map<string, string>;
  failed: Map<string, string>;
  samples: Samples;
  storage: Storage;
  /** The Hangar subject, when it ran: for the big-image facts. */
  hangar: Hangar | null;
  /** Why the big-image launch failed mid-run, or null. */
  bigFailed: string | null;
  cli: { cli: number[]; node: number[] } | string | null;
}

function render(rep: Report): string {
  const { samples } = rep;
  const stat = (id: string, m: Metric): { med: number; min: number; n: number } => {
    const xs = samples.get(id)?.get(m) ?? [];
    return { med: median(xs), min: min(xs), n: xs.length };
  };
  const L: string[] = [SECTION, ''];
  L.push(`Run ${rep.started.toISOString().replace(/\.\d+Z$/, 'Z')} by \`npm run bench\` (bench/containers.ts). Machine: ${machineNote()}.`);
  L.push(
    `${rep.roundsDone} interleaved rounds (each round runs every subject once, order rotated per round), ${rep.args.execs} exec calls per round and subject; times in ms, wall clock around the whole call as a user would see it (CLI tools include their own fork/exec, ~4–8 ms here).`,
  );
  L.push('');
  for (const s of rep.subjects) L.push(`- **${s.id}**: ${s.label}${rep.failed.has(s.id) ? ` — **failed**: ${rep.failed.get(s.id)}` : ''}`);
  for (const [id, why] of rep.skipped) L.push(`- **${id}**: skipped — ${why}`);
  L.push('');
  L.push('| metric (ms) | Hangar median | Hangar min | raw LXC median | raw LXC min | LXD median | LXD min | Hangar / raw LXC | LXD / Hangar |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  const hasBig = (samples.get('hangar')?.get('launchBig')?.length ?? 0) > 0;
  for (const [m, label] of METRICS) {
    if ((m === 'start' || m === 'stopGraceful') && !rep.args.graceful) continue;
    if (m === 'launchBig' && !hasBig) continue;
    const h = stat('hangar', m);
    const r = stat('raw-lxc', m);
    const x = stat('lxd', m);
    L.push(`| ${label} | ${f1(h.med)} | ${f1(h.min)} | ${f1(r.med)} | ${f1(r.min)} | ${f1(x.med)} | ${f1(x.min)} | ${ratio(h.med, r.med)} | ${ratio(x.med, h.med)} |`);
  }
  const n = (id: string, m: Metric): number => stat(id, m).n;
  L.push('');
  L.push(`Samples per cell: launch ${['hangar', 'raw-lxc', 'lxd'].map((id) => `${id} ${n(id, 'launch')}`).join(', ')}${hasBig ? `, hangar ${BIG_PAYLOAD_MIB} MiB image ${n('hangar', 'launchBig')}` : ''}; exec ${['hangar', 'raw-lxc', 'lxd'].map((id) => `${id} ${n(id, 'exec')}`).join(', ')}.`);
  L.push('');
  const verdict = (ok: boolean | null): string => (ok === null ? 'n/a' : ok ? 'PASS' : 'FAIL');
  const hl = stat('hangar', 'launch').med;
  const rl = stat('raw-lxc', 'launch').med;
  const xl = stat('lxd', 'launch').med;
  const he = stat('hangar', 'exec').med;
  const re = stat('raw-lxc', 'exec').med;
  const ok = (a: number, b: number, pred: (q: number) => boolean): boolean | null => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? pred(a / b) : null);
  L.push('| target (on medians) | measured | verdict |');
  L.push('|---|---:|---|');
  L.push(`| launch → first exec ≤ 1.5× raw LXC | ${ratio(hl, rl)} | ${verdict(ok(hl, rl, (q) => q <= 1.5))} |`);
  L.push(`| launch → first exec ≥ 5× faster than LXD | ${ratio(xl, hl)} | ${verdict(ok(xl, hl, (q) => q >= 5))} |`);
  const hb = stat('hangar', 'launchBig').med;
  const bigWhy = rep.hangar?.bigSkipped ?? rep.bigFailed ?? (rep.hangar ? null : 'Hangar not run');
  L.push(`| launch from a ${BIG_PAYLOAD_MIB} MiB image ≈ launch from busybox (≤ 1.3×) | ${ratio(hb, hl)} | ${verdict(ok(hb, hl, (q) => q <= 1.3))}${bigWhy ? ` (${bigWhy})` : ''} |`);
  L.push(`| exec ≤ 1.5× \`lxc-attach\` | ${ratio(he, re)} | ${verdict(ok(he, re, (q) => q <= 1.5))} |`);
  if (rep.cli && typeof rep.cli !== 'string') {
    const c = rep.cli;
    L.push(`| CLI start-up ≤ 1.3× \`node -e 0\` | ${ratio(median(c.cli), median(c.node))} | ${verdict(ok(median(c.cli), median(c.node), (q) => q <= 1.3))} |`);
    L.push('');
    L.push(`CLI start-up, ${c.cli.length} interleaved runs each: \`node dist/hangar.cjs --version\` median ${f1(median(c.cli))} ms (min ${f1(min(c.cli))}), \`node -e 0\` median ${f1(median(c.node))} ms (min ${f1(min(c.node))}); ratio of medians ${ratio(median(c.cli), median(c.node))}, of minimums ${ratio(min(c.cli), min(c.node))}.`);
  } else {
    L.push(`| CLI start-up ≤ 1.3× \`node -e 0\` | — | n/a${typeof rep.cli === 'string' ? ` (${rep.cli})` : ''} |`);
  }
  L.push('');
  const kib = (xs: number[] | undefined): string => (xs?.length ? `${f1(median(xs) / 1024)} KiB` : '—');
  if (rep.hangar?.bigInfo) {
    L.push(
      `${BIG_PAYLOAD_MIB} MiB image: busybox rootfs + ${BIG_PAYLOAD_MIB} MiB from /dev/urandom (${rep.hangar.bigInfo}); each round launches it once, interleaved with the other subjects, then force-deletes it untimed. Own storage right after launch (btrfs exclusive bytes of the instance volume, \`btrfs qgroup show --sync\`, median): ${kib(rep.storage.get('hangar-big'))} (${BIG_PAYLOAD_MIB} MiB image), ${kib(rep.storage.get('hangar'))} (busybox).`,
    );
    L.push('');
  }
  L.push(
    'Notes: raw LXC clones the template-made busybox rootfs with `lxc-copy -s -B overlay` (rcS without udhcpc, static address on bridge hbnraw0) and polls `lxc-attach -- true`; LXD launches an imported busybox image from a `dir` pool (it unpacks the image per launch; no CoW) and polls `lxc exec -- true`; graceful stops send busybox init SIGUSR1, whose halt sleeps ~2 s by design, so they compare plumbing only above that floor.',
  );
  L.push('');
  return L.join('\n');
}

/** Replaces (or appends) our section in a markdown file, keeping every other section. */
function writeSection(file: string, section: string): void {
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const start = old.indexOf(SECTION);
  let next: string;
  if (start < 0) next = `${old.replace(/\s*$/, '')}\n\n${section}`;
  else {
    const after = old.indexOf('\n## ', start + SECTION.length);
    next = old.slice(0, start) + section + (after < 0 ? '' : `\n${old.slice(after + 1)}`);
  }
  writeFileSync(file, next.replace(/\s*$/, '\n'));
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('The container benchmark needs root (lxc-*, lxd, bridges)');
  mkdirSync(STATE_DIR, { recursive: true });
  const all: Subject[] = [];
  if (args.only.has('hangar')) {
    all.push(
      new Hangar({
        distDir,
        socket: process.env.HANGAR_SOCKET ?? '/run/hangar-bench/hangar.sock',
        daemonEnv: { HANGAR_DIR: STATE_DIR, HANGAR_PREFIX: 'hbn', HANGAR_SUBNET: '10.124.0.0/24' },
        logFile: join(STATE_DIR, 'bench-logs', 'hangard.log'),
        cacheDir: join(STATE_DIR, 'bench-cache'),
      }),
    );
  }
  if (args.only.has('raw-lxc')) all.push(new RawLxc({ stateDir: STATE_DIR, privileged: args.privileged }));
  if (args.only.has('lxd')) all.push(new Lxd({ stateDir: STATE_DIR, install: args.install }));

  const rep: Report = { started: new Date(), args, roundsDone: 0, subjects: [], skipped: new Map(), failed: new Map(), samples: new Map(), storage: new Map(), hangar: null, bigFailed: null, cli: null };
  interrupt.install();

  try {
    for (const s of all) {
      interrupt.check();
      const t0 = process.hrtime.bigint();
      try {
        await s.setup();
        rep.subjects.push(s);
        console.error(`setup ${s.id}: ${s.label} (${f1(msSince(t0))} ms)`);
      } catch (e) {
        if (interrupt.aborted) throw e;
        rep.skipped.set(s.id, e instanceof Error ? e.message : String(e));
        console.error(`setup ${s.id} failed, skipping it: ${rep.skipped.get(s.id)}`);
        // Tear down at once what a failed setup started (e.g. a daemon) so it does not disturb the other subjects.
        await s.cleanup().catch((c: unknown) => console.error(`cleanup ${s.id}: ${String(c)}`));
      }
    }
    rep.hangar = rep.subjects.find((s): s is Hangar => s instanceof Hangar) ?? null;
    // One task per subject, plus the big-image launch as its own task so it is interleaved like a subject.
    interface Task {
      id: string;
      run: (r: number) => Promise<void>;
      lastLaunch: () => number;
    }
    const last = (id: string, m: Metric): number => rep.samples.get(id)?.get(m)?.at(-1) ?? NaN;
    const tasks: Task[] = rep.subjects.map((s) => ({
      id: s.id,
      run: async (r: number): Promise<void> => {
        if (rep.failed.has(s.id)) return;
        try {
          await cycle(rep.samples, rep.storage, s, r, args);
        } catch (e) {
          if (interrupt.aborted) throw e;
          rep.failed.set(s.id, `round ${r}: ${e instanceof Error ? e.message : String(e)}`);
          console.error(`${s.id} failed in round ${r}: ${rep.failed.get(s.id)}`);
          await s.cleanup().catch((c: unknown) => console.error(`cleanup ${s.id}: ${String(c)}`));
        }
      },
      lastLaunch: () => last(s.id, 'launch'),
    }));
    const h = rep.hangar;
    if (h?.hasBigImage) {
      tasks.push({
        id: `hangar-${BIG_PAYLOAD_MIB}MiB`,
        run: async (r: number): Promise<void> => {
          if (rep.failed.has(h.id) || rep.bigFailed || !h.hasBigImage) return;
          try {
            await bigCycle(rep.samples, rep.storage, h, r);
          } catch (e) {
            if (interrupt.aborted) throw e;
            rep.bigFailed = `round ${r}: ${e instanceof Error ? e.message : String(e)}`;
            console.error(`hangar ${BIG_PAYLOAD_MIB} MiB image launch failed in round ${r}: ${rep.bigFailed}`);
          }
        },
        lastLaunch: () => last(h.id, 'launchBig'),
      });
    }
    for (let r = 1; r <= args.rounds; r++) {
      const k = tasks.length;
      const order = tasks.map((_, i) => tasks[(i + r - 1) % k] as Task);
      for (const t of order) await t.run(r);
      rep.roundsDone = r;
      const line = order.map((t) => `${t.id} ${f1(t.lastLaunch())}`).join(', ');
      console.error(`round ${r}/${args.rounds}: launch→first exec ms: ${line}`);
    }
    if (args.only.has('cli')) rep.cli = cliStartup(args.cliRuns);
  } finally {
    for (const s of [...all].reverse()) {
      try {
        await s.cleanup();
      } catch (e) {
        console.error(`cleanup ${s.id}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }
  const text = render(rep);
  console.log(text);
  if (args.out) {
    writeSection(args.out, text);
    console.error(`wrote ${args.out}`);
  }
  return rep.failed.size || rep.bigFailed ? 1 : 0;
}

interrupt.exitWith(main);
