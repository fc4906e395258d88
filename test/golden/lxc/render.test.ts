// Golden tests of the LXC renderers: test/golden/lxc/<case>.conf and seccomp.profile; UPDATE_GOLDEN=1 rewrites them.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HostFacts, InstanceRecord } from '../../../src/drivers/driver.js';
import { renderLxcConfig, type LxcRenderInput } from '../../../src/drivers/lxc/render-config.js';
import { BTRFS_CREATE_IOCTLS, renderSeccompProfile } from '../../../src/drivers/lxc/render-seccomp.js';

const dir = import.meta.dirname;

const hybrid: HostFacts = { cgroupLayout: 'hybrid', cpus: 2, memoryBytes: 24 * 1024 ** 3, idmap: { uidStart: 100000, gidStart: 100000, count: 65536 }, swapAccounting: true };
const v2: HostFacts = { ...hybrid, cgroupLayout: 'v2' };

const record = (config: Record<string, string>): InstanceRecord => ({
  name: 'web1', host: 'local',
  type: 'container',
  driver: 'lxc',
  image: 'busybox',
  config,
  rootPath: '/var/lib/hangar/pool/containers/web1/rootfs',
  instanceDir: '/var/lib/hangar/instances/web1',
  nic: { bridge: 'hgrbr0', hostIfName: 'hgrv3', mac: '02:48:47:00:00:03', ipv4: '10.123.0.3', prefixLength: 24, gateway: '10.123.0.1' },
  imageProps: { init: '/sbin/init', haltSignal: 'SIGUSR2' },
});

const limits = {
  'limits.memory': '256MiB',
  'limits.memory.guarantee': '128MiB',
  'limits.memory.swap': '64MiB',
  'limits.cpu': '1',
  'limits.cpu.weight': '200',
  'limits.cpu.cap': '150%',
  'limits.processes': '500',
  'limits.disk': '2GiB',
};

const seccompProfile = '/var/lib/hangar/lxc/web1/seccomp';

const cases: Record<string, LxcRenderInput> = {
  'unprivileged-hybrid-nolimits': { record: record({}), facts: hybrid, prefix: 'hgr', seccompProfile, lxcfsDir: null },
  'unprivileged-hybrid-limits-lxcfs': { record: record(limits), facts: hybrid, prefix: 'hgr', seccompProfile, lxcfsDir: '/var/lib/hangar/lxcfs', cpuset: '1' },
  'unprivileged-hybrid-noswapaccounting': { record: record(limits), facts: { ...hybrid, swapAccounting: false }, prefix: 'hgr', seccompProfile, lxcfsDir: null },
  'privileged-hybrid-limits': { record: record({ ...limits, 'security.privileged': 'true' }), facts: hybrid, prefix: 'hgr', seccompProfile, lxcfsDir: null },
  'unprivileged-v2-limits': { record: record(limits), facts: v2, prefix: 'hgr', seccompProfile, lxcfsDir: '/var/lib/hangar/lxcfs' },
  'privileged-v2-nolimits': { record: record({ 'security.privileged': 'true' }), facts: v2, prefix: 'hgr', seccompProfile, lxcfsDir: null },
  'unprivileged-v2-isolated-fuse-tun': {
    record: { ...record({ 'security.devices.fuse': 'true', 'security.devices.tun': 'true' }), idmap: { uidStart: 1065536, gidStart: 1065536, count: 65536 } },
    facts: v2, prefix: 'hgr', seccompProfile, lxcfsDir: null,
  },
  // OpenVZ's venet: router-mode veth, /32 addresses, its own host name.
  'unprivileged-hybrid-venet': {
    record: { ...record(limits), name: 'ct101', rootPath: '/var/lib/hangar/openvz/root/ct101' }, facts: hybrid, prefix: 'hgr', seccompProfile, lxcfsDir: '/var/lib/hangar/lxcfs',
    hostname: 'web.example.org', routed: { name: 'venet0', addresses: ['10.123.0.3', '10.123.0.40'] },
  },
  // vzctl --netif_add eth0: the instance's own address on a bridged eth0, more addresses on venet0.
  'unprivileged-hybrid-venet-netif': {
    record: { ...record(limits), name: 'ct102', rootPath: '/var/lib/hangar/openvz/root/ct102' }, facts: hybrid, prefix: 'hgr', seccompProfile, lxcfsDir: '/var/lib/hangar/lxcfs',
    routed: { name: 'venet0', addresses: ['10.123.0.41'], bridged: 'eth0' },
  },
};

