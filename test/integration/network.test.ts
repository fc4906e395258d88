// Integration test of NetworkManager on this machine: bridge, NAT table, dnsmasq adoption, pings between namespaces, DHCP reservations.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, chmodSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { allocateAddress, macFor, parseSubnet, subnetsOverlap } from '../../src/core/network/ipam.js';
import { NetworkManager } from '../../src/core/network/manager.js';

const host = new LocalHost();
const prefix = `t${randomBytes(2).toString('hex')}`;
const bridge = `${prefix}br0`;
const nftTable = `${prefix}_nat`;
const namespaces = [`${prefix}n1`, `${prefix}n2`, `${prefix}n3`, `${prefix}n4`];

async function sh(argv: string[]) {
  return host.exec(argv, { allowFailure: true, timeoutMs: 60_000 });
}

// A random 10.200-250.x.0/24 that overlaps no address configured on this machine.
async function pickSubnet(avoid: string[] = []): Promise<string> {
  const res = await host.exec(['ip', '-j', '-4', 'addr', 'show']);
  const used = (JSON.parse(res.stdout) as { addr_info?: { local?: string; prefixlen?: number }[] }[])
    .flatMap((l) => l.addr_info ?? [])
    .filter((a) => a.local && a.prefixlen !== undefined && a.prefixlen >= 8 && a.prefixlen <= 30)
    .map((a) => {
      const size = 2 ** (32 - a.prefixlen!);
      const n = a.local!.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
      const net = Math.floor(n / size) * size;
      return parseSubnet(`${[net >>> 24, (net >>> 16) & 255, (net >>> 8) & 255, net & 255].join('.')}/${a.prefixlen}`);
    });
  for (let i = 0; i < 200; i++) {
    const s = parseSubnet(`10.${200 + Math.floor(Math.random() * 51)}.${Math.floor(Math.random() * 256)}.0/24`);
    if (!used.some((u) => subnetsOverlap(u, s)) && !avoid.includes(s.cidr)) return s.cidr;
  }
  throw new Error('no free test subnet found');
}

async function procCmdline(pid: number): Promise<string> {
  return (await host.fs.readTextIfExists(`/proc/${pid}/cmdline`)) ?? '';
}

