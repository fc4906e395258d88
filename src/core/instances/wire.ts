// The wire form of an instance: its database row and what its driver observes, as the Instance type of src/shared/schemas.ts.
import { AppError, isAppError } from '../../shared/errors.js';
import type { Instance, InstanceState } from '../../shared/schemas.js';
import { ALL_DRIVERS } from '../../drivers/registry.js';
import type { InstanceRow } from '../db/database.js';
import type { ObservedState } from '../../drivers/driver.js';
import type { InstanceServiceDeps } from './context.js';
import { handleIn } from './placement.js';

/** How long a remote host gets by default to answer a state, usage or details read before the instance is listed as unknown. */
export const REMOTE_READ_TIMEOUT_MS = 5_000;

/** p, or a TIMEOUT naming what could not be read once ms pass (a remote host that hangs must not hang a listing). */
function bounded<T>(p: Promise<T>, ms: number | undefined, what: string): Promise<T> {
  if (ms === undefined) return p;
  let timer: NodeJS.Timeout | undefined;
  const within = ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`;
  const timeout = new Promise<never>((_r, reject) => { timer = setTimeout(() => reject(new AppError('TIMEOUT', `${what} did not answer within ${within}`)), ms); });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * An instance as clients see it; with usage, also its resource and disk usage and the backend's details. On a host that
 * is not up it is unknown, with the host's reason, at once; a state that cannot be read is unknown when the host does
 * not answer (in time) and error otherwise. `known` is a state read just now under the instance's lock (not read again).
 */
export async function toWire(d: InstanceServiceDeps, row: InstanceRow, withUsage: boolean, known?: ObservedState): Promise<Instance> {
  const base = {
    name: row.name, host: row.host, type: row.type, driver: row.driver, image: row.image, ipv4: row.ipv4, mac: row.mac,
    config: row.config, pendingConfig: row.pendingConfig, createdAt: row.createdAt,
  };
  const problem = d.hosts.problem(row.host);
  if (problem) {
    // What the backend is, from the registry: its host is not there to ask.
    const known = ALL_DRIVERS.find((x) => x.name === row.driver);
    return {
      ...base, state: 'unknown', pid: null,
      technology: known?.technology ?? { kernel: 'own', memory: 'dedicated', isolation: `${row.driver} (not known to this daemon)` },
      features: known?.features ?? { freeze: false, snapshots: false, statefulStop: false, console: false, execTty: false, liveCopy: false, graphicalConsole: false, monitor: false },
      error: problem,
    };
  }
  const h = d.hosts.get(row.host);
  const limit = h.local ? undefined : d.remoteReadTimeoutMs ?? REMOTE_READ_TIMEOUT_MS;
  const driver = h.drivers.get(row.driver);
  const handle = handleIn(d, h, row);
  let state: InstanceState = 'unknown';
  let pid: number | null = null;
  let error: Instance['error'];
  try {
    const st = known ?? await bounded(handle.state(), limit, `Host "${h.name}"`);
    state = st.state;
    pid = st.pid;
    error = st.error;
  } catch (e) {
    const unreachable = isAppError(e, 'HOST_UNREACHABLE') || isAppError(e, 'TIMEOUT');
    state = unreachable ? 'unknown' : 'error';
    error = { reason: `its state cannot be read: ${e instanceof Error ? e.message : String(e)}`, since: new Date().toISOString() };
  }
  const out: Instance = {
    ...base, state, pid, technology: driver.technology(row.config), features: driver.driver.features,
    ...(error ? { error } : {}),
  };
  if (withUsage && state !== 'unknown') {
    const usage = state === 'running' || state === 'frozen' ? await bounded(handle.usage(), limit, `Host "${h.name}"`).catch(() => ({})) : {};
    const disk = await bounded(h.pool.instanceUsage(row.name), limit, `Host "${h.name}"`).catch(() => undefined);
    out.usage = { ...usage, ...(disk ? { diskUsedBytes: disk.referencedBytes } : {}) };
    const details = handle.details ? await bounded(handle.details(), limit, `Host "${h.name}"`).catch(() => undefined) : undefined;
    if (details && Object.keys(details).length) out.details = details;
  }
  return out;
}
