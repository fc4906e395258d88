// Start-up repair of what an interrupted multi-step change left: the journaled intents (a snapshot's freeze and volume), and snapshots (pool volumes, qcow2 tables) out of step with their rows; every repair is reported as drift.
import type { InstanceHandle, ObservedState } from '../../drivers/driver.js';
import type { InstanceRow, IntentRow } from '../db/database.js';
import type { HostContext } from '../hosts/context.js';
import { instanceDir, ownsVolume, type InstanceServiceDeps } from './context.js';
import { SNAPSHOT_CREATE, SNAPSHOT_DELETE } from './snapshots.js';

/** The journal kind of a create or copy: until it is done, the instance is half-made. */
export const INSTANCE_CREATE = 'instance-create';

/** The journal kind of a running exec: {pid, daemon} for a container on the local host (the leader of its process group), {guestPid, vmPid, vmStart, daemon} for a VM's (its guest pid, the QEMU run it is in); daemon: the one that ran it. */
export const EXEC_RUNNING = 'exec-running';

/** The journal kind of a delete: until it is done, the instance is half-deleted. */
export const INSTANCE_DELETE = 'instance-delete';

/** The journal's intents by instance, read once per reconciliation. */
export function intentsByInstance(d: InstanceServiceDeps): Map<string, IntentRow[]> {
  const out = new Map<string, IntentRow[]>();
  for (const i of d.db.listIntents()) out.set(i.instance, [...(out.get(i.instance) ?? []), i]);
  return out;
}

/** Where an instance's snapshots really are: what is there, how one goes, and what to call the place in a message. */
interface SnapshotStore {
  list(): Promise<{ name: string; stateful: boolean }[]>;
  remove(snap: string): Promise<void>;
  where: string;
}

/** The backend's own snapshots (a VM's qcow2 table), else pool volumes Hangar keeps; none for a disk Hangar does not own. */
function snapshotStore(h: HostContext, row: InstanceRow, handle: InstanceHandle): SnapshotStore | null {
  const own = handle.snapshots;
  if (own) return { list: () => own.list(), remove: (snap) => own.delete(snap), where: 'its disk\'s snapshot table' };
  if (!ownsVolume(row) || h.drivers.get(row.driver).driver.storage === 'backend') return null;
  return {
    list: async () => (await h.pool.snapshotNames(row.name)).map((name) => ({ name, stateful: false })),
    remove: (snap) => h.pool.deleteSnapshot(row.name, snap),
    where: 'the storage pool',
  };
}

/**
 * Finishes or undoes an instance's journaled intents, then brings its snapshots and their rows into step; the
 * caller holds the instance's lock and has read its state (st), and gets it back as it is after the repairs.
 * - snapshot-create: a freeze Hangar applied for it is undone (unless the instance was recorded frozen), and the
 *   snapshot, never acknowledged (its operation answers "interrupted"), is removed if its volume (or table entry) was made.
 * - snapshot-delete: a row whose volume is gone is dropped (the delete is finished).
 * - any other row without a volume is dropped; a volume without a row is listed again (adopted, its data kept).
 *   "Volume" is a pool volume, or an entry of a VM's qcow2 snapshot table.
 * - instance-create (a create, launch or copy): everything it made is removed, as its own undo would have
 *   (its operation answers "interrupted"); answers 'removed'.
 * - instance-delete: the delete is finished the same way; answers 'removed'.
 */
