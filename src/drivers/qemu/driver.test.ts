// Unit tests of the QEMU driver's pure parts: validation, and how a VM boots (direct kernel boot vs its image).
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../shared/config.js';
import { unsupportedKeys } from '../../shared/config.js';
import { ScriptedHost } from '../../host/scripted.js';
import { driverEnv } from '../../../test/helpers/driver-env.js';
import type { InstanceRecord } from '../driver.js';
import { bootOf, firmwareOf } from './boot.js';
import { qemuDriver, qemuOnHost } from './driver.js';
import { FixedAccelerator } from './accel-check.js';

const onHost = (uefi: { code: string; vars: string } | null = null) => qemuOnHost({
  env: driverEnv(new ScriptedHost()), probe: { available: true, version: '7.2.22', reason: null }, version: '7.2.22', accel: new FixedAccelerator({ usable: false, reason: 'test' }), uefi,
});

const record = (config: Record<string, string>, imageProps: Record<string, string>): InstanceRecord => ({
  name: 'vm1', host: 'local', type: 'vm', driver: 'qemu', image: 'img', config, rootPath: '/p/vm1', instanceDir: '/i/vm1', imagePath: '/img',
  nic: { bridge: 'br0', hostIfName: 't0', mac: '02:00:00:00:00:01', ipv4: '10.1.0.5', prefixLength: 24, gateway: '10.1.0.1' },
  imageProps,
});

describe('qemuDriver.validate', () => {
  it('declares no container-only key, and refuses boot.initrd/cmdline without boot.kernel', () => {
    expect(unsupportedKeys({ 'limits.processes': '10', 'limits.memory.swap': '0', 'security.privileged': 'true', 'devices.d1.size': '1GiB', 'user.x': '1', 'boot.autostart': 'true' }, qemuDriver.keys))
      .toEqual(['limits.memory.swap', 'limits.processes', 'security.privileged']);
    expect(onHost().validate({ 'boot.initrd': '/i' })[0]).toMatch(/boot\.initrd needs boot\.kernel/);
    expect(onHost().validate({ 'boot.kernel': '/k', 'boot.initrd': '/i', 'boot.cmdline': 'quiet' })).toEqual([]);
  });
  it('boot.firmware=uefi needs OVMF on the host and a disk boot', () => {
    expect(onHost({ code: '/c', vars: '/v' }).validate({ 'boot.firmware': 'uefi' })).toEqual([]);
    expect(onHost().validate({ 'boot.firmware': 'uefi' })[0]).toMatch(/OVMF.*not installed.*ovmf package/);
    expect(onHost({ code: '/c', vars: '/v' }).validate({ 'boot.firmware': 'uefi', 'boot.kernel': '/k' })[0]).toMatch(/applies to booting from the disk/);
    expect(() => validateConfig({ 'boot.firmware': 'efi' })).toThrow(/bios or uefi/);
  });
  it('boot paths must be absolute, without ".." or control characters', () => {
    expect(() => validateConfig({ 'boot.kernel': 'vmlinuz' })).toThrow(/absolute path/);
    expect(() => validateConfig({ 'boot.kernel': '/boot/../etc/shadow' })).toThrow(/absolute path/);
    expect(() => validateConfig({ 'boot.cmdline': 'a\nb' })).toThrow(/control characters/);
    expect(validateConfig({ 'boot.kernel': '/boot/vmlinuz', 'boot.cmdline': ' root=/dev/vda1 ' })).toEqual({ 'boot.kernel': '/boot/vmlinuz', 'boot.cmdline': 'root=/dev/vda1' });
  });
});

describe('bootOf', () => {
  const image = { kernel: 'vmlinux', initrd: 'initrd.img', cmdline: 'console=ttyS0 quiet' };
  it('boots the image kernel with its command line and the instance identity', () => {
    expect(bootOf(record({}, image))).toEqual({ kind: 'kernel', kernel: '/img/vmlinux', initrd: '/img/initrd.img', cmdline: 'console=ttyS0 quiet hangar.hostname=vm1 hangar.ip=10.1.0.5/24 hangar.gw=10.1.0.1' });
  });
  it('boot.kernel replaces the image kernel, initrd and command line (none of the image\'s carries over)', () => {
    expect(bootOf(record({ 'boot.kernel': '/k' }, image))).toEqual({ kind: 'kernel', kernel: '/k', cmdline: 'console=ttyS0 hangar.hostname=vm1 hangar.ip=10.1.0.5/24 hangar.gw=10.1.0.1' });
    expect(bootOf(record({ 'boot.kernel': '/k', 'boot.initrd': '/i', 'boot.cmdline': 'root=/dev/vda1' }, {}))).toMatchObject({ kernel: '/k', initrd: '/i', cmdline: expect.stringMatching(/^root=\/dev\/vda1 hangar\.hostname=vm1 /) as unknown });
  });
  it('an explicit boot.firmware boots the disk through the firmware even when the image has a kernel', () => {
    expect(bootOf(record({ 'boot.firmware': 'bios' }, image))).toEqual({ kind: 'disk' });
    expect(bootOf(record({ 'boot.firmware': 'uefi' }, image), '/ovmf')).toEqual({ kind: 'disk', firmware: { code: '/ovmf', vars: '/p/vm1/efivars.fd' } });
  });
  it('boots from the disk when the image has no kernel: BIOS, or OVMF with the instance\'s own variable store', () => {
    expect(bootOf(record({}, { disk: 'disk.qcow2' }))).toEqual({ kind: 'disk' });
    expect(firmwareOf(record({}, { firmware: 'uefi' }))).toBe('uefi');
    expect(firmwareOf(record({ 'boot.firmware': 'bios' }, { firmware: 'uefi' }))).toBe('bios');
    expect(bootOf(record({ 'boot.firmware': 'uefi' }, {}), '/usr/share/OVMF/OVMF_CODE_4M.fd')).toEqual({ kind: 'disk', firmware: { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/p/vm1/efivars.fd' } });
    expect(() => bootOf(record({ 'boot.firmware': 'uefi' }, {}), null)).toThrow(/OVMF is not installed/);
  });
});
