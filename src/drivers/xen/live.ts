// Live changes of a running domain: memory (xl mem-set / mem-max within what it was created with), vCPUs (xl vcpu-set within maxvcpus), weight and cap (xl sched-credit[2]).
import type { InstanceConfig } from '../../shared/config.js';
import type { XenRun } from './domain.js';
import type { XlDomainConfig } from './render-config.js';
import type { Xl } from './xl.js';

const MIB = 1024 ** 2;
/** Xen's default credit weight; a cap of 0 is none. */
export const XEN_DEFAULT_WEIGHT = 256;

/** Keys a running domain can take now; every other key waits for the next start. */
export const LIVE_KEYS: ReadonlySet<string> = new Set(['limits.memory', 'limits.memory.guarantee', 'limits.cpu', 'limits.cpu.weight', 'limits.cpu.cap']);

/** What applying a change to a running domain did. */
export interface LiveResult {
  live: string[];
}

/**
 * Applies the changed keys that can change live, from next's domain (xlConfigFor of the new config) and prev's: memory
 * when the new ceiling is within the static maximum the domain was created with (a PV guest's memory map is sized at boot),
 * vCPUs within its maxvcpus, weight and cap on the credit schedulers. Answers the keys it applied.
 */
export async function applyLive(xl: Xl, name: string, run: XenRun, scheduler: string | null, next: XlDomainConfig, prev: XlDomainConfig, changed: readonly string[]): Promise<LiveResult> {
  const live: string[] = [];
  const memKeys = changed.filter((k) => k === 'limits.memory' || k === 'limits.memory.guarantee');
  if (memKeys.length && next.maxmemMiB <= run.maxmemMiB) {
    const target = next.memoryMiB * MIB;
    const max = next.maxmemMiB * MIB;
    // Xen refuses a static maximum below the balloon target: lower the target first, raise the maximum first.
    if (next.maxmemMiB < prev.maxmemMiB) {
      await xl.memSet(name, target);
      await xl.memMax(name, max);
    } else {
      await xl.memMax(name, max);
      await xl.memSet(name, target);
    }
    live.push(...memKeys);
  }
  if (changed.includes('limits.cpu') && next.vcpus <= run.maxvcpus) {
    await xl.vcpuSet(name, next.vcpus);
    live.push('limits.cpu');
  }
  const schedKeys = changed.filter((k) => k === 'limits.cpu.weight' || k === 'limits.cpu.cap');
  if (schedKeys.length && (scheduler === 'credit' || scheduler === 'credit2')) {
    await xl.schedSet(scheduler, name, { weight: next.cpuWeight ?? XEN_DEFAULT_WEIGHT, cap: next.cap ?? 0 });
    live.push(...schedKeys);
  }
  return { live: live.sort() };
}

/** The keys whose values differ between two configs, sorted. */
export function changedKeys(next: InstanceConfig, prev: InstanceConfig): string[] {
  return [...new Set([...Object.keys(next), ...Object.keys(prev)])].filter((k) => next[k] !== prev[k]).sort();
}
