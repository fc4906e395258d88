// The cgroup formulas every backend shares: the resource model as cgroup v1 and v2 files (CPU weight, cap, cpuset, memory, swap, pids) and their kernel defaults.
import type { Resources } from '../../shared/config.js';
import type { CgroupLayout } from '../../host/facts.js';

/** CFS period used for CPU caps, in microseconds. */
export const CPU_PERIOD_US = 100_000;

/** limits.cpu.weight when unset: cgroup v2's default cpu.weight, which cgroup v1 spells as 1024 cpu.shares. */
export const DEFAULT_CPU_WEIGHT = 100;

/** The cpu controller files a CPU weight and cap live in, in the order they are written. */
export const CPU_FILES = { v1: ['cpu.shares', 'cpu.cfs_period_us', 'cpu.cfs_quota_us'], v2: ['cpu.weight', 'cpu.max'] } as const;

/** One cgroup file value; controller is the v1 controller ("" on pure v2). */
export interface CgroupSetting {
  controller: string;
  file: string;
  value: string;
}

/** True when the limits go to v1 controllers: on v1 and on hybrid hosts (where the cgroup2 tree has no controllers). */
export function usesV1(layout: CgroupLayout): boolean {
  return layout !== 'v2';
}

/** cgroup v1 cpu.shares for a weight (1-10000; 100 is 1024 shares); at least 2, the kernel's minimum. */
export function cpuShares(weight: number): number {
  return Math.max(2, Math.round((weight * 1024) / DEFAULT_CPU_WEIGHT));
}

/** CFS quota per CPU_PERIOD_US for a cap in percent of one CPU (150 = one and a half CPUs); at least 1000 µs, as the kernel refuses less. */
export function cpuQuotaUs(capPct: number): number {
  return Math.max(1000, Math.round((capPct / 100) * CPU_PERIOD_US));
}

/** cgroup v2 cpu.max for a cap: "<quota> <period>", or "max <period>" without one. */
export function cpuMax(capPct: number | undefined): string {
  return `${capPct === undefined ? 'max' : cpuQuotaUs(capPct)} ${CPU_PERIOD_US}`;
}

/** cpuset string for the first n CPUs: "0", "0-1", ... */
export function firstCpus(n: number): string {
  return n <= 1 ? '0' : `0-${n - 1}`;
}

/** Options of cgroupLimits. */
export interface CgroupLimitOptions {
  /** Swap is accounted per cgroup: without it cgroup v1 has no memory.memsw.* files to write. */
  swapAccounting?: boolean | undefined;
  /** CPUs for limits.cpu chosen by the caller ("0,2"); defaults to the first cpuCount CPUs. */
  cpuset?: string | undefined;
}

/** The cgroup files for the limits that are set: v1 files on v1 and hybrid hosts, v2 files on pure v2. */
export function cgroupLimits(r: Resources, layout: CgroupLayout, opts: CgroupLimitOptions = {}): CgroupSetting[] {
  const out: CgroupSetting[] = [];
  const v1 = usesV1(layout);
  const set = (controller: string, file: string, value: number | string) => out.push({ controller: v1 ? controller : '', file, value: String(value) });
  const cpuset = r.cpuCount === undefined ? undefined : opts.cpuset ?? firstCpus(r.cpuCount);
  if (v1) {
    if (r.memoryMax !== undefined) set('memory', 'memory.limit_in_bytes', r.memoryMax);
    if (r.memoryGuarantee !== undefined) set('memory', 'memory.soft_limit_in_bytes', r.memoryGuarantee);
    // memsw counts memory plus swap; it must be written after (and be at least) limit_in_bytes.
    if (r.memorySwap !== undefined && r.memoryMax !== undefined && opts.swapAccounting) set('memory', 'memory.memsw.limit_in_bytes', r.memoryMax + r.memorySwap);
    if (cpuset !== undefined) set('cpuset', 'cpuset.cpus', cpuset);
    if (r.cpuWeight !== undefined) set('cpu', 'cpu.shares', cpuShares(r.cpuWeight));
    if (r.cpuCapPct !== undefined) {
      set('cpu', 'cpu.cfs_period_us', CPU_PERIOD_US);
      set('cpu', 'cpu.cfs_quota_us', cpuQuotaUs(r.cpuCapPct));
    }
  } else {
    if (r.memoryMax !== undefined) set('', 'memory.max', r.memoryMax);
    if (r.memoryGuarantee !== undefined) set('', 'memory.low', r.memoryGuarantee);
    if (r.memorySwap !== undefined) set('', 'memory.swap.max', r.memorySwap);
    if (cpuset !== undefined) set('', 'cpuset.cpus', cpuset);
    if (r.cpuWeight !== undefined) set('', 'cpu.weight', r.cpuWeight);
    if (r.cpuCapPct !== undefined) set('', 'cpu.max', cpuMax(r.cpuCapPct));
  }
  if (r.processes !== undefined) set('pids', 'pids.max', r.processes);
  return out;
}

/** The value that lifts a limit (the kernel default) for every file cgroupLimits may write; allCpus is the parent's cpuset. */
export function cgroupDefault(setting: Pick<CgroupSetting, 'file'>, allCpus: string): string {
  switch (setting.file) {
    case 'memory.limit_in_bytes':
    case 'memory.soft_limit_in_bytes':
    case 'memory.memsw.limit_in_bytes':
    case 'cpu.cfs_quota_us':
      return '-1';
    case 'cpu.cfs_period_us':
      return String(CPU_PERIOD_US);
    case 'cpu.shares':
      return String(cpuShares(DEFAULT_CPU_WEIGHT));
    case 'cpuset.cpus':
      return allCpus;
    case 'memory.low':
      return '0';
    case 'cpu.weight':
      return String(DEFAULT_CPU_WEIGHT);
    case 'cpu.max':
      return cpuMax(undefined);
    default:
      return 'max';
  }
}

/** Every cpu controller file for a weight and cap, unset ones at their kernel default (so removing a limit lifts it). */
export function cpuCgroupFiles(r: Pick<Resources, 'cpuWeight' | 'cpuCapPct'>, layout: CgroupLayout): CgroupSetting[] {
  const limits = cgroupLimits({ cpuWeight: r.cpuWeight, cpuCapPct: r.cpuCapPct }, layout);
  return CPU_FILES[usesV1(layout) ? 'v1' : 'v2'].map((file) => limits.find((s) => s.file === file) ?? { controller: usesV1(layout) ? 'cpu' : '', file, value: cgroupDefault({ file }, '') });
}
