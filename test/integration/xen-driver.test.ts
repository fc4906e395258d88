// Integration: the Xen driver over an SshHost to a real Xen 4.17 Dom0 (the test host nested in QEMU): the conformance suite with a PVH busybox domU, then PV, console, pause, live vCPUs, stops; live memory (balloon) and save/restore opt-in.
import { mkdtemp } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { SshHost } from '../../src/host/ssh.js';
import type { HostProcess } from '../../src/host/host.js';
import { buildBusyboxVmImage, VM_READY_MARKER } from '../../src/core/images/busybox-vm.js';
import type { ExecSpec, HostDriver, InstanceHandle, InstanceRecord } from '../../src/drivers/driver.js';
import { xenOnHost } from '../../src/drivers/xen/driver.js';
import { probeXen } from '../../src/drivers/xen/probe.js';
import { Xl } from '../../src/drivers/xen/xl.js';
import { runDriverConformance, type ObservedLimits } from '../conformance/driver-conformance.js';
import { driverEnv } from '../helpers/driver-env.js';
import { startXenHost, type XenHost } from '../helpers/xen-host.js';
import { XEN_BRIDGE, XEN_BRIDGE_ADDRESS, XEN_IMAGES_DIR } from '../xen-host/build.js';

const CACHE = '/var/lib/hangar-test-cache/vm';
const MIB = 1024 ** 2;
// HANGAR_TEST_ID (one digit) keeps side-by-side runs apart.
const TEST_ID = /^[0-9]$/.test(process.env.HANGAR_TEST_ID ?? '') ? process.env.HANGAR_TEST_ID! : 'x';
const prefix = `x${TEST_ID}${randomBytes(2).toString('hex').slice(0, 3)}`;
const local = new LocalHost();
const subnet = XEN_BRIDGE_ADDRESS.split('.').slice(0, 3).join('.');

let xenHost: XenHost | undefined;
let host: SshHost | undefined;
let xl: Xl;
let scheduler: 'credit' | 'credit2' = 'credit2';
let xen: HostDriver;
let base = '';
let imageDir = '';
let imageProps: Record<string, string> = {};
let nicIndex = 0;
const remoteBase = posix.join(XEN_IMAGES_DIR, prefix);
const records: InstanceRecord[] = [];

async function setupEnv(): Promise<void> {
  base = await mkdtemp('/tmp/hangar-xen-');
  const t0 = Date.now();
  imageDir = posix.join(base, 'image');
  imageProps = (await buildBusyboxVmImage(local, imageDir, { cacheDir: CACHE })).props;
  console.log(`busybox VM image built in ${Date.now() - t0} ms`);
  xenHost = await startXenHost({ onProgress: (m) => console.log(`xen host: ${m}`) });
  console.log(`xen host on 127.0.0.1:${xenHost.sshPort} (${xenHost.reused ? 'reused' : `booted in ${xenHost.bootMs} ms`})`);
  host = await SshHost.connect({ name: 'xen-test', host: '127.0.0.1', port: xenHost.sshPort, identityFile: xenHost.identityFile, hostKeyFingerprint: xenHost.hostKeyFingerprint });
  xl = new Xl(host);
  const info = await xl.info();
  if (info.scheduler === 'credit') scheduler = 'credit';
  const env = driverEnv(host, {
    prefix, dataDir: remoteBase, cacheDir: posix.join(remoteBase, 'cache'), runDir: posix.join(remoteBase, 'run'),
    facts: { cgroupLayout: 'v2', cpus: info.nrCpus ?? 1, memoryBytes: (info.totalMemoryMiB ?? 1024) * MIB, idmap: { uidStart: 100000, gidStart: 100000, count: 65536 }, swapAccounting: false },
  });
  // The image is built on this machine; the driver copies it into the Dom0's cache through the SSH host.
  xen = xenOnHost(env, await probeXen(host, xl), xl, { imageSource: { host: local, scratchDir: posix.join(base, 'scratch') } });
}

