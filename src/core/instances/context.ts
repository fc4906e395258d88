// What the parts of the instance service share: its dependencies, the instance lock key, row and host lookup and error wrapping.
import { join } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { StateDb, InstanceRow } from '../db/database.js';
import type { EventBus } from '../events.js';
import type { LockManager } from '../locks.js';
import type { ImageService } from '../images/service.js';
import type { HostContext, HostDirectory } from '../hosts/context.js';

/** Dependencies of the instance service. */
export interface InstanceServiceDeps {
  db: StateDb;
  events: EventBus;
  locks: LockManager;
  images: ImageService;
  /** The hosts instances live on, each with its Host, facts, drivers, pool, network and directories. */
  hosts: HostDirectory;
  prefix: string;
  memoryReserveBytes: number;
  /** Where what happens in the background (a remote host's reconciliation, autostart there) is reported. */
  log?: (msg: string) => void;
  /** How long a remote host gets to answer a state, usage or details read before the instance is listed as unknown (default 5 s). */
  remoteReadTimeoutMs?: number;
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

/** The host an instance lives on, when it is up; HOST_UNREACHABLE naming why otherwise. */
export function hostOf(d: InstanceServiceDeps, row: InstanceRow): HostContext {
  return d.hosts.get(row.host);
}

/** The per-instance directory on its host (console log, driver files). */
export function instanceDir(h: HostContext, name: string): string {
  return join(h.instancesDir, name);
}

/** True for an instance made from an image (it has a root volume in its host's pool); an imported domain keeps its disks where they are. */
export function ownsVolume(row: InstanceRow): boolean {
  return row.imageFingerprint !== '';
}

/** Wraps an error in an AppError naming the subject, keeping AppError codes of the cause. */
export function wrap(err: unknown, message: string): AppError {
  if (err instanceof AppError) return new AppError(err.code, message, { cause: err });
  return new AppError('BACKEND_FAILED', message, { cause: err });
}
