// VM image defaults benchmark: raw QEMU start → serial marker of the busybox VM per machine type, kernel form, command line and CPU model; writes BENCHMARKS.md.
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalHost } from '../src/host/local.js';
import { buildBusyboxVmImage, VM_CMDLINE } from '../src/core/images/busybox-vm.js';
import { fetchDebianKernel } from '../src/core/images/debian-kernel.js';
import { loadSettings } from '../src/core/settings.js';
import type { InstanceRecord } from '../src/drivers/driver.js';
import { bootOf, ROOT_DISK } from '../src/drivers/qemu/driver.js';
import { probeQemu } from '../src/drivers/qemu/probe.js';
import { QemuAccel } from '../src/drivers/qemu/accel-check.js';
import { prepareAccelGuest } from '../src/core/images/accel-guest.js';
import { machineFamilyOf, qemuMachineType, renderQemuArgv, type QemuHostFacts } from '../src/drivers/qemu/render-argv.js';
import { machineNote, median, min, msSince, parseBenchFlags, positiveInt, run, writeSection, Interrupt } from './util.js';
import { BENCH_BRIDGE, BENCH_NET, ensureBenchBridge, parseTemplate, RawQemu, removeBenchBridge, type VmTemplate } from './vm-subjects.js';

const SECTION = '## VM image defaults (bench/vm-choices)';
const STATE_DIR = '/var/lib/hangar-bench';
const WORK_DIR = join(STATE_DIR, 'vm-choices');
/** The package cache the integration tests use; the fallback when no daemon's cache holds the kernel package yet. */
const TEST_CACHE = '/var/lib/hangar-test-cache/vm';
const MIN_ROUNDS = 7;
/** The instance the template argv is rendered for; RawQemu rewrites its name, directory, disk, tap, MAC and address per boot. */
const TPL_NAME = 'hbvc-tpl';
const TPL_TAP = 'hbvctpl0';

type Aspect = 'machine' | 'kernel' | 'cmdline' | 'cpu';

/** One way to boot the busybox VM; every variant but the default differs from it in exactly one aspect (checkOneAspect). */
interface Variant {
  id: string;
  /** The aspect it changes (null: the default itself). */
  aspect: Aspect | null;
  /** What it uses instead of the default, for the report. */
  change: string;
  /** Image properties overridden for the rendered record. */
  props: Record<string, string>;
  /** -cpu value instead of the one render-argv chooses. */
  cpu?: string;
}

const FLAG: Record<Aspect, string> = { machine: '-machine', kernel: '-kernel', cmdline: '-append', cpu: '-cpu' };

const VARIANTS: readonly Variant[] = [
  { id: 'q35+vmlinux+tuned', aspect: null, change: '— (the current default)', props: {} },
  { id: 'pc+vmlinux+tuned', aspect: 'machine', change: 'machine type i440FX (`pc`) instead of Q35', props: { machine: 'pc' } },
  { id: 'q35+bzImage+tuned', aspect: 'kernel', change: 'the Debian bzImage (`vmlinuz`) instead of the ELF `vmlinux`', props: { kernel: 'vmlinuz' } },
  { id: 'q35+vmlinux+plain', aspect: 'cmdline', change: 'command line `console=ttyS0` (+ hangar.*) instead of VM_CMDLINE', props: { cmdline: 'console=ttyS0' } },
  { id: 'q35+vmlinux+cpu-max', aspect: 'cpu', change: '`-cpu max` instead of render-argv\'s choice', props: {}, cpu: 'max' },
];
const DEFAULT_ID = 'q35+vmlinux+tuned';

interface Args {
  rounds: number;
  out: string | null;
  cacheDir: string | null;
}

const bundleDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = existsSync(join(process.cwd(), 'package.json')) ? process.cwd() : resolve(bundleDir, '..');

