// Unit tests of the QEMU argv renderer's helpers and rules (the full argv is golden-tested in test/golden/qemu).
import { describe, expect, it } from 'vitest';
import type { InstanceRecord } from '../driver.js';
import { HOTPLUG_PORTS, ioLimitsOf, parseIoLimit, qemuMachineType, qemuOptEscape, qemuPaths, renderQemuArgv, SANDBOX_DAEMONIZE, SANDBOX_FULL, type QemuRenderInput } from './render-argv.js';

const record: InstanceRecord = {
  name: 'vm1', host: 'local',
  type: 'vm',
  driver: 'qemu',
  image: 'busybox',
  config: {},
  rootPath: '/pool/vm1.qcow2',
  instanceDir: '/inst/vm1',
  nic: { bridge: 'br0', hostIfName: 'tap0', mac: '02:00:00:00:00:01', ipv4: '10.0.0.2', prefixLength: 24, gateway: '10.0.0.1' },
  imageProps: {},
};
const base: QemuRenderInput = { record, facts: { version: '7.2.22', accel: 'tcg' }, boot: { kind: 'kernel', kernel: '/k' } };
const valueOf = (argv: string[], flag: string) => argv.filter((_, i) => argv[i - 1] === flag);

describe('qemuOptEscape', () => {
  it('doubles commas and refuses line breaks and other control characters', () => {
    expect(qemuOptEscape('/a,b/c', 'path')).toBe('/a,,b/c');
    expect(qemuOptEscape('plain', 'x')).toBe('plain');
    expect(() => qemuOptEscape('a\nb', 'path')).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    expect(() => qemuOptEscape('a\0b', 'path')).toThrow(/control characters/);
  });
  it('keeps an injected option inside its value', () => {
    const argv = renderQemuArgv({ ...base, record: { ...record, instanceDir: '/inst/x,server=off', nic: { ...record.nic, hostIfName: 'tap0,script=/evil' } } });
    expect(argv).toContain('tap,id=net0,ifname=tap0,,script=/evil,script=no,downscript=no');
    expect(valueOf(argv, '-chardev')[0]).toBe('socket,id=qmp,path=/inst/x,,server=off/qmp.sock,server=on,wait=off');
    expect(() => renderQemuArgv({ ...base, boot: { kind: 'kernel', kernel: '/k', cmdline: 'quiet\ninit=/bin/sh' } })).toThrow(/line breaks/);
  });
});

describe('resource mapping', () => {
  it('defaults to 512 MiB and one vCPU, with a balloon', () => {
    const argv = renderQemuArgv(base);
    expect(valueOf(argv, '-m')).toEqual(['512M']);
    expect(valueOf(argv, '-smp')).toEqual(['cpus=1,sockets=1,cores=1,threads=1']);
    expect(argv.some((a) => a.startsWith('virtio-balloon-pci'))).toBe(true);
  });
  it('preallocates when the guarantee is the whole memory, and rounds up to whole MiB', () => {
    const argv = renderQemuArgv({ ...base, record: { ...record, config: { 'limits.memory': '100MB', 'limits.memory.guarantee': '100MB' } } });
    expect(valueOf(argv, '-m')).toEqual(['96M']);
    expect(argv).toContain('memory-backend-ram,id=ram0,size=96M,prealloc=on');
    expect(valueOf(argv, '-machine')[0]).toMatch(/,memory-backend=ram0/);
    expect(argv.some((a) => a.startsWith('virtio-balloon-pci'))).toBe(false);
  });
  it('parses disk limits as bytes or operations per second', () => {
    expect(parseIoLimit('50MiB', 'k')).toEqual({ bps: 50 * 1024 ** 2 });
    expect(parseIoLimit('10MB/s', 'k')).toEqual({ bps: 10_000_000 });
    expect(parseIoLimit('200iops', 'k')).toEqual({ iops: 200 });
    expect(() => parseIoLimit('fast', 'limits.disk.read')).toThrow(/limits\.disk\.read.*100iops/);
    expect(ioLimitsOf({ 'limits.disk.read': '1000iops', 'limits.disk.write': '1MiB' })).toEqual({ iopsRead: 1000, bpsWrite: 1024 ** 2 });
  });
  it('puts every disk into one throttle group, above the qcow2 node, with unlimited (0) fields when no limit is set', () => {
    const free = renderQemuArgv({ ...base, rootDisk: '/r' });
    expect(JSON.parse(valueOf(free, '-object')[0]!)).toEqual({ 'qom-type': 'throttle-group', id: 'io0', limits: { 'bps-read': 0, 'bps-write': 0, 'iops-read': 0, 'iops-write': 0 } });
    expect(valueOf(free, '-device')).toContain('virtio-blk-pci,id=root-dev,drive=root-io');
    const argv = renderQemuArgv({ ...base, rootDisk: null, record: { ...record, config: { 'limits.disk.write': '5MiB' } }, extraDisks: [{ path: '/d1', format: 'raw', readOnly: true }] });
    expect(JSON.parse(valueOf(argv, '-object')[0]!)).toEqual({ 'qom-type': 'throttle-group', id: 'io0', limits: { 'bps-read': 0, 'bps-write': 5 * 1024 ** 2, 'iops-read': 0, 'iops-write': 0 } });
    expect(valueOf(argv, '-blockdev')).toEqual([
      'driver=file,node-name=disk1-file,filename=/d1,discard=unmap,read-only=on',
      'driver=raw,node-name=disk1,file=disk1-file,discard=unmap,read-only=on',
      'driver=throttle,node-name=disk1-io,throttle-group=io0,file=disk1,read-only=on',
    ]);
  });
});

