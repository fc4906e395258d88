// Golden tests of the xl.cfg renderer: test/golden/xen/<case>.cfg, one key per line; UPDATE_GOLDEN=1 rewrites them.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { InstanceRecord } from '../../../src/drivers/driver.js';
import { parseDiskSpec } from '../../../src/drivers/xen/disk-spec.js';
import { renderXlConfig, xlConfigFor, type XenBuildOptions, type XenHostFacts } from '../../../src/drivers/xen/render-config.js';
import { parseVifSpec } from '../../../src/drivers/xen/vif-spec.js';
import { parseXlConfig, xlStringList } from '../../../src/drivers/xen/xl-cfg.js';

const dir = import.meta.dirname;

const facts: XenHostFacts = { virtCaps: ['pv', 'hvm', 'hap', 'shadow'], hvmDeviceModel: true };

const record = (config: Record<string, string>, over: Partial<InstanceRecord> = {}): InstanceRecord => ({
  name: 'vm1',
  host: 'dom0',
  type: 'vm',
  driver: 'xen',
  image: 'busybox',
  config,
  rootPath: '/var/lib/hangar/pool/vms/vm1/root.qcow2',
  instanceDir: '/var/lib/hangar/instances/vm1',
  nic: { bridge: 'hgrbr0', hostIfName: 'hgr0a1b2c3d', mac: '02:48:47:00:00:07', ipv4: '10.123.0.7', prefixLength: 24, gateway: '10.123.0.1' },
  imageProps: {},
  ...over,
});

const busybox = {
  image: 'busybox',
  imagePath: '/var/lib/hangar/images/busybox-vm',
  imageProps: { kernel: 'vmlinux', initrd: 'initrd.img', cmdline: 'console=ttyS0 quiet' },
};

const cases: Record<string, { record: InstanceRecord; opts: XenBuildOptions }> = {
  'pv-kernel-ramdisk-cmdline': { record: record({}, busybox), opts: { type: 'pv' } },
  'pv-pygrub-limits-lv-extra-disk-vfb': {
    record: record(
      { 'limits.memory': '1GiB', 'limits.memory.guarantee': '512MiB', 'limits.cpu': '2', 'limits.cpu.weight': '200', 'limits.cpu.cap': '150%', 'limits.disk': '10GiB' },
      { image: 'debian', rootPath: '/dev/vg0/hangar-vm1' },
    ),
    opts: {
      type: 'pv',
      uuid: '6f1c9a52-3b1e-4c8e-9a57-0d2f4e8b1c33',
      extraDisks: [{ path: '/var/lib/hangar/pool/vms/vm1/data.raw', format: 'raw' }],
      vnc: { listen: '127.0.0.1', unused: true },
    },
  },
  'pvh-kernel-rate-maxvcpus': {
    record: record({ 'boot.kernel': '/boot/vmlinuz-6.1.0-13-amd64', 'boot.initrd': '/boot/initrd.img-6.1.0-13-amd64', 'boot.cmdline': 'root=/dev/xvda1 ro', 'limits.memory': '768MiB', 'limits.cpu': '1' }),
    opts: { type: 'pvh', maxVcpus: 4, vifRate: { bytesPerSecond: 1_250_000, intervalUs: 20_000 } },
  },
  'hvm-bios-serial-vnc': {
    record: record({ 'limits.memory': '2GiB' }, { image: 'debian', rootPath: '/var/lib/hangar/pool/vms/vm1/root.raw' }),
    opts: { type: 'hvm', rootDisk: { path: '/var/lib/hangar/pool/vms/vm1/root.raw', format: 'raw' }, extraDisks: [{ path: '/var/lib/hangar/pool/vms/vm1/seed.qcow2', format: 'qcow2', readOnly: true }] },
  },
  'hvm-uefi-limits-vnc-password': {
    record: record({ 'boot.firmware': 'uefi', 'limits.memory': '4GiB', 'limits.memory.guarantee': '4GiB', 'limits.cpu': '4', 'limits.cpu.cap': '250%' }, { image: 'debian' }),
    opts: { type: 'hvm', vnc: { listen: '127.0.0.1', display: 7, password: 's3cret' }, actions: { onCrash: 'preserve' } },
  },
};

describe('renderXlConfig goldens', () => {
  for (const [name, { record: r, opts }] of Object.entries(cases)) {
    it(name, () => {
      const file = join(dir, `${name}.cfg`);
      const got = renderXlConfig(xlConfigFor(r, facts, opts).xl);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, got);
      expect(got).toBe(readFileSync(file, 'utf8'));
    });
  }

  it('writes one key per line, and xl syntax that parses back to the same disks and NICs', () => {
    for (const { record: r, opts } of Object.values(cases)) {
      const plan = xlConfigFor(r, facts, opts).xl;
      const text = renderXlConfig(plan);
      const lines = text.trimEnd().split('\n');
      for (const line of lines) expect(line).toMatch(/^[a-z_]+ = /);
      const cfg = parseXlConfig(text);
      expect(cfg.settings.map((s) => s.key)).toEqual(lines.map((l) => l.split(' ')[0]));
      expect(xlStringList(cfg, 'disk')!.map(parseDiskSpec)).toEqual(plan.disks);
      expect(xlStringList(cfg, 'vif')!.map(parseVifSpec)).toEqual(plan.vifs);
    }
  });
});