async function teardownEnv(): Promise<void> {
  try {
    // A connection that dropped during the run: why dropbear ended it is in its log on the Dom0 (the client sees only the close).
    if (host && host.stats.connects > 1) {
      const log = await host.exec(['sh', '-c', 'grep -i exit /var/log/dropbear.log | grep -v "Disconnect received" | tail -n 20'], { allowFailure: true }).catch(() => undefined);
      console.log(`the SSH connection to the Dom0 was made ${host.stats.connects} times; dropbear's exits: ${log?.stdout ?? '(unreadable)'}; serial tail: ${xenHost?.serialTail(15) ?? ''}`);
    }
    if (host) {
      // Every domain this test made, by its prefixed name, then its files on the Dom0's tmpfs.
      for (const d of await xl.list().catch(() => [])) if (d.name.startsWith(`${prefix}-`)) await xl.destroy(d.name).catch(() => undefined);
      for (const r of records) for (const f of [`/var/log/xen/console/guest-${r.name}.log`, `/var/log/xen/xl-${r.name}.log`]) await host.fs.rm(f, { force: true }).catch(() => undefined);
      await host.fs.rm(remoteBase, { recursive: true, force: true }).catch(() => undefined);
    }
  } finally {
    host?.close();
    if (base) await local.fs.rm(base, { recursive: true, force: true });
  }
}

/** A busybox domU record: its directories on the Dom0's tmpfs (its volume made, as the pool would), a vif on the Dom0's bridge. */
async function makeRecord(short: string, config: Record<string, string> = {}): Promise<InstanceRecord> {
  const name = `${prefix}-${short}`;
  const n = ++nicIndex;
  const r: InstanceRecord = {
    name, host: 'xen-test', type: 'vm', driver: 'xen', image: 'busybox-vm', config,
    rootPath: posix.join(remoteBase, 'roots', name),
    instanceDir: posix.join(remoteBase, 'instances', name),
    nic: { bridge: XEN_BRIDGE, hostIfName: `${prefix}v${n}`, mac: `02:00:00:02:00:${n.toString(16).padStart(2, '0')}`, ipv4: `${subnet}.${10 + n}`, prefixLength: 24, gateway: `${subnet}.1` },
    imageProps: { ...imageProps }, imagePath: imageDir,
  };
  records.push(r);
  await host!.fs.mkdir(r.rootPath, { recursive: true });
  return r;
}

/** What a process printed and how it ended. */
interface Ran { code: number | null; stdout: string; stderr: string }

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;

/**
 * Runs a command in the guest through its text console (the test's observation channel: the driver's exec is
 * UNSUPPORTED without a guest agent). It types one line into the console's root shell; output, errors and the exit
 * code come back base64-encoded on a line framed by markers the typed line itself does not contain (\100 is "@").
 */
async function consoleRun(h: InstanceHandle, argv: readonly string[], input = '', timeoutMs = 120_000): Promise<Ran> {
  const con = h.attachConsole({ cols: 250, rows: 50 });
  let seen = '';
  con.stdout!.on('data', (d: Buffer) => { seen += d.toString('latin1'); });
  const id = randomBytes(4).toString('hex');
  const until = Date.now() + timeoutMs;
  try {
    while (!/[#$]\s*$/.test(seen.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''))) {
      if (Date.now() > until) throw new Error(`no shell prompt on the console; got ${JSON.stringify(seen.slice(-300))}`);
      con.stdin!.write('\r');
      await sleep(300);
    }
    const f = (k: string) => `/tmp/hx-${k}-${id}`;
    con.stdin!.write(`: > ${f('in')}\r`);
    const b64 = Buffer.from(input).toString('base64');
    // A terminal line holds at most 4095 characters: stdin goes in chunks.
    for (let i = 0; i < b64.length; i += 1000) con.stdin!.write(`printf %s ${b64.slice(i, i + 1000)} >> ${f('b64')}\r`);
    if (b64) con.stdin!.write(`base64 -d ${f('b64')} > ${f('in')}\r`);
    const cmd = argv.map(q).join(' ');
    con.stdin!.write(`(${cmd}) <${f('in')} >${f('out')} 2>${f('err')}; printf '\\100HX\\100 %s %s %s \\100HX\\100\\n' $? "$(base64 ${f('out')} | tr -d '\\n')" "$(base64 ${f('err')} | tr -d '\\n')"; rm -f ${f('in')} ${f('b64')} ${f('out')} ${f('err')}\r`);
    const frame = /@HX@ (\d+) ([A-Za-z0-9+/=]*) ([A-Za-z0-9+/=]*) @HX@/;
    for (;;) {
      const m = frame.exec(seen);
      if (m) return { code: Number(m[1]), stdout: Buffer.from(m[2]!, 'base64').toString('utf8'), stderr: Buffer.from(m[3]!, 'base64').toString('utf8') };
      if (Date.now() > until) throw new Error(`the console gave no answer to ${cmd}; got ${JSON.stringify(seen.slice(-500))}`);
      await sleep(200);
    }
  } finally {
    con.kill('SIGKILL');
    await con.wait();
  }
}

/** A HostProcess whose result consoleRun makes once stdin has ended (what the conformance suite's exec calls get). */
function consoleExec(h: InstanceHandle, spec: ExecSpec): HostProcess {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const chunks: Buffer[] = [];
  stdin.on('data', (d: Buffer) => chunks.push(d));
  const done = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    stdin.on('end', () => {
      consoleRun(h, spec.command, Buffer.concat(chunks).toString('utf8')).then(
        (r) => { stdout.end(r.stdout); stderr.end(r.stderr); resolve({ code: r.code, signal: null }); },
        (e: unknown) => { stdout.end(); stderr.end(`console exec: ${String(e)}\n`); resolve({ code: 126, signal: null }); },
      );
    });
  });
  return { pid: Promise.resolve(-1), stdin, stdout, stderr, wait: () => done, kill: () => stdin.end() };
}