function usage(): never {
  console.log(`Usage: node dist/bench-vm-choices.mjs [options]
  --rounds N        interleaved rounds, each boots every variant once (default ${MIN_ROUNDS})
  --cache-dir DIR   Debian package cache for the image build (default: the first of the bench daemon's, the default
                    daemon's and ${TEST_CACHE} that holds the kernel package; else ${TEST_CACHE})
  --out FILE        where to write the results section (default ${join(repoRoot, 'BENCHMARKS.md')})
  --no-write        only print the results
Variants: ${VARIANTS.map((v) => v.id).join(', ')}`);
  process.exit(0);
}

function parseArgs(argv: string[]): Args {
  const a: Args = { rounds: MIN_ROUNDS, out: join(repoRoot, 'BENCHMARKS.md'), cacheDir: null };
  return parseBenchFlags(argv, a, {
    '--rounds': (next) => { a.rounds = positiveInt(next(), '--rounds'); },
    '--cache-dir': (next) => { a.cacheDir = next() ?? null; },
  }, usage);
}

const interrupt = new Interrupt();

/** The Debian package cache: the bench daemon's (bench/vms.ts starts hangard with HANGAR_DIR=/var/lib/hangar-bench), the default daemon's, the tests'. */
function pickCacheDir(flag: string | null): string {
  if (flag) return flag;
  const candidates: string[] = [];
  for (const env of [{ HANGAR_DIR: STATE_DIR }, process.env]) {
    try {
      candidates.push(loadSettings(env).cacheDir);
    } catch {
      /* an invalid HANGAR_PREFIX in the environment: skip that daemon */
    }
  }
  candidates.push(TEST_CACHE);
  const hasKernel = (dir: string): boolean => {
    try {
      return readdirSync(dir).some((n) => /^linux-image-\d\S*-cloud-amd64_/.test(n) && !n.includes('.tmp-'));
    } catch {
      return false;
    }
  };
  return candidates.find(hasKernel) ?? TEST_CACHE;
}

/** The argv Hangar's QEMU driver renders for a busybox VM with the variant's image properties (and -cpu). */
function renderVariant(v: Variant, imageDir: string, imageProps: Record<string, string>, tplDir: string, facts: QemuHostFacts): string[] {
  const record: InstanceRecord = {
    name: TPL_NAME, host: 'local',
    type: 'vm',
    driver: 'qemu',
    image: 'busybox',
    config: {},
    rootPath: tplDir,
    instanceDir: tplDir,
    nic: { bridge: BENCH_BRIDGE, hostIfName: TPL_TAP, mac: '52:54:00:7e:03:00', ipv4: `${BENCH_NET}.99`, prefixLength: 24, gateway: `${BENCH_NET}.1` },
    imageProps: { ...imageProps, ...v.props },
    imagePath: imageDir,
  };
  // As QemuInstance.start does it: bootOf for kernel/initrd/command line, the versioned type of the image's machine family.
  const argv = renderQemuArgv({
    record,
    facts,
    boot: bootOf(record),
    rootDisk: join(tplDir, ROOT_DISK),
    extraDisks: [],
    machine: qemuMachineType(facts.version, machineFamilyOf(record.imageProps)),
  });
  if (v.cpu !== undefined) {
    const i = argv.indexOf('-cpu');
    if (i < 0) throw new Error('rendered argv has no -cpu');
    argv[i + 1] = v.cpu;
  }
  return argv;
}

/** Devices render-argv ties to the machine type (Q35's PCIe hot-plug root ports): part of the machine aspect. */
const machineBound = (flag: string | undefined, value: string | undefined): boolean => flag === '-device' && (value ?? '').startsWith('pcie-root-port,');

/** argv without the machine-bound -device pairs. */
function withoutMachineBound(argv: string[]): string[] {
  return argv.filter((a, i) => !machineBound(a, argv[i + 1]) && !machineBound(argv[i - 1], a));
}

/**
 * Throws unless argv differs from the default's in exactly the variant's one aspect: one element (the value after its flag),
 * and for the machine type also the devices render-argv adds for that machine type only.
 */
