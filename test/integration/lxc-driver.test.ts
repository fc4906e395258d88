// Integration: the LXC driver on this machine with real unprivileged busybox containers on a bridge the test owns.
import { mkdtemp } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { posix } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { buildBusyboxRootfs } from '../../src/core/images/busybox.js';
import type { HostDriver, InstanceHandle, InstanceRecord } from '../../src/drivers/driver.js';
import type { HostFacts } from '../../src/host/facts.js';
import { driverEnv } from '../helpers/driver-env.js';
import { cgroupMounts, detectLxcCgroupFacts, lxcOnHost } from '../../src/drivers/lxc/driver.js';
import { parseFlatKeyed } from '../../src/drivers/lxc/parse.js';
import { isAppError } from '../../src/shared/errors.js';
import { lxcVersion } from '../../src/drivers/lxc/lxc-tools.js';
import { collect, runDriverConformance, type ObservedLimits } from '../conformance/driver-conformance.js';
import { addTestBridge } from '../helpers/test-bridge.js';

const host = new LocalHost();
const ID_START = 100000;
const ID_COUNT = 65536;
const prefix = `t${randomBytes(3).toString('hex').slice(0, 4).replace(/^[0-9]/, 'x')}`;
const bridge = `${prefix}br`;
let base = '';
let ctx: { facts: HostFacts; lxcPath: string };
let lxc: HostDriver;
let subnet = '';
let nicIndex = 0;
const created: string[] = [];

/** Makes sure root may map 100000-165535 (appends root:100000:65536 when no root range covers it). */
async function ensureSubids(): Promise<void> {
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const text = (await host.fs.readTextIfExists(file)) ?? '';
    const covered = text.split('\n').some((l) => {
      const [user, start, count] = l.trim().split(':');
      return user === 'root' && Number(start) <= ID_START && Number(start) + Number(count) >= ID_START + ID_COUNT;
    });
    if (!covered) await host.fs.appendFile(file, `${text === '' || text.endsWith('\n') ? '' : '\n'}root:${ID_START}:${ID_COUNT}\n`);
  }
}

async function setupEnv(): Promise<void> {
  await ensureSubids();
  base = await mkdtemp('/tmp/hangar-lxc-');
  // Searchable, not listable, as hangard's own state tree: LXC wants the container root able to reach its lxc path;
  // the root file system itself it opens as host root (idmapped).
  await host.fs.chmod(base, 0o711);
  subnet = await addTestBridge(host, bridge);
  const cg = await detectLxcCgroupFacts(host);
  ctx = { facts: { ...cg, cpus: cpus().length, memoryBytes: totalmem(), idmap: { uidStart: ID_START, gidStart: ID_START, count: ID_COUNT } }, lxcPath: posix.join(base, 'lxc') };
  const v = await lxcVersion(host);
  lxc = lxcOnHost({ env: driverEnv(host, { facts: ctx.facts, prefix, dataDir: base }), lxcPath: ctx.lxcPath, lxcfsDir: null }, { available: v.version !== null, version: v.version, reason: v.reason });
  await host.fs.mkdir(ctx.lxcPath, { recursive: true });
}

async function teardownEnv(): Promise<void> {
  try {
    for (const name of created) {
      await host.exec(['lxc-stop', '-P', ctx.lxcPath, '-n', name, '-k'], { allowFailure: true });
    }
  } finally {
    await host.exec(['ip', 'link', 'del', bridge], { allowFailure: true });
    if (ctx) {
      const mounts = await cgroupMounts(host);
      for (const root of new Set([...Object.values(mounts.v1), ...(mounts.v2 ? [mounts.v2] : [])])) {
        for (const dir of [posix.join(root, `${prefix}.monitor`), posix.join(root, prefix)]) {
          if (await host.fs.stat(dir)) await host.exec(['rmdir', dir], { allowFailure: true });
        }
      }
    }
    if (base) await host.fs.rm(base, { recursive: true, force: true });
  }
}

