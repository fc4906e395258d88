// Unit tests of HostBridgeNetwork: reading a host's own bridge and its address, and what is refused.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { ScriptedHost } from '../../host/scripted.js';
import { allocateAddress, checkAddress } from './ipam.js';
import { HostBridgeNetwork, parseIpv4Addr, subnetAround } from './host-bridge.js';

const IPROUTE = '7: xenbr0    inet 10.251.0.1/24 brd 10.251.0.255 scope global xenbr0\\       valid_lft forever preferred_lft forever\n';
const BUSYBOX = '7: xenbr0    inet 192.168.7.254/16 scope global xenbr0\n';

function dom0(addrOut: string, files: Record<string, string> = { '/sys/class/net/xenbr0/bridge/bridge_id': '8000.0\n' }): ScriptedHost {
  return new ScriptedHost((argv) => (argv[0] === 'ip' ? { stdout: addrOut } : undefined), { name: 'dom0', files });
}

const refusal = async (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as Error);

describe('host bridge network', () => {
  it('parses the first IPv4 address of iproute2 and busybox output', () => {
    expect(parseIpv4Addr(IPROUTE)).toEqual({ address: '10.251.0.1', prefixLength: 24 });
    expect(parseIpv4Addr(BUSYBOX)).toEqual({ address: '192.168.7.254', prefixLength: 16 });
    expect(parseIpv4Addr('')).toBeUndefined();
    expect(parseIpv4Addr('inet 300.1.1.1/24')).toBeUndefined();
  });

  it('takes the subnet around the bridge address, the address itself as gateway', () => {
    const s = subnetAround('192.168.7.254', 16);
    expect(s).toMatchObject({ cidr: '192.168.0.0/16', network: '192.168.0.0', gateway: '192.168.7.254', broadcast: '192.168.255.255' });
    expect(() => checkAddress(s, '192.168.7.254', new Set())).toThrow(/gateway/);
    // The gateway is never handed out, even where the allocator's walk passes it.
    const taken = new Set<string>();
    for (let i = 0; i < 50; i++) taken.add(allocateAddress(subnetAround('10.0.0.3', 26), `n${i}`, taken));
    expect(taken.has('10.0.0.3')).toBe(false);
    expect(taken.size).toBe(50);
  });

  it('opens the bridge of the host with its subnet, reserves nothing, names host interfaces like the managed network', async () => {
    const host = dom0(IPROUTE);
    const net = await HostBridgeNetwork.open(host, 'xenbr0', 'hg');
    expect(net.info()).toEqual({ bridge: 'xenbr0', subnet: '10.251.0.0/24', gateway: '10.251.0.1' });
    expect(host.commands('ip')).toEqual([['ip', '-4', '-o', 'addr', 'show', 'dev', 'xenbr0']]);
    expect(net.hostIfName('web1')).toMatch(/^hg[0-9a-f]{8}$/);
    await net.setLeases([{ name: 'a', mac: '0a:00:00:00:00:01', ipv4: '10.251.0.9' }]);
    expect(host.calls.length).toBe(1);
  });

  it('refuses a bad name, a missing interface, one that is no bridge, and a bridge without an address', async () => {
    const bad = await refusal(HostBridgeNetwork.open(dom0(IPROUTE), 'xen br0', 'hg'));
    expect(isAppError(bad, 'INVALID_ARGUMENT')).toBe(true);
    const missing = await refusal(HostBridgeNetwork.open(dom0(IPROUTE, {}), 'xenbr0', 'hg'));
    expect(isAppError(missing, 'NOT_FOUND')).toBe(true);
    expect(missing!.message).toBe('Host "dom0" has no interface xenbr0');
    const notBridge = await refusal(HostBridgeNetwork.open(dom0(IPROUTE, { '/sys/class/net/xenbr0/mtu': '1500\n' }), 'xenbr0', 'hg'));
    expect(notBridge!.message).toBe('Interface xenbr0 on host "dom0" is not a bridge');
    const noAddr = await refusal(HostBridgeNetwork.open(dom0('7: xenbr0 ...\n'), 'xenbr0', 'hg'));
    expect(noAddr!.message).toMatch(/^Bridge xenbr0 on host "dom0" has no IPv4 address/);
    const tiny = await refusal(HostBridgeNetwork.open(dom0('inet 10.0.0.1/31 scope global\n'), 'xenbr0', 'hg'));
    expect(tiny!.message).toMatch(/prefix must be between 8 and 30/);
  });
});
