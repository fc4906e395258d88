// OpenVZ benchmark: `vzctl create && vzctl start && vzctl exec CT true` through Hangar (the vzctl CLI, and the API client in-process) vs the same CT built by hand with mkfs.ext4, mount and raw lxc-*; interleaved rounds; writes BENCHMARKS.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { HangarClient } from '../src/client/client.js';
import { buildBusyboxRootfs } from '../src/core/images/busybox.js';
import { LocalHost } from '../src/host/local.js';
import { mkfsArgv } from '../src/drivers/openvz/private-area.js';
import { sampleConfig } from '../src/shared/vz-samples.js';
import { parseSize } from '../src/shared/units.js';
import { BenchDaemon } from './bench-daemon.js';
import { haveCommand, Interrupt, machineNote, median, min, msSince, parseBenchFlags, positiveInt, run, until, writeSection } from './util.js';

const SECTION = '## OpenVZ (bench/openvz)';
const STATE_DIR = '/var/lib/hangar-bench-vz';
const SOCKET = '/run/hangar-bench-vz/hangar.sock';
const SUBNET = '10.126.0';
const RAW_BRIDGE = 'hbvraw0';
const RAW_GATEWAY = '10.127.0.1';
const CTID_BASE = 4100;

const bundleDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = existsSync(join(process.cwd(), 'package.json')) ? process.cwd() : resolve(bundleDir, '..');
const distDir = join(repoRoot, 'dist');
const interrupt = new Interrupt();

interface Args { rounds: number; out: string | null }

function usage(): never {
  console.log(`Usage: node dist/bench-openvz.mjs [--rounds N] [--out FILE | --no-write]
  Interleaved rounds of: vzctl create (vswap-256m, busybox-x86_64) + start + exec true through hangar's vzctl, the same
  through the API client in one process, and the same CT built by hand (mkfs.ext4 -d, mount -o loop, lxc-start, lxc-attach).`);
  process.exit(0);
}

/** Discards output. */
const sink = () => new Writable({ write: (_c, _e, cb) => cb() });

/** The sample's disk and inodes, as Hangar makes the private area of a CT from it. */
const SAMPLE = sampleConfig('vswap-256m');
const DISK_BYTES = parseSize(SAMPLE['limits.disk']!, 'limits.disk');
const INODES = Number(SAMPLE['limits.disk.inodes']);

/** The raw subject: what the openvz driver does, by hand, for one CT. */
class RawVz {
  readonly label = 'by hand: mkfs.ext4 -d + mount -o loop + lxc-start + lxc-attach (router veth, /32)';
  private readonly dir = join(STATE_DIR, 'raw');
  private readonly tree = join(STATE_DIR, 'raw-template');
  private readonly live = new Set<number>();

  async setup(): Promise<void> {
    for (const c of ['mkfs.ext4', 'lxc-start', 'lxc-attach', 'lxc-stop']) if (!haveCommand(c)) throw new Error(`${c} not found`);
    mkdirSync(this.dir, { recursive: true, mode: 0o711 });
    if (!existsSync(join(this.tree, 'bin', 'busybox'))) await buildBusyboxRootfs(new LocalHost(), this.tree);
    if (run(['ip', 'link', 'show', RAW_BRIDGE], { allowFail: true }).status !== 0) {
      run(['ip', 'link', 'add', RAW_BRIDGE, 'type', 'bridge']);
      run(['ip', 'addr', 'add', `${RAW_GATEWAY}/24`, 'dev', RAW_BRIDGE]);
      run(['ip', 'link', 'set', RAW_BRIDGE, 'up']);
    }
  }

  async cycle(ctid: number, round: number): Promise<void> {
    this.live.add(ctid);
    const ct = join(this.dir, String(ctid));
    const image = join(ct, 'root.hdd');
    const root = join(ct, 'root');
    mkdirSync(root, { recursive: true });
    run(['truncate', '-s', String(DISK_BYTES - (DISK_BYTES % 4096)), image]);
    run(mkfsArgv({ host: new LocalHost(), image, root, label: `ct${ctid}` }, this.tree, DISK_BYTES, INODES));
    run(['mount', '-t', 'ext4', '-o', 'loop,noatime,nodev', image, root]);
    const ip = `10.127.0.${10 + (round % 200)}`;
    writeFileSync(join(ct, 'config'), [
      `lxc.uts.name = ct${ctid}`, `lxc.rootfs.path = dir:${root}`, 'lxc.rootfs.options = idmap=container',
      'lxc.idmap = u 0 100000 65536', 'lxc.idmap = g 0 100000 65536', 'lxc.mount.auto = cgroup:mixed proc:mixed sys:rw',
      'lxc.net.0.type = veth', 'lxc.net.0.veth.mode = router', `lxc.net.0.veth.pair = hbv${ctid}`, `lxc.net.0.ipv4.address = ${ip}/32`,
      `lxc.net.0.ipv4.gateway = ${RAW_GATEWAY}`, 'lxc.net.0.flags = up', 'lxc.net.0.name = venet0',
      'lxc.init.cmd = /sbin/init', 'lxc.signal.halt = SIGUSR2', `lxc.cgroup.memory.limit_in_bytes = ${256 * 1024 ** 2}`,
      `lxc.log.file = ${join(ct, 'lxc.log')}`, 'lxc.log.level = ERROR', '',
    ].join('\n'));
    run(['lxc-start', '-P', this.dir, '-n', String(ctid), '-d']);
    await until(`lxc-attach into ${ctid}`, () => run(['lxc-attach', '-P', this.dir, '-n', String(ctid), '--', 'true'], { allowFail: true }).status === 0, 30_000, 1);
  }

