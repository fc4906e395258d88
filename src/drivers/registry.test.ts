// Unit tests of the driver registry: HANGAR_DRIVERS parsing and the default driver of each instance type.
import { describe, expect, it } from 'vitest';
import type { HostDriver } from './driver.js';
import { DEFAULT_DRIVERS, DriverSet, selectDrivers } from './registry.js';

/** Just what DriverSet looks at: a name, a type, whether the probe found it usable. */
function opened(name: string, type: 'container' | 'vm', available: boolean): HostDriver {
  return { driver: { name, type }, probe: { available, version: null, reason: available ? null : `${name} missing` } } as unknown as HostDriver;
}

describe('driver registry', () => {
  it('runs lxc, qemu, xen and openvz by default, in that order (lxc stays the default container driver); unknown, repeated and empty lists are refused', () => {
    expect(DEFAULT_DRIVERS).toBe('lxc,qemu,xen,openvz');
    expect(selectDrivers(undefined).map((d) => d.name)).toEqual(['lxc', 'qemu', 'xen', 'openvz']);
    expect(() => selectDrivers('lxc,nope')).toThrow(/Unknown driver "nope" in HANGAR_DRIVERS \(known: lxc, qemu, fake, xen, openvz, openvz7\)/);
    expect(() => selectDrivers('qemu,qemu')).toThrow(/named twice/);
    expect(() => selectDrivers(' , ')).toThrow(/names no driver/);
  });

  it('the default of a type is its first available driver: xen on a Dom0 without QEMU, qemu where both work, the first one when none does', () => {
    const lxc = opened('lxc', 'container', true);
    const dom0 = DriverSet.of([lxc, opened('qemu', 'vm', false), opened('xen', 'vm', true)]);
    expect(dom0.forType('vm').driver.name).toBe('xen');
    expect(dom0.isDefault(dom0.get('xen'))).toBe(true);
    expect(dom0.isDefault(dom0.get('qemu'))).toBe(false);
    expect(dom0.forType('container')).toBe(lxc);
    const both = DriverSet.of([lxc, opened('qemu', 'vm', true), opened('xen', 'vm', true)]);
    expect(both.forType('vm').driver.name).toBe('qemu');
    const none = DriverSet.of([opened('lxc', 'container', false), opened('qemu', 'vm', false), opened('xen', 'vm', false)]);
    expect(none.forType('vm').driver.name).toBe('qemu');
    expect(() => DriverSet.of([lxc]).forType('vm')).toThrow(/No driver for instance type "vm" is enabled on this host/);
  });
});
