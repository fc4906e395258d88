// An LXC driver environment on any Host (local or over SSH): subids, a test bridge, cgroup facts, busybox records, and the driver's artifacts and limits read back through that Host.
import { posix } from 'node:path';
import type { Host } from '../../src/host/host.js';
import type { HostFacts } from '../../src/host/facts.js';
import type { HostDriver, InstanceRecord } from '../../src/drivers/driver.js';
import { buildBusyboxRootfs } from '../../src/core/images/busybox.js';
import { cgroupMounts, detectLxcCgroupFacts, lxcOnHost } from '../../src/drivers/lxc/driver.js';
import { lxcVersion } from '../../src/drivers/lxc/lxc-tools.js';
import { parseFlatKeyed } from '../../src/drivers/lxc/parse.js';
import type { ConformanceEnv, ObservedLimits } from '../conformance/driver-conformance.js';
import { driverEnv } from './driver-env.js';
import { addTestBridge } from './test-bridge.js';

const ID_START = 100000;
const ID_COUNT = 65536;

/** What setupLxcHostEnv made; teardownLxcHostEnv undoes it. */
export interface LxcHostEnv {
  host: Host;
  prefix: string;
  bridge: string;
  base: string;
  subnet: string;
  facts: HostFacts;
  lxcPath: string;
  lxc: HostDriver;
  /** Names of the instances made (stopped at teardown whatever happened). */
  created: string[];
  nics: number;
}

/** Makes sure root may map 100000-165535 on the host (appends root:100000:65536 when no root range covers it). */
async function ensureSubids(host: Host): Promise<void> {
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const text = (await host.fs.readTextIfExists(file)) ?? '';
    const covered = text.split('\n').some((l) => {
      const [user, start, count] = l.trim().split(':');
      return user === 'root' && Number(start) <= ID_START && Number(start) + Number(count) >= ID_START + ID_COUNT;
    });
    if (!covered) await host.fs.appendFile(file, `${text === '' || text.endsWith('\n') ? '' : '\n'}root:${ID_START}:${ID_COUNT}\n`);
  }
}

/** An environment not set up yet: setupLxcHostEnv fills it in, teardownLxcHostEnv undoes whatever part of it was made. */
export function lxcHostEnv(host: Host, prefix: string): LxcHostEnv {
  return { host, prefix, bridge: `${prefix}br`, base: '', subnet: '', facts: undefined as unknown as HostFacts, lxcPath: '', lxc: undefined as unknown as HostDriver, created: [], nics: 0 };
}

/** Subids, a temp base dir, the bridge and the LXC driver opened on the host, everything through e.host. */
export async function setupLxcHostEnv(e: LxcHostEnv): Promise<void> {
  const host = e.host;
  await ensureSubids(host);
  e.base = (await host.exec(['mktemp', '-d', '/tmp/hangar-lxc-XXXXXX'])).stdout.trim();
  // Searchable, not listable, as hangard's own state tree: LXC wants the container root able to reach its lxc path.
  await host.fs.chmod(e.base, 0o711);
  e.subnet = await addTestBridge(host, e.bridge);
  const cg = await detectLxcCgroupFacts(host);
  const [cpuinfo, meminfo] = await host.fs.readMany(['/proc/cpuinfo', '/proc/meminfo']);
  const cpus = (cpuinfo ?? '').split('\n').filter((l) => /^processor\s*:/.test(l)).length;
  const memKiB = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo ?? '')?.[1] ?? 0);
  e.facts = { ...cg, cpus, memoryBytes: memKiB * 1024, idmap: { uidStart: ID_START, gidStart: ID_START, count: ID_COUNT } };
  e.lxcPath = posix.join(e.base, 'lxc');
  const v = await lxcVersion(host);
  e.lxc = lxcOnHost({ env: driverEnv(host, { facts: e.facts, prefix: e.prefix, dataDir: e.base }), lxcPath: e.lxcPath, lxcfsDir: null }, { available: v.version !== null, version: v.version, reason: v.reason });
  await host.fs.mkdir(e.lxcPath, { recursive: true });
}

/** Stops every instance made, removes the bridge, the prefix's cgroups and the base dir (each step even when one before failed). */
export async function teardownLxcHostEnv(e: LxcHostEnv): Promise<void> {
  const host = e.host;
  try {
    for (const name of e.created) await host.exec(['lxc-stop', '-P', e.lxcPath, '-n', name, '-k'], { allowFailure: true });
  } finally {
    try {
      if (e.subnet) await host.exec(['ip', 'link', 'del', e.bridge], { allowFailure: true });
      if (e.facts) {
        const mounts = await cgroupMounts(host);
        for (const root of new Set([...Object.values(mounts.v1), ...(mounts.v2 ? [mounts.v2] : [])])) {
          for (const dir of [posix.join(root, `${e.prefix}.monitor`), posix.join(root, e.prefix)]) {
            if (await host.fs.stat(dir)) await host.exec(['rmdir', dir], { allowFailure: true });
          }
        }
      }
    } finally {
      if (e.base) await host.fs.rm(e.base, { recursive: true, force: true });
    }
  }
}

