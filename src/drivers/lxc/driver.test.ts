// Unit tests of the LXC driver's pure parts: validation and the cgroup mapping of the resource model.
import { describe, expect, it } from 'vitest';
import type { HostFacts } from '../../host/facts.js';
import { ScriptedHost } from '../../host/scripted.js';
import { driverEnv, TEST_FACTS } from '../../../test/helpers/driver-env.js';
import { lxcOnHost } from './driver.js';
import { cgroupSettings } from './render-config.js';
import { cgroupDefault } from '../common/cgroup-math.js';

const facts: HostFacts = TEST_FACTS;
/** The LXC driver's validation on a host with these facts. */
const validate = (config: Record<string, string>, f: HostFacts) => lxcOnHost({ env: driverEnv(new ScriptedHost(), { facts: f }), lxcPath: '/var/lib/hangar-unit/lxc', lxcfsDir: null }).validate(config);

describe('LXC validation', () => {
  it('accepts the resource model on a host that supports it', () => {
    expect(validate({ 'limits.memory': '1GiB', 'limits.memory.swap': '0', 'limits.cpu': '2', 'limits.cpu.cap': '150%', 'limits.disk': '5GiB' }, facts)).toEqual([]);
  });
  it('refuses swap without swap accounting, naming the backend and the reason', () => {
    const p = validate({ 'limits.memory': '1GiB', 'limits.memory.swap': '1GiB' }, { ...facts, swapAccounting: false });
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/limits\.memory\.swap.*lxc backend.*memsw/);
  });
  it('refuses swap without a memory limit on v1, and values beyond the host', () => {
    expect(validate({ 'limits.memory.swap': '1GiB' }, facts)[0]).toMatch(/needs limits\.memory/);
    expect(validate({ 'limits.memory.swap': '1GiB' }, { ...facts, cgroupLayout: 'v2' })).toEqual([]);
    expect(validate({ 'limits.cpu': '3' }, facts)[0]).toMatch(/exceeds the 2 CPUs/);
    expect(validate({ 'limits.cpu.cap': '300%' }, facts)[0]).toMatch(/exceeds/);
    expect(validate({ 'limits.memory': '16GiB' }, facts)[0]).toMatch(/limits\.memory=16GiB is larger than this host's 8GiB of RAM/);
  });
});

describe('cgroupSettings', () => {
  it('maps weight and cap onto v1 and v2 knobs', () => {
    const v1 = cgroupSettings({ 'limits.cpu.weight': '100', 'limits.cpu.cap': '150%' }, facts);
    expect(v1).toEqual([
      { controller: 'cpu', file: 'cpu.shares', value: '1024' },
      { controller: 'cpu', file: 'cpu.cfs_period_us', value: '100000' },
      { controller: 'cpu', file: 'cpu.cfs_quota_us', value: '150000' },
    ]);
    const v2 = cgroupSettings({ 'limits.cpu.weight': '100', 'limits.cpu.cap': '50%', 'limits.memory': '64MiB', 'limits.memory.swap': '0' }, { ...facts, cgroupLayout: 'v2' });
    expect(v2).toEqual([
      { controller: '', file: 'memory.max', value: '67108864' },
      { controller: '', file: 'memory.swap.max', value: '0' },
      { controller: '', file: 'cpu.weight', value: '100' },
      { controller: '', file: 'cpu.max', value: '50000 100000' },
    ]);
  });
  it('has a lifting default for every file it writes', () => {
    expect(cgroupDefault({ file: 'memory.limit_in_bytes' }, '0-1')).toBe('-1');
    expect(cgroupDefault({ file: 'cpuset.cpus' }, '0-1')).toBe('0-1');
    expect(cgroupDefault({ file: 'cpu.max' }, '0-1')).toBe('max 100000');
    expect(cgroupDefault({ file: 'pids.max' }, '0-1')).toBe('max');
  });
});
