// VM benchmark: Hangar vs raw QEMU (Hangar's own argv) vs libvirt, start → serial marker, stops and QMP latency; writes BENCHMARKS.md.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineNote, median, min, msSince, parseBenchFlags, positiveInt, recordSample, sleep, writeSection, Interrupt } from './util.js';
import { BENCH_BRIDGE, ensureBenchBridge, HangarVms, Libvirt, parseTemplate, RawQemu, removeBenchBridge, type VmTemplate } from './vm-subjects.js';

const SECTION = '## VMs (bench/vms)';
const STATE_DIR = '/var/lib/hangar-bench';
const WORK_DIR = join(STATE_DIR, 'vms');
/** Untimed pause between the marker and a graceful stop: the guest starts acpid in the background just before printing the marker, and a button press before acpid listens is lost. */
const SETTLE_MS = 500;

const METRICS = [
  ['start', 'start → marker on serial (Hangar: create+start via API; raw: spawn; libvirt: `virsh create`)'],
  ['stopGraceful', 'stop, graceful (ACPI power button → QEMU exit)'],
  ['restart', 'start again → marker (Hangar: start the stopped VM)'],
  ['stopForce', 'stop, forced (Hangar `--force`; raw QMP `quit`; `virsh destroy`)'],
] as const;
type Metric = (typeof METRICS)[number][0];
const SUBJECTS = ['hangar', 'raw', 'libvirt'] as const;
type Sid = (typeof SUBJECTS)[number];

interface Args {
  rounds: number;
  qmpSamples: number;
  only: Set<string>;
  install: boolean;
  out: string | null;
}

const bundleDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = existsSync(join(process.cwd(), 'package.json')) ? process.cwd() : resolve(bundleDir, '..');

function usage(): never {
  console.log(`Usage: node dist/bench-vms.mjs [options]
  --rounds N        interleaved rounds (default 7)
  --qmp-samples N   query-status round trips per round on the raw VM (default 200)
  --only LIST       comma-separated subset of hangar,raw,libvirt (raw and libvirt need hangar: they copy its argv)
  --no-install      do not apt-get install libvirt when missing
  --out FILE        where to write the results section (default ${join(repoRoot, 'BENCHMARKS.md')})
  --no-write        only print the results`);
  process.exit(0);
}

function parseArgs(argv: string[]): Args {
  const a: Args = { rounds: 7, qmpSamples: 200, only: new Set(SUBJECTS), install: true, out: join(repoRoot, 'BENCHMARKS.md') };
  return parseBenchFlags(argv, a, {
    '--rounds': (next) => { a.rounds = positiveInt(next(), '--rounds'); },
    '--qmp-samples': (next) => { a.qmpSamples = positiveInt(next(), '--qmp-samples'); },
    '--only': (next) => { a.only = new Set((next() ?? '').split(',').filter(Boolean)); },
    '--no-install': () => { a.install = false; },
  }, usage);
}

const interrupt = new Interrupt();

type Samples = Map<Sid, Map<Metric, number[]>>;
const record = (samples: Samples, id: Sid, metric: Metric, ms: number): void => recordSample(samples, id, metric, ms);

/** Times fn (wall clock around the whole call) unless it reports its own duration. */
async function timed(samples: Samples, id: Sid, metric: Metric, fn: () => Promise<void | number>): Promise<void> {
  await new Promise((r) => setImmediate(r));
  interrupt.check();
  const t0 = process.hrtime.bigint();
  const own = await fn();
  record(samples, id, metric, typeof own === 'number' ? own : msSince(t0));
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 0) : '—');
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number) : NaN;
};

interface Report {
  started: Date;
  args: Args;
  roundsDone: number;
  labels: Map<Sid, string>;
  skipped: Map<Sid, string>;
  failed: Map<Sid, string>;
  samples: Samples;
  qmp: { client: number[]; bare: number[] };
  tpl: VmTemplate | null;
  imageInfo: string;
  libvirtArgc: number | null;
}

