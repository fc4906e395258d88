// Xen benchmark: domain create → guest marker on its console, Hangar vs `xl create` typed by hand over one SSH session, on the nested Xen test host; remote vs local Host.exec; writes BENCHMARKS.md.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalHost } from '../src/host/local.js';
import { SshHost } from '../src/host/ssh.js';
import { startXenHost, type XenHost } from '../test/helpers/xen-host.js';
import { XEN_BRIDGE, XEN_BRIDGE_ADDRESS, XEN_IMAGES_DIR } from '../test/xen-host/build.js';
import { machineNote, median, min, msSince, parseBenchFlags, positiveInt, recordSample, writeSection, Interrupt } from './util.js';
import { HandXl, HangarXen, parseXlTemplate, POLL_MS, type BootTiming, type XlTemplate } from './xen-subjects.js';
import { imagePropsOf, replayCreate, type TraceStep } from './xen-trace.js';

const SECTION = '## Xen (bench/xen)';
const STATE_DIR = '/var/lib/hangar-bench-xen';
const SOCKET = '/run/hangar-bench-xen/hangar.sock';
const PREFIX = 'hbx';
/** Hangar's name of the Dom0. */
const HOST = 'hbxh';
/** The hand subject's files on the Dom0's tmpfs. */
const HAND_DIR = `${XEN_IMAGES_DIR}/hbx`;
const SUBNET = XEN_BRIDGE_ADDRESS.split('.').slice(0, 3).join('.');
/** Kept by the VM benchmark's daemon: the Debian kernel package our VM image is built from. */
const SEED_CACHE = '/var/lib/hangar-bench/cache';

const SUBJECTS = ['hangar', 'hand'] as const;
type Sid = (typeof SUBJECTS)[number];
const METRICS = [
  ['total', 'create → marker on the console'],
  ['create', '… until the domain exists (Hangar: operation done; hand: `xl create` returned)'],
  ['boot', '… domain exists → marker seen'],
] as const;
type Metric = (typeof METRICS)[number][0];

interface Args {
  rounds: number;
  execSamples: number;
  freshSamples: number;
  trace: boolean;
  out: string | null;
}

const bundleDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = existsSync(join(process.cwd(), 'package.json')) ? process.cwd() : resolve(bundleDir, '..');

function usage(): never {
  console.log(`Usage: node dist/bench-xen.mjs [options]
  --rounds N          interleaved rounds (default 7)
  --exec-samples N    Host.exec \`true\` samples on each of the local and the remote host (default 200)
  --fresh-samples N   \`ssh ... true\` samples on a new connection each (default 20)
  --no-trace          skip the traced replay of Hangar's create path
  --out FILE          where to write the results section (default ${join(repoRoot, 'BENCHMARKS.md')})
  --no-write          only print the results`);
  process.exit(0);
}

function parseArgs(argv: string[]): Args {
  const a: Args = { rounds: 7, execSamples: 200, freshSamples: 20, trace: true, out: join(repoRoot, 'BENCHMARKS.md') };
  return parseBenchFlags(argv, a, {
    '--rounds': (next) => { a.rounds = positiveInt(next(), '--rounds'); },
    '--exec-samples': (next) => { a.execSamples = positiveInt(next(), '--exec-samples'); },
    '--fresh-samples': (next) => { a.freshSamples = positiveInt(next(), '--fresh-samples'); },
    '--no-trace': () => { a.trace = false; },
  }, usage);
}

const interrupt = new Interrupt();

type Samples = Map<Sid, Map<Metric, number[]>>;

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 0) : '—');
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number) : NaN;
};
const pad2 = (r: number): string => String(r).padStart(2, '0');

/** Where a subject's domain exists: Hangar's operation done, or the hand's `xl create` returned. */
const CREATED: Record<Sid, string> = { hangar: 'operation done', hand: 'created' };