/** The handle with exec routed through the console; everything else is the driver's own. */
function observed(h: InstanceHandle): InstanceHandle {
  return new Proxy(h, {
    get: (t, p) => {
      if (p === 'exec') return (spec: ExecSpec) => consoleExec(t, spec);
      return Reflect.get(t, p, t) as unknown;
    },
  });
}

/** The guest's vCPU count once it has onlined a hot-added one (Xen makes it present; udev onlines it on a distribution, busybox has none), bounded. */
async function onlineCpus(h: InstanceHandle, want = '2', timeoutMs = 60_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  let nproc = '';
  while (Date.now() < until && nproc !== want) {
    await consoleRun(h, ['sh', '-c', 'f=/sys/devices/system/cpu/cpu1/online; [ ! -e $f ] || [ "$(cat $f)" = 1 ] || echo 1 > $f']);
    nproc = (await consoleRun(h, ['nproc'])).stdout.trim();
  }
  return nproc;
}

/** Waits for the guest's ready marker in its console log (xenconsoled's), bounded. */
async function waitReady(h: InstanceHandle, timeoutMs = 180_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const log = (await host!.fs.readTextIfExists(h.consoleLogPath())) ?? '';
    if (log.includes(VM_READY_MARKER)) return;
    if (Date.now() > until) throw new Error(`no ${VM_READY_MARKER} on the console of the domain; state ${JSON.stringify(await h.state())}; log tail ${JSON.stringify(log.slice(-800))}`);
    await sleep(500);
  }
}

/** The limits the domain runs under, from xl (maxmem, the scheduler's cap) and the guest's kernel (OOM kills). */
async function enforcedLimits(h: InstanceHandle, record: InstanceRecord): Promise<ObservedLimits> {
  const d = await xl.listLong(record.name);
  const sched = await xl.sched(scheduler, record.name);
  const vmstat = await consoleRun(h, ['cat', '/proc/vmstat']);
  const oom = /^oom_kill (\d+)$/m.exec(vmstat.stdout)?.[1];
  return {
    memoryBytes: d?.maxMemKiB != null ? d.maxMemKiB * 1024 : null,
    cpuCapPct: sched && sched.cap > 0 ? sched.cap : null,
    ...(oom !== undefined ? { oomKills: Number(oom) } : {}),
  };
}

/** What the driver keeps on the Dom0 for a domain: its directory, its disks in the volume, the domain, its vif. */
async function xenArtifacts(record: InstanceRecord): Promise<string[]> {
  const out: string[] = [];
  if (await host!.fs.stat(record.instanceDir)) out.push(record.instanceDir);
  for (const f of await host!.fs.readdir(record.rootPath).catch(() => [] as string[])) out.push(posix.join(record.rootPath, f));
  if (await xl.find(record.name)) out.push(`domain ${record.name}`);
  if (await host!.fs.stat(`/sys/class/net/${record.nic.hostIfName}`)) out.push(`vif ${record.nic.hostIfName}`);
  if (await host!.fs.stat(`/var/log/xen/console/guest-${record.name}.log`)) out.push(`console log of ${record.name}`);
  return out;
}

beforeAll(setupEnv, 1_800_000);
afterAll(teardownEnv, 120_000);