function checkOneAspect(v: Variant, base: string[], argv: string[]): void {
  const [b, a] = v.aspect === 'machine' ? [withoutMachineBound(base), withoutMachineBound(argv)] : [base, argv];
  if (a.length !== b.length) throw new Error(`${v.id}: argv has ${a.length} elements, the default's ${b.length}`);
  const diff = a.flatMap((x, i) => (x === b[i] ? [] : [i]));
  const want = v.aspect === null ? null : FLAG[v.aspect];
  const ok = want === null ? diff.length === 0 : diff.length === 1 && b[(diff[0] as number) - 1] === want;
  if (!ok) throw new Error(`${v.id}: argv differs from the default's in ${diff.map((i) => `${b[i - 1]} ${a[i]}`).join(', ') || 'nothing'}, expected only ${want ?? 'nothing'}`);
}

/** How many machine-bound devices an argv has. */
const machineBoundCount = (argv: string[]): number => argv.filter((a, i) => machineBound(a, argv[i + 1])).length;

const f0 = (x: number): string => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 0) : '—');
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');
const signed = (x: number): string => (x >= 0 ? `+${x.toFixed(0)}` : `−${Math.abs(x).toFixed(0)}`);

interface Report {
  started: Date;
  roundsDone: number;
  accel: string;
  imageDesc: string;
  kernelPackage: string;
  cacheDir: string;
  qemuLabel: string;
  tpl: VmTemplate | null;
  values: Map<string, string>;
  samples: Map<string, number[]>;
  failed: Map<string, string>;
}

/** A difference of medians below this share of the default's median counts as none (TCG boots on a shared machine jitter by a few %). */
const NOISE = 0.03;

/** Which way the numbers point for one alternative: faster or slower by both median and minimum and by more than NOISE, else a tie. */
function lean(rep: Report, id: string): 'alternative' | 'default' | 'tie' | 'failed' {
  if (rep.failed.has(id)) return 'failed';
  const d = rep.samples.get(DEFAULT_ID) ?? [];
  const x = rep.samples.get(id) ?? [];
  if (!d.length || !x.length) return 'tie';
  const dMed = median(d);
  if (Math.abs(median(x) - dMed) < NOISE * dMed) return 'tie';
  const medLower = median(x) < dMed;
  const minLower = min(x) < min(d);
  return medLower && minLower ? 'alternative' : !medLower && !minLower ? 'default' : 'tie';
}

function verdict(rep: Report): string {
  if (rep.failed.has(DEFAULT_ID) || !(rep.samples.get(DEFAULT_ID) ?? []).length) return 'The default variant has no samples, so the numbers support no choice.';
  const dMed = median(rep.samples.get(DEFAULT_ID) ?? []);
  const keep: string[] = [];
  const change: string[] = [];
  const tie: string[] = [];
  const ASPECT: Record<Aspect, [string, string]> = {
    machine: ['Q35', 'i440FX'],
    kernel: ['the ELF vmlinux', 'the bzImage'],
    cmdline: ['VM_CMDLINE', 'the plain `console=ttyS0`'],
    cpu: [`\`-cpu ${rep.values.get('cpu') ?? 'qemu64'}\``, '`-cpu max`'],
  };
  for (const v of VARIANTS) {
    if (v.aspect === null) continue;
    const [def, alt] = ASPECT[v.aspect];
    const x = rep.samples.get(v.id) ?? [];
    const delta = `${signed(median(x) - dMed)} ms median, ${signed(min(x) - min(rep.samples.get(DEFAULT_ID) ?? []))} ms min`;
    const l = lean(rep, v.id);
    if (l === 'failed') keep.push(`${def} (${alt} did not reach the marker)`);
    else if (l === 'default') keep.push(`${def} over ${alt} (${alt}: ${delta})`);
    else if (l === 'alternative') change.push(`${alt} over ${def} (${alt}: ${delta})`);
    else tie.push(`${def} vs ${alt} (${alt}: ${delta})`);
  }
  const parts: string[] = [];
  if (keep.length) parts.push(`the numbers support keeping ${keep.join('; ')}`);
  if (change.length) parts.push(`they favour changing to ${change.join('; ')}`);
  if (tie.length) parts.push(`they show no clear difference (medians within ${NOISE * 100}% of the default's, or median and minimum disagree) for ${tie.join('; ')}, so nothing there argues for a change`);
  const s = parts.join('; ');
  const tail = change.length
    ? '.'
    : ' — that is, the current default as it stands (`machine: \'q35\'`, the ELF vmlinux entered through its PVH note, VM_CMDLINE, render-argv\'s CPU model); no variant boots measurably faster.';
  return `${s.charAt(0).toUpperCase()}${s.slice(1)}${tail}`;
}