interface Report {
  started: Date;
  args: Args;
  roundsDone: number;
  labels: Map<Sid, string>;
  failed: Map<Sid, string>;
  samples: Samples;
  /** Each round's create → marker per subject, for the paired ratios. */
  perRound: Map<number, Partial<Record<Sid, number>>>;
  /** Every timed boot's marks per subject, for the phase tables. */
  timings: Map<Sid, BootTiming[]>;
  warm: Map<Sid, BootTiming>;
  exec: { local: number[]; remote: number[]; fresh: number[]; typed: number[]; typedChain: number[] };
  /** What the typed samples ran, and Dom0's login shell for root (what an SSH exec request starts first). */
  execInfo: { trueBin: string; chain: string; loginShell: string };
  trace: TraceStep[] | null;
  traceError: string | null;
  tpl: XlTemplate | null;
  imageInfo: string;
  xenInfo: string;
  hostBootMs: number;
  dom0Setup: number;
}

function record(rep: Report, id: Sid, t: BootTiming): void {
  const created = t.marks.get(CREATED[id]);
  recordSample(rep.samples, id, 'total', t.total);
  if (created !== undefined) {
    recordSample(rep.samples, id, 'create', created);
    recordSample(rep.samples, id, 'boot', t.total - created);
  }
  let xs = rep.timings.get(id);
  if (!xs) rep.timings.set(id, (xs = []));
  xs.push(t);
}

/** Rows "point: median ms since the request, median step from the point before", points ordered by their median time. */
function phaseRows(ts: BootTiming[]): string[] {
  const keys = new Map<string, number[]>();
  for (const t of ts) for (const [k, v] of t.marks) keys.set(k, [...(keys.get(k) ?? []), v]);
  const order = [...keys.entries()].map(([k, v]) => [k, median(v)] as const).sort((a, b) => a[1] - b[1]);
  const rows: string[] = [];
  let prev: string | null = null;
  for (const [k, at] of order) {
    // The step from the point before, per boot that has both.
    const steps = ts.flatMap((t) => {
      const a = t.marks.get(k);
      const b = prev === null ? 0 : t.marks.get(prev);
      return a !== undefined && b !== undefined ? [a - b] : [];
    });
    rows.push(`| ${k} | ${f1(at)} | ${f1(median(steps))} |`);
    prev = k;
  }
  return rows;
}

/** Rounds where both subjects finished, with Hangar's time over the hand's. */
function pairedRatios(rep: Report): { r: number; hangar: number; hand: number; ratio: number }[] {
  return [...rep.perRound.entries()].flatMap(([r, v]) => (v.hangar !== undefined && v.hand !== undefined && v.hand > 0 ? [{ r, hangar: v.hangar, hand: v.hand, ratio: v.hangar / v.hand }] : []));
}