function render(rep: Report): string {
  const stat = (id: Sid, m: Metric): { med: number; min: number; n: number } => {
    const xs = rep.samples.get(id)?.get(m) ?? [];
    return { med: median(xs), min: min(xs), n: xs.length };
  };
  const t = rep.tpl;
  const L: string[] = [SECTION, ''];
  L.push(`Run ${rep.started.toISOString().replace(/\.\d+Z$/, 'Z')} by \`npm run bench:vms\` (bench/vms.ts). Machine: ${machineNote(t?.accel ?? '?')}.`);
  L.push(
    `${rep.roundsDone} interleaved rounds (each round runs every subject once, order rotated per round); times in ms, wall clock. "Marker" = the guest's \`HANGAR-READY <name>\` line in its serial-console log, polled every ~1 ms from the log offset before the request.`,
  );
  if (t) {
    L.push('');
    L.push(
      `Guest: the busybox VM image (${rep.imageInfo}); ${t.memoryMiB} MiB, ${t.cpus} vCPU, \`-machine ${t.machine}\`, \`-cpu ${t.cpu}\`, \`-accel ${t.accel}\`, kernel booted directly (\`-kernel vmlinux -initrd initrd.img\`), qcow2 overlay root disk, virtio NIC on a tap, qemu-ga channel, VGA + VNC on a unix socket.`,
    );
  }
  L.push('');
  for (const id of SUBJECTS) {
    const label = rep.labels.get(id);
    if (rep.skipped.has(id)) L.push(`- **${id}**: skipped — ${rep.skipped.get(id)}`);
    else if (label) L.push(`- **${id}**: ${label}${rep.failed.has(id) ? ` — **failed**: ${rep.failed.get(id)}` : ''}`);
  }
  L.push('');
  L.push('| metric (ms) | Hangar median | Hangar min | raw QEMU median | raw QEMU min | libvirt median | libvirt min | Hangar / raw QEMU | libvirt / Hangar |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const [m, label] of METRICS) {
    const h = stat('hangar', m);
    const r = stat('raw', m);
    const v = stat('libvirt', m);
    L.push(`| ${label} | ${f1(h.med)} | ${f1(h.min)} | ${f1(r.med)} | ${f1(r.min)} | ${f1(v.med)} | ${f1(v.min)} | ${ratio(h.med, r.med)} | ${ratio(v.med, h.med)} |`);
  }
  L.push('');
  L.push(`Samples per cell: ${SUBJECTS.map((id) => `${id} ${stat(id, 'start').n}`).join(', ')} (one per round and metric).`);
  L.push('');
  const q = rep.qmp;
  if (q.client.length) {
    L.push(
      `QMP round trip (\`query-status\` on a running raw-QEMU VM, ${q.client.length} samples over ${rep.roundsDone} rounds): Hangar's QmpClient (src/drivers/qemu/qmp/client.ts) median ${f1(median(q.client))} ms, min ${f1(min(q.client))}, p95 ${f1(pct(q.client, 95))}, p99 ${f1(pct(q.client, 99))}; a bare newline-JSON socket loop for reference median ${f1(median(q.bare))} ms, min ${f1(min(q.bare))}, p99 ${f1(pct(q.bare, 99))} (client / bare ${ratio(median(q.client), median(q.bare))}).`,
    );
    L.push('');
  }
  const verdict = (ok: boolean | null): string => (ok === null ? 'n/a' : ok ? 'PASS' : 'FAIL');
  const ok = (a: number, b: number, pred: (x: number) => boolean): boolean | null => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? pred(a / b) : null);
  const hs = stat('hangar', 'start');
  const rs = stat('raw', 'start');
  const vs = stat('libvirt', 'start');
  L.push('| target (on medians) | measured | verdict |');
  L.push('|---|---:|---|');
  L.push(`| start → marker ≤ 1.10× raw QEMU | ${ratio(hs.med, rs.med)} (min ${ratio(hs.min, rs.min)}) | ${verdict(ok(hs.med, rs.med, (x) => x <= 1.1))} |`);
  L.push(`| start → marker faster than libvirt | libvirt ${ratio(vs.med, hs.med)} of Hangar (min ${ratio(vs.min, hs.min)}) | ${verdict(ok(vs.med, hs.med, (x) => x > 1))} |`);
  L.push('');
  L.push(
    `Notes: raw QEMU runs the argv Hangar rendered (read once from \`/proc/<pid>/cmdline\` of a Hangar VM), with the instance directory, root overlay, tap, \`-name\`, MAC and the guest's hostname/address rewritten; its directory (${WORK_DIR}/raw), qcow2 overlay and tap on the bench bridge ${BENCH_BRIDGE} are made before the clock starts, so raw QEMU's start is spawn → marker while Hangar's includes its API round trips, instance record, overlay, tap and QMP connect. libvirtd (started by hand: private mount namespace with its own /run, /etc/libvirt (qemu.conf: user/group root, \`security_driver = "none"\`, \`stdio_handler = "file"\`), /var/{lib,cache,log}/libvirt under ${WORK_DIR}/libvirt, \`LIBVIRT_DRIVER_DIR\` holding only the QEMU driver) gets a transient domain with the same kernel, initrd, command line, memory, vCPUs, machine, CPU model, disk, virtio NIC (\`<interface type='bridge'>\` on ${BENCH_BRIDGE}, libvirt makes the tap), serial console (unix socket + log file), guest-agent channel, VGA/VNC, balloon, RNG and pvpanic${rep.libvirtArgc ? ` (its QEMU argv has ${rep.libvirtArgc} elements vs Hangar's ${t?.argv.length ?? '?'})` : ''}; \`virsh create\` is timed from its spawn. Graceful stops press the ACPI button (Hangar: API stop; raw: QMP \`system_powerdown\` on a connection opened before the clock; libvirt: \`virsh shutdown --mode acpi\`) and end when the QEMU process is gone (polled every ~1 ms; Hangar: when its operation finishes); the guest's acpid runs \`poweroff\`, whose rcK gives processes up to 0.5 s; graceful stops start ${SETTLE_MS} ms after the marker (untimed), because the guest starts acpid in the background just before printing the marker and an earlier button press is lost; libvirt's graceful stop ends when \`virsh domstate\` no longer finds the transient domain (polled, one virsh spawn per try). Forced: Hangar \`stop --force\` (QMP \`quit\`, then signals), raw QMP \`quit\` → exit, \`virsh destroy\`. Each subject boots once untimed before the rounds (warm-up; Hangar's warm-up VM is the one whose argv is copied).`,
  );
  L.push('');
  return L.join('\n');
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('The VM benchmark needs root (QEMU, taps, bridges, libvirtd)');
  if (!args.only.has('hangar')) throw new Error('--only must include hangar: raw QEMU and libvirt copy the argv of a Hangar VM');
  mkdirSync(WORK_DIR, { recursive: true });
  const rep: Report = { started: new Date(), args, roundsDone: 0, labels: new Map(), skipped: new Map(), failed: new Map(), samples: new Map(), qmp: { client: [], bare: [] }, tpl: null, imageInfo: '', libvirtArgc: null };
  interrupt.install();

  const hangar = new HangarVms({
    distDir: join(repoRoot, 'dist'),
    socket: process.env.HANGAR_SOCKET ?? '/run/hangar-bench/hangar.sock',
    daemonEnv: { HANGAR_DIR: STATE_DIR, HANGAR_PREFIX: 'hbn', HANGAR_SUBNET: '10.124.0.0/24' },
    logFile: join(STATE_DIR, 'bench-logs', 'hangard-vms.log'),
  });
  let raw: RawQemu | null = null;
  let libvirt: Libvirt | null = null;
  let bridgeCreated = false;
  try {
    let t0 = process.hrtime.bigint();
    await hangar.setup();
    rep.labels.set('hangar', hangar.label);
    rep.imageInfo = hangar.imageInfo;
    console.error(`setup hangar: ${hangar.label} (${f1(msSince(t0))} ms)`);
    // Warm-up Hangar VM: its QEMU argv is the template for the other two.
    const prep = 'hbnvm-argv';
    t0 = process.hrtime.bigint();
    await hangar.launch(prep);
    console.error(`hangar warm-up VM ${prep} at marker after ${f1(msSince(t0))} ms`);
    const tpl = parseTemplate(hangar.qemuArgv(prep), prep, hangar.instanceDir(prep));
    rep.tpl = tpl;
    await hangar.stop(prep, true);
    await hangar.remove(prep);
    interrupt.check();

    ensureBenchBridge();
    bridgeCreated = true; // ours by name, also when a crashed earlier run left it
    if (args.only.has('raw')) {
      const r = new RawQemu(join(WORK_DIR, 'raw'), tpl);
      try {
        r.prepare('hbvraw-warm', 0);
        t0 = process.hrtime.bigint();
        await r.boot('hbvraw-warm');
        console.error(`raw warm-up at marker after ${f1(msSince(t0))} ms`);
        await r.stop('hbvraw-warm', true);
        await r.remove('hbvraw-warm');
        raw = r;
        rep.labels.set('raw', r.label);
      } catch (e) {
        if (interrupt.aborted) throw e;
        rep.skipped.set('raw', e instanceof Error ? e.message : String(e));
        console.error(`raw QEMU skipped: ${rep.skipped.get('raw')}`);
        await r.cleanup();
      }
    }
    interrupt.check();
    if (args.only.has('libvirt')) {
      const v = new Libvirt(join(WORK_DIR, 'libvirt'), tpl, args.install);
      libvirt = v;
      try {
        t0 = process.hrtime.bigint();
        await v.setup();
        console.error(`setup libvirt: ${v.label} (${f1(msSince(t0))} ms)`);
        v.prepare('hbvlv-warm', 0);
        t0 = process.hrtime.bigint();
        await v.boot('hbvlv-warm');
        console.error(`libvirt warm-up at marker after ${f1(msSince(t0))} ms`);
        rep.libvirtArgc = v.qemuArgv('hbvlv-warm')?.length ?? null;
        await v.stop('hbvlv-warm', true);
        await v.remove('hbvlv-warm');
        rep.labels.set('libvirt', v.label);
      } catch (e) {
        if (interrupt.aborted) throw e;
        rep.skipped.set('libvirt', e instanceof Error ? e.message : String(e));
        console.error(`libvirt skipped: ${rep.skipped.get('libvirt')}`);
        await v.cleanup();
        libvirt = null;
      }
    }

    const cycles: { id: Sid; run: (r: number) => Promise<void> }[] = [
      {
        id: 'hangar',
        run: async (r) => {
          const n = `hbnvm-r${r}`;
          await timed(rep.samples, 'hangar', 'start', () => hangar.launch(n));
          await sleep(SETTLE_MS);
          await timed(rep.samples, 'hangar', 'stopGraceful', () => hangar.stop(n, false));
          await timed(rep.samples, 'hangar', 'restart', () => hangar.start(n));
          await timed(rep.samples, 'hangar', 'stopForce', () => hangar.stop(n, true));
          await hangar.remove(n);
        },
      },
    ];
    const rq = raw;
    if (rq) {
      cycles.push({
        id: 'raw',
        run: async (r) => {
          const n = `hbvraw-r${r}`;
          rq.prepare(n, r);
          await timed(rep.samples, 'raw', 'start', () => rq.boot(n));
          const q = await rq.qmpLatency(n, args.qmpSamples);
          rep.qmp.client.push(...q.client);
          rep.qmp.bare.push(...q.bare);
          await sleep(SETTLE_MS);
          await timed(rep.samples, 'raw', 'stopGraceful', () => rq.stop(n, false));
          await timed(rep.samples, 'raw', 'restart', () => rq.boot(n));
          await timed(rep.samples, 'raw', 'stopForce', () => rq.stop(n, true));
          await rq.remove(n);
        },
      });
    }
    const lv = libvirt;
    if (lv) {
      cycles.push({
        id: 'libvirt',
        run: async (r) => {
          const n = `hbvlv-r${r}`;
          lv.prepare(n, r);
          await timed(rep.samples, 'libvirt', 'start', () => lv.boot(n));
          await sleep(SETTLE_MS);
          await timed(rep.samples, 'libvirt', 'stopGraceful', () => lv.stop(n, false));
          await timed(rep.samples, 'libvirt', 'restart', () => lv.boot(n));
          await timed(rep.samples, 'libvirt', 'stopForce', () => lv.stop(n, true));
          await lv.remove(n);
        },
      });
    }
    for (let r = 1; r <= args.rounds; r++) {
      const order = cycles.map((_, i) => cycles[(i + r - 1) % cycles.length] as (typeof cycles)[number]);
      for (const c of order) {
        if (rep.failed.has(c.id)) continue;
        try {
          await c.run(r);
        } catch (e) {
          if (interrupt.aborted) throw e;
          rep.failed.set(c.id, `round ${r}: ${e instanceof Error ? e.message : String(e)}`);
          console.error(`${c.id} failed in round ${r}: ${rep.failed.get(c.id)}`);
          if (c.id === 'hangar') await hangar.remove(`hbnvm-r${r}`).catch(() => undefined);
          if (c.id === 'raw') await raw?.cleanup();
          if (c.id === 'libvirt') await libvirt?.remove(`hbvlv-r${r}`).catch(() => undefined);
        }
      }
      rep.roundsDone = r;
      const last = (id: Sid, m: Metric): string => f1(rep.samples.get(id)?.get(m)?.at(-1) ?? NaN);
      console.error(`round ${r}/${args.rounds}: start→marker ms: ${order.map((c) => `${c.id} ${last(c.id, 'start')}`).join(', ')}; graceful stop: ${order.map((c) => `${c.id} ${last(c.id, 'stopGraceful')}`).join(', ')}`);
    }
  } finally {
    for (const [what, fn] of [
      ['libvirt', () => libvirt?.cleanup()],
      ['raw', () => raw?.cleanup()],
      ['hangar', () => hangar.cleanup()],
    ] as const) {
      try {
        await fn();
      } catch (e) {
        console.error(`cleanup ${what}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (bridgeCreated) removeBenchBridge();
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