runDriverConformance({
  driverName: 'xen',
  setup: async () => ({
    hostDriver: xen,
    host: host!,
    async makeHandle(short, config) {
      const record = await makeRecord(short, config);
      const problems = xen.validate(record.config);
      if (problems.length) throw new Error(`invalid test config: ${problems.join('; ')}`);
      return { handle: observed(xen.load(record)), record };
    },
    artifacts: xenArtifacts,
    observeLimits: enforcedLimits,
    cleanup: async () => undefined,
  }),
  // Small: under TCG every page the limits step's hog touches is slow (256 MiB took 144 s).
  config: { 'limits.memory': '128MiB', 'limits.cpu': '1' },
  // A NIC rate is the vif's: it changes when the domain is created again.
  restartOnly: { 'limits.network.egress': '10MiB' },
  skips: {
    exec: 'the xen driver answers exec with UNSUPPORTED: no guest-agent channel (the busybox image starts qemu-ga only on virtio-serial, and this Dom0 has no QEMU to back a Xen channel); the other steps look into the guest through its text console',
    snapshot: 'the xen driver has no backend snapshots (features.snapshots is false; RAM is saved by stop --stateful, tested below)',
  },
  instanceName: 'conf',
  stopTimeoutMs: 60_000,
  stepTimeoutMs: 300_000,
});

