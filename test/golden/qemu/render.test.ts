// Golden tests of the QEMU argv renderer: test/golden/qemu/<case>.argv, one argument per line; UPDATE_GOLDEN=1 rewrites them.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { InstanceRecord } from '../../../src/drivers/driver.js';
import { renderQemuArgv, type QemuHostFacts, type QemuRenderInput } from '../../../src/drivers/qemu/render-argv.js';

const dir = import.meta.dirname;

const tcg: QemuHostFacts = { version: '7.2.22', accel: 'tcg' };
const kvm: QemuHostFacts = { version: '7.2.22', accel: 'kvm' };

const record = (config: Record<string, string>, image = 'busybox'): InstanceRecord => ({
  name: 'vm1', host: 'local',
  type: 'vm',
  driver: 'qemu',
  image,
  config,
  rootPath: '/var/lib/hangar/pool/vms/vm1/root.qcow2',
  instanceDir: '/var/lib/hangar/instances/vm1',
  nic: { bridge: 'hgrbr0', hostIfName: 'hgrt0a1b2c3d', mac: '02:48:47:00:00:07', ipv4: '10.123.0.7', prefixLength: 24, gateway: '10.123.0.1' },
  imageProps: {},
});

const busyboxBoot = {
  kind: 'kernel',
  kernel: '/var/lib/hangar/images/busybox-vm/vmlinux',
  initrd: '/var/lib/hangar/images/busybox-vm/initrd.img',
  cmdline: 'console=ttyS0 quiet cryptomgr.notests mitigations=off no_timer_check',
} as const;

const cases: Record<string, QemuRenderInput> = {
  'busybox-kernel-tcg-defaults': { record: record({}), facts: tcg, boot: busyboxBoot },
  'i440fx-image-props-throttled': { record: { ...record({ 'limits.disk.read': '100iops' }), imageProps: { machine: 'pc' } }, facts: tcg, boot: busyboxBoot, rootDisk: '/var/lib/hangar/pool/instances/vm1/root.qcow2' },
  'kvm-2cpu-1gib-prealloc': {
    record: record({ 'limits.cpu': '2', 'limits.memory': '1GiB', 'limits.memory.guarantee': '1GiB' }, 'debian'),
    facts: kvm,
    boot: { kind: 'disk' },
    uuid: '6f1c9a52-3b1e-4c8e-9a57-0d2f4e8b1c33',
  },
  'disk-boot-extra-disk-throttled': {
    record: record({ 'limits.memory': '768MiB', 'limits.memory.guarantee': '256MiB', 'limits.disk.read': '50MiB', 'limits.disk.write': '200iops' }, 'debian'),
    facts: tcg,
    boot: { kind: 'disk' },
    extraDisks: [{ path: '/var/lib/hangar/pool/vms/vm1/data.qcow2', format: 'qcow2', serial: 'data' }],
  },
  'incoming-stateful-restore': { record: record({ 'limits.memory': '256MiB' }), facts: tcg, boot: busyboxBoot, incoming: true },
  'foreground-full-sandbox-uefi': {
    record: record({}, 'debian'),
    facts: kvm,
    boot: { kind: 'disk', firmware: { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/var/lib/hangar/instances/vm1/OVMF_VARS.fd' } },
    daemonize: false,
  },
};

describe('renderQemuArgv goldens', () => {
  for (const [name, input] of Object.entries(cases)) {
    it(name, () => {
      const file = join(dir, `${name}.argv`);
      const got = `${renderQemuArgv(input).join('\n')}\n`;
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, got);
      expect(got).toBe(readFileSync(file, 'utf8'));
    });
  }

  it('has no argument that spans lines, so the golden format is faithful', () => {
    for (const input of Object.values(cases)) for (const a of renderQemuArgv(input)) expect(a).not.toMatch(/\n/);
  });
});
