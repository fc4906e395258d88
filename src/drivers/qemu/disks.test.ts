// Unit tests of a VM's disk images on the scripted host: the root overlay, growing (never shrinking), extra disks on their hot-plug ports.
import { describe, expect, it } from 'vitest';
import { ScriptedHost } from '../../host/scripted.js';
import { driverEnv } from '../../../test/helpers/driver-env.js';
import type { InstanceRecord } from '../driver.js';
import { FixedAccelerator } from './accel-check.js';
import { createRootDisk, prepareDisks, readPorts } from './disks.js';
import { vmFiles, type Vm } from './vm.js';

const GiB = 1024 ** 3;

/** A scripted host whose qemu-img info answers the virtual sizes in sizes (path → bytes). */
function hostWith(sizes: Record<string, number>): ScriptedHost {
  return new ScriptedHost((argv) => {
    if (argv[0] === 'qemu-img' && argv[1] === 'info') return { stdout: JSON.stringify({ format: 'qcow2', 'virtual-size': sizes[argv.at(-1)!] }) };
    return undefined;
  });
}

function vmOn(host: ScriptedHost, config: Record<string, string>): Vm {
  const record: InstanceRecord = {
    name: 'vm1', host: 'local', type: 'vm', driver: 'qemu', image: 'img', config, rootPath: '/p/vm1', instanceDir: '/i/vm1', imagePath: '/img',
    nic: { bridge: 'br0', hostIfName: 't0', mac: '02:00:00:00:00:01', ipv4: '10.1.0.5', prefixLength: 24, gateway: '10.1.0.1' },
    imageProps: { disk: 'disk.qcow2' },
  };
  const q = { env: driverEnv(host), probe: { available: true, version: '7.2.22', reason: null }, version: '7.2.22', accel: new FixedAccelerator({ usable: false, reason: 'test' }), uefi: null };
  const noQemu = () => Promise.reject(new Error('no QEMU in this test'));
  return { record, q, host, files: vmFiles(record), mon: noQemu, settledMon: noQemu };
}

describe('the root disk', () => {
  it('is a qcow2 overlay on the image disk, sized by limits.disk, which must not be smaller than the image', async () => {
    const host = hostWith({ '/img/disk.qcow2': GiB });
    await createRootDisk(vmOn(host, { 'limits.disk': '2GiB' }));
    expect(host.commands('qemu-img')).toEqual([
      ['qemu-img', 'info', '--output=json', '-U', '/img/disk.qcow2'],
      ['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', '/img/disk.qcow2', '/p/vm1/root.qcow2', String(2 * GiB)],
    ]);
    await expect(createRootDisk(vmOn(hostWith({ '/img/disk.qcow2': GiB }), { 'limits.disk': '512MiB' }))).rejects.toThrow(/smaller than its image's disk/);
  });

  it('grows for a larger limits.disk of the stopped VM and refuses to shrink', async () => {
    const host = hostWith({ '/p/vm1/root.qcow2': 2 * GiB });
    host.put('/p/vm1/root.qcow2', '');
    await createRootDisk(vmOn(host, { 'limits.disk': '3GiB' }));
    expect(host.commands('qemu-img').at(-1)).toEqual(['qemu-img', 'resize', '-q', '/p/vm1/root.qcow2', String(3 * GiB)]);
    await expect(createRootDisk(vmOn(host, { 'limits.disk': '1GiB' }))).rejects.toThrow(`The root disk of instance "vm1" cannot shrink from ${2 * GiB} to ${GiB} bytes; disks only grow`);
  });
});

describe('extra disks', () => {
  it('are created once, keep their hot-plug port across starts, and a new one takes the lowest free port', async () => {
    const host = hostWith({ '/p/vm1/disk-a.qcow2': GiB });
    const disks = await prepareDisks(vmOn(host, { 'devices.a.type': 'disk', 'devices.a.size': '1GiB', 'devices.b.type': 'disk', 'devices.b.size': '2GiB' }), 'pc-q35-7.2');
    expect(disks.map((d) => [d.path, d.serial, d.bus])).toEqual([['/p/vm1/disk-a.qcow2', 'a', 'hp0'], ['/p/vm1/disk-b.qcow2', 'b', 'hp1']]);
    expect(host.commands('qemu-img')).toEqual([
      ['qemu-img', 'create', '-q', '-f', 'qcow2', '/p/vm1/disk-a.qcow2', String(GiB)],
      ['qemu-img', 'create', '-q', '-f', 'qcow2', '/p/vm1/disk-b.qcow2', String(2 * GiB)],
    ]);
    host.put('/p/vm1/disk-a.qcow2', '');
    const vm = vmOn(host, { 'devices.a.type': 'disk', 'devices.a.size': '1GiB', 'devices.c.type': 'disk', 'devices.c.size': '1GiB' });
    expect((await prepareDisks(vm, 'pc-q35-7.2')).map((d) => [d.serial, d.bus])).toEqual([['a', 'hp0'], ['c', 'hp1']]);
    expect(await readPorts(vm)).toEqual({ a: 'hp0', c: 'hp1' });
    // i440FX has no hot-plug ports: the disks sit on the root bus.
    expect((await prepareDisks(vm, 'pc-i440fx-7.2')).map((d) => d.bus)).toEqual([undefined, undefined]);
  });
});