/** A busybox instance record with its own rootfs (0-based ids: unprivileged containers see it through an idmapped mount) and NIC. */
async function makeRecord(short: string, config: Record<string, string> = {}, imageProps: Record<string, string> = {}): Promise<InstanceRecord> {
  const name = `${prefix}-${short}`;
  const rootPath = posix.join(base, 'roots', name);
  const built = await buildBusyboxRootfs(host, rootPath);
  const n = ++nicIndex;
  created.push(name);
  return {
    name, host: 'local',
    type: 'container',
    driver: 'lxc',
    image: 'busybox',
    config,
    rootPath,
    instanceDir: posix.join(base, 'instances', name),
    nic: { bridge, hostIfName: `${prefix}v${n}`, mac: `02:00:00:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`, ipv4: `${subnet}.${10 + n}`, prefixLength: 24, gateway: `${subnet}.1` },
    imageProps: { ...built.props, ...imageProps },
  };
}

async function cgroupFile(name: string, controller: string, file: string): Promise<string | undefined> {
  const mounts = await cgroupMounts(host);
  const root = ctx.facts.cgroupLayout === 'v2' ? mounts.v2 : mounts.v1[controller];
  return root ? host.fs.readTextIfExists(posix.join(root, prefix, name, file)) : undefined;
}

