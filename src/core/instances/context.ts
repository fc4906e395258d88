// What the parts of the instance service share: its dependencies, the instance lock key, row lookup and error wrapping.
import { join } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { DriverSet } from '../../drivers/registry.js';
import type { Host } from '../../host/host.js';
import type { HostSnapshot } from '../../host/facts.js';
import type { StateDb, InstanceRow } from '../db/database.js';
import type { EventBus } from '../events.js';
import type { LockManager } from '../locks.js';
import type { ImageService } from '../images/service.js';
import type { StoragePool } from '../storage/pool.js';
import type { Network } from '../network/network.js';

/** Dependencies of the instance service. */
export interface InstanceServiceDeps {
  host: Host;
  db: StateDb;
  events: EventBus;
  locks: LockManager;
  drivers: DriverSet;
  images: ImageService;
  pool: StoragePool;
  network: Network;
  facts: HostSnapshot;
  /** Root of per-instance directories (console logs, driver files). */
  instancesDir: string;
  prefix: string;
  poolSizeBytes: number;
  memoryReserveBytes: number;
}

/** Options of a stop. */
export interface StopRequest {
  force?: boolean;
  timeout?: number;
  stateful?: boolean;
}

/** Start and stop of an instance whose lock the caller holds (what a snapshot restore and a backend restart need). */
export interface LockedLifecycle {
  start(name: string): Promise<void>;
  stop(name: string, opts: StopRequest): Promise<void>;
}

/** Seconds a graceful stop waits before it fails. */
export const DEFAULT_STOP_TIMEOUT_S = 30;

/** The lock that serialises the actions on one instance. */
export function lockKey(name: string): string {
  return `instance/${name}`;
}

/** An instance's row; NOT_FOUND when there is none. */
export function rowOf(d: InstanceServiceDeps, name: string): InstanceRow {
  const row = d.db.getInstance(name);
  if (!row) throw new AppError('NOT_FOUND', `Instance "${name}" not found`);
  return row;
}

/** The per-instance directory (console log, driver files). */
export function instanceDir(d: InstanceServiceDeps, name: string): string {
  return join(d.instancesDir, name);
}

/** Wraps an error in an AppError naming the subject, keeping AppError codes of the cause. */
export function wrap(err: unknown, message: string): AppError {
  if (err instanceof AppError) return new AppError(err.code, message, { cause: err });
  return new AppError('BACKEND_FAILED', message, { cause: err });
}
