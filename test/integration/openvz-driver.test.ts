// Integration: the OpenVZ driver on this mainline kernel: busybox CTs with an ext4 private area on a loop device and venet routing from a bridge the test owns.
import { posix } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { buildBusyboxRootfs } from '../../src/core/images/busybox.js';
import type { HostDriver, InstanceHandle, InstanceRecord } from '../../src/drivers/driver.js';
import { readMounts } from '../../src/host/mounts.js';
import { driverEnv } from '../helpers/driver-env.js';
import { cgroupMounts } from '../../src/drivers/lxc/driver.js';
import { openvzOnHost } from '../../src/drivers/openvz/driver.js';
import { lxcVersion } from '../../src/drivers/lxc/lxc-tools.js';
import { PRIVATE_IMAGE } from '../../src/drivers/openvz/private-area.js';
import { isAppError } from '../../src/shared/errors.js';
import { collect, runDriverConformance } from '../conformance/driver-conformance.js';
import { lxcEnforcedLimits, lxcHostEnv, setupLxcHostEnv, teardownLxcHostEnv } from '../helpers/lxc-host-env.js';

const host = new LocalHost();
// The LXC environment (subids, bridge, cgroup facts, temp base) the openvz driver runs on, shared with the LXC tests.
const e = lxcHostEnv(host, `v${randomBytes(3).toString('hex').slice(0, 4)}`);
let ov: HostDriver;
let template = '';
const created: string[] = [];
let base = '';
let subnet = '';
let bridge = '';
let prefix = '';

beforeAll(async () => {
  await setupLxcHostEnv(e);
  ({ base, subnet, bridge, prefix } = e);
  // Built from its parts, not opened: open() would start an lxcfs for the daemon's data directory that outlives the test.
  const env = driverEnv(host, { facts: e.facts, prefix, dataDir: base, runDir: posix.join(base, 'run') });
  const lxcPath = posix.join(base, 'openvz', 'lxc');
  await host.fs.mkdir(lxcPath, { recursive: true, mode: 0o711 });
  const v = await lxcVersion(host);
  ov = openvzOnHost(env, { env, lxcPath, lxcfsDir: null }, { available: v.version !== null, version: v.version, reason: v.reason });
  template = posix.join(base, 'template');
  await buildBusyboxRootfs(host, template);
}, 120_000);

afterAll(async () => {
  try {
    for (const name of created) await host.exec(['lxc-stop', '-P', posix.join(base, 'openvz', 'lxc'), '-n', name, '-k'], { allowFailure: true });
    for (const m of await readMounts(host)) if (base && m.mountPoint.startsWith(`${base}/`)) await host.exec(['umount', '-l', m.mountPoint], { allowFailure: true });
  } finally {
    await teardownLxcHostEnv(e);
  }
});

/** A CT record: an empty instance volume (the driver makes the private area from the template) and a venet address. */
async function makeRecord(short: string, config: Record<string, string> = {}): Promise<InstanceRecord> {
  const name = `${prefix}-${short}`;
  const rootPath = posix.join(base, 'volumes', name);
  await host.fs.mkdir(rootPath, { recursive: true });
  const n = ++e.nics;
  created.push(name);
  return {
    name, host: 'local', type: 'container', driver: 'openvz', image: 'busybox', config, rootPath,
    instanceDir: posix.join(base, 'instances', name), imagePath: template,
    nic: { bridge, hostIfName: `${prefix}v${n}`, mac: `02:00:00:01:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`, ipv4: `${subnet}.${10 + n}`, prefixLength: 24, gateway: `${subnet}.1` },
    imageProps: { init: '/sbin/init', haltSignal: 'SIGUSR2' },
  };
}

/** What the driver leaves on the host for a CT: LXC's directory and cgroups, the private area's image and mount, host routes. */
async function artifacts(record: InstanceRecord): Promise<string[]> {
  const out: string[] = [];
  for (const p of [posix.join(base, 'openvz', 'lxc', record.name), posix.join(record.rootPath, PRIVATE_IMAGE), posix.join(base, 'openvz', 'root', record.name)]) {
    if (await host.fs.stat(p)) out.push(p);
  }
  const mounts = await cgroupMounts(host);
  for (const root of new Set([...Object.values(mounts.v1), ...(mounts.v2 ? [mounts.v2] : [])])) {
    for (const cg of [posix.join(root, prefix, record.name), posix.join(root, `${prefix}.monitor`, record.name)]) if (await host.fs.stat(cg)) out.push(cg);
  }
  const routes = (await host.exec(['ip', '-4', 'route', 'show', 'dev', record.nic.hostIfName], { allowFailure: true })).stdout.trim();
  if (routes) out.push(`routes: ${routes}`);
  return out;
}

