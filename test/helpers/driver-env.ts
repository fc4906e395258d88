// A DriverEnv for tests that open or build drivers by hand: generic host facts and paths, overridable field by field.
import type { Host } from '../../src/host/host.js';
import type { DriverEnv } from '../../src/drivers/driver.js';
import type { HostFacts } from '../../src/host/facts.js';

/** Host facts of a plain 2-CPU, 8 GiB hybrid-cgroup host with the default shared id map. */
export const TEST_FACTS: HostFacts = { cgroupLayout: 'hybrid', cpus: 2, memoryBytes: 8 * 1024 ** 3, idmap: { uidStart: 100000, gidStart: 100000, count: 65536 }, swapAccounting: true };

/** A driver environment on host; every field can be replaced. */
export function driverEnv(host: Host, over: Partial<DriverEnv> = {}): DriverEnv {
  return {
    host, facts: TEST_FACTS, prefix: 'hgu', dataDir: '/var/lib/hangar-unit', cacheDir: '/var/lib/hangar-unit/cache', runDir: '/run/hangar-unit',
    settings: {}, services: {}, log: () => undefined, ...over,
  };
}