function render(rep: Report): string {
  const d = rep.samples.get(DEFAULT_ID) ?? [];
  const t = rep.tpl;
  const L: string[] = [SECTION, ''];
  L.push(`Run ${rep.started.toISOString().replace(/\.\d+Z$/, 'Z')} by \`npm run bench:vm-choices\` (bench/vm-choices.ts). Machine: ${machineNote(rep.accel)}.`);
  L.push(
    `Guest: ${rep.imageDesc || 'the busybox VM image'}${t ? `; ${t.memoryMiB} MiB, ${t.cpus} vCPU, \`-accel ${t.accel}\`` : ''}; ${rep.qemuLabel}. ${rep.roundsDone} interleaved rounds; times in ms, spawn of QEMU → \`HANGAR-READY <name>\` on the serial console.`,
  );
  L.push('');
  L.push('| variant | differs from the default in | start → marker median | min | median / default | min / default |');
  L.push('|---|---|---:|---:|---:|---:|');
  for (const v of VARIANTS) {
    const xs = rep.samples.get(v.id) ?? [];
    const fail = rep.failed.get(v.id);
    const what = v.aspect === null ? `— (default: \`-machine ${rep.values.get('machine') ?? '?'}\`, \`-kernel vmlinux\`, VM_CMDLINE, \`-cpu ${rep.values.get('cpu') ?? '?'}\`)` : v.change;
    if (fail && !xs.length) L.push(`| ${v.id} | ${what} | **did not reach the marker**: ${fail.replace(/\|/g, '\\|').slice(0, 300)} | — | — | — |`);
    else L.push(`| ${v.id} | ${what}${fail ? ` (**failed later**: ${fail.replace(/\|/g, '\\|').slice(0, 200)})` : ''} | ${f0(median(xs))} | ${f0(min(xs))} | ${ratio(median(xs), median(d))} | ${ratio(min(xs), min(d))} |`);
  }
  L.push('');
  L.push(`Samples per variant: ${VARIANTS.map((v) => `${v.id} ${(rep.samples.get(v.id) ?? []).length}`).join(', ')}.`);
  L.push('');
  L.push(
    `Method: every variant is raw QEMU running the argv Hangar's QEMU driver renders for the busybox VM (\`renderQemuArgv\` with the driver's \`bootOf\` and its machine-type choice, for an instance record pointing at an image that \`buildBusyboxVmImage\` built in ${WORK_DIR}/image from the Debian packages cached in ${rep.cacheDir}; ${rep.kernelPackage ? `kernel package ${rep.kernelPackage}, ` : ''}its bzImage copied beside the extracted vmlinux), so all variants have Hangar's devices: qcow2 overlay root disk, virtio NIC on a tap on the bench bridge ${BENCH_BRIDGE} (static address), virtio-serial qemu-ga channel, VGA + VNC socket, RNG, balloon, pvpanic. Each variant's argv differs from the default's in exactly one aspect, checked before the run: \`-machine pc-i440fx-*\` instead of \`pc-q35-*\` (with the devices render-argv ties to the machine type: the Q35 default has ${rep.values.get('rootPorts') ?? '?'} empty PCIe root ports for disk hot-plug, i440FX none); \`-kernel vmlinuz\` (QEMU's linuxboot option ROM, real-mode setup, in-guest decompression) instead of the ELF vmlinux entered through its PVH note; \`-append console=ttyS0 hangar.*\` instead of \`${VM_CMDLINE} hangar.*\`; \`-cpu max\` instead of \`-cpu ${rep.values.get('cpu') ?? 'qemu64'}\`. bench/vm-subjects.ts's RawQemu rewrites name, directory, overlay, tap, MAC and guest address per boot, makes overlay and tap before the clock, spawns \`qemu-system-x86_64 … -daemonize\` and polls the serial log every ~1 ms for \`HANGAR-READY <name>\`, which the guest prints only after loading its modules, configuring eth0, mounting /data and starting qemu-ga and acpid — so every timed boot brought the whole guest up; QEMU is then SIGKILLed (untimed). Each variant boots once untimed first (warm-up, page cache); then each of the ${rep.roundsDone} rounds boots every variant once, the order rotated by one per round. The verdict counts an alternative as faster or slower only when its median and its minimum both are and the medians differ by at least ${NOISE * 100}% of the default's.`,
  );
  L.push('');
  L.push(`Verdict: ${verdict(rep)}`);
  L.push('');
  return L.join('\n');
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('The VM choices benchmark needs root (QEMU, taps, a bridge)');
  interrupt.install();

  const rep: Report = {
    started: new Date(),
    roundsDone: 0,
    accel: '?',
    imageDesc: '',
    kernelPackage: '',
    cacheDir: '',
    qemuLabel: '',
    tpl: null,
    values: new Map(),
    samples: new Map(VARIANTS.map((v) => [v.id, []])),
    failed: new Map(),
  };
  const host = new LocalHost();
  const imageDir = join(WORK_DIR, 'image');
  const tplDir = join(WORK_DIR, 'tpl');
  const rawDir = join(WORK_DIR, 'raw');
  const raws = new Map<string, RawQemu>();
  let bridgeCreated = false;
  try {
    const probe = await probeQemu(host);
    if (!probe.available) throw new Error(`QEMU is not usable on this host: ${probe.reason ?? 'unknown reason'}`);
    rep.cacheDir = pickCacheDir(args.cacheDir);
    // Hangar's own choice, measured afresh: the ROM probe and the Linux boot check under KVM and TCG.
    const accelState = await QemuAccel.open(host, { binary: probe.binary, qemuBuild: probe.build ?? '?', mode: 'auto', cacheFile: join(WORK_DIR, 'accel.json'), linuxGuest: () => prepareAccelGuest(host, rep.cacheDir) });
    const accel = (await accelState.forStart(undefined, 'bench'));
    rep.accel = accel.accel;
    const facts: QemuHostFacts = { version: probe.version, accel: accel.accel };
    console.error(`qemu ${probe.version ?? '?'}: ${accel.accel} (${accel.reason})`);

    // The image, built fresh by Hangar's own builder (packages from the cache), plus the same package's bzImage beside its vmlinux.
    for (const d of [imageDir, tplDir, rawDir]) rmSync(d, { recursive: true, force: true });
    mkdirSync(WORK_DIR, { recursive: true });
    let t0 = process.hrtime.bigint();
    const built = await buildBusyboxVmImage(host, imageDir, { cacheDir: rep.cacheDir, onProgress: (m) => console.error(`image: ${m}`) });
    rep.imageDesc = built.description;
    console.error(`image: built in ${f0(msSince(t0))} ms (cache ${rep.cacheDir}): ${built.description}`);
    interrupt.check();
    const kernel = await fetchDebianKernel(host, { cacheDir: rep.cacheDir });
    if (kernel.version !== built.props.kernelVersion) throw new Error(`kernel ${kernel.version} in ${rep.cacheDir} is not the image's ${built.props.kernelVersion ?? '?'}`);
    rep.kernelPackage = `${kernel.package} ${kernel.packageVersion}`;
    copyFileSync(kernel.vmlinuz, join(imageDir, 'vmlinuz'));
    if (built.props.kernel !== 'vmlinux' || built.props.cmdline !== VM_CMDLINE || built.props.machine !== 'q35') {
      console.error(`note: the image's defaults changed (kernel ${built.props.kernel}, machine ${built.props.machine}, cmdline ${built.props.cmdline}); variants are relative to them`);
    }

    // Template argv per variant, for an instance whose overlay exists (parseTemplate reads its backing file).
    mkdirSync(tplDir, { recursive: true });
    run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', join(imageDir, built.props.disk ?? 'disk.qcow2'), join(tplDir, ROOT_DISK)]);
    const base = renderVariant(VARIANTS[0] as Variant, imageDir, built.props, tplDir, facts);
    rep.values.set('machine', (base[base.indexOf('-machine') + 1] ?? '?').split(',')[0] as string);
    rep.values.set('cpu', base[base.indexOf('-cpu') + 1] ?? '?');
    rep.values.set('rootPorts', String(machineBoundCount(base)));
    ensureBenchBridge();
    bridgeCreated = true; // ours by name, also when a crashed earlier run left it
    for (const v of VARIANTS) {
      const argv = renderVariant(v, imageDir, built.props, tplDir, facts);
      checkOneAspect(v, base, argv);
      const tpl = parseTemplate(argv, TPL_NAME, tplDir);
      if (v.id === DEFAULT_ID) rep.tpl = tpl;
      const raw = new RawQemu(rawDir, tpl);
      rep.qemuLabel = raw.label;
      raws.set(v.id, raw);
    }
    rmSync(tplDir, { recursive: true, force: true });

    const vmName = (i: number, r: number): string => `hbvc${i}r${r}`;
    const boot = async (v: Variant, r: number): Promise<number> => {
      const raw = raws.get(v.id) as RawQemu;
      const n = vmName(VARIANTS.indexOf(v), r);
      try {
        raw.prepare(n, r);
        await new Promise((res) => setImmediate(res));
        interrupt.check();
        const t = process.hrtime.bigint();
        await raw.boot(n);
        return msSince(t);
      } finally {
        await raw.remove(n).catch((e: unknown) => console.error(`cleanup ${n}: ${String(e)}`));
      }
    };

    // Warm-up: every variant must reach the marker once before it is timed.
    for (const v of VARIANTS) {
      interrupt.check();
      try {
        t0 = process.hrtime.bigint();
        await boot(v, 0);
        console.error(`warm-up ${v.id}: marker after ${f0(msSince(t0))} ms`);
      } catch (e) {
        if (interrupt.aborted) throw e;
        if (v.id === DEFAULT_ID) throw new Error(`the default variant does not reach the marker: ${e instanceof Error ? e.message : String(e)}`);
        rep.failed.set(v.id, `warm-up: ${e instanceof Error ? e.message : String(e)}`);
        console.error(`${v.id} does not reach the marker: ${rep.failed.get(v.id)}`);
      }
    }

    for (let r = 1; r <= args.rounds; r++) {
      const order = VARIANTS.map((_, i) => VARIANTS[(i + r - 1) % VARIANTS.length] as Variant);
      const line: string[] = [];
      for (const v of order) {
        if (rep.failed.has(v.id)) continue;
        try {
          const ms = await boot(v, r);
          rep.samples.get(v.id)?.push(ms);
          line.push(`${v.id} ${f0(ms)}`);
        } catch (e) {
          if (interrupt.aborted) throw e;
          rep.failed.set(v.id, `round ${r}: ${e instanceof Error ? e.message : String(e)}`);
          console.error(`${v.id} failed in round ${r}: ${rep.failed.get(v.id)}`);
          if (v.id === DEFAULT_ID) throw new Error('the default variant failed; no ratios to report');
        }
      }
      rep.roundsDone = r;
      console.error(`round ${r}/${args.rounds}: start→marker ms: ${line.join(', ')}`);
    }
  } finally {
    for (const [id, raw] of raws) {
      try {
        await raw.cleanup();
      } catch (e) {
        console.error(`cleanup ${id}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (bridgeCreated) removeBenchBridge();
    for (const d of [tplDir, rawDir, imageDir]) rmSync(d, { recursive: true, force: true });
  }
  const text = render(rep);
  console.log(text);
  if (args.out && rep.roundsDone > 0) {
    if (rep.roundsDone < MIN_ROUNDS) console.error(`warning: only ${rep.roundsDone} rounds (the issue asks for at least ${MIN_ROUNDS})`);
    writeSection(args.out, SECTION, text);
    console.error(`wrote ${args.out}`);
  }
  return rep.failed.size ? 1 : 0;
}

interrupt.exitWith(main);
