// Unit tests for NetworkManager against the scripted Host (no machine access).
import { describe, expect, it } from 'vitest';
import { ScriptedHost } from '../../host/scripted.js';
import { AppError, isAppError } from '../../shared/errors.js';
import { NetworkManager, type NetworkOptions } from './manager.js';

const opts: NetworkOptions = { bridge: 'hgrbr0', subnet: '10.123.0.0/24', nftTable: 'hgr_nat', dnsmasqDir: '/var/lib/hangar/dnsmasq' };
const upLink = JSON.stringify([
  { ifname: 'hgrbr0', flags: ['BROADCAST', 'MULTICAST', 'UP'], linkinfo: { info_kind: 'bridge' }, addr_info: [{ family: 'inet', local: '10.123.0.1', prefixlen: 24 }] },
]);

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return isAppError(e) ? e.code : 'NOT_APP_ERROR';
  }
  return undefined;
}

// A host where the network is already fully up and dnsmasq (pid 4242) runs with the expected argv.
function upHost(): { host: ScriptedHost; mgr: NetworkManager } {
  const host = new ScriptedHost((argv) => (argv[0] === 'ip' && argv.includes('show') ? { stdout: upLink } : undefined));
  const mgr = new NetworkManager(host, opts);
  host.put('/proc/sys/net/ipv4/ip_forward', '1\n');
  host.put('/var/lib/hangar/dnsmasq/dnsmasq.pid', '4242\n');
  host.put('/proc/4242/cmdline', `${mgr.dnsmasqArgv().join('\0')}\0`);
  host.alive.add(4242);
  return { host, mgr };
}

