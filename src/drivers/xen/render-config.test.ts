// Unit tests of the xl.cfg renderer and its builder: the resource model mapping, refusals, and quoting that cannot inject keys.
import { describe, expect, it } from 'vitest';
import type { InstanceRecord } from '../driver.js';
import { parseDiskSpec } from './disk-spec.js';
import { hangarWeight, renderXlConfig, xenKernelCmdline, xenVdev, xenWeight, xlConfigFor, type XlDomainConfig } from './render-config.js';
import { parseXlConfig, xlNumber, xlString, xlStringList } from './xl-cfg.js';

const record = (config: Record<string, string> = {}, over: Partial<InstanceRecord> = {}): InstanceRecord => ({
  name: 'vm1',
  host: 'dom0',
  type: 'vm',
  driver: 'xen',
  image: 'debian',
  config,
  rootPath: '/srv/vm1/root.qcow2',
  instanceDir: '/srv/vm1',
  nic: { bridge: 'hgrbr0', hostIfName: 'hgr0a1b2c3d', mac: '02:48:47:00:00:07', ipv4: '10.123.0.7', prefixLength: 24, gateway: '10.123.0.1' },
  imageProps: {},
  ...over,
});

const domain = (over: Partial<XlDomainConfig> = {}): XlDomainConfig => ({
  type: 'pvh',
  name: 'vm1',
  memoryMiB: 256,
  maxmemMiB: 256,
  vcpus: 1,
  maxvcpus: 1,
  boot: { kind: 'kernel', kernel: '/boot/vmlinuz' },
  disks: [],
  vifs: [],
  onPoweroff: 'destroy',
  onReboot: 'restart',
  onCrash: 'destroy',
  ...over,
});

const caps = { virtCaps: ['pv', 'hvm', 'hap'], hvmDeviceModel: true };

describe('xlConfigFor maps the resource model', () => {
  it('limits.memory is maxmem, limits.memory.guarantee memory, in whole MiB rounded up', () => {
    const { xl } = xlConfigFor(record({ 'limits.memory': '1GiB', 'limits.memory.guarantee': '300000000' }), caps, { type: 'pvh' });
    expect([xl.memoryMiB, xl.maxmemMiB]).toEqual([287, 1024]);
  });
  it('memory defaults to all of maxmem, and maxmem to 512 MiB or the guarantee', () => {
    expect(xlConfigFor(record({ 'limits.memory': '768MiB' }), caps, { type: 'pvh' }).xl).toMatchObject({ memoryMiB: 768, maxmemMiB: 768 });
    expect(xlConfigFor(record({}), caps, { type: 'pvh' }).xl).toMatchObject({ memoryMiB: 512, maxmemMiB: 512 });
    expect(xlConfigFor(record({ 'limits.memory.guarantee': '256MiB' }), caps, { type: 'pvh' }).xl).toMatchObject({ memoryMiB: 256, maxmemMiB: 512 });
    expect(xlConfigFor(record({ 'limits.memory.guarantee': '1GiB' }), caps, { type: 'pvh' }).xl).toMatchObject({ memoryMiB: 1024, maxmemMiB: 1024 });
  });
  it('refuses maxmem below memory', () => {
    expect(() => xlConfigFor(record({ 'limits.memory': '256MiB', 'limits.memory.guarantee': '512MiB' }), caps, { type: 'pvh' }))
      .toThrow('Instance "vm1": limits.memory (256MiB, xl maxmem) must not be below limits.memory.guarantee (512MiB, xl memory)');
    expect(() => renderXlConfig(domain({ memoryMiB: 512, maxmemMiB: 256 }))).toThrow('Invalid Xen domain "vm1": maxmem (256 MiB) must not be below memory (512 MiB): xl refuses such a domain');
  });
  it('limits.cpu is vcpus and maxvcpus (more with maxVcpus), weight is scaled, cap is a percentage', () => {
    const { xl } = xlConfigFor(record({ 'limits.cpu': '2', 'limits.cpu.weight': '50', 'limits.cpu.cap': '1.5' }), caps, { type: 'pvh', maxVcpus: 8 });
    expect(xl).toMatchObject({ vcpus: 2, maxvcpus: 8, cpuWeight: 128, cap: 150 });
    expect(xlConfigFor(record({ 'limits.cpu': '4' }), caps, { type: 'pvh', maxVcpus: 2 }).xl).toMatchObject({ vcpus: 4, maxvcpus: 4 });
    expect(xlConfigFor(record({}), caps, { type: 'pvh' }).xl).toMatchObject({ vcpus: 1, maxvcpus: 1 });
    expect(xlConfigFor(record({}), caps, { type: 'pvh' }).xl.cpuWeight).toBeUndefined();
  });
  it('scales weights both ways: Hangar 100 is Xen 256', () => {
    expect([1, 50, 100, 200, 10000].map(xenWeight)).toEqual([3, 128, 256, 512, 25600]);
    expect([1, 128, 256, 512, 65535].map(hangarWeight)).toEqual([1, 50, 100, 200, 10000]);
    for (const w of [1, 3, 77, 100, 333, 9999, 10000]) expect(hangarWeight(xenWeight(w))).toBe(w);
  });
  it('limits.disk is the root disk size the driver must make', () => {
    expect(xlConfigFor(record({ 'limits.disk': '10GiB' }), caps, { type: 'pvh' }).rootDiskBytes).toBe(10 * 1024 ** 3);
    expect(xlConfigFor(record({}), caps, { type: 'pvh' }).rootDiskBytes).toBeUndefined();
  });
  it('refuses keys Xen cannot honour, naming xen', () => {
    expect(() => xlConfigFor(record({ 'limits.memory.swap': '0', 'limits.processes': '10', 'user.note': 'x', 'devices.data.type': 'disk' }), caps, { type: 'pv' }))
      .toThrow('Instance "vm1": the xen driver does not honour limits.memory.swap, limits.processes');
    expect(() => xlConfigFor(record({ 'limits.disk.read': '50MiB' }), caps, { type: 'pv' })).toThrow('does not honour limits.disk.read');
  });
});

