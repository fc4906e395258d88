// Golden tests of the LXC config renderer: test/golden/lxc/<case>.conf; UPDATE_GOLDEN=1 rewrites them.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HostFacts, InstanceRecord } from '../../../src/drivers/driver.js';
import { renderLxcConfig, type LxcRenderInput } from '../../../src/drivers/lxc/render-config.js';

const dir = import.meta.dirname;

const hybrid: HostFacts = { cgroupLayout: 'hybrid', cpus: 2, memoryBytes: 24 * 1024 ** 3, idmap: { uidStart: 100000, gidStart: 100000, count: 65536 }, swapAccounting: true };
const v2: HostFacts = { ...hybrid, cgroupLayout: 'v2' };

const record = (config: Record<string, string>): InstanceRecord => ({
  name: 'web1',
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

const cases: Record<string, LxcRenderInput> = {
  'unprivileged-hybrid-nolimits': { record: record({}), facts: hybrid, prefix: 'hgr', lxcfsDir: null },
  'unprivileged-hybrid-limits-lxcfs': { record: record(limits), facts: hybrid, prefix: 'hgr', lxcfsDir: '/var/lib/hangar/lxcfs', cpuset: '1' },
  'unprivileged-hybrid-noswapaccounting': { record: record(limits), facts: { ...hybrid, swapAccounting: false }, prefix: 'hgr', lxcfsDir: null },
  'privileged-hybrid-limits': { record: record({ ...limits, 'security.privileged': 'true' }), facts: hybrid, prefix: 'hgr', lxcfsDir: null },
  'unprivileged-v2-limits': { record: record(limits), facts: v2, prefix: 'hgr', lxcfsDir: '/var/lib/hangar/lxcfs' },
  'privileged-v2-nolimits': { record: record({ 'security.privileged': 'true' }), facts: v2, prefix: 'hgr', lxcfsDir: null },
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

  it('refuses values that would inject config lines', () => {
    const bad = { ...cases['unprivileged-hybrid-nolimits']!, record: { ...record({}), imageProps: { init: '/sbin/init\nlxc.mount.entry = / x' } } };
    expect(() => renderLxcConfig(bad)).toThrow(/line breaks/);
  });
});
