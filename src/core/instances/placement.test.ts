// Unit tests of placement: DHCP reservations go to the network whose subnet holds each address; memory admission per memory pool.
import { describe, expect, it } from 'vitest';
import type { Lease } from '../network/network.js';
import { parseSubnet } from '../network/ipam.js';
import type { HostContext } from '../hosts/context.js';
import type { InstanceServiceDeps } from './context.js';
import type { HostDriver } from '../../drivers/driver.js';
import { admit, syncLeases } from './placement.js';

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

describe('admit', () => {
  const GiB = 1024 ** 3;
  it('counts Xen domains against the memory Xen has beside Dom0, and containers against the host RAM minus the reserve', () => {
    const lxc = { driver: { name: 'lxc' } } as unknown as HostDriver;
    const xen = { driver: { name: 'xen' }, memoryCapacityBytes: () => 3 * GiB } as unknown as HostDriver;
    const rows = [
      { name: 'c1', host: 'dom0', driver: 'lxc', expectedState: 'running', config: { 'limits.memory.guarantee': '512MiB' } },
      { name: 'x1', host: 'dom0', driver: 'xen', expectedState: 'running', config: { 'limits.memory.guarantee': '2GiB' } },
      { name: 'x2', host: 'dom0', driver: 'xen', expectedState: 'stopped', config: { 'limits.memory.guarantee': '2GiB' } },
    ];
    // Dom0 itself has 2 GiB of RAM: 1 GiB after the reserve.
    const h = { name: 'dom0', local: false, facts: { memoryBytes: 2 * GiB }, drivers: { all: () => [lxc, xen] } } as unknown as HostContext;
    const d = { db: { listInstances: () => rows }, memoryReserveBytes: GiB } as unknown as InstanceServiceDeps;
    // 1 GiB more for a domain fits Xen's 3 GiB beside x1's 2 GiB (the container's guarantee is the host's, x2 is stopped).
    expect(() => admit(d, h, 'x3', { 'limits.memory.guarantee': '1GiB' }, xen)).not.toThrow();
    expect(() => admit(d, h, 'x3', { 'limits.memory.guarantee': '1100MiB' }, xen)).toThrow(/above the 3GiB host "dom0" can guarantee \(the memory xen has beside the host's own\)/);
    // A container's guarantee is checked against Dom0's RAM only, where c1 holds 512 MiB of 1 GiB.
    expect(() => admit(d, h, 'c2', { 'limits.memory.guarantee': '512MiB' }, lxc)).not.toThrow();
    expect(() => admit(d, h, 'c2', { 'limits.memory.guarantee': '600MiB' }, lxc)).toThrow(/above the 1GiB host "dom0" can guarantee \(RAM minus a 1GiB reserve\)/);
  });
});