/** The limits the kernel enforces on a container: its cgroup files (v1 controllers on a v1 or hybrid host, else cgroup2). */
async function enforcedLimits(name: string): Promise<ObservedLimits> {
  const v2 = ctx.facts.cgroupLayout === 'v2';
  const read = async (controller: string, file: string) => (await cgroupFile(name, controller, file))?.trim();
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

/** What LXC keeps on the host for a container: its directory in the lxc path, its cgroups, its monitor process. */
async function lxcArtifacts(name: string): Promise<string[]> {
  const out: string[] = [];
  const dir = posix.join(ctx.lxcPath, name);
  if (await host.fs.stat(dir)) out.push(dir);
  const mounts = await cgroupMounts(host);
  for (const root of new Set([...Object.values(mounts.v1), ...(mounts.v2 ? [mounts.v2] : [])])) {
    for (const cg of [posix.join(root, prefix, name), posix.join(root, `${prefix}.monitor`, name)]) if (await host.fs.stat(cg)) out.push(cg);
  }
  if (await monitorRunning(name)) out.push(`[lxc monitor] ${name}`);
  return out;
}

async function monitorRunning(name: string): Promise<boolean> {
  const want = `[lxc monitor] ${ctx.lxcPath} ${name}`;
  for (const pid of await host.fs.readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await host.fs.readTextIfExists(`/proc/${pid}/cmdline`).catch(() => undefined);
    if (cmd?.replace(/\0/g, ' ').trim() === want) return true;
  }
  return false;
}

const sh = (h: InstanceHandle, script: string, opts: { env?: Record<string, string>; cwd?: string } = {}) => collect(h.exec({ command: ['sh', '-c', script], ...opts }));

beforeAll(setupEnv);
afterAll(teardownEnv);

runDriverConformance({
  driverName: 'lxc',
  setup: async () => ({
    hostDriver: lxc,
    host,
    async makeHandle(short, config) {
      const record = await makeRecord(short, config);
      return { handle: lxc.load(record), record };
    },
    artifacts: (record) => lxcArtifacts(record.name),
    observeLimits: (_handle, record) => enforcedLimits(record.name),
    cleanup: async () => undefined,
  }),
  config: { 'limits.memory': '128MiB', 'limits.cpu': '1', 'limits.processes': '200' },
  restartOnly: { 'security.privileged': 'true' },
  // The busybox image runs getty on the console; root has no password there.
  consoleLogin: 'root',
  skips: { snapshot: 'container snapshots are taken by the storage pool (btrfs), not by the LXC driver' },
  instanceName: 'conf',
});

describe('lxc driver on this host', () => {
  it('runs unprivileged with the configured address', async () => {
    const record = await makeRecord('net');
    const h = lxc.load(record);
    await h.create();
    await h.start();
    try {
      const r = await sh(h, 'cat /proc/self/uid_map; ip -4 addr show eth0; ip route');
      expect(r.stdout).toMatch(/^\s*0\s+100000\s+65536/);
      expect(r.stdout).toContain(`${record.nic.ipv4}/24`);
      expect(r.stdout).toContain(`default via ${subnet}.1`);
      const ping = await sh(h, `ping -c 1 -W 2 ${subnet}.1`);
      expect(ping.code).toBe(0);
      expect((await h.usage()).txBytes).toBeGreaterThan(0);
    } finally {
      await h.stop({ force: true, timeoutMs: 10_000 });
      await h.delete();
    }
  });

  it('enforces limits.memory: a 40 MiB hog survives, a 100 MiB one is OOM-killed', async () => {
    const h = lxc.load(await makeRecord('mem', { 'limits.memory': '64MiB' }));
    const name = `${prefix}-mem`;
    await h.create();
    await h.start();
    try {
      const limitFile = ctx.facts.cgroupLayout === 'v2' ? 'memory.max' : 'memory.limit_in_bytes';
      expect((await cgroupFile(name, 'memory', limitFile))?.trim()).toBe(String(64 * 1024 ** 2));
      const ooms = async () => {
        const text = await cgroupFile(name, 'memory', ctx.facts.cgroupLayout === 'v2' ? 'memory.events' : 'memory.oom_control');
        return parseFlatKeyed(text ?? '').oom_kill ?? 0;
      };
      // tail -n 1 keeps the current line in memory, and /dev/zero has no newline: anonymous memory the OOM killer can take back.
      const small = await sh(h, 'set -o pipefail; head -c 40m /dev/zero | tail -n 1 | wc -c');
      expect(small.stdout.trim()).toBe(String(40 * 1024 ** 2));
      expect(small.code).toBe(0);
      const before = await ooms();
      const big = await sh(h, 'set -o pipefail; head -c 100m /dev/zero | tail -n 1 | wc -c');
      expect(big.code).not.toBe(0);
      expect(await ooms()).toBeGreaterThan(before);
      expect((await h.state()).state).toBe('running');
      expect((await h.usage()).memoryPeakBytes).toBeGreaterThan(40 * 1024 ** 2);
      // Graceful stop of busybox completes (its shutdown action ends the PID namespace at once).
      await h.stop({ force: false, timeoutMs: 20_000 });
      expect((await h.state()).state).toBe('stopped');
    } finally {
      await h.stop({ force: true, timeoutMs: 10_000 });
      await h.delete();
    }
  });

  it('caps CPU time at limits.cpu.cap and applies limit changes live', async () => {
    const h = lxc.load(await makeRecord('cpu', { 'limits.cpu.cap': '50%' }));
    const name = `${prefix}-cpu`;
    const quota = async () => (ctx.facts.cgroupLayout === 'v2' ? (await cgroupFile(name, 'cpu', 'cpu.max'))?.split(' ')[0] : (await cgroupFile(name, 'cpu', 'cpu.cfs_quota_us'))?.trim());
    await h.create();
    await h.start();
    try {
      expect(await quota()).toBe('50000');
      const u0 = (await h.usage()).cpuTimeNs!;
      const t0 = process.hrtime.bigint();
      const busy = await sh(h, 'timeout 2 sh -c "while :; do :; done"; echo done');
      const elapsed = Number(process.hrtime.bigint() - t0);
      const used = (await h.usage()).cpuTimeNs! - u0;
      expect(busy.stdout.trim()).toBe('done');
      // A measurement of the cap, not of wall time: CPU time over elapsed time stays near 50% of one CPU.
      expect(used / elapsed).toBeLessThan(0.65);
      expect(used / elapsed).toBeGreaterThan(0.05);

      const prev = { 'limits.cpu.cap': '50%' };
      const next = { 'limits.cpu.cap': '25%', 'limits.memory': '96MiB', 'security.privileged': 'true' };
      const res = await h.applyConfig(next, prev);
      expect(res.live).toEqual(['limits.cpu.cap', 'limits.memory']);
      expect(res.pending).toEqual(['security.privileged']);
      expect(await quota()).toBe('25000');
      const limitFile = ctx.facts.cgroupLayout === 'v2' ? 'memory.max' : 'memory.limit_in_bytes';
      expect((await cgroupFile(name, 'memory', limitFile))?.trim()).toBe(String(96 * 1024 ** 2));
      const lifted = await h.applyConfig({ 'security.privileged': 'true' }, next);
      expect(lifted.live).toEqual(['limits.cpu.cap', 'limits.memory']);
      expect(await quota()).toMatch(/^(-1|max)$/);
      const cfg = await host.fs.readText(posix.join(ctx.lxcPath, name, 'config'));
      expect(cfg).not.toContain('lxc.idmap');
      expect(cfg).not.toContain('cfs_quota_us');
    } finally {
      await h.stop({ force: true, timeoutMs: 10_000 });
      await h.delete();
    }
  });

  it('exec honours cwd and env without a shell string, and the console attaches and is logged', async () => {
    const h = lxc.load(await makeRecord('tty'));
    await h.create();
    await h.start();
    try {
      const r = await collect(h.exec({ command: ['sh', '-c', 'pwd; echo "$FOO"; echo "$HOME"'], cwd: '/etc/init.d', env: { FOO: 'a b;$(false)' } }));
      expect(r.stdout).toBe('/etc/init.d\na b;$(false)\n/root\n');
      const bad = await collect(h.exec({ command: ['true'], cwd: '/no/such/dir' }));
      expect(bad.code).toBe(126);
      const tty = h.exec({ command: ['sh', '-c', 'tty; exit 4'], tty: { cols: 80, rows: 24 } });
      const ttyOut = await collect(tty);
      expect(ttyOut.stdout).toMatch(/\/dev\/pts\/\d+/);
      expect(ttyOut.code).toBe(4);

      const con = h.attachConsole({ cols: 80, rows: 24 });
      let seen = '';
      con.stdout!.on('data', (d: Buffer) => { seen += d.toString('utf8'); });
      for (let i = 0; i < 100 && !seen.includes('login:'); i++) {
        con.stdin!.write('\r');
        await new Promise((res) => setTimeout(res, 100));
      }
      con.kill('SIGKILL');
      await con.wait();
      expect(seen).toContain('login:');
      expect(await host.fs.readText(h.consoleLogPath())).toContain('login:');
    } finally {
      await h.stop({ force: true, timeoutMs: 10_000 });
      await h.delete();
    }
  });

  it('reports TIMEOUT when the container ignores its halt signal, and force stop still works', async () => {
    // SIGWINCH has no handler in busybox init, and PID 1 of a namespace ignores unhandled signals.
    const h = lxc.load(await makeRecord('hang', {}, { haltSignal: 'SIGWINCH' }));
    await h.create();
    await h.start();
    try {
      const err = await h.stop({ force: false, timeoutMs: 1000 }).catch((e: unknown) => e);
      expect(isAppError(err, 'TIMEOUT')).toBe(true);
      expect((err as Error).message).toBe(`Failed to stop instance "${prefix}-hang" within 1 s`);
      expect((await h.state()).state).toBe('running');
      await h.stop({ force: true, timeoutMs: 10_000 });
      expect((await h.state()).state).toBe('stopped');
    } finally {
      await h.stop({ force: true, timeoutMs: 10_000 });
      await h.delete();
    }
  });

  it('fails start clearly when init does not exist, leaving no process and no cgroup', async () => {
    const record = await makeRecord('bad', {}, { init: '/sbin/no-such-init' });
    const h = lxc.load(record);
    await h.create();
    try {
      const err = await h.start().catch((e: unknown) => e);
      expect(isAppError(err, 'BACKEND_FAILED')).toBe(true);
      expect((err as Error).message).toMatch(new RegExp(`^Failed to start instance "${record.name}"`));
      expect(`${(err as Error).message}\n${String((err as Error).cause)}`).toContain('/sbin/no-such-init');
      expect((await h.state()).state).toBe('stopped');
      expect(await monitorRunning(record.name)).toBe(false);
      const mounts = await cgroupMounts(host);
      for (const root of [...Object.values(mounts.v1), ...(mounts.v2 ? [mounts.v2] : [])]) {
        expect(await host.fs.stat(posix.join(root, prefix, record.name))).toBeUndefined();
        expect(await host.fs.stat(posix.join(root, `${prefix}.monitor`, record.name))).toBeUndefined();
      }
    } finally {
      await h.stop({ force: true, timeoutMs: 10_000 });
      await h.delete();
    }
  });
});
