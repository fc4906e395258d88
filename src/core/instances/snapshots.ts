// Instance snapshots: backend snapshots where the driver has them (qcow2, with RAM when stateful), else copy-on-write snapshots of the root volume in the pool; the caller holds the instance's lock.
import { AppError } from '../../shared/errors.js';
import type { Snapshot } from '../../shared/schemas.js';
import { assertLegal } from './actions.js';
import { DEFAULT_STOP_TIMEOUT_S, hostOf, ownsVolume, rowOf, wrap, type InstanceServiceDeps, type LockedLifecycle } from './context.js';
import { handleIn } from './placement.js';

/** The journal kinds of snapshots, pool and backend (recover.ts finishes or undoes them after a crash). */
export const SNAPSHOT_CREATE = 'snapshot-create';
export const SNAPSHOT_DELETE = 'snapshot-delete';

/** Snapshots of an instance. */
export function listSnapshots(d: InstanceServiceDeps, name: string): Snapshot[] {
  rowOf(d, name);
  return d.db.listSnapshots(name).map((s) => ({ name: s.name, createdAt: s.createdAt, stateful: s.stateful }));
}

/** Takes a snapshot: a backend one where the driver has them, else a pool snapshot of the root volume (frozen briefly when running). */
export async function createSnapshot(d: InstanceServiceDeps, name: string, snap: string, opts: { stateful?: boolean }): Promise<void> {
  const row = rowOf(d, name);
  if (d.db.listSnapshots(name).some((s) => s.name === snap)) throw new AppError('ALREADY_EXISTS', `Snapshot "${snap}" of instance "${name}" already exists`);
  const h = hostOf(d, row);
  const handle = handleIn(d, h, row);
  const st = await handle.state();
  assertLegal('snapshot-create', st, name);
  const stateful = opts.stateful ?? false;
  if (handle.snapshots) {
    // Journaled: a snapshot its table got but the daemon never acknowledged is deleted from the table at the next start.
    const intent = d.db.addIntent(SNAPSHOT_CREATE, name, { snapshot: snap, froze: false });
    try {
      await handle.snapshots.create(snap, { stateful }).catch((e) => { throw wrap(e, `Failed to snapshot instance "${name}"`); });
      d.db.insertSnapshot({ instance: name, name: snap, createdAt: new Date().toISOString(), stateful });
    } finally {
      d.db.removeIntent(intent);
    }
    d.events.emit({ type: 'instance-snapshot-created', instance: name, data: { snapshot: snap, stateful } });
    return;
  }
  if (stateful) throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) has no stateful snapshots`);
  if (h.drivers.get(row.driver).driver.storage === 'backend') throw new AppError('UNSUPPORTED', `Instance "${name}" has no snapshots in Hangar: its ${row.driver} backend keeps its disk on its host itself`);
  if (!ownsVolume(row)) throw new AppError('UNSUPPORTED', `Instance "${name}" was imported with its disks where they are: Hangar has no volume of it to snapshot`);
  // A consistent copy of a running tree: its processes are paused while the pool snapshots it. Journaled first: a
  // daemon that ends in the middle leaves the intent, and the next one unfreezes the instance and drops the volume.
  const freeze = st.state === 'running';
  const intent = d.db.addIntent(SNAPSHOT_CREATE, name, { snapshot: snap, froze: freeze });
  try {
    if (freeze) await handle.freeze();
    try {
      await h.pool.createSnapshot(name, snap);
    } catch (err) {
      throw wrap(err, `Failed to snapshot instance "${name}"`);
    } finally {
      if (freeze) await handle.unfreeze();
    }
    d.db.insertSnapshot({ instance: name, name: snap, createdAt: new Date().toISOString(), stateful: false });
  } finally {
    d.db.removeIntent(intent);
  }
  d.events.emit({ type: 'instance-snapshot-created', instance: name, data: { snapshot: snap } });
}

/** Restores a snapshot; a running instance is stopped, restored and started again (a stateful one resumes where the snapshot was taken). */
export async function restoreSnapshot(d: InstanceServiceDeps, name: string, snap: string, lifecycle: LockedLifecycle): Promise<void> {
  const row = rowOf(d, name);
  const snapRow = d.db.listSnapshots(name).find((s) => s.name === snap);
  if (!snapRow) throw new AppError('NOT_FOUND', `Snapshot "${snap}" of instance "${name}" not found`);
  const h = hostOf(d, row);
  const handle = handleIn(d, h, row);
  const st = await handle.state();
  assertLegal('snapshot-restore', st, name);
  const wasRunning = st.state === 'running' || st.state === 'frozen';
  if (handle.snapshots) {
    // As for pool volumes below: a row the backend's table lacks must not cost a running instance its uptime.
    if (!(await handle.snapshots.list()).some((s) => s.name === snap)) {
      throw new AppError('NOT_FOUND', `Snapshot "${snap}" of instance "${name}" is not in its disk's snapshot table (it is dropped from the list at the daemon's next start)`);
    }
    // A stateful snapshot restores RAM too: the instance ends up running where the snapshot was taken.
    if (!snapRow.stateful && wasRunning) await lifecycle.stop(name, { timeout: DEFAULT_STOP_TIMEOUT_S });
    await handle.snapshots.restore(snap, { stateful: snapRow.stateful }).catch((e) => { throw wrap(e, `Failed to restore snapshot "${snap}" of instance "${name}"`); });
    if (snapRow.stateful) {
      const now = await handle.state();
      d.db.updateInstance(name, { expectedState: 'running', initPid: now.pid, initStartTime: now.startTime });
    }
    d.events.emit({ type: 'instance-snapshot-restored', instance: name, data: { snapshot: snap, stateful: snapRow.stateful } });
    if (!snapRow.stateful && wasRunning) await lifecycle.start(name);
    return;
  }
  // Checked before the instance is stopped: a row whose volume is gone must not cost a running instance its uptime.
  if (!(await h.pool.snapshotNames(name)).includes(snap)) {
    throw new AppError('NOT_FOUND', `Snapshot "${snap}" of instance "${name}" has no volume in the storage pool (it is dropped from the list at the daemon's next start)`);
  }
  if (wasRunning) await lifecycle.stop(name, { timeout: DEFAULT_STOP_TIMEOUT_S });
  try {
    await h.pool.restoreSnapshot(name, snap);
  } catch (err) {
    throw wrap(err, `Failed to restore snapshot "${snap}" of instance "${name}"`);
  }
  d.events.emit({ type: 'instance-snapshot-restored', instance: name, data: { snapshot: snap } });
  if (wasRunning) await lifecycle.start(name);
}