describe('xen driver on a real Dom0', () => {
  it('boots the busybox image as a PV domain too, with its console output logged', async () => {
    const record = await makeRecord('pv', { 'limits.memory': '192MiB', 'boot.virt': 'pv' });
    const h = xen.load(record);
    try {
      await h.create();
      await h.start();
      await waitReady(h);
      expect((await consoleRun(h, ['cat', '/sys/hypervisor/guest_type'])).stdout.trim()).toBe('PV');
      expect((await consoleRun(h, ['hostname'])).stdout.trim()).toBe(record.name);
      expect(await h.details!()).toMatchObject({ type: 'paravirtualized (PV)', memory: '192 MiB (balloon target), up to 192 MiB (maxmem)' });
    } finally {
      await h.stop({ force: true, timeoutMs: 10_000 }).catch(() => undefined);
      await h.delete();
    }
    expect(await xenArtifacts(record)).toEqual([]);
  }, 600_000);

  it('runs the default domain as PVH, pauses it and changes its vCPUs live', async () => {
    // The saved RAM goes to the Dom0's tmpfs, beside the image cache (126 MiB) and the disks (64 MiB each).
    const record = await makeRecord('live', { 'limits.memory': '128MiB', 'limits.cpu': '1' });
    const h = xen.load(record);
    try {
      await h.create();
      await h.start();
      await waitReady(h);
      expect((await consoleRun(h, ['cat', '/sys/hypervisor/guest_type'])).stdout.trim()).toBe('PVH');

      await h.freeze();
      expect((await h.state()).state).toBe('frozen');
      await h.unfreeze();
      expect((await consoleRun(h, ['true'])).code).toBe(0);

      // One more vCPU (maxvcpus is the host's CPU count), live; the guest sees it.
      const next = { ...record.config, 'limits.cpu': '2' };
      expect(await h.applyConfig(next, record.config)).toEqual({ live: ['limits.cpu'], pending: [] });
      expect(await onlineCpus(h)).toBe('2');

      // A graceful stop powers the guest off through its PV control node (the guest's own power-down line says it was not destroyed).
      await h.stop({ force: false, timeoutMs: 60_000 });
      expect((await h.state()).state).toBe('stopped');
      expect((await host!.fs.readTextIfExists(h.consoleLogPath())) ?? '').toContain('HANGAR-POWERDOWN');
    } finally {
      await h.stop({ force: true, timeoutMs: 10_000 }).catch(() => undefined);
      await h.delete();
    }
    expect(await xenArtifacts(record)).toEqual([]);
  }, 900_000);

  // Opt-in (HANGAR_XEN_BALLOON_TEST=1): under this nested TCG Xen a balloon going down broke Dom0 in 2 of 4 CI runs
  // (its SSH server dropped the connection, and the next handshake failed "signature verification failed": Dom0's
  // memory no longer what it was), the same kind of corruption as the restore below. The live memory change is
  // covered in CI by src/drivers/xen/driver.test.ts against scripted xl (mem-set, mem-max); here it passed in most runs.
  it.skipIf(process.env.HANGAR_XEN_BALLOON_TEST !== '1')('lowers a running PVH domain\'s memory live (HANGAR_XEN_BALLOON_TEST=1: a balloon under nested TCG Xen corrupted Dom0 in 2 of 4 CI runs)', async () => {
    const record = await makeRecord('balloon', { 'limits.memory': '128MiB', 'limits.cpu': '1' });
    const h = xen.load(record);
    try {
      await h.create();
      await h.start();
      await waitReady(h);
      const next = { ...record.config, 'limits.memory': '96MiB' };
      expect(await h.applyConfig(next, record.config)).toEqual({ live: ['limits.memory'], pending: [] });
      const until = Date.now() + 60_000;
      let totalKiB = Infinity;
      while (Date.now() < until && totalKiB > 96 * 1024) {
        totalKiB = Number(/MemTotal:\s+(\d+)/.exec((await consoleRun(h, ['cat', '/proc/meminfo'])).stdout)?.[1] ?? Infinity);
      }
      expect(totalKiB).toBeLessThanOrEqual(96 * 1024);
      expect((await xl.listLong(record.name))?.maxMemKiB).toBe(96 * 1024);
    } finally {
      await h.stop({ force: true, timeoutMs: 10_000 }).catch(() => undefined);
      await h.delete();
    }
    expect(await xenArtifacts(record)).toEqual([]);
  }, 900_000);

  // Opt-in (HANGAR_XEN_SAVE_TEST=1): under this nested TCG Xen a restore breaks Dom0 itself in about half the runs
  // (3 of 6 CI runs: Dom0's xl.conf overwritten, or the restored guest dead at once), and every later Xen test on the
  // shared Dom0 with it. stop --stateful is covered in CI by src/drivers/xen/driver.test.ts against scripted xl; on the
  // real Dom0 it passed in 4 of 4 runs by hand during the stop that made it opt-in.
  it.skipIf(process.env.HANGAR_XEN_SAVE_TEST !== '1')('saves a PVH domain (stop --stateful) and restores it with its RAM (HANGAR_XEN_SAVE_TEST=1: a restore under nested TCG Xen corrupts Dom0 in ~half the runs)', async () => {
    const record = await makeRecord('save', { 'limits.memory': '128MiB', 'limits.cpu': '1' });
    const h = xen.load(record);
    try {
      await h.create();
      await h.start();
      await waitReady(h);
      // /run is a tmpfs: the token survives only if the RAM does. Saved before the balloon goes down: twice in CI runs a
      // restore of a ballooned PVH domain under the nested (TCG) Xen overwrote a page of Dom0's own memory (its xl.conf).
      // A restored guest also died at once in 1 of ~6 runs under nested TCG (the domain found shutting down): then the
      // cycle is tried once more from a fresh boot, with what the first try saw printed; a second failure fails the test.
      for (let attempt = 1; ; attempt++) {
        expect((await consoleRun(h, ['sh', '-c', 'echo saved-token > /run/token'])).code).toBe(0);
        await h.stop({ force: false, timeoutMs: 60_000, stateful: true });
        expect((await h.state()).state).toBe('stopped');
        expect(await host!.fs.stat(posix.join(record.instanceDir, 'state.save'))).toBeDefined();
        await h.start();
        const restored = (await h.state()).state;
        if (restored !== 'running' && attempt === 1) {
          console.log(`xen save/restore, try 1: the restored domain is ${restored}; console tail:\n${((await host!.fs.readTextIfExists(h.consoleLogPath())) ?? '').split('\n').slice(-15).join('\n')}\nDom0 serial tail:\n${xenHost?.serialTail(15) ?? ''}`);
          await h.stop({ force: true, timeoutMs: 10_000 });
          // A fresh boot, not a second restore of what the first one left.
          await host!.fs.rm(posix.join(record.instanceDir, 'state.save'), { force: true });
          await h.start();
          await waitReady(h);
          continue;
        }
        expect(restored).toBe('running');
        expect((await consoleRun(h, ['cat', '/run/token'])).stdout).toBe('saved-token\n');
        expect(await host!.fs.stat(posix.join(record.instanceDir, 'state.save'))).toBeUndefined();
        break;
      }

    } finally {
      await h.stop({ force: true, timeoutMs: 10_000 }).catch(() => undefined);
      await h.delete();
    }
    expect(await xenArtifacts(record)).toEqual([]);
  }, 900_000);
});