describe('NetworkManager (fake host)', () => {
  it('rejects bad options', () => {
    const host = new ScriptedHost(() => undefined);
    expect(() => new NetworkManager(host, { ...opts, bridge: 'a-very-long-bridge-name' })).toThrow(/bridge/);
    expect(() => new NetworkManager(host, { ...opts, subnet: '10.123.0.0/31' })).toThrow(AppError);
    expect(() => new NetworkManager(host, { ...opts, nftTable: 'bad table' })).toThrow(/nftables/);
    expect(() => new NetworkManager(host, { ...opts, dnsmasqDir: 'relative' })).toThrow(/absolute/);
  });

  it('derives host interface names from the bridge prefix', () => {
    const mgr = new NetworkManager(new ScriptedHost(() => undefined), opts);
    const a = mgr.hostIfName('web1');
    expect(a).toMatch(/^hgr[0-9a-f]{8}$/);
    expect(a.length).toBeLessThanOrEqual(15);
    expect(mgr.hostIfName('web1')).toBe(a);
    expect(mgr.hostIfName('web2')).not.toBe(a);
    const custom = new NetworkManager(new ScriptedHost(() => undefined), { ...opts, ifPrefix: 'abcdefg' });
    expect(custom.hostIfName('x')).toHaveLength(15);
    expect(() => new NetworkManager(new ScriptedHost(() => undefined), { ...opts, ifPrefix: 'abcdefgh' })).toThrow(/prefix/);
  });

  it('builds a dnsmasq command line bound to the bridge only', () => {
    const argv = new NetworkManager(new ScriptedHost(() => undefined), { ...opts, domain: 'hangar' }).dnsmasqArgv();
    expect(argv[0]).toBe('dnsmasq');
    expect(argv).toEqual(expect.arrayContaining([
      '--conf-file=', '--bind-interfaces', '--interface=hgrbr0', '--except-interface=lo', '--listen-address=10.123.0.1',
      '--dhcp-hostsfile=/var/lib/hangar/dnsmasq/hosts', '--pid-file=/var/lib/hangar/dnsmasq/dnsmasq.pid',
      '--dhcp-range=10.123.0.0,static,255.255.255.0,1h', '--dhcp-authoritative', '--dhcp-no-override', '--domain=hangar',
    ]));
  });

  it('ensure() on a network that is up runs two commands and adopts dnsmasq', async () => {
    const { host, mgr } = upHost();
    await mgr.ensure();
    expect(host.calls.map(({ argv: c }) => c.slice(0, 2).join(' '))).toEqual(['ip -j', 'nft -f']);
    expect(String(host.calls.find((c) => c.opts.input !== undefined)?.opts.input)).toContain('masquerade');
    expect(String(host.calls.find((c) => c.opts.input !== undefined)?.opts.input)).toContain('ip saddr 10.123.0.0/24');
    expect(host.signals).toEqual([]);
    expect(await mgr.dnsmasqPid()).toBe(4242);
  });

  it('ensure() enables forwarding when it is off', async () => {
    const { host, mgr } = upHost();
    host.put('/proc/sys/net/ipv4/ip_forward', '0\n');
    await mgr.ensure();
    expect(host.text('/proc/sys/net/ipv4/ip_forward')).toContain('1');
  });

  it('refuses an interface of that name that is not a bridge', async () => {
    const host = new ScriptedHost((argv) => (argv[0] === 'ip' ? { stdout: JSON.stringify([{ ifname: 'hgrbr0', flags: ['UP'], linkinfo: { info_kind: 'veth' } }]) } : undefined));
    host.put('/proc/sys/net/ipv4/ip_forward', '1\n');
    expect(await codeOf(new NetworkManager(host, opts).ensure())).toBe('CONFLICT');
  });

  it('refuses a subnet that overlaps another interface, before creating anything', async () => {
    const host = new ScriptedHost((argv) => {
      if (argv.includes('dev')) return { code: 1, stderr: 'Device "hgrbr0" does not exist.' };
      if (argv.join(' ') === 'ip -j -4 addr show') return { stdout: JSON.stringify([{ ifname: 'eth0', addr_info: [{ family: 'inet', local: '10.123.0.77', prefixlen: 16 }] }]) };
      return undefined;
    });
    const err = await new NetworkManager(host, opts).ensure().catch((e: unknown) => e);
    expect(isAppError(err, 'CONFLICT')).toBe(true);
    expect(String((err as Error).message)).toContain('eth0');
    expect(host.calls.some(({ argv: c }) => c.includes('add'))).toBe(false);
  });

  it('undoes a fresh setup when dnsmasq fails to start', async () => {
    let created = false;
    const host = new ScriptedHost((argv) => {
      const cmd = argv.join(' ');
      if (cmd.startsWith('ip -j -d addr show')) {
        return created ? { stdout: JSON.stringify([{ ifname: 'hgrbr0', flags: [], linkinfo: { info_kind: 'bridge' }, addr_info: [] }]) } : { code: 1, stderr: 'Device "hgrbr0" does not exist.' };
      }
      if (cmd.startsWith('ip link add')) created = true;
      if (cmd === 'ip -j -4 addr show') return { stdout: '[]' };
      if (argv[0] === 'dnsmasq') return { code: 2, stderr: 'dnsmasq: failed to create listening socket: Address already in use' };
      return undefined;
    });
    host.put('/proc/sys/net/ipv4/ip_forward', '1\n');
    const err = await new NetworkManager(host, opts).ensure().catch((e: unknown) => e);
    expect(isAppError(err, 'HOST_FAILED')).toBe(true);
    expect((err as Error).message).toContain('dnsmasq');
    const cmds = host.calls.map(({ argv: c }) => c.join(' '));
    expect(cmds).toContain('nft delete table inet hgr_nat');
    expect(cmds).toContain('ip link del dev hgrbr0');
    expect(cmds.indexOf('nft delete table inet hgr_nat')).toBeLessThan(cmds.indexOf('ip link del dev hgrbr0'));
  });

  it('moves a bridge left with an address of an earlier subnet setting', async () => {
    const host = new ScriptedHost((argv) => {
      if (argv.join(' ').startsWith('ip -j -d addr show')) {
        return { stdout: JSON.stringify([{ ifname: 'hgrbr0', flags: ['UP'], linkinfo: { info_kind: 'bridge' }, addr_info: [{ family: 'inet', local: '10.99.0.1', prefixlen: 24 }] }]) };
      }
      if (argv.join(' ') === 'ip -j -4 addr show') return { stdout: '[]' };
      return undefined;
    });
    host.put('/proc/sys/net/ipv4/ip_forward', '1\n');
    await new NetworkManager(host, opts).ensure().catch(() => undefined);
    const cmds = host.calls.map(({ argv: c }) => c.join(' '));
    expect(cmds).toContain('ip addr del 10.99.0.1/24 dev hgrbr0');
    expect(cmds).toContain('ip addr add 10.123.0.1/24 broadcast 10.123.0.255 dev hgrbr0');
    expect(cmds.indexOf('ip addr del 10.99.0.1/24 dev hgrbr0')).toBeLessThan(cmds.indexOf('ip addr add 10.123.0.1/24 broadcast 10.123.0.255 dev hgrbr0'));
  });

  it('replaces its dnsmasq when the command line differs', async () => {
    const { host, mgr } = upHost();
    host.put('/proc/4242/cmdline', 'dnsmasq\0--interface=hgrbr0\0--dhcp-range=10.99.0.0,static\0');
    await mgr.ensure().catch(() => undefined);
    expect(host.signals[0]).toEqual([4242, 'SIGTERM']);
    expect(host.calls.some(({ argv: c }) => c[0] === 'dnsmasq')).toBe(true);
  });

  it('does not adopt or signal a pid that is not our dnsmasq', async () => {
    const { host, mgr } = upHost();
    host.put('/proc/4242/cmdline', ['sleep', '100', ''].join('\0'));
    expect(await mgr.dnsmasqPid()).toBeNull();
    await mgr.teardown();
    expect(host.signals).toEqual([]);
  });

  it('setLeases writes sorted reservations and signals dnsmasq only on change', async () => {
    const { host, mgr } = upHost();
    await mgr.setLeases([
      { name: 'web2', mac: '0A:00:00:00:00:02', ipv4: '10.123.0.20' },
      { name: 'web1', mac: '0a:00:00:00:00:01', ipv4: '10.123.0.10' },
    ]);
    expect(host.text('/var/lib/hangar/dnsmasq/hosts')).toBe('0a:00:00:00:00:01,10.123.0.10,web1\n0a:00:00:00:00:02,10.123.0.20,web2\n');
    expect(host.signals).toEqual([[4242, 'SIGHUP']]);
    await mgr.setLeases([
      { name: 'web1', mac: '0a:00:00:00:00:01', ipv4: '10.123.0.10' },
      { name: 'web2', mac: '0a:00:00:00:00:02', ipv4: '10.123.0.20' },
    ]);
    expect(host.signals).toHaveLength(1);
  });

  it('setLeases validates every reservation', async () => {
    const { host, mgr } = upHost();
    const l = (name: string, mac: string, ipv4: string) => ({ name, mac, ipv4 });
    expect(await codeOf(mgr.setLeases([l('a', 'zz', '10.123.0.5')]))).toBe('INVALID_ADDRESS');
    expect(await codeOf(mgr.setLeases([l('a', '0a:00:00:00:00:01', '10.124.0.5')]))).toBe('INVALID_ADDRESS');
    expect(await codeOf(mgr.setLeases([l('a', '0a:00:00:00:00:01', '10.123.0.1')]))).toBe('INVALID_ADDRESS');
    expect(await codeOf(mgr.setLeases([l('a b', '0a:00:00:00:00:01', '10.123.0.5')]))).toBe('INVALID_NAME');
    expect(await codeOf(mgr.setLeases([l('a', '0a:00:00:00:00:01', '10.123.0.5'), l('b', '0a:00:00:00:00:02', '10.123.0.5')]))).toBe('CONFLICT');
    expect(await codeOf(mgr.setLeases([l('a', '0a:00:00:00:00:01', '10.123.0.5'), l('b', '0A:00:00:00:00:01', '10.123.0.6')]))).toBe('CONFLICT');
    expect((host.text('/var/lib/hangar/dnsmasq/hosts') !== undefined)).toBe(false);
  });

  it('teardown() stops our dnsmasq, deletes table and bridge', async () => {
    const { host, mgr } = upHost();
    await mgr.teardown();
    expect(host.signals[0]).toEqual([4242, 'SIGTERM']);
    const cmds = host.calls.map(({ argv: c }) => c.join(' '));
    expect(cmds).toContain('nft delete table inet hgr_nat');
    expect(cmds).toContain('ip link del dev hgrbr0');
    expect((host.text('/var/lib/hangar/dnsmasq/dnsmasq.pid') !== undefined)).toBe(false);
  });
});