describe('renderLxcConfig goldens', () => {
  for (const [name, input] of Object.entries(cases)) {
    it(name, () => {
      const file = join(dir, `${name}.conf`);
      const got = renderLxcConfig(input);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, got);
      expect(got).toBe(readFileSync(file, 'utf8'));
    });
  }

  it('never emits cgroup2 keys on a hybrid host, nor v1 keys on pure v2', () => {
    expect(renderLxcConfig(cases['unprivileged-hybrid-limits-lxcfs']!)).not.toMatch(/^lxc\.cgroup2\./m);
    expect(renderLxcConfig(cases['unprivileged-v2-limits']!)).not.toMatch(/^lxc\.cgroup\.(memory|cpu|pids)/m);
  });

  it('denies every device but the standard set to every container, privileged or not; fuse and tun only when asked', () => {
    for (const [name, input] of Object.entries(cases)) {
      const conf = renderLxcConfig(input);
      const key = input.facts.cgroupLayout === 'v2' ? 'lxc.cgroup2.devices' : 'lxc.cgroup.devices';
      expect(conf, name).toContain(`${key}.deny = a\n`);
      const allowed = conf.split('\n').filter((l) => l.startsWith(`${key}.allow = `)).map((l) => l.slice(`${key}.allow = `.length));
      expect(allowed.filter((r) => r.endsWith('rw') || r.endsWith('rwm')).every((r) => /^c (1:[35789]|5:[012]|136:\*|10:229|10:200) rwm$/.test(r)), name).toBe(true);
      expect(allowed.some((r) => r.startsWith('b ') && r !== 'b *:* m'), name).toBe(false);
      expect(allowed.includes('c 10:229 rwm'), name).toBe(input.record.config['security.devices.fuse'] === 'true');
      expect(allowed.includes('c 10:200 rwm'), name).toBe(input.record.config['security.devices.tun'] === 'true');
    }
  });

  it('refuses values that would inject config lines', () => {
    const bad = { ...cases['unprivileged-hybrid-nolimits']!, record: { ...record({}), imageProps: { init: '/sbin/init\nlxc.mount.entry = / x' } } };
    expect(() => renderLxcConfig(bad)).toThrow(/line breaks/);
  });
});

describe('renderSeccompProfile golden', () => {
  it('seccomp.profile', () => {
    const file = join(dir, 'seccomp.profile');
    const got = renderSeccompProfile();
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, got);
    expect(got).toBe(readFileSync(file, 'utf8'));
  });

  it('keeps every rule of LXC\'s common.seccomp', () => {
    const rules = (text: string) => text.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean);
    const ours = rules(renderSeccompProfile());
    const common = '/usr/share/lxc/config/common.seccomp';
    // The host's copy when LXC is installed, else the LXC 5.0 text it was taken from.
    const theirs = existsSync(common) ? readFileSync(common, 'utf8') : '2\ndenylist\nreject_force_umount\n[all]\nkexec_load errno 1\nopen_by_handle_at errno 1\ninit_module errno 1\nfinit_module errno 1\ndelete_module errno 1\n';
    expect(ours.slice(0, rules(theirs).length)).toEqual(rules(theirs));
  });

  it('denies each btrfs create ioctl with EPERM, compared on the low 32 bits only, with no trailing text LXC would misparse', () => {
    const text = renderSeccompProfile();
    for (const { cmd } of BTRFS_CREATE_IOCTLS) expect(text).toContain(`\nioctl errno 1 [1,0x${cmd.toString(16)},SCMP_CMP_MASKED_EQ,0xffffffff]\n`);
    // _IOW(0x94, nr, 4096-byte struct): dir write (1) << 30 | size << 16 | type << 8 | nr.
    const iow = (nr: number) => ((1 << 30) | (4096 << 16) | (0x94 << 8) | nr) >>> 0;
    expect(BTRFS_CREATE_IOCTLS.map((i) => i.cmd)).toEqual([iow(1), iow(14), iow(23), iow(24)]);
    for (const line of text.split('\n')) if (line.includes('[') && !line.startsWith('#')) expect(line).toMatch(/\]$/);
  });
});