function render(rep: Report): string {
  const stat = (id: Sid, m: Metric): { med: number; min: number; n: number } => {
    const xs = rep.samples.get(id)?.get(m) ?? [];
    return { med: median(xs), min: min(xs), n: xs.length };
  };
  const L: string[] = [SECTION, ''];
  const machine = machineNote('tcg').replace(' (as Hangar chose it)', ' (of the QEMU that runs the Xen test host: no KVM here)');
  L.push(`Run ${rep.started.toISOString().replace(/\.\d+Z$/, 'Z')} by \`npm run bench:xen\` (bench/xen.ts). Machine: ${machine}.`);
  L.push(
    `Xen test host (test/xen-host, booted by the bench in ${f1(rep.hostBootMs)} ms): ${rep.xenInfo}, nested in QEMU under TCG (Xen and Dom0 emulated, no KVM), so absolute times are large; both subjects run on the same Dom0, reached over SSH on 127.0.0.1. ${rep.roundsDone} interleaved rounds (each round runs both subjects once, order alternating); times in ms, wall clock. "Marker" = the guest's \`HANGAR-READY <name>\` line in the console log xenconsoled writes in Dom0, looked at every ${POLL_MS} ms once the domain exists.`,
  );
  if (rep.tpl) {
    const type = /^type\s*=\s*"(\w+)"/m.exec(rep.tpl.text)?.[1] ?? '?';
    const mem = /^memory\s*=\s*(\d+)/m.exec(rep.tpl.text)?.[1] ?? '?';
    L.push('');
    L.push(`Guest: the busybox VM image (${rep.imageInfo}) as a ${type.toUpperCase()} domain, ${mem} MiB, kernel and initrd booted directly, a raw copy of the image's disk as root disk (xvda), one vif on the Dom0's bridge ${XEN_BRIDGE} with a static address.`);
  }
  L.push('');
  for (const id of SUBJECTS) {
    const label = rep.labels.get(id);
    if (label) L.push(`- **${id}**: ${label}${rep.failed.has(id) ? ` — **failed**: ${rep.failed.get(id)}` : ''}`);
  }
  L.push('');
  L.push('| metric (ms) | Hangar median | Hangar min | hand xl median | hand xl min | Hangar / hand xl |');
  L.push('|---|---:|---:|---:|---:|---:|');
  for (const [m, label] of METRICS) {
    const h = stat('hangar', m);
    const x = stat('hand', m);
    L.push(`| ${label} | ${f1(h.med)} | ${f1(h.min)} | ${f1(x.med)} | ${f1(x.min)} | ${ratio(h.med, x.med)} |`);
  }
  L.push('');
  L.push(`Samples per cell: ${SUBJECTS.map((id) => `${id} ${stat(id, 'total').n}`).join(', ')} (one per round).`);
  L.push('');
  const paired = pairedRatios(rep);
  if (paired.length) {
    L.push(`Per round, create → marker Hangar / hand xl: ${paired.map((p) => `r${p.r} ${f1(p.hangar)}/${f1(p.hand)} = ${p.ratio.toFixed(2)}×`).join(', ')}; median of the per-round ratios ${median(paired.map((p) => p.ratio)).toFixed(2)}×, median difference ${f1(median(paired.map((p) => p.hangar - p.hand)))} ms. The guest's boot under nested TCG varies by seconds from one domain to the next, which moves single rounds either way.`);
    L.push('');
  }
  for (const id of SUBJECTS) {
    const ts = rep.timings.get(id) ?? [];
    if (!ts.length) continue;
    L.push(id === 'hangar' ? 'Where Hangar\'s time goes (events of its operation as the client received them):' : 'Where the hand-driven time goes (`@@HBX` lines the typed commands echo):');
    L.push('');
    L.push('| point | median ms since the request | median step from the point before |');
    L.push('|---|---:|---:|');
    L.push(...phaseRows(ts));
    L.push('');
  }
  const hw = rep.warm.get('hangar');
  if (hw) {
    const copyStart = [...hw.marks.keys()].find((k) => k.startsWith('progress: Copying the image'));
    const copy = copyStart ? (hw.marks.get('progress: Creating root volume') ?? NaN) - (hw.marks.get(copyStart) ?? NaN) : NaN;
    const created = (hw.marks.get('instance-created') ?? NaN) - (hw.marks.get('progress: Creating root volume') ?? NaN);
    const roundCreated = median((rep.timings.get('hangar') ?? []).map((t) => (t.marks.get('instance-created') ?? NaN) - (t.marks.get('progress: Creating root volume') ?? NaN)).filter(Number.isFinite));
    L.push(
      `One-off, Hangar's first launch on the host (warm-up, untimed in the table): create → marker ${f1(hw.total)} ms, of which copying the image to the host (tar of the image volume streamed over SSH) ${f1(copy)} ms; its root volume and driver create took ${f1(created)} ms against ${f1(roundCreated)} ms in the rounds, the first one including the one-off conversion of the image's qcow2 disk to raw into the Dom0's image cache. The hand subject's one-off copy (kernel, initrd and qcow2 disk over \`ssh cat\`, \`qemu-img convert\` to raw in Dom0) took ${f1(rep.dom0Setup)} ms.`,
    );
    L.push('');
  }
  const e = rep.exec;
  if (e.local.length) {
    L.push(`One command, \`true\` (${e.local.length} samples each, the first four interleaved, after the rounds):`);
    L.push('');
    L.push('| command | median ms | min | p95 |');
    L.push('|---|---:|---:|---:|');
    L.push(`| LocalHost.exec (src/host/local.ts) | ${f1(median(e.local))} | ${f1(min(e.local))} | ${f1(pct(e.local, 95))} |`);
    L.push(`| SshHost.exec to the Dom0 (src/host/ssh.ts, one kept-alive ssh2 connection, a channel per command) | ${f1(median(e.remote))} | ${f1(min(e.remote))} | ${f1(pct(e.remote, 95))} |`);
    L.push(`| \`${rep.execInfo.trueBin}\` typed into the hand subject's open \`ssh ... sh\` session (one fork+exec in Dom0, no new channel) | ${f1(median(e.typed))} | ${f1(min(e.typed))} | ${f1(pct(e.typed, 95))} |`);
    L.push(`| the same typed behind the processes an SshHost exec starts, \`${rep.execInfo.chain}\` (no new channel) | ${f1(median(e.typedChain))} | ${f1(min(e.typedChain))} | ${f1(pct(e.typedChain, 95))} |`);
    if (e.fresh.length) L.push(`| \`ssh root@Dom0 true\`, a new OpenSSH connection each (${e.fresh.length} samples; reference) | ${f1(median(e.fresh))} | ${f1(min(e.fresh))} | ${f1(pct(e.fresh, 95))} |`);
    L.push('');
    L.push(
      `Remote / local Host.exec: ${ratio(median(e.remote), median(e.local))} (one remote exec ≈ ${f1(median(e.remote) - median(e.local))} ms more). Of a remote exec's ${f1(median(e.remote))} ms, ≈ ${f1(median(e.typedChain) - median(e.typed))} ms are the processes it starts before the program (root's login shell in Dom0 is ${rep.execInfo.loginShell}; SshHost sends \`exec env -i ... /bin/sh -c WRAPPER ...\`, src/host/ssh/remote-command.ts) and ≈ ${f1(median(e.remote) - median(e.typedChain))} ms the SSH channel (open, exec request, exit status, close) and the pid-marker wrapper script.`,
    );
    L.push('');
  }
  if (rep.trace) {
    const tr = rep.trace;
    const sum = (f: (s: TraceStep) => number): number => tr.reduce((a, s) => a + f(s), 0);
    const execs = (s: TraceStep) => s.calls.filter((c) => c.kind === 'exec').length;
    L.push(
      `Hangar's create-and-start path replayed in-process (bench/xen-trace.ts: the steps of InstanceService.create and startLocked, the Xen driver itself, over an SshHost of its own that counts and times each call; once, after the rounds): ${f1(sum((s) => s.ms))} ms in ${sum(execs)} Host.exec calls (${sum((s) => s.sessions)} SSH channels) and ${sum((s) => s.sftpRequests)} SFTP requests.`,
    );
    L.push('');
    L.push('| step | ms | Host.exec | SFTP requests | the commands (ms each) |');
    L.push('|---|---:|---:|---:|---|');
    for (const s of tr) {
      const cmds = s.calls.filter((c) => c.kind === 'exec' || c.kind === 'spawn').map((c) => `\`${c.what.length > 60 ? `${c.what.slice(0, 57)}...` : c.what}\` ${f1(c.ms)}`);
      L.push(`| ${s.step} | ${f1(s.ms)} | ${execs(s)} | ${s.sftpRequests} | ${cmds.join('; ') || '—'} |`);
    }
    L.push('');
  } else if (rep.traceError) {
    L.push(`The traced replay of Hangar's create path failed: ${rep.traceError}`);
    L.push('');
  }
  const verdict = (ok: boolean | null): string => (ok === null ? 'n/a' : ok ? 'PASS' : 'FAIL');
  const h = stat('hangar', 'total');
  const x = stat('hand', 'total');
  const ok = Number.isFinite(h.med) && Number.isFinite(x.med) && x.med > 0 ? h.med / x.med <= 1.1 : null;
  L.push('| target (on medians) | measured | verdict |');
  L.push('|---|---:|---|');
  L.push(`| create → marker ≤ 1.10× hand-driven \`xl create\` | ${ratio(h.med, x.med)} (min ${ratio(h.min, x.min)}) | ${verdict(ok)} |`);
  const pr = median(pairedRatios(rep).map((p) => p.ratio));
  L.push(`| the same, median of the per-round (paired) ratios | ${Number.isFinite(pr) ? `${pr.toFixed(2)}×` : '—'} | ${verdict(Number.isFinite(pr) ? pr <= 1.1 : null)} |`);
  L.push('');
  L.push(
    `Notes: Hangar's clock runs from the \`POST /1.0/instances\` (busybox, \`type: vm\`, \`driver: xen\`, host ${HOST}, \`limits.memory=256MiB\`, \`start: true\`) through the operation's end (row, an empty root volume in the host's directory pool, driver create: image placed and root disk copied, start: xl.cfg written, \`xl create\`, the domain recorded) to the marker in \`GET /1.0/instances/NAME/console/log\` (the daemon reads the log over SFTP), polled every ${POLL_MS} ms after the operation ended. The hand-driven domain gets the xl.cfg Hangar rendered for its warm-up instance (read from its instance directory in Dom0) with name, UUID, kernel/initrd paths, root disk, MAC, address, vif name and hostname rewritten; kernel, initrd and the raw disk were copied into ${HAND_DIR} on the Dom0's tmpfs once before the rounds (untimed). Its clock runs from writing one block of command lines into the already open \`ssh root@127.0.0.1 sh\` session — \`cat > NAME.cfg <<EOF\` (the xl.cfg), \`cp disk.raw NAME.raw\`, \`xl create NAME.cfg\`, then \`until grep -qF 'HANGAR-READY NAME' /var/log/xen/console/guest-NAME.log; do usleep ${POLL_MS * 1000}; done\` — until the line its last \`echo\` prints arrives. The two split rows are not like for like: Hangar's operation goes on after its \`xl create\` returned (\`xl domid\` beside \`xenstore-read\`, run.json: see the replay) while the guest already boots, so its second row is shorter; the total is the comparison. Both subjects' domains are removed after each round (Hangar: \`DELETE ?force=true\`; hand: \`xl destroy\` and \`rm\` in the same session), untimed. Before the rounds each subject boots one domain untimed (Hangar's warm-up copies the image to the host and fills its image cache: reported above as the one-off). The Host.exec figures time \`exec(['true'])\` on a LocalHost and on an SshHost connected to the same Dom0 (its own connection, not the daemon's).`,
  );
  L.push('');
  return L.join('\n');
}

