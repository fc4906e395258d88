// Unit tests of address placement: DHCP reservations go to the network whose subnet holds each address.
import { describe, expect, it } from 'vitest';
import type { Lease } from '../network/network.js';
import { parseSubnet } from '../network/ipam.js';
import type { HostContext } from '../hosts/context.js';
import type { InstanceServiceDeps } from './context.js';
import { syncLeases } from './placement.js';

/** A host whose network only records the reservations it is given. */
function host(name: string, cidr: string, local = false): HostContext & { got: Lease[][] } {
  const got: Lease[][] = [];
  return { name, local, networkProblem: null, network: { subnet: parseSubnet(cidr), setLeases: async (l: Lease[]) => { got.push(l); } }, got } as unknown as HostContext & { got: Lease[][] };
}

describe('syncLeases', () => {
  it('gives each network the leases of its own subnet: managed hosts share theirs, a host bridge keeps its own', async () => {
    const local = host('local', '10.199.77.0/24', true);
    const managed = host('m1', '10.199.77.0/24');
    const dom0 = host('dom0', '10.251.0.0/24');
    const rows = [
      { name: 'c1', mac: '02:00:00:00:00:01', ipv4: '10.199.77.10', host: 'local' },
      { name: 'c2', mac: '02:00:00:00:00:02', ipv4: '10.199.77.11', host: 'm1' },
      { name: 'x1', mac: '02:00:00:00:00:03', ipv4: '10.251.0.53', host: 'dom0' },
    ];
    const d = { db: { listInstances: () => rows }, hosts: { up: () => [local, managed, dom0] } } as unknown as InstanceServiceDeps;
    await syncLeases(d, dom0);
    const names = (h: { got: Lease[][] }) => h.got.at(-1)!.map((l) => l.name);
    expect(names(local)).toEqual(['c1', 'c2']);
    expect(names(managed)).toEqual(['c1', 'c2']);
    expect(names(dom0)).toEqual(['x1']);
    await syncLeases(d, local, 'c1');
    expect(names(local)).toEqual(['c2']);
  });
});