const sh = (h: InstanceHandle, script: string) => collect(h.exec({ command: ['sh', '-c', script] }));

runDriverConformance({
  driverName: 'openvz',
  setup: async () => ({
    hostDriver: ov,
    host,
    async makeHandle(short, config) {
      const record = await makeRecord(short, config);
      return { handle: ov.load(record), record };
    },
    artifacts,
    observeLimits: (_h, record) => lxcEnforcedLimits(e, record.name),
    cleanup: async () => undefined,
  }),
  config: { 'limits.memory': '128MiB', 'limits.cpu': '1', 'limits.processes': '200', 'limits.disk': '64MiB' },
  restartOnly: { 'security.privileged': 'true' },
  consoleLogin: 'root',
  skips: { snapshot: 'container snapshots are taken by the storage pool, not by the openvz driver' },
  instanceName: 'conf',
});

describe('openvz driver on this mainline kernel', () => {
  it('probes as available and makes each CT its own ext4 private area, mounted only while it runs', async () => {
    expect(ov.probe).toMatchObject({ available: true });
    const record = await makeRecord('disk', { 'limits.disk': '48MiB', 'limits.disk.inodes': '2000' });
    const h = ov.load(record);
    await h.initRoot!();
    await h.create();
    const root = posix.join(base, 'openvz', 'root', record.name);
    expect((await readMounts(host)).some((m) => m.mountPoint === root)).toBe(false);
    expect((await host.fs.stat(posix.join(record.rootPath, PRIVATE_IMAGE)))?.size).toBe(48 * 1024 ** 2);
    await h.start();
    try {
      const m = (await readMounts(host)).find((x) => x.mountPoint === root);
      expect(m?.fsType).toBe('ext4');
      expect(m?.source).toMatch(/^\/dev\/loop\d+$/);
      expect(m?.options.split(',')).toContain('nodev');
      // VE_ROOT's parent is root-only: a set-uid file of the template is no way up for a host user.
      expect(((await host.fs.stat(posix.join(base, 'openvz', 'root')))!.mode & 0o777)).toBe(0o700);
      expect((await sh(h, 'cat /etc/hostname')).stdout.trim()).toBe(record.name);

      // The size is a hard limit for any uid inside: nobody fills it and gets ENOSPC.
      const fill = await sh(h, 'mkdir -m 1777 /fill && su -s /bin/sh nobody -c "id -u; dd if=/dev/zero of=/fill/big bs=1M count=80 2>&1"; echo rc=$?; ls -ln /fill');
      expect(fill.stdout).toMatch(/^65534\n/);
      expect(fill.stdout).toMatch(/No space left on device/);
      expect(fill.stdout).toMatch(/ 65534 +65534 .* big\n/);
      expect(fill.stdout).not.toContain('rc=0');
      // Inodes too: 2000 in all, so 3000 files do not fit.
      const files = await sh(h, 'rm -f /fill/big; cd /fill && i=0; while [ $i -lt 3000 ]; do touch f$i 2>/dev/null || break; i=$((i+1)); done; echo made=$i');
      const made = Number(/made=(\d+)/.exec(files.stdout)?.[1]);
      expect(made).toBeGreaterThan(1000);
      expect(made).toBeLessThan(2000);
      await sh(h, 'rm -rf /fill');

      // Grown live where the kernel lets root resize a mounted ext4 (CAP_SYS_RESOURCE); this sandbox's root lacks it: then at the next start.
      const canResizeOnline = (BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec((await host.fs.readText('/proc/self/status')))![1]}`) >> 24n) & 1n;
      const before = Number((await sh(h, "df -k / | tail -1 | awk '{print $2}'")).stdout.trim());
      const grown = await h.applyConfig({ ...record.config, 'limits.disk': '96MiB' }, record.config);
      expect(grown).toEqual(canResizeOnline ? { live: ['limits.disk'], pending: [] } : { live: [], pending: ['limits.disk'] });
      const after = Number((await sh(h, "df -k / | tail -1 | awk '{print $2}'")).stdout.trim());
      if (canResizeOnline) expect(after).toBeGreaterThan(before + 40 * 1024);
      else expect(after).toBe(before);
      expect((await host.fs.stat(posix.join(record.rootPath, PRIVATE_IMAGE)))?.size).toBe(canResizeOnline ? 96 * 1024 ** 2 : 48 * 1024 ** 2);
      expect((await h.usage()).diskUsedBytes).toBeGreaterThan(0);
      // A shrink of a mounted area waits for the next start.
      expect(await h.applyConfig({ ...record.config, 'limits.disk': '40MiB' }, { ...record.config, 'limits.disk': '96MiB' })).toEqual({ live: [], pending: ['limits.disk'] });
      expect((await sh(h, 'dd if=/dev/zero of=/keep bs=1M count=8 2>&1 && sync')).code).toBe(0);
      const inodes = await h.applyConfig({ ...record.config, 'limits.disk.inodes': '9000' }, record.config).then(() => 'applied', (e: unknown) => (isAppError(e) ? e.code : String(e)));
      expect(inodes).toBe('UNSUPPORTED');
    } finally {
      await h.stop({ force: true, timeoutMs: 10_000 });
    }
    expect((await readMounts(host)).some((m) => m.mountPoint === root)).toBe(false);
    // A pending size happens at the next start, offline: a grow, then a shrink whose data (8 MiB kept) fits; one that does not fit is refused.
    const grownRecord = { ...record, config: { ...record.config, 'limits.disk': '96MiB' } };
    const g = ov.load(grownRecord);
    await g.start();
    try {
      expect((await host.fs.stat(posix.join(record.rootPath, PRIVATE_IMAGE)))?.size).toBe(96 * 1024 ** 2);
      expect(Number((await sh(g, "df -k / | tail -1 | awk '{print $2}'")).stdout.trim())).toBeGreaterThan(80 * 1024);
    } finally {
      await g.stop({ force: true, timeoutMs: 10_000 });
    }
    const tight = await g.applyConfig({ ...record.config, 'limits.disk': '16MiB' }, grownRecord.config).then(() => 'applied', (e: unknown) => (isAppError(e) ? e.code : String(e)));
    expect(tight).toBe('INVALID_SIZE');
    expect((await host.fs.stat(posix.join(record.rootPath, PRIVATE_IMAGE)))?.size).toBe(96 * 1024 ** 2);
    const shrunk = ov.load({ ...record, config: { ...record.config, 'limits.disk': '40MiB' } });
    await shrunk.start();
    try {
      expect((await host.fs.stat(posix.join(record.rootPath, PRIVATE_IMAGE)))?.size).toBe(40 * 1024 ** 2);
      expect((await sh(shrunk, 'ls -l /keep')).stdout).toContain('8388608');
    } finally {
      await shrunk.stop({ force: true, timeoutMs: 10_000 });
      await shrunk.delete();
    }
    expect(await artifacts(record)).toEqual([]);
  });

  it('routes venet addresses: /32s from the host, several per CT, added and removed live, CT to host and CT to CT', async () => {
    const a = await makeRecord('neta');
    const extra = `${subnet}.200`;
    const b = await makeRecord('netb', { 'openvz.ipadd': extra, 'openvz.hostname': 'b.example.org', 'openvz.nameserver': '192.0.2.53', 'openvz.searchdomain': 'example.org' });
    const ha = ov.load(a);
    const hb = ov.load(b);
    for (const h of [ha, hb]) { await h.initRoot!(); await h.create(); await h.start(); }
    try {
      const ipa = await sh(ha, 'ip -4 -o addr show venet0; ip route');
      expect(ipa.stdout).toContain(`inet ${a.nic.ipv4}/32`);
      expect(ipa.stdout).toMatch(new RegExp(`default via ${subnet}\\.1 dev venet0`));
      expect(ipa.stdout).not.toContain('eth0');
      const ipb = await sh(hb, 'ip -4 -o addr show venet0; hostname; cat /etc/resolv.conf');
      expect(ipb.stdout).toContain(`inet ${b.nic.ipv4}/32`);
      expect(ipb.stdout).toContain(`inet ${extra}/32`);
      expect(ipb.stdout).toContain('b.example.org');
      expect(ipb.stdout).toContain('nameserver 192.0.2.53');
      expect(ipb.stdout).toContain('search example.org');
      // The host routes each address to the CT's own interface: no bridge port.
      expect((await host.exec(['ip', '-4', 'route', 'get', extra])).stdout).toContain(`dev ${b.nic.hostIfName}`);
      expect((await host.exec(['bridge', 'link', 'show'])).stdout).not.toContain(b.nic.hostIfName);
      expect((await sh(ha, `ping -c 1 -W 2 ${subnet}.1`)).code).toBe(0);
      expect((await sh(ha, `ping -c 1 -W 2 ${extra}`)).code).toBe(0);
      expect((await host.exec(['ping', '-c', '1', '-W', '2', b.nic.ipv4], { allowFailure: true })).code).toBe(0);

      // A third address, live; then the second one goes, live.
      const third = `${subnet}.201`;
      const cfg1 = { ...b.config, 'openvz.ipadd': `${extra} ${third}` };
      expect((await hb.applyConfig(cfg1, b.config)).live).toContain('openvz.ipadd');
      expect((await sh(ha, `ping -c 1 -W 2 ${third}`)).code).toBe(0);
      const cfg2 = { ...b.config, 'openvz.ipadd': third };
      await hb.applyConfig(cfg2, cfg1);
      expect((await sh(hb, 'ip -4 -o addr show venet0')).stdout).not.toContain(`${extra}/32`);
      expect((await host.exec(['ip', '-4', 'route', 'show', `${extra}/32`])).stdout.trim()).toBe('');
      expect((await sh(ha, `ping -c 1 -W 1 ${extra}`)).code).not.toBe(0);
      expect((await sh(ha, `ping -c 1 -W 2 ${third}`)).code).toBe(0);

      // The CT's root points its resolv.conf at a host path: neither a live resolver change nor the next start writes there.
      const victim = posix.join(base, 'victim');
      await host.fs.mkdir(victim, { recursive: true });
      expect((await sh(hb, `rm -f /etc/resolv.conf && ln -s ${victim}/resolv.conf /etc/resolv.conf`)).code).toBe(0);
      const cfg3 = { ...cfg2, 'openvz.nameserver': '192.0.2.54' };
      await hb.applyConfig(cfg3, cfg2);
      expect(await host.fs.readdir(victim)).toEqual([]);
      await hb.stop({ force: true, timeoutMs: 10_000 });
      await ov.load({ ...b, config: cfg3 }).start();
      expect(await host.fs.readdir(victim)).toEqual([]);
      expect((await sh(hb, 'cat /etc/resolv.conf')).stdout).toContain('nameserver 192.0.2.54');
    } finally {
      for (const h of [ha, hb]) { await h.stop({ force: true, timeoutMs: 10_000 }); await h.delete(); }
    }
    expect(await artifacts(a)).toEqual([]);
    expect(await artifacts(b)).toEqual([]);
  });

  it('--netif_add: a veth on the bridge carries the CT\'s own address like an LXC NIC, venet0 the others; the change waits for a restart', async () => {
    const c = await makeRecord('netc', { 'openvz.netif': 'eth0', 'openvz.ipadd': `${subnet}.202` });
    const d = await makeRecord('netd');
    const hc = ov.load(c);
    const hd = ov.load(d);
    for (const h of [hc, hd]) { await h.initRoot!(); await h.create(); await h.start(); }
    const venetHost = `${c.nic.hostIfName}v`;
    try {
      const inside = await sh(hc, 'ip -4 -o addr show; ip route; cat /sys/class/net/eth0/address');
      expect(inside.stdout).toMatch(new RegExp(`eth0\\s+inet ${c.nic.ipv4.replace(/\./g, '\\.')}/24`));
      expect(inside.stdout).toMatch(new RegExp(`venet0\\s+inet ${subnet}\\.202/32`));
      expect(inside.stdout).not.toMatch(new RegExp(`venet0\\s+inet ${c.nic.ipv4.replace(/\./g, '\\.')}/`));
      expect(inside.stdout).toMatch(new RegExp(`default via ${subnet}\\.1 dev eth0`));
      expect(inside.stdout).toContain(c.nic.mac);
      // The veth is a bridge port (LXC's way); venet's host end is not, and the extra address is routed to it.
      expect((await host.exec(['bridge', 'link', 'show'])).stdout).toContain(`${c.nic.hostIfName}`);
      expect((await host.exec(['bridge', 'link', 'show'])).stdout).not.toContain(`${venetHost}:`);
      expect((await host.exec(['ip', '-4', 'route', 'get', `${subnet}.202`])).stdout).toContain(`dev ${venetHost}`);
      for (const a of [c.nic.ipv4, `${subnet}.202`]) expect((await host.exec(['ping', '-c', '1', '-W', '2', a], { allowFailure: true })).code, a).toBe(0);
      // A venet-only CT reaches both of its addresses.
      for (const a of [c.nic.ipv4, `${subnet}.202`]) expect((await sh(hd, `ping -c 1 -W 2 ${a}`)).code, a).toBe(0);

      // Its CTID.conf says so in OpenVZ's words; a line of the user's survives the next change.
      const confFile = posix.join(base, 'openvz', 'conf', `${c.name}.conf`);
      const conf = await host.fs.readText(confFile);
      expect(conf).toContain(`IP_ADDRESS="${subnet}.202"`);
      expect(conf).toContain(`NETIF="ifname=eth0,mac=${c.nic.mac},host_ifname=${c.nic.hostIfName},bridge=${bridge}"`);
      expect(conf).toContain(`VE_ROOT="${posix.join(base, 'openvz', 'root', c.name)}"`);
      await host.fs.appendFile(confFile, '# mine\nX_NOTE="kept"\n');

      // One more venet address, live, on venet's host end.
      const cfg1 = { ...c.config, 'openvz.ipadd': `${subnet}.202 ${subnet}.203` };
      expect((await hc.applyConfig(cfg1, c.config)).live).toContain('openvz.ipadd');
      const conf1 = await host.fs.readText(confFile);
      expect(conf1).toContain(`IP_ADDRESS="${subnet}.202 ${subnet}.203"`);
      expect(conf1).toMatch(/# mine\nX_NOTE="kept"\n/);
      expect((await host.exec(['ip', '-4', 'route', 'get', `${subnet}.203`])).stdout).toContain(`dev ${venetHost}`);
      expect((await sh(hc, 'ip -4 -o addr show venet0')).stdout).toContain(`${subnet}.203/32`);
      // Dropping the veth moves the CT's own address back to venet0 at the next start, not under it.
      const cfg2 = { 'openvz.ipadd': `${subnet}.202 ${subnet}.203` };
      const res = await hc.applyConfig(cfg2, cfg1);
      expect(res.pending).toEqual(expect.arrayContaining(['openvz.netif']));
      expect((await sh(hc, 'ip -4 -o addr show eth0')).code).toBe(0);
      await hc.stop({ force: true, timeoutMs: 10_000 });
      await ov.load({ ...c, config: cfg2 }).start();
      const after = await sh(hc, 'ip -4 -o addr show; ip route');
      expect(after.stdout).toMatch(new RegExp(`venet0\\s+inet ${c.nic.ipv4.replace(/\./g, '\\.')}/32`));
      expect(after.stdout).not.toContain('eth0');
      expect((await host.exec(['ping', '-c', '1', '-W', '2', c.nic.ipv4], { allowFailure: true })).code).toBe(0);
    } finally {
      for (const h of [hc, hd]) { await h.stop({ force: true, timeoutMs: 10_000 }); await h.delete(); }
    }
    expect(await artifacts(c)).toEqual([]);
    expect(await host.fs.stat(posix.join(base, 'openvz', 'conf', `${c.name}.conf`))).toBeUndefined();
    expect((await host.exec(['ip', 'link', 'show', venetHost], { allowFailure: true })).code).not.toBe(0);
  });

  it('refuses configs it cannot honour before anything is made', () => {
    expect(ov.validate({ 'limits.disk': '1MiB' }).join(' ')).toMatch(/below the 16 MiB/);
    expect(ov.validate({ 'limits.disk.inodes': '10' }).join(' ')).toMatch(/below the 64/);
    expect(ov.validate({ 'limits.memory': '1TiB' }).join(' ')).toMatch(/larger than this host's/);
    expect(ov.validate({ 'limits.disk': '64MiB', 'limits.disk.inodes': '5000', 'limits.memory': '64MiB' })).toEqual([]);
  });
});
