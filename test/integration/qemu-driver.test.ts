// Integration: the QEMU driver on this machine passes the driver conformance suite with a busybox VM on a bridge the test owns.
import { mkdtemp } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { posix } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { buildBusyboxVmImage } from '../../src/core/images/busybox-vm.js';
import type { HostDriver, InstanceHandle, InstanceRecord } from '../../src/drivers/driver.js';
import { driverEnv } from '../helpers/driver-env.js';
import { cgroupMounts, detectLxcCgroupFacts } from '../../src/drivers/lxc/driver.js';
import { qemuOnHost } from '../../src/drivers/qemu/driver.js';
import { findUefiFirmware, probeQemu } from '../../src/drivers/qemu/probe.js';
import { QemuAccel } from '../../src/drivers/qemu/accel-check.js';
import { prepareAccelGuest } from '../../src/core/images/accel-guest.js';
import { collect, runDriverConformance, type ObservedLimits } from '../conformance/driver-conformance.js';
import { addTestBridge } from '../helpers/test-bridge.js';

const CACHE = '/var/lib/hangar-test-cache/vm';
const host = new LocalHost();
const prefix = `t${randomBytes(3).toString('hex').slice(0, 4).replace(/^[0-9]/, 'x')}`;
const bridge = `${prefix}br`;
let base = '';
let imageDir = '';
let imageProps: Record<string, string> = {};
let qemu: HostDriver;
let layout: 'v1' | 'v2' | 'hybrid' = 'hybrid';
let subnet = '';
let nicIndex = 0;
const handles: InstanceHandle[] = [];

async function setupEnv(): Promise<void> {
  base = await mkdtemp('/tmp/hangar-qemu-');
  const probe = await probeQemu(host);
  if (!probe.available) throw new Error(`QEMU is not usable on this host: ${probe.reason}`);
  const accel = await QemuAccel.open(host, { binary: probe.binary, qemuBuild: probe.build ?? '?', mode: 'auto', cacheFile: posix.join(base, 'accel.json'), linuxGuest: () => prepareAccelGuest(host, CACHE) });
  await accel.confirm();
  console.log(`qemu ${probe.version}: ${accel.info().reason}`);
  const t0 = Date.now();
  imageDir = posix.join(base, 'image');
  imageProps = (await buildBusyboxVmImage(host, imageDir, { cacheDir: CACHE })).props;
  console.log(`busybox VM image built in ${Date.now() - t0} ms`);
  subnet = await addTestBridge(host, bridge);
  const cg = await detectLxcCgroupFacts(host);
  layout = cg.cgroupLayout;
  const env = driverEnv(host, { facts: { ...cg, cpus: cpus().length, memoryBytes: totalmem(), idmap: { uidStart: 100000, gidStart: 100000, count: 65536 } }, prefix, dataDir: base });
  qemu = qemuOnHost({ env, probe: { available: true, version: probe.version, reason: null }, version: probe.version, accel, uefi: await findUefiFirmware(host) });
}

/** PIDs of QEMU processes running one of this test's VMs (named guest=<prefix>-...). */
async function strayQemus(): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await host.fs.readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await host.fs.readTextIfExists(`/proc/${pid}/cmdline`).catch(() => undefined);
    if (cmd?.split('\0').some((a) => a.startsWith(`guest=${prefix}-`))) out.push(Number(pid));
  }
  return out;
}

async function teardownEnv(): Promise<void> {
  try {
    for (const h of handles) {
      await h.stop({ force: true, timeoutMs: 10_000 }).catch(() => undefined);
      await h.delete().catch(() => undefined);
    }
    // Anything the driver could not stop: QEMU processes this test started, by their id.
    for (const pid of await strayQemus()) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  } finally {
    const links = (await host.exec(['ip', '-o', 'link', 'show'], { allowFailure: true })).stdout;
    const taps = [...links.matchAll(/^\d+:\s+([^:@\s]+)/gm)].map((m) => m[1]!).filter((n) => n.startsWith(prefix) && n !== bridge);
    for (const tap of taps) await host.exec(['ip', 'link', 'del', 'dev', tap], { allowFailure: true });
    await host.exec(['ip', 'link', 'del', bridge], { allowFailure: true });
    if (qemu) {
      // The driver puts each VM's cgroup in <controller root>/<prefix>.vm/<name>.
      const mounts = await cgroupMounts(host);
      for (const root of new Set([...Object.values(mounts.v1), ...(mounts.v2 ? [mounts.v2] : [])])) {
        const dir = posix.join(root, `${prefix}.vm`);
        if (!(await host.fs.stat(dir))) continue;
        for (const child of await host.fs.readdir(dir)) {
          const sub = posix.join(dir, child);
          if ((await host.fs.stat(sub))?.isDirectory) await host.exec(['rmdir', sub], { allowFailure: true });
        }
        await host.exec(['rmdir', dir], { allowFailure: true });
      }
    }
    if (base) await host.fs.rm(base, { recursive: true, force: true });
  }
}