export async function recoverInstance(d: InstanceServiceDeps, h: HostContext, row: InstanceRow, handle: InstanceHandle, st: ObservedState, intents: readonly IntentRow[]): Promise<ObservedState | 'removed'> {
  const drift = (message: string, data: Record<string, unknown>) => d.events.emit({ type: 'instance-drift', instance: row.name, message, data: { host: h.name, ...data } });
  const create = intents.some((i) => i.kind === INSTANCE_CREATE);
  if (create || intents.some((i) => i.kind === INSTANCE_DELETE)) {
    if (st.state !== 'stopped') await handle.stop({ force: true, timeoutMs: 5000 }).catch(() => undefined);
    await handle.delete().catch(() => undefined);
    if (ownsVolume(row) && h.drivers.get(row.driver).driver.storage !== 'backend') await h.pool.deleteInstanceVolume(row.name);
    await h.host.fs.rm(instanceDir(h, row.name), { recursive: true, force: true });
    for (const s of d.db.listSnapshots(row.name)) d.db.deleteSnapshot(row.name, s.name);
    d.db.deleteInstance(row.name);
    for (const i of intents) d.db.removeIntent(i.id);
    if (create) drift(`Creating instance "${row.name}" was interrupted by hangard's end: what it had made is removed`, { repair: 'create-undone', expected: row.expectedState, actual: 'deleted' });
    else drift(`Deleting instance "${row.name}" was interrupted by hangard's end: the delete is finished`, { repair: 'delete-finished', expected: row.expectedState, actual: 'deleted' });
    return 'removed';
  }
  const store = snapshotStore(h, row, handle);
  // A store that cannot be read throws into the intent's catch below: the intent is kept for the next start.
  const volumes = async (): Promise<string[]> => (store ? (await store.list()).map((s) => s.name) : []);
  let now = st;
  for (const intent of intents.filter((i) => i.kind === EXEC_RUNNING)) {
    // Only another daemon's: this one's own execs still have their clients.
    if (intent.data.daemon === process.pid) continue;
    if (typeof intent.data.guestPid === 'number') {
      // Only in the same run of the VM: after a reboot the guest's pids are other processes'.
      const same = now.state !== 'stopped' && now.pid === intent.data.vmPid && now.startTime === intent.data.vmStart;
      if (same && (await handle.endGuestProcess?.(intent.data.guestPid).catch(() => false))) {
        drift(`A command run through exec in instance "${row.name}" (guest pid ${intent.data.guestPid}) lost its client with hangard's end: it is ended`, { repair: 'exec-ended', guestPid: intent.data.guestPid });
      }
      d.db.removeIntent(intent.id);
      continue;
    }
    const pid = Number(intent.data.pid);
    const argv = ((await h.host.fs.readTextIfExists(`/proc/${pid}/cmdline`).catch(() => undefined)) ?? '').split('\0');
    // The pid is that exec's lxc-attach still (not a reused pid): its whole group goes, as a lost client's would.
    if (Number.isInteger(pid) && pid > 1 && argv[0]?.endsWith('lxc-attach') && argv.includes(row.name) && (await h.host.kill(-pid, 'SIGKILL'))) {
      drift(`A command run through exec in instance "${row.name}" (pid ${pid}) lost its client with hangard's end: it is ended`, { repair: 'exec-ended', pid });
    }
    d.db.removeIntent(intent.id);
  }
  // A move's intent needs both its hosts: recoverMoves (move.ts) takes it.
  for (const intent of intents.filter((i) => i.kind === SNAPSHOT_CREATE || i.kind === SNAPSHOT_DELETE)) {
    const snap = typeof intent.data.snapshot === 'string' ? intent.data.snapshot : '';
    const hasRow = () => d.db.listSnapshots(row.name).some((s) => s.name === snap);
    try {
      if (intent.kind === SNAPSHOT_CREATE) {
        if (intent.data.froze === true && now.state === 'frozen' && row.expectedState !== 'frozen') {
          await handle.unfreeze();
          now = await handle.state();
          drift(`Instance "${row.name}" was left frozen by snapshot "${snap}", which hangard's end interrupted: it is thawed`, { repair: 'unfrozen', snapshot: snap, actual: now.state });
        }
        if (store && !hasRow() && (await volumes()).includes(snap)) {
          await store.remove(snap);
          drift(`Snapshot "${snap}" of instance "${row.name}" was interrupted by hangard's end: it is removed from ${store.where}`, { repair: 'snapshot-removed', snapshot: snap });
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
  if (!store) return now;
  // A store that cannot be read now (a disk QEMU holds in a way qemu-img refuses) is left for the next start, not emptied.
  let there: { name: string; stateful: boolean }[];
  try {
    there = await store.list();
  } catch (err) {
    drift(`Could not read the snapshots of instance "${row.name}" in ${store.where}: ${err instanceof Error ? err.message : String(err)}`, { repair: 'failed', kind: 'snapshot-list' });
    return now;
  }
  const rows = d.db.listSnapshots(row.name);
  for (const r of rows.filter((s) => !there.some((v) => v.name === s.name))) {
    d.db.deleteSnapshot(row.name, r.name);
    drift(`Snapshot "${r.name}" of instance "${row.name}" is not in ${store.where}: it is dropped from the list`, { repair: 'snapshot-forgotten', snapshot: r.name });
  }
  for (const v of there.filter((x) => !rows.some((s) => s.name === x.name))) {
    d.db.insertSnapshot({ instance: row.name, name: v.name, createdAt: new Date().toISOString(), stateful: v.stateful });
    drift(`Snapshot "${v.name}" of instance "${row.name}" in ${store.where} had no record: it is listed again`, { repair: 'snapshot-adopted', snapshot: v.name, stateful: v.stateful });
  }
  return now;
}
