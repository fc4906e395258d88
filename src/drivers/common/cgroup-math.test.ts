// Table tests of the cgroup formulas: weight to shares, cap to quota and cpu.max, cpusets, the v1 and v2 files of the resource model, and the defaults that lift them.
import { describe, expect, it } from 'vitest';
import {
  cgroupDefault, cgroupLimits, CPU_PERIOD_US, cpuCgroupFiles, cpuMax, cpuQuotaUs, cpuShares, firstCpus, usesV1,
} from './cgroup-math.js';

const MiB = 1024 ** 2;

describe('CPU formulas', () => {
  it.each([
    [1, 10], [2, 20], [50, 512], [100, 1024], [200, 2048], [10000, 102400],
  ])('weight %i is %i cpu.shares', (weight, shares) => {
    expect(cpuShares(weight)).toBe(shares);
  });
  it('never goes below the kernel minimum of 2 shares', () => {
    expect(cpuShares(0)).toBe(2);
  });

  it.each([
    [150, 150_000, '150000 100000'],
    [50, 50_000, '50000 100000'],
    [100, 100_000, '100000 100000'],
    [0.5, 1000, '1000 100000'],
    [0.004, 1000, '1000 100000'],
    [400, 400_000, '400000 100000'],
  ])('a cap of %f%% is a quota of %i us (cpu.max %s)', (pct, quota, max) => {
    expect(cpuQuotaUs(pct)).toBe(quota);
    expect(cpuMax(pct)).toBe(max);
  });
  it('has no quota without a cap', () => {
    expect(cpuMax(undefined)).toBe(`max ${CPU_PERIOD_US}`);
  });

  it.each([[0, '0'], [1, '0'], [2, '0-1'], [8, '0-7']])('the first %i CPUs are %s', (n, set) => {
    expect(firstCpus(n)).toBe(set);
  });

  it('sends limits to v1 controllers on v1 and hybrid hosts', () => {
    expect([usesV1('v1'), usesV1('hybrid'), usesV1('v2')]).toEqual([true, true, false]);
  });
});

describe('cgroupLimits', () => {
  const all = { memoryMax: 256 * MiB, memoryGuarantee: 128 * MiB, memorySwap: 64 * MiB, cpuCount: 2, cpuWeight: 200, cpuCapPct: 150, processes: 100 };

  it('writes every limit as v1 files on v1 and hybrid hosts, memsw after limit_in_bytes', () => {
    const want = [
      { controller: 'memory', file: 'memory.limit_in_bytes', value: String(256 * MiB) },
      { controller: 'memory', file: 'memory.soft_limit_in_bytes', value: String(128 * MiB) },
      { controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: String(320 * MiB) },
      { controller: 'cpuset', file: 'cpuset.cpus', value: '0-1' },
      { controller: 'cpu', file: 'cpu.shares', value: '2048' },
      { controller: 'cpu', file: 'cpu.cfs_period_us', value: '100000' },
      { controller: 'cpu', file: 'cpu.cfs_quota_us', value: '150000' },
      { controller: 'pids', file: 'pids.max', value: '100' },
    ];
    expect(cgroupLimits(all, 'v1', { swapAccounting: true })).toEqual(want);
    expect(cgroupLimits(all, 'hybrid', { swapAccounting: true })).toEqual(want);
  });

  it('writes every limit as v2 files on pure v2 (swap on its own, no controller names)', () => {
    expect(cgroupLimits(all, 'v2', { swapAccounting: true, cpuset: '1,3' })).toEqual([
      { controller: '', file: 'memory.max', value: String(256 * MiB) },
      { controller: '', file: 'memory.low', value: String(128 * MiB) },
      { controller: '', file: 'memory.swap.max', value: String(64 * MiB) },
      { controller: '', file: 'cpuset.cpus', value: '1,3' },
      { controller: '', file: 'cpu.weight', value: '200' },
      { controller: '', file: 'cpu.max', value: '150000 100000' },
      { controller: '', file: 'pids.max', value: '100' },
    ]);
  });

  it('leaves memsw out without swap accounting or without a memory limit (v1)', () => {
    const files = (r: Parameters<typeof cgroupLimits>[0], swapAccounting: boolean) => cgroupLimits(r, 'v1', { swapAccounting }).map((s) => s.file);
    expect(files(all, false)).not.toContain('memory.memsw.limit_in_bytes');
    expect(files({ memorySwap: 0 }, true)).toEqual([]);
    expect(cgroupLimits({ memoryMax: 64 * MiB, memorySwap: 0 }, 'v1', { swapAccounting: true }).at(-1)).toEqual({ controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: String(64 * MiB) });
  });

  it('writes nothing for an empty resource model', () => {
    expect(cgroupLimits({}, 'v1')).toEqual([]);
    expect(cgroupLimits({}, 'v2')).toEqual([]);
  });
});

describe('defaults and the cpu files of a VM', () => {
  it.each([
    ['memory.limit_in_bytes', '-1'], ['memory.soft_limit_in_bytes', '-1'], ['memory.memsw.limit_in_bytes', '-1'],
    ['cpu.cfs_quota_us', '-1'], ['cpu.cfs_period_us', '100000'], ['cpu.shares', '1024'], ['cpuset.cpus', '0-3'],
    ['memory.low', '0'], ['cpu.weight', '100'], ['cpu.max', 'max 100000'], ['memory.max', 'max'], ['memory.swap.max', 'max'], ['pids.max', 'max'],
  ])('%s is lifted with %s', (file, value) => {
    expect(cgroupDefault({ file }, '0-3')).toBe(value);
  });

  it('gives every cpu file, at its default when unset, v1 and v2', () => {
    expect(cpuCgroupFiles({ cpuWeight: 200, cpuCapPct: 150 }, 'hybrid').map((s) => [s.file, s.value])).toEqual([['cpu.shares', '2048'], ['cpu.cfs_period_us', '100000'], ['cpu.cfs_quota_us', '150000']]);
    expect(cpuCgroupFiles({}, 'v1').map((s) => [s.file, s.value])).toEqual([['cpu.shares', '1024'], ['cpu.cfs_period_us', '100000'], ['cpu.cfs_quota_us', '-1']]);
    expect(cpuCgroupFiles({ cpuWeight: 50 }, 'v2').map((s) => [s.file, s.value])).toEqual([['cpu.weight', '50'], ['cpu.max', 'max 100000']]);
    expect(cpuCgroupFiles({ cpuCapPct: 50 }, 'v2').map((s) => [s.file, s.value])).toEqual([['cpu.weight', '100'], ['cpu.max', '50000 100000']]);
  });
});
