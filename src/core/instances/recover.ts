// Start-up repair of what an interrupted multi-step change left: the journaled intents (a snapshot's freeze and volume), and pool snapshots out of step with their rows; every repair is reported as drift.
import type { InstanceHandle, ObservedState } from '../../drivers/driver.js';
import type { InstanceRow, IntentRow } from '../db/database.js';
import type { HostContext } from '../hosts/context.js';
import { instanceDir, ownsVolume, type InstanceServiceDeps } from './context.js';
import { SNAPSHOT_CREATE, SNAPSHOT_DELETE } from './snapshots.js';

/** The journal kind of a create or copy: until it is done, the instance is half-made. */
export const INSTANCE_CREATE = 'instance-create';

/** The journal's intents by instance, read once per reconciliation. */
export function intentsByInstance(d: InstanceServiceDeps): Map<string, IntentRow[]> {
  const out = new Map<string, IntentRow[]>();
  for (const i of d.db.listIntents()) out.set(i.instance, [...(out.get(i.instance) ?? []), i]);
  return out;
}

/** True when the instance's snapshots are pool volumes Hangar keeps (not a backend's own, not a disk Hangar does not own). */
function poolSnapshots(h: HostContext, row: InstanceRow, handle: InstanceHandle): boolean {
  return ownsVolume(row) && !handle.snapshots && h.drivers.get(row.driver).driver.storage !== 'backend';
}

/**
 * Finishes or undoes an instance's journaled intents, then brings its pool snapshots and their rows into step; the
 * caller holds the instance's lock and has read its state (st), and gets it back as it is after the repairs.
 * - snapshot-create: a freeze Hangar applied for it is undone (unless the instance was recorded frozen), and the
 *   snapshot, never acknowledged (its operation answers "interrupted"), is removed if its volume was made.
 * - snapshot-delete: a row whose volume is gone is dropped (the delete is finished).
 * - any other row without a volume is dropped; a volume without a row is listed again (adopted, its data kept).
 * - instance-create (a create, launch or copy): everything it made is removed, as its own undo would have
 *   (its operation answers "interrupted"); answers 'removed'.
 */
export async function recoverInstance(d: InstanceServiceDeps, h: HostContext, row: InstanceRow, handle: InstanceHandle, st: ObservedState, intents: readonly IntentRow[]): Promise<ObservedState | 'removed'> {
  const drift = (message: string, data: Record<string, unknown>) => d.events.emit({ type: 'instance-drift', instance: row.name, message, data: { host: h.name, ...data } });
  if (intents.some((i) => i.kind === INSTANCE_CREATE)) {
    if (st.state !== 'stopped') await handle.stop({ force: true, timeoutMs: 5000 }).catch(() => undefined);
    await handle.delete().catch(() => undefined);
    if (ownsVolume(row) && h.drivers.get(row.driver).driver.storage !== 'backend') await h.pool.deleteInstanceVolume(row.name);
    await h.host.fs.rm(instanceDir(h, row.name), { recursive: true, force: true });
    for (const s of d.db.listSnapshots(row.name)) d.db.deleteSnapshot(row.name, s.name);
    d.db.deleteInstance(row.name);
    for (const i of intents) d.db.removeIntent(i.id);
    drift(`Creating instance "${row.name}" was interrupted by hangard's end: what it had made is removed`, { repair: 'create-undone', expected: row.expectedState, actual: 'deleted' });
    return 'removed';
  }
  const pooled = poolSnapshots(h, row, handle);
  const volumes = async (): Promise<string[]> => (pooled ? h.pool.snapshotNames(row.name).catch(() => []) : []);
  let now = st;
  for (const intent of intents) {
    const snap = typeof intent.data.snapshot === 'string' ? intent.data.snapshot : '';
    const hasRow = () => d.db.listSnapshots(row.name).some((s) => s.name === snap);
    try {
      if (intent.kind === SNAPSHOT_CREATE) {
        if (intent.data.froze === true && now.state === 'frozen' && row.expectedState !== 'frozen') {
          await handle.unfreeze();
          now = await handle.state();
          drift(`Instance "${row.name}" was left frozen by snapshot "${snap}", which hangard's end interrupted: it is thawed`, { repair: 'unfrozen', snapshot: snap, actual: now.state });
        }
        if (!hasRow() && (await volumes()).includes(snap)) {
          await h.pool.deleteSnapshot(row.name, snap);
          drift(`Snapshot "${snap}" of instance "${row.name}" was interrupted by hangard's end: its volume is removed`, { repair: 'snapshot-removed', snapshot: snap });
        }
      } else if (intent.kind === SNAPSHOT_DELETE) {
        if (hasRow() && !(await volumes()).includes(snap)) {
          d.db.deleteSnapshot(row.name, snap);
          drift(`Deleting snapshot "${snap}" of instance "${row.name}" was interrupted by hangard's end after its volume went: it is deleted`, { repair: 'snapshot-forgotten', snapshot: snap });
        }
      }
      d.db.removeIntent(intent.id);
    } catch (err) {
      // Kept for the next start; said now.
      drift(`Could not repair what an interrupted ${intent.kind} of "${snap}" left on instance "${row.name}": ${err instanceof Error ? err.message : String(err)}`, { repair: 'failed', kind: intent.kind, snapshot: snap });
    }
  }
  if (!pooled) return now;
  const names = await volumes();
  const rows = d.db.listSnapshots(row.name);
  for (const r of rows.filter((s) => !names.includes(s.name))) {
    d.db.deleteSnapshot(row.name, r.name);
    drift(`Snapshot "${r.name}" of instance "${row.name}" has no volume in the storage pool: it is dropped from the list`, { repair: 'snapshot-forgotten', snapshot: r.name });
  }
  for (const n of names.filter((v) => !rows.some((s) => s.name === v))) {
    d.db.insertSnapshot({ instance: row.name, name: n, createdAt: new Date().toISOString(), stateful: false });
    drift(`Snapshot volume "${n}" of instance "${row.name}" had no record: it is listed again`, { repair: 'snapshot-adopted', snapshot: n });
  }
  return now;
}