  remove(ctid: number): void {
    const ct = join(this.dir, String(ctid));
    run(['lxc-stop', '-P', this.dir, '-n', String(ctid), '-k'], { allowFail: true });
    run(['umount', join(ct, 'root')], { allowFail: true });
    rmSync(ct, { recursive: true, force: true });
    this.live.delete(ctid);
  }

  cleanup(): void {
    for (const ctid of [...this.live]) this.remove(ctid);
    run(['ip', 'link', 'del', RAW_BRIDGE], { allowFail: true });
  }
}

async function main(): Promise<void> {
  const a: Args = { rounds: 9, out: join(repoRoot, 'BENCHMARKS.md') };
  parseBenchFlags(process.argv.slice(2), a, { '--rounds': (next) => { a.rounds = positiveInt(next(), '--rounds'); } }, usage);
  const daemon = new BenchDaemon({
    distDir, socket: SOCKET, logFile: join(STATE_DIR, 'hangard.log'),
    daemonEnv: { HANGAR_DIR: STATE_DIR, HANGAR_PREFIX: 'hbv', HANGAR_SUBNET: `${SUBNET}.0/24`, HANGAR_DRIVERS: 'lxc,openvz' },
  });
  const raw = new RawVz();
  const client = new HangarClient({ socketPath: SOCKET });
  const env = { ...process.env, HANGAR_SOCKET: SOCKET, HANGAR_VZ_CONF: '/nonexistent' };
  const vzctl = (...args: string[]) => {
    const r = spawnSync(process.execPath, [join(distDir, 'hangar.mjs'), 'vz', ...args], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`vzctl ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  };
  const samples = { cli: [] as number[], api: [] as number[], raw: [] as number[] };
  try {
    await daemon.ensure();
    await raw.setup();
    // The busybox image exists once the daemon is up (it builds it); warm each path once, untimed.
    await until('busybox image', async () => (await client.listImages()).some((i) => i.alias === 'busybox'), 120_000, 250);
    for (const i of await client.listInstances()) if (i.driver === 'openvz') await client.waitOperation(await client.deleteInstance(i.name, { force: true }));
    for (let r = 0; r < a.rounds + 1; r++) {
      interrupt.check();
      const warm = r === 0;
      const order = [0, 1, 2].map((k) => (k + r) % 3);
      for (const k of order) {
        const ctid = CTID_BASE + r * 3 + k;
        const t0 = process.hrtime.bigint();
        if (k === 0) {
          vzctl('create', String(ctid), '--ostemplate', 'busybox-x86_64', '--config', 'vswap-256m', '--ipadd', `${SUBNET}.${20 + ((r * 3 + k) % 200)}`);
          vzctl('start', String(ctid));
          vzctl('exec', String(ctid), 'true');
        } else if (k === 1) {
          const name = `ct${ctid}`;
          await client.waitOperation(await client.createInstance({ name, image: 'busybox', driver: 'openvz', config: { ...SAMPLE, 'openvz.ctid': String(ctid) }, ipv4: `${SUBNET}.${20 + ((r * 3 + k) % 200)}`, start: true }));
          if ((await client.exec(name, { command: ['/bin/sh', '-c', 'true'] }, { stdout: sink(), stderr: sink() })) !== 0) throw new Error(`exec in ${name} failed`);
        } else {
          await raw.cycle(ctid, r);
        }
        const ms = msSince(t0);
        if (!warm) (k === 0 ? samples.cli : k === 1 ? samples.api : samples.raw).push(ms);
        if (k === 2) raw.remove(ctid);
        else await client.waitOperation(await client.deleteInstance(`ct${ctid}`, { force: true }));
      }
    }
  } finally {
    client.close();
    raw.cleanup();
    await daemon.stop();
  }
  const fmt = (xs: number[]) => `${median(xs).toFixed(0)} ms (min ${min(xs).toFixed(0)})`;
  const ratio = (xs: number[]) => median(xs) / median(samples.raw);
  const verdict = (xs: number[]) => `${ratio(xs).toFixed(2)}× ${ratio(xs) <= 1.3 ? 'PASS' : 'FAIL'} (target ≤ 1.3×)`;
  const section = [
    SECTION,
    '',
    `${machineNote('none').replace(/, accelerator [^,]*\(as Hangar chose it\)/, '')}; ${a.rounds} interleaved rounds (plus one warm-up), order rotated each round; sample vswap-256m (2.2 GiB sparse ext4 private area with ${INODES} inodes, 256 MiB RAM), template busybox.`,
    '',
    '| path: create → start → first exec `true` | median (min) | vs by hand |',
    '|---|---|---|',
    `| \`hangar vz create && hangar vz start && hangar vz exec CT true\` (3 CLI processes) | ${fmt(samples.cli)} | ${verdict(samples.cli)} |`,
    `| API client in one process (create with start, exec) | ${fmt(samples.api)} | ${verdict(samples.api)} |`,
    `| ${raw.label} | ${fmt(samples.raw)} | 1.00× |`,
    '',
    'The by-hand path does what the driver does (the same mkfs.ext4 arguments, loop mount, router-mode veth, idmapped root), without Hangar\'s database, address lease, identity files, cgroup and state checks.',
    '',
  ].join('\n');
  console.log(section);
  if (a.out) writeSection(a.out, SECTION, section);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.stack ?? e.message : String(e));
  process.exit(1);
});