/** Runs argv to its exit; resolves with the exit code. */
function runToExit(argv: string[]): Promise<number | null> {
  return new Promise((res, rej) => {
    const c = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    c.on('error', rej);
    c.on('close', (code) => res(code));
  });
}

/**
 * Local vs remote Host.exec `true` (interleaved), with `true` typed into the hand subject's open shell (alone, and
 * behind the process chain an SSH exec of SshHost starts: login shell, env -i, sh) to tell the channel from the processes;
 * and a new OpenSSH connection per `true` for reference.
 */
async function execCosts(xen: XenHost, hand: HandXl, args: Args, rep: Report): Promise<void> {
  const local = new LocalHost();
  const remote = await SshHost.connect({ name: `${HOST}-exec`, host: '127.0.0.1', port: xen.sshPort, identityFile: xen.identityFile, hostKeyFingerprint: xen.hostKeyFingerprint });
  const shell = (await xen.sshOk(['sh', '-c', 'grep "^root:" /etc/passwd | cut -d: -f7'])).trim() || '/bin/sh';
  const trueBin = (await hand.typed('[ -x /bin/true ]').then(() => '/bin/true', () => 'env true'));
  const chain = `${shell} -c 'exec env -i /bin/sh -c "exec ${trueBin}"'`;
  rep.execInfo = { trueBin, chain, loginShell: shell };
  try {
    const subjects: [keyof Report['exec'], () => Promise<unknown>][] = [
      ['local', () => local.exec(['true'])],
      ['remote', () => remote.exec(['true'])],
      ['typed', () => hand.typed(trueBin)],
      ['typedChain', () => hand.typed(chain)],
    ];
    for (let i = 0; i < 10; i++) for (const [, fn] of subjects) await fn();
    for (let i = 0; i < args.execSamples; i++) {
      if (i % 20 === 0) interrupt.check();
      for (let j = 0; j < subjects.length; j++) {
        const [which, fn] = subjects[(i + j) % subjects.length]!;
        const t0 = process.hrtime.bigint();
        await fn();
        rep.exec[which].push(msSince(t0));
      }
    }
  } finally {
    remote.close();
  }
  // Without the helper's connection sharing: each ssh makes its own connection and handshake.
  const fresh: string[] = [];
  for (let i = 0; i < xen.sshArgs.length; i++) {
    const a = xen.sshArgs[i]!;
    if (a === '-o' && /^Control/.test(xen.sshArgs[i + 1] ?? '')) i++;
    else fresh.push(a);
  }
  fresh.push('-o', 'ControlMaster=no', '-o', 'ControlPath=none');
  for (let i = 0; i < args.freshSamples; i++) {
    interrupt.check();
    const t0 = process.hrtime.bigint();
    const code = await runToExit(['ssh', ...fresh, 'root@127.0.0.1', 'true']);
    if (code !== 0) throw new Error(`ssh ... true exited ${code}`);
    rep.exec.fresh.push(msSince(t0));
  }
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('The Xen benchmark needs root (QEMU for the Xen test host, hangard)');
  mkdirSync(STATE_DIR, { recursive: true });
  const rep: Report = {
    started: new Date(), args, roundsDone: 0, labels: new Map(), failed: new Map(), samples: new Map(), perRound: new Map(), timings: new Map(), warm: new Map(),
    exec: { local: [], remote: [], fresh: [], typed: [], typedChain: [] }, execInfo: { trueBin: '', chain: '', loginShell: '' }, trace: null, traceError: null, tpl: null, imageInfo: '', xenInfo: '', hostBootMs: NaN, dom0Setup: NaN,
  };
  interrupt.install();

  const daemonEnv = { HANGAR_DIR: STATE_DIR, HANGAR_PREFIX: PREFIX, HANGAR_SUBNET: '10.126.0.0/24', HANGAR_DRIVERS: 'lxc,qemu,xen' };
  const hangar = new HangarXen({ distDir: join(repoRoot, 'dist'), socket: process.env.HANGAR_SOCKET ?? SOCKET, daemonEnv, logFile: join(STATE_DIR, 'bench-logs', 'hangard-xen.log'), hostName: HOST, seedCacheFrom: SEED_CACHE });
  let xen: XenHost | null = null;
  let hand: HandXl | null = null;
  try {
    let t0 = process.hrtime.bigint();
    // A private host: its QEMU is ours alone, and ends with this process even when it crashes.
    xen = await startXenHost({ shared: false, timeoutMs: 300_000, onProgress: (m) => console.error(`xen host: ${m}`) });
    rep.hostBootMs = xen.bootMs;
    const info = await xen.sshOk(['xl', 'info']);
    const field = (k: string): string => new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '?';
    rep.xenInfo = `Xen ${field('xen_version')} (${field('xen_scheduler')} scheduler), Dom0 with 1 vCPU and ${field('total_memory')} MiB host memory (${field('free_memory')} MiB free for domUs)`;
    console.error(`xen host on 127.0.0.1:${xen.sshPort}, booted in ${f1(msSince(t0))} ms: ${rep.xenInfo}`);
    interrupt.check();

    t0 = process.hrtime.bigint();
    await hangar.setup();
    await hangar.addHost(xen, XEN_BRIDGE);
    rep.labels.set('hangar', hangar.label);
    rep.imageInfo = hangar.imageInfo;
    console.error(`setup hangar: ${hangar.label} (${f1(msSince(t0))} ms)`);
    interrupt.check();

    // Warm-up Hangar domain: copies the image to the host once, and its xl.cfg is the hand subject's template.
    const warm = `${PREFIX}-w`;
    const hw = await hangar.launch(warm);
    rep.warm.set('hangar', hw);
    console.error(`hangar warm-up ${warm} at marker after ${f1(hw.total)} ms: ${[...hw.marks].map(([k, v]) => `${k} ${f1(v)}`).join(', ')}`);
    const tpl = parseXlTemplate(await hangar.renderedConfig(xen, warm), warm);
    rep.tpl = tpl;
    await hangar.remove(warm);
    interrupt.check();

    const props = imagePropsOf(join(STATE_DIR, 'hangar.db'), hangar.imageFingerprint);
    if (!props.kernel) throw new Error('the busybox VM image has no kernel property');
    hand = new HandXl(xen, HAND_DIR, tpl, SUBNET);
    t0 = process.hrtime.bigint();
    await hand.setup(hangar.localImageDir(), { kernel: props.kernel, initrd: props.initrd ?? null, disk: props.disk ?? null });
    rep.dom0Setup = msSince(t0);
    rep.labels.set('hand', hand.label);
    console.error(`Hangar's xl.cfg (${warm}):\n${tpl.text.trim()}\nthe hand-driven one of round 1:\n${hand.configFor(`${PREFIX}h-r01`, 1).trim()}`);
    console.error(`setup hand: files in ${HAND_DIR} (${f1(rep.dom0Setup)} ms)`);
    const handWarm = `${PREFIX}h-w`;
    const xw = await hand.boot(handWarm, 0);
    rep.warm.set('hand', xw);
    console.error(`hand warm-up ${handWarm} at marker after ${f1(xw.total)} ms: ${[...xw.marks].map(([k, v]) => `${k} ${f1(v)}`).join(', ')}`);
    await hand.remove(handWarm);

    const hx = hand;
    const cycles: { id: Sid; name: (r: number) => string; run: (r: number) => Promise<BootTiming>; remove: (n: string) => Promise<void> }[] = [
      { id: 'hangar', name: (r) => `${PREFIX}-r${pad2(r)}`, run: (r) => hangar.launch(`${PREFIX}-r${pad2(r)}`), remove: (n) => hangar.remove(n) },
      { id: 'hand', name: (r) => `${PREFIX}h-r${pad2(r)}`, run: (r) => hx.boot(`${PREFIX}h-r${pad2(r)}`, r), remove: (n) => hx.remove(n) },
    ];
    for (let r = 1; r <= args.rounds; r++) {
      const order = cycles.map((_, i) => cycles[(i + r - 1) % cycles.length] as (typeof cycles)[number]);
      const line: string[] = [];
      for (const c of order) {
        if (rep.failed.has(c.id)) continue;
        interrupt.check();
        const n = c.name(r);
        try {
          const t = await c.run(r);
          record(rep, c.id, t);
          rep.perRound.set(r, { ...rep.perRound.get(r), [c.id]: t.total });
          line.push(`${c.id} ${f1(t.total)} (created ${f1(t.marks.get(CREATED[c.id]) ?? NaN)})`);
          await c.remove(n);
        } catch (e) {
          if (interrupt.aborted) throw e;
          rep.failed.set(c.id, `round ${r}: ${e instanceof Error ? e.message : String(e)}`);
          console.error(`${c.id} failed in round ${r}: ${rep.failed.get(c.id)}`);
          await c.remove(n).catch(() => undefined);
        }
      }
      rep.roundsDone = r;
      console.error(`round ${r}/${args.rounds}: create → marker ms: ${line.join(', ')}`);
    }
    interrupt.check();

    t0 = process.hrtime.bigint();
    await execCosts(xen, hx, args, rep);
    console.error(`exec costs (${f1(msSince(t0))} ms): local ${f1(median(rep.exec.local))}, remote ${f1(median(rep.exec.remote))}, fresh ssh ${f1(median(rep.exec.fresh))} ms (medians)`);
    interrupt.check();

    if (args.trace) {
      const ssh = await SshHost.connect({ name: `${HOST}-trace`, host: '127.0.0.1', port: xen.sshPort, identityFile: xen.identityFile, hostKeyFingerprint: xen.hostKeyFingerprint });
      try {
        rep.trace = await replayCreate(ssh, { dir: STATE_DIR, prefix: PREFIX, hostName: HOST, imageFingerprint: hangar.imageFingerprint, dbFile: join(STATE_DIR, 'hangar.db'), bridge: XEN_BRIDGE, subnet: SUBNET, name: `${PREFIX}-trace` });
        console.error(`trace: ${rep.trace.map((s) => `${s.step} ${f1(s.ms)} ms`).join('; ')}`);
      } catch (e) {
        if (interrupt.aborted) throw e;
        rep.traceError = e instanceof Error ? e.message : String(e);
        console.error(`trace failed: ${rep.traceError}`);
      } finally {
        ssh.close();
      }
    }
  } finally {
    for (const [what, fn] of [
      ['hand', () => hand?.cleanup()],
      ['hangar', () => hangar.cleanup()],
      ['xen host', () => xen?.stop()],
    ] as const) {
      try {
        await fn();
      } catch (e) {
        console.error(`cleanup ${what}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }
  const text = render(rep);
  console.log(text);
  if (args.out && rep.roundsDone > 0) {
    writeSection(args.out, SECTION, text);
    console.error(`wrote ${args.out}`);
  }
  return rep.failed.size ? 1 : 0;
}

interrupt.exitWith(main);
