// Checks every backend shares: CPU count, CPU cap and memory that this host can never give, and the least memory a backend needs.
import type { InstanceConfig, Resources } from '../shared/config.js';
import { formatSize } from '../shared/units.js';
import type { HostFacts } from './driver.js';

/** Problems for limits larger than the host itself, or below what one instance of the backend needs (minMemoryBytes). */
export function hostFitProblems(config: InstanceConfig, r: Resources, facts: HostFacts, backend: { name: string; minMemoryBytes: number; why: string }): string[] {
  const problems: string[] = [];
  if (r.memoryMax !== undefined && r.memoryMax < backend.minMemoryBytes) {
    problems.push(`limits.memory=${config['limits.memory']} is below the ${backend.minMemoryBytes / 1024 ** 2} MiB the ${backend.name} backend needs (${backend.why})`);
  }
  if (r.cpuCount !== undefined && r.cpuCount > facts.cpus) problems.push(`limits.cpu=${r.cpuCount} exceeds the ${facts.cpus} CPUs of this host`);
  if (r.cpuCapPct !== undefined && r.cpuCapPct > facts.cpus * 100) problems.push(`limits.cpu.cap=${config['limits.cpu.cap']} exceeds the ${facts.cpus} CPUs (${facts.cpus * 100}%) of this host`);
  if (r.memoryMax !== undefined && r.memoryMax > facts.memoryBytes) problems.push(`limits.memory=${config['limits.memory']} is larger than this host's ${formatSize(facts.memoryBytes)} of RAM`);
  return problems;
}
