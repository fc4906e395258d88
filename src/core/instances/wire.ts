// The wire form of an instance: its database row and what its driver observes, as the Instance type of src/shared/schemas.ts.
import type { Instance, InstanceState } from '../../shared/schemas.js';
import type { InstanceRow } from '../db/database.js';
import type { InstanceServiceDeps } from './context.js';
import { handleOf } from './placement.js';

/** An instance as clients see it; with usage, also its resource and disk usage and the backend's details. A state that cannot be read is reported as error. */
export async function toWire(d: InstanceServiceDeps, row: InstanceRow, withUsage: boolean): Promise<Instance> {
  const driver = d.drivers.get(row.driver);
  const handle = handleOf(d, row);
  let state: InstanceState = 'unknown';
  let pid: number | null = null;
  let error: Instance['error'];
  try {
    const st = await handle.state();
    state = st.state;
    pid = st.pid;
    error = st.error;
  } catch (e) {
    state = 'error';
    error = { reason: `its state cannot be read: ${e instanceof Error ? e.message : String(e)}`, since: new Date().toISOString() };
  }
  const out: Instance = {
    name: row.name, type: row.type, driver: row.driver, state, image: row.image, ipv4: row.ipv4, mac: row.mac,
    config: row.config, pendingConfig: row.pendingConfig, pid, createdAt: row.createdAt, technology: driver.technology(row.config), features: driver.driver.features,
    ...(error ? { error } : {}),
  };
  if (withUsage) {
    const usage = state === 'running' || state === 'frozen' ? await handle.usage().catch(() => ({})) : {};
    const disk = await d.pool.instanceUsage(row.name).catch(() => undefined);
    out.usage = { ...usage, ...(disk ? { diskUsedBytes: disk.referencedBytes } : {}) };
    const details = handle.details ? await handle.details().catch(() => undefined) : undefined;
    if (details && Object.keys(details).length) out.details = details;
  }
  return out;
}