/** A busybox instance record with its own rootfs (0-based ids: unprivileged containers see it through an idmapped mount) and NIC. */
export async function makeLxcRecord(e: LxcHostEnv, short: string, config: Record<string, string> = {}, imageProps: Record<string, string> = {}): Promise<InstanceRecord> {
  const name = `${e.prefix}-${short}`;
  const rootPath = posix.join(e.base, 'roots', name);
  const built = await buildBusyboxRootfs(e.host, rootPath);
  const n = ++e.nics;
  e.created.push(name);
  return {
    name, host: e.host.name,
    type: 'container',
    driver: 'lxc',
    image: 'busybox',
    config,
    rootPath,
    instanceDir: posix.join(e.base, 'instances', name),
    nic: { bridge: e.bridge, hostIfName: `${e.prefix}v${n}`, mac: `02:00:00:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`, ipv4: `${e.subnet}.${10 + n}`, prefixLength: 24, gateway: `${e.subnet}.1` },
    imageProps: { ...built.props, ...imageProps },
  };
}

/** One cgroup file of a container (the v1 controller's hierarchy on v1/hybrid hosts, else cgroup2). */
export async function lxcCgroupFile(e: LxcHostEnv, name: string, controller: string, file: string): Promise<string | undefined> {
  const mounts = await cgroupMounts(e.host);
  const root = e.facts.cgroupLayout === 'v2' ? mounts.v2 : mounts.v1[controller];
  return root ? e.host.fs.readTextIfExists(posix.join(root, e.prefix, name, file)) : undefined;
}

/** The limits the kernel enforces on a container: its cgroup files. */
export async function lxcEnforcedLimits(e: LxcHostEnv, name: string): Promise<ObservedLimits> {
  const v2 = e.facts.cgroupLayout === 'v2';
  const read = async (controller: string, file: string) => (await lxcCgroupFile(e, name, controller, file))?.trim();
  const num = (t: string | undefined) => (t === undefined || t === 'max' ? null : Number(t));
  // cgroup v1 says "no memory limit" with the largest page-aligned number.
  const memory = num(await read('memory', v2 ? 'memory.max' : 'memory.limit_in_bytes'));
  const [quota, period] = v2 ? ((await read('cpu', 'cpu.max')) ?? 'max').split(' ') : [await read('cpu', 'cpu.cfs_quota_us'), await read('cpu', 'cpu.cfs_period_us')];
  const oom = parseFlatKeyed((await read('memory', v2 ? 'memory.events' : 'memory.oom_control')) ?? '').oom_kill;
  return {
    memoryBytes: memory !== null && memory < 2 ** 62 ? memory : null,
    cpuCapPct: quota === undefined || quota === 'max' || quota === '-1' ? null : (Number(quota) / Number(period)) * 100,
    processes: num(await read('pids', 'pids.max')),
    ...(oom !== undefined ? { oomKills: oom } : {}),
  };
}

/** True while the container's LXC monitor process runs on the host. */
export async function lxcMonitorRunning(e: LxcHostEnv, name: string): Promise<boolean> {
  const want = `[lxc monitor] ${e.lxcPath} ${name}`;
  const pids = (await e.host.fs.readdir('/proc')).filter((p) => /^\d+$/.test(p));
  // One batched read: over SSH that is one round trip instead of one per process.
  const cmdlines = await e.host.fs.readMany(pids.map((p) => `/proc/${p}/cmdline`));
  return cmdlines.some((c) => c?.replace(/\0/g, ' ').trim() === want);
}

/** What LXC keeps on the host for a container: its directory in the lxc path, its cgroups, its monitor process. */
export async function lxcArtifacts(e: LxcHostEnv, name: string): Promise<string[]> {
  const out: string[] = [];
  const dir = posix.join(e.lxcPath, name);
  if (await e.host.fs.stat(dir)) out.push(dir);
  const mounts = await cgroupMounts(e.host);
  for (const root of new Set([...Object.values(mounts.v1), ...(mounts.v2 ? [mounts.v2] : [])])) {
    for (const cg of [posix.join(root, e.prefix, name), posix.join(root, `${e.prefix}.monitor`, name)]) if (await e.host.fs.stat(cg)) out.push(cg);
  }
  if (await lxcMonitorRunning(e, name)) out.push(`[lxc monitor] ${name}`);
  return out;
}

/** The conformance suite's environment for the LXC driver on e.host. */
export function lxcConformanceEnv(e: LxcHostEnv): ConformanceEnv {
  return {
    hostDriver: e.lxc,
    host: e.host,
    async makeHandle(short, config) {
      const record = await makeLxcRecord(e, short, config);
      return { handle: e.lxc.load(record), record };
    },
    artifacts: (record) => lxcArtifacts(e, record.name),
    observeLimits: (_handle, record) => lxcEnforcedLimits(e, record.name),
    cleanup: async () => undefined,
  };
}