/** The VM's cgroup directory (the driver's layout: <cpu controller root>/<prefix>.vm/<name>), or undefined without one. */
async function vmCgroup(name: string): Promise<string | undefined> {
  const mounts = await cgroupMounts(host);
  const root = layout === 'v2' ? mounts.v2 : mounts.v1.cpu;
  return root ? posix.join(root, `${prefix}.vm`, name) : undefined;
}

/**
 * The limits a VM runs under, read from the backend: the RAM the guest has (QEMU's balloon, which starts at -m), the
 * cpu cgroup's cap, and the OOM kills the guest kernel counted.
 */
async function enforcedLimits(h: InstanceHandle, name: string): Promise<ObservedLimits> {
  const balloon = (await h.monitor!('query-balloon')) as { actual: number };
  const dir = await vmCgroup(name);
  const read = async (file: string) => (dir ? (await host.fs.readTextIfExists(posix.join(dir, file)))?.trim() : undefined);
  const [quota, period] = layout === 'v2' ? ((await read('cpu.max')) ?? 'max').split(' ') : [await read('cpu.cfs_quota_us'), await read('cpu.cfs_period_us')];
  const vmstat = await collect(h.exec({ command: ['cat', '/proc/vmstat'] }));
  const oom = /^oom_kill (\d+)$/m.exec(vmstat.stdout)?.[1];
  return {
    memoryBytes: balloon.actual,
    cpuCapPct: quota === undefined || quota === 'max' || quota === '-1' ? null : (Number(quota) / Number(period)) * 100,
    ...(oom !== undefined ? { oomKills: Number(oom) } : {}),
  };
}

/** What the driver keeps on the host for a VM: its root disk, instance directory, tap, cgroup and QEMU process. */
async function qemuArtifacts(record: InstanceRecord): Promise<string[]> {
  const out: string[] = [];
  for (const p of [posix.join(record.rootPath, 'root.qcow2'), record.instanceDir, `/sys/class/net/${record.nic.hostIfName}`, await vmCgroup(record.name)]) {
    if (p && (await host.fs.stat(p))) out.push(p);
  }
  for (const pid of await strayQemus()) {
    const cmd = await host.fs.readTextIfExists(`/proc/${pid}/cmdline`).catch(() => undefined);
    if (cmd?.split('\0').some((a) => a === `guest=${record.name}` || a.startsWith(`guest=${record.name},`))) out.push(`qemu pid ${pid}`);
  }
  return out;
}

/** A busybox VM record: its root disk directory under the temp base, a tap on the test's bridge. */
function makeRecord(short: string, config: Record<string, string> = {}): InstanceRecord {
  const name = `${prefix}-${short}`;
  const n = ++nicIndex;
  return {
    name, host: 'local',
    type: 'vm',
    driver: 'qemu',
    image: 'busybox-vm',
    config,
    rootPath: posix.join(base, 'roots', name),
    instanceDir: posix.join(base, 'instances', name),
    nic: { bridge, hostIfName: `${prefix}t${n}`, mac: `02:00:00:01:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`, ipv4: `${subnet}.${10 + n}`, prefixLength: 24, gateway: `${subnet}.1` },
    imageProps: { ...imageProps },
    imagePath: imageDir,
  };
}

beforeAll(setupEnv, 900_000);
afterAll(teardownEnv, 120_000);

runDriverConformance({
  driverName: 'qemu',
  setup: async () => ({
    hostDriver: qemu,
    host,
    async makeHandle(short, config) {
      const record = makeRecord(short, config);
      const problems = qemu.validate(record.config);
      if (problems.length) throw new Error(`invalid test config: ${problems.join('; ')}`);
      await host.fs.mkdir(record.rootPath, { recursive: true });
      const handle = qemu.load(record);
      handles.push(handle);
      return { handle, record };
    },
    artifacts: qemuArtifacts,
    observeLimits: (h, record) => enforcedLimits(h, record.name),
    cleanup: async () => undefined,
  }),
  config: { 'limits.memory': '256MiB', 'limits.cpu': '1' },
  // The vCPU count is QEMU's -smp: it changes with the next start.
  restartOnly: { 'limits.cpu': '2' },
  instanceName: 'conf',
  stopTimeoutMs: 60_000,
  stepTimeoutMs: 300_000,
});