describe('disk hot-plug', () => {
  it('gives Q35 VMs empty PCIe root ports, i440FX none, and puts a disk on the port it was given', () => {
    const q35 = renderQemuArgv({ ...base, machine: 'pc-q35-7.2', extraDisks: [{ path: '/d', format: 'qcow2', serial: 'data', node: 'dev-data', bus: 'hp2' }] });
    const ports = valueOf(q35, '-device').filter((d) => d.startsWith('pcie-root-port,'));
    expect(ports).toHaveLength(HOTPLUG_PORTS);
    expect(ports[0]).toBe('pcie-root-port,id=hp0,chassis=1');
    expect(valueOf(q35, '-device')).toContain('virtio-blk-pci,id=dev-data-dev,drive=dev-data-io,bus=hp2,serial=data');
    expect(valueOf(q35, '-blockdev')).toContain('driver=qcow2,node-name=dev-data,file=dev-data-file,discard=unmap');
    const pc = renderQemuArgv({ ...base, machine: 'pc-i440fx-7.2' });
    expect(valueOf(pc, '-device').some((d) => d.startsWith('pcie-root-port'))).toBe(false);
  });
});

describe('host facts and modes', () => {
  it('chooses the CPU model and machine type from the facts', () => {
    expect(valueOf(renderQemuArgv(base), '-cpu')).toEqual(['qemu64']);
    expect(valueOf(renderQemuArgv({ ...base, facts: { version: '8.2.0', accel: 'kvm' } }), '-cpu')).toEqual(['host']);
    expect(qemuMachineType('7.2.22')).toBe('pc-i440fx-7.2');
    expect(qemuMachineType(null)).toBe('pc');
    expect(qemuMachineType('7.2.22', 'q35')).toBe('pc-q35-7.2');
    expect(qemuMachineType(null, 'q35')).toBe('q35');
    const q35 = { ...base, record: { ...base.record, imageProps: { machine: 'q35' } } };
    expect(valueOf(renderQemuArgv(q35), '-machine')[0]).toMatch(/^pc-q35-7\.2,/);
    // An unknown family from an imported image's properties never reaches QEMU: the default (Q35) is used.
    const odd = { ...base, record: { ...base.record, imageProps: { machine: 'microvm,x=1' } } };
    expect(valueOf(renderQemuArgv(odd), '-machine')[0]).toMatch(/^pc-q35-7\.2,/);
    const pc = { ...base, record: { ...base.record, imageProps: { machine: 'pc' } } };
    expect(valueOf(renderQemuArgv(pc), '-machine')[0]).toMatch(/^pc-i440fx-7\.2,/);
    expect(valueOf(renderQemuArgv({ ...base, machine: 'pc-i440fx-7.1' }), '-machine')[0]).toMatch(/^pc-i440fx-7\.1,/);
  });
  it('uses the full sandbox only when QEMU does not daemonize itself', () => {
    const d = renderQemuArgv(base);
    expect(valueOf(d, '-sandbox')).toEqual([SANDBOX_DAEMONIZE]);
    expect(d.at(-1)).toBe('-daemonize');
    const f = renderQemuArgv({ ...base, daemonize: false });
    expect(valueOf(f, '-sandbox')).toEqual([SANDBOX_FULL]);
    expect(f).not.toContain('-daemonize');
  });
  it('names every file inside the instance directory', () => {
    expect(qemuPaths('/i')).toEqual({ qmp: '/i/qmp.sock', console: '/i/console.sock', consoleLog: '/i/console.log', qga: '/i/qga.sock', vnc: '/i/vnc.sock', pid: '/i/qemu.pid', log: '/i/qemu.log' });
  });
});