describe('xlConfigFor: boot, disks, NIC', () => {
  it('boots boot.kernel with its initrd and command line, then the image kernel, then firmware or pygrub', () => {
    const own = xlConfigFor(record({ 'boot.kernel': '/boot/k', 'boot.initrd': '/boot/i', 'boot.cmdline': 'root=/dev/xvda1' }), caps, { type: 'pv' }).xl.boot;
    expect(own).toEqual({ kind: 'kernel', kernel: '/boot/k', ramdisk: '/boot/i', cmdline: 'root=/dev/xvda1 console=hvc0 hangar.hostname=vm1 hangar.ip=10.123.0.7/24 hangar.gw=10.123.0.1' });
    const image = record({}, { imagePath: '/img/busybox/', imageProps: { kernel: 'vmlinux' } });
    expect(xlConfigFor(image, caps, { type: 'pvh' }).xl.boot).toMatchObject({ kind: 'kernel', kernel: '/img/busybox/vmlinux' });
    expect(xlConfigFor(image, caps, { type: 'pvh' }).xl.boot).not.toHaveProperty('ramdisk');
    expect(xlConfigFor(record({}), caps, { type: 'pv' }).xl.boot).toEqual({ kind: 'bootloader', bootloader: 'pygrub' });
    expect(xlConfigFor(record({}), caps, { type: 'hvm' }).xl.boot).toEqual({ kind: 'firmware', firmware: 'bios' });
    expect(xlConfigFor(record({ 'boot.firmware': 'uefi' }), caps, { type: 'hvm' }).xl.boot).toEqual({ kind: 'firmware', firmware: 'uefi' });
    expect(() => xlConfigFor(record({ 'boot.firmware': 'uefi' }), caps, { type: 'pvh' })).toThrow('boot.firmware is for HVM domains');
  });
  it('puts the PV console last on a PV or PVH command line, and keeps an HVM one as it is', () => {
    const r = record({}, { imageProps: { cmdline: 'console=ttyS0 quiet' } });
    expect(xenKernelCmdline(r, 'pv')).toBe('console=ttyS0 quiet console=hvc0 hangar.hostname=vm1 hangar.ip=10.123.0.7/24 hangar.gw=10.123.0.1');
    expect(xenKernelCmdline(r, 'hvm')).toBe('console=ttyS0 quiet hangar.hostname=vm1 hangar.ip=10.123.0.7/24 hangar.gw=10.123.0.1');
    expect(xenKernelCmdline(record({}, { imageProps: { cmdline: 'console=hvc0' } }), 'pvh')).toBe('console=hvc0 hangar.hostname=vm1 hangar.ip=10.123.0.7/24 hangar.gw=10.123.0.1');
  });
  it('names disks xvda, xvdb, ... (hda for an HVM root) and picks the backend by format', () => {
    expect([0, 1, 2, 26].map((i) => xenVdev(i, 'pv'))).toEqual(['xvda', 'xvdb', 'xvdc', 'xvdaa']);
    expect([0, 1].map((i) => xenVdev(i, 'hvm'))).toEqual(['hda', 'xvdb']);
    const { xl } = xlConfigFor(record({}, { rootPath: '/dev/vg0/vm1' }), caps, { type: 'pv', extraDisks: [{ path: '/srv/d.qcow2', format: 'qcow2', readOnly: true }] });
    expect(xl.disks).toEqual([
      { target: '/dev/vg0/vm1', format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk', backendtype: 'phy' },
      { target: '/srv/d.qcow2', format: 'qcow2', vdev: 'xvdb', access: 'ro', devtype: 'disk', backendtype: 'qdisk' },
    ]);
    expect(xlConfigFor(record({}), caps, { type: 'pv', rootDisk: null }).xl.disks).toEqual([]);
  });
  it('puts the NIC on the host bridge with its MAC, IPv4, host name and rate', () => {
    const { xl } = xlConfigFor(record({}, { nic: { ...record().nic, mac: '02:48:47:AA:00:07' } }), caps, { type: 'pvh', vifRate: { bytesPerSecond: 1e6, intervalUs: 50_000 } });
    expect(xl.vifs).toEqual([{ mac: '02:48:47:aa:00:07', bridge: 'hgrbr0', ip: ['10.123.0.7'], vifname: 'hgr0a1b2c3d', rate: { bytesPerSecond: 1e6, intervalUs: 50_000 } }]);
  });
  it('gives HVM domains a serial console and VNC on localhost unless told otherwise', () => {
    expect(xlConfigFor(record({}), caps, { type: 'hvm' }).xl).toMatchObject({ serial: 'pty', vnc: { listen: '127.0.0.1', unused: true } });
    expect(xlConfigFor(record({}), caps, { type: 'hvm', vnc: null }).xl.vnc).toBeUndefined();
    expect(xlConfigFor(record({}), caps, { type: 'pv' }).xl).not.toHaveProperty('serial');
    expect(xlConfigFor(record({}), caps, { type: 'pv' }).xl).not.toHaveProperty('vnc');
  });
  it('refuses what the host cannot run', () => {
    expect(() => xlConfigFor(record({}), { virtCaps: ['pv'] }, { type: 'pvh' })).toThrow('Instance "vm1" needs a PVH domain, and this Xen host\'s virt_caps (pv) lack "hvm" (no VT-x/AMD-V, or it is disabled)');
    expect(() => xlConfigFor(record({}), { virtCaps: ['hvm', 'hap'] }, { type: 'pv' })).toThrow('lack "pv"');
    expect(() => xlConfigFor(record({}), { virtCaps: ['pv', 'hvm'] }, { type: 'hvm' })).toThrow('have neither "hap" (EPT/NPT) nor "shadow" paging');
    expect(() => xlConfigFor(record({}), { virtCaps: ['pv', 'hvm', 'hap'], hvmDeviceModel: false }, { type: 'hvm' })).toThrow('has no device model');
    expect(xlConfigFor(record({}), {}, { type: 'hvm' }).xl.type).toBe('hvm');
  });
  it('refuses a host interface name that is too long for an HVM NIC and its -emu tap', () => {
    const long = record({}, { nic: { ...record().nic, hostIfName: 'hgrt0a1b2c3d' } });
    expect(xlConfigFor(long, caps, { type: 'pvh' }).xl.vifs[0]!.vifname).toBe('hgrt0a1b2c3d');
    expect(() => xlConfigFor(long, caps, { type: 'hvm' })).toThrow('vifname "hgrt0a1b2c3d" is longer than 11 characters (an HVM NIC also gets a "<vifname>-emu" tap, and interface names hold 15)');
  });
});

describe('renderXlConfig refuses inconsistent domains', () => {
  const cases: [string, Partial<XlDomainConfig>, string][] = [
    ['a bad type', { type: 'kvm' as 'pv' }, 'unknown type "kvm"'],
    ['an empty name', { name: '' }, 'the name is empty'],
    ['a bad uuid', { uuid: 'not-a-uuid' }, 'uuid "not-a-uuid" is not a UUID'],
    ['fractional memory', { memoryMiB: 1.5, maxmemMiB: 2 }, 'memory (MiB) must be a whole number'],
    ['maxvcpus below vcpus', { vcpus: 4, maxvcpus: 2 }, 'maxvcpus (2) must not be below vcpus (4)'],
    ['a weight out of range', { cpuWeight: 70000 }, 'cpu_weight must be a whole number from 1 to 65535'],
    ['a bad action', { onCrash: 'reboot' as 'restart' }, 'on_crash "reboot" is not one of destroy, restart'],
    ['a boot loader for HVM', { type: 'hvm', boot: { kind: 'bootloader', bootloader: 'pygrub' } }, 'an HVM domain boots from firmware, not a boot loader'],
    ['firmware for PVH', { boot: { kind: 'firmware', firmware: 'uefi' } }, 'a PVH domain has no firmware'],
    ['HVM firmware for PV', { type: 'pv', boot: { kind: 'firmware', firmware: 'uefi' } }, 'PV firmware is pvgrub32 or pvgrub64, not "uefi"'],
    ['an unknown HVM firmware', { type: 'hvm', boot: { kind: 'firmware', firmware: 'coreboot' } }, 'HVM firmware is bios, uefi, seabios, rombios, ovmf or an absolute path'],
    ['serial for PVH', { serial: 'pty' }, 'serial= is for HVM domains'],
    ['the same vdev twice', { disks: [parseDiskSpec('/a,raw,xvda,w'), parseDiskSpec('/b,raw,d0p0,w')] }, 'disks xvda and d0p0 are the same guest device'],
    ['a bad disk', { disks: [{ ...parseDiskSpec('/a,raw,xvda,w'), vdev: 'vda' }] }, 'disk "/a": invalid vdev "vda"'],
    ['two NICs with one name', { vifs: [{ vifname: 'a' }, { vifname: 'a' }] }, 'two NICs are named a'],
    ['an HVM model on PV', { type: 'pv', boot: { kind: 'kernel', kernel: '/k' }, vifs: [{ vifname: 'a', model: 'e1000' }] }, 'vif a: type= and model= are for HVM domains'],
    ['an HVM NIC type on PVH', { vifs: [{ type: 'vif' }] }, 'vif: type= and model= are for HVM domains'],
    ['a VNC address with a comma', { vnc: { listen: '1.2.3.4,vncpasswd=x' } }, 'the VNC address and password may not contain commas'],
  ];
  for (const [what, over, message] of cases) it(what, () => expect(() => renderXlConfig(domain(over))).toThrow(message));
});

describe('quoting cannot inject keys', () => {
  it('keeps a name, paths and a command line with quotes and line breaks inside their strings', () => {
    const evil = 'x"\nmemory = 99999\nkernel = "/evil';
    const text = renderXlConfig(domain({
      name: evil,
      boot: { kind: 'kernel', kernel: `/boot/${evil}`, ramdisk: "/boot/it's", cmdline: 'a\\"b\' #c' },
      disks: [parseDiskSpec('format=raw,vdev=xvda,target=/srv/a"b\'c #,d=e')],
      vifs: [{ bridge: 'br"0' }],
    }));
    const cfg = parseXlConfig(text);
    expect(cfg.settings.map((s) => s.key)).toEqual(['type', 'name', 'memory', 'maxmem', 'vcpus', 'maxvcpus', 'kernel', 'ramdisk', 'cmdline', 'disk', 'vif', 'on_poweroff', 'on_reboot', 'on_crash']);
    expect(xlString(cfg, 'name')).toBe(evil);
    expect(xlNumber(cfg, 'memory')).toBe(256);
    expect(xlString(cfg, 'kernel')).toBe(`/boot/${evil}`);
    expect(xlString(cfg, 'ramdisk')).toBe("/boot/it's");
    expect(xlString(cfg, 'cmdline')).toBe('a\\"b\' #c');
    expect(parseDiskSpec(xlStringList(cfg, 'disk')![0]!).target).toBe('/srv/a"b\'c #,d=e');
    expect(xlStringList(cfg, 'vif')).toEqual(['bridge=br"0']);
  });
  it('refuses a line break inside a disk or vif spec, where xl could not read it', () => {
    expect(() => renderXlConfig(domain({ disks: [{ ...parseDiskSpec('/a,raw,xvda,w'), target: '/a\nb' }] }))).toThrow('the target contains a line break');
    expect(() => renderXlConfig(domain({ vifs: [{ bridge: 'br0\nmac=1' }] }))).toThrow('contains a comma, a control character');
    expect(() => renderXlConfig(domain({ name: 'a\x00b' }))).toThrow('control character U+0000');
  });
});