// Creates a namespace joined to the bridge by a veth pair whose inner end is eth0 with the given MAC.
async function addNamespace(ns: string, hostIf: string, mac: string): Promise<void> {
  await host.exec(['ip', 'netns', 'add', ns]);
  await host.exec(['ip', 'link', 'add', 'name', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await host.exec(['ip', 'link', 'set', 'dev', hostIf, 'master', bridge, 'up']);
  await host.exec(['ip', '-n', ns, 'link', 'set', 'dev', 'eth0', 'address', mac, 'up']);
  await host.exec(['ip', '-n', ns, 'link', 'set', 'dev', 'lo', 'up']);
}

describe('NetworkManager on the local host', () => {
  let dir: string;
  let mgr: NetworkManager;
  let subnet: ReturnType<typeof parseSubnet>;
  const hostIfs: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), `${prefix}-net-`));
    // dnsmasq runs unprivileged and must reach its hostsfile.
    chmodSync(dir, 0o755);
    subnet = parseSubnet(await pickSubnet());
    mgr = new NetworkManager(host, { bridge, subnet: subnet.cidr, nftTable, dnsmasqDir: join(dir, 'dnsmasq') });
  });

  afterAll(async () => {
    try {
      await mgr?.teardown();
    } finally {
      for (const ns of namespaces) await sh(['ip', 'netns', 'del', ns]);
      for (const i of hostIfs) await sh(['ip', 'link', 'del', 'dev', i]);
      await sh(['ip', 'link', 'del', 'dev', bridge]);
      await sh(['nft', 'delete', 'table', 'inet', nftTable]);
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ensure() creates the bridge, the NAT table and dnsmasq', async () => {
    await mgr.ensure();
    const addr = await host.exec(['ip', '-4', 'addr', 'show', 'dev', bridge]);
    expect(addr.stdout).toContain(`inet ${subnet.gateway}/${subnet.prefixLength}`);
    const link = await host.exec(['ip', '-d', 'link', 'show', 'dev', bridge]);
    expect(link.stdout).toMatch(/<[^>]*\bUP\b[^>]*>/);
    expect(link.stdout).toContain('bridge');
    const table = await host.exec(['nft', 'list', 'table', 'inet', nftTable]);
    expect(table.stdout).toContain('masquerade');
    expect(table.stdout).toContain(subnet.cidr);
    expect((await host.fs.readText('/proc/sys/net/ipv4/ip_forward')).trim()).toBe('1');
    const pid = await mgr.dnsmasqPid();
    expect(pid).not.toBeNull();
    const cmd = await procCmdline(pid!);
    expect(cmd).toContain('dnsmasq');
    expect(cmd).toContain(`--interface=${bridge}`);
    expect(mgr.info()).toEqual({ bridge, subnet: subnet.cidr, gateway: subnet.gateway });
  });

  it('ensure() again adopts the running dnsmasq', async () => {
    const before = await mgr.dnsmasqPid();
    await mgr.ensure();
    expect(await mgr.dnsmasqPid()).toBe(before);
    // Exactly one dnsmasq serves this bridge.
    const ps = await host.exec(['ps', '-eo', 'pid=,args=']);
    const ours = ps.stdout.split('\n').filter((l) => l.includes('dnsmasq') && l.includes(`--interface=${bridge}`));
    expect(ours).toHaveLength(1);
  });

  it('ensure() restarts dnsmasq after it died', async () => {
    const before = (await mgr.dnsmasqPid())!;
    process.kill(before, 'SIGKILL');
    for (let i = 0; i < 100 && (await mgr.dnsmasqPid()) !== null; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await mgr.dnsmasqPid()).toBeNull();
    await mgr.ensure();
    const after = await mgr.dnsmasqPid();
    expect(after).not.toBeNull();
    expect(after).not.toBe(before);
  });

  it('ensure() recreates a deleted bridge and restarts dnsmasq on it', async () => {
    const before = await mgr.dnsmasqPid();
    await host.exec(['ip', 'link', 'del', 'dev', bridge]);
    await mgr.ensure();
    const addr = await host.exec(['ip', '-4', 'addr', 'show', 'dev', bridge]);
    expect(addr.stdout).toContain(`inet ${subnet.gateway}/${subnet.prefixLength}`);
    const after = await mgr.dnsmasqPid();
    expect(after).not.toBeNull();
    expect(after).not.toBe(before);
  });

  it('connects namespaces through the bridge (host→ns1, ns1→ns2)', async () => {
    const ip1 = allocateAddress(subnet, 'ns1', new Set());
    const ip2 = allocateAddress(subnet, 'ns2', new Set([ip1]));
    const if1 = mgr.hostIfName(`${prefix}-ns1`);
    const if2 = mgr.hostIfName(`${prefix}-ns2`);
    expect(if1.length).toBeLessThanOrEqual(15);
    expect(if1).not.toBe(if2);
    hostIfs.push(if1, if2);
    await addNamespace(namespaces[0]!, if1, macFor(`${prefix}-ns1`));
    await addNamespace(namespaces[1]!, if2, macFor(`${prefix}-ns2`));
    for (const [ns, ip] of [[namespaces[0]!, ip1], [namespaces[1]!, ip2]] as const) {
      await host.exec(['ip', '-n', ns, 'addr', 'add', `${ip}/${subnet.prefixLength}`, 'dev', 'eth0']);
      await host.exec(['ip', '-n', ns, 'route', 'add', 'default', 'via', subnet.gateway]);
    }
    const p1 = await sh(['ping', '-c1', '-W2', ip1]);
    expect(p1.code, p1.stdout + p1.stderr).toBe(0);
    const p2 = await sh(['ip', 'netns', 'exec', namespaces[0]!, 'ping', '-c1', '-W2', ip2]);
    expect(p2.code, p2.stdout + p2.stderr).toBe(0);
    const p3 = await sh(['ip', 'netns', 'exec', namespaces[1]!, 'ping', '-c1', '-W2', subnet.gateway]);
    expect(p3.code, p3.stdout + p3.stderr).toBe(0);
  });

  it('masquerades traffic that leaves through another interface', async () => {
    // An "outside" namespace on its own veth link, with no route back to the bridge subnet: replies only arrive when NAT works.
    const outside = parseSubnet(await pickSubnet([subnet.cidr]));
    const hostIf = `${prefix}o0`;
    hostIfs.push(hostIf);
    await host.exec(['ip', 'netns', 'add', namespaces[3]!]);
    await host.exec(['ip', 'link', 'add', 'name', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', namespaces[3]!]);
    await host.exec(['ip', 'addr', 'add', `${outside.gateway}/${outside.prefixLength}`, 'dev', hostIf]);
    await host.exec(['ip', 'link', 'set', 'dev', hostIf, 'up']);
    const outIp = outside.lastHost;
    await host.exec(['ip', '-n', namespaces[3]!, 'addr', 'add', `${outIp}/${outside.prefixLength}`, 'dev', 'eth0']);
    await host.exec(['ip', '-n', namespaces[3]!, 'link', 'set', 'dev', 'eth0', 'up']);
    const ping = await sh(['ip', 'netns', 'exec', namespaces[0]!, 'ping', '-c1', '-W2', outIp]);
    expect(ping.code, ping.stdout + ping.stderr).toBe(0);
    // The reply direction of the flow is addressed to the host's outside address: the source was rewritten.
    const conntrack = await host.fs.readText('/proc/net/nf_conntrack');
    expect(conntrack).toMatch(new RegExp(`src=${outIp.replace(/\./g, '\\.')} dst=${outside.gateway.replace(/\./g, '\\.')} `));
  });

  it('hands the reserved address to a DHCP client and nothing to an unknown MAC', async () => {
    const taken = new Set([allocateAddress(subnet, 'ns1', new Set())]);
    taken.add(allocateAddress(subnet, 'ns2', taken));
    const reserved = allocateAddress(subnet, 'dhcp1', taken);
    const mac = macFor(`${prefix}-dhcp1`);
    await mgr.setLeases([
      { name: 'dhcp1', mac, ipv4: reserved },
      { name: 'other', mac: macFor(`${prefix}-other`), ipv4: allocateAddress(subnet, 'other', new Set([...taken, reserved])) },
    ]);
    expect(readFileSync(join(dir, 'dnsmasq', 'hosts'), 'utf8')).toContain(`${mac},${reserved},dhcp1`);
    const ifName = mgr.hostIfName(`${prefix}-dhcp1`);
    hostIfs.push(ifName);
    await addNamespace(namespaces[2]!, ifName, mac);
    const script = join(dir, 'udhcpc.sh');
    writeFileSync(script, '#!/bin/sh\n[ "$1" = bound ] && echo "BOUND ip=$ip mask=$mask router=$router"\nexit 0\n', { mode: 0o755 });
    const udhcpc = (ns: string) => sh(['ip', 'netns', 'exec', ns, '/bin/busybox', 'udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '5', '-T', '1', '-s', script]);
    const got = await udhcpc(namespaces[2]!);
    expect(got.code, got.stdout + got.stderr).toBe(0);
    expect(got.stdout).toContain(`BOUND ip=${reserved} mask=${subnet.prefixLength} router=${subnet.gateway}`);
    const leases = readFileSync(join(dir, 'dnsmasq', 'leases'), 'utf8');
    expect(leases).toMatch(new RegExp(`${mac} ${reserved.replace(/\./g, '\\.')} dhcp1`));

    // Static-only DHCP: a MAC without a reservation gets no address.
    await host.exec(['ip', '-n', namespaces[2]!, 'link', 'set', 'dev', 'eth0', 'address', macFor(`${prefix}-stranger`)]);
    const none = await sh(['ip', 'netns', 'exec', namespaces[2]!, '/bin/busybox', 'udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '2', '-T', '1', '-s', script]);
    expect(none.code).not.toBe(0);
    expect(none.stdout).not.toContain('BOUND');
  });

  it('teardown() removes bridge, table and dnsmasq, and is idempotent', async () => {
    const pid = (await mgr.dnsmasqPid())!;
    expect(pid).not.toBeNull();
    await mgr.teardown();
    expect((await sh(['ip', 'link', 'show', 'dev', bridge])).code).not.toBe(0);
    expect((await sh(['nft', 'list', 'table', 'inet', nftTable])).code).not.toBe(0);
    // Gone or a not yet reaped zombie (empty cmdline).
    expect(await procCmdline(pid)).not.toContain('dnsmasq');
    expect(await mgr.dnsmasqPid()).toBeNull();
    await mgr.teardown();
    expect((await sh(['ip', 'link', 'show', 'dev', bridge])).code).not.toBe(0);
  });
});
