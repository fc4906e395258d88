// Unit tests of the VM cgroup mapping: weight and cap to cgroup v1 and v2 files, defaults when unset.
import { describe, expect, it } from 'vitest';
import { vmCgroupDir, vmCpuCgroupWrites } from './cgroup.js';

describe('vmCpuCgroupWrites', () => {
  it('maps weight and cap to cpu.shares and the CFS quota on v1 and hybrid hosts', () => {
    expect(vmCpuCgroupWrites({ 'limits.cpu.weight': '200', 'limits.cpu.cap': '150%' }, 'hybrid')).toEqual([
      { file: 'cpu.shares', value: '2048' },
      { file: 'cpu.cfs_period_us', value: '100000' },
      { file: 'cpu.cfs_quota_us', value: '150000' },
    ]);
  });
  it('maps them to cpu.weight and cpu.max on v2', () => {
    expect(vmCpuCgroupWrites({ 'limits.cpu.weight': '50', 'limits.cpu.cap': '0.5' }, 'v2')).toEqual([
      { file: 'cpu.weight', value: '50' },
      { file: 'cpu.max', value: '50000 100000' },
    ]);
  });
  it('writes the kernel defaults when the keys are unset (so removing a limit lifts it)', () => {
    expect(vmCpuCgroupWrites({}, 'v1').map((w) => w.value)).toEqual(['1024', '100000', '-1']);
    expect(vmCpuCgroupWrites({}, 'v2').map((w) => w.value)).toEqual(['100', 'max 100000']);
  });
  it('places VMs under <prefix>.vm', () => {
    expect(vmCgroupDir('/sys/fs/cgroup/cpu', 'hgr', 'vm1')).toBe('/sys/fs/cgroup/cpu/hgr.vm/vm1');
  });
});