/** Deletes a snapshot. */
export async function deleteSnapshot(d: InstanceServiceDeps, name: string, snap: string): Promise<void> {
  const row = rowOf(d, name);
  if (!d.db.listSnapshots(name).some((s) => s.name === snap)) throw new AppError('NOT_FOUND', `Snapshot "${snap}" of instance "${name}" not found`);
  const h = hostOf(d, row);
  const handle = handleIn(d, h, row);
  assertLegal('snapshot-delete', await handle.state(), name);
  // Journaled: a daemon that ends between the volume's (or table entry's) deletion and the row's leaves the intent, and the next one drops the row.
  const intent = d.db.addIntent(SNAPSHOT_DELETE, name, { snapshot: snap });
  try {
    // A row whose volume is gone already is only forgotten.
    if (handle.snapshots) {
      if ((await handle.snapshots.list()).some((s) => s.name === snap)) await handle.snapshots.delete(snap);
    } else if ((await h.pool.snapshotNames(name)).includes(snap)) {
      await h.pool.deleteSnapshot(name, snap);
    }
    d.db.deleteSnapshot(name, snap);
  } finally {
    d.db.removeIntent(intent);
  }
  d.events.emit({ type: 'instance-snapshot-deleted', instance: name, data: { snapshot: snap } });
}
