// Reconciliation of the database with what really runs on a host: at daemon start and whenever a remote host comes up (drift reported as events, what is there adopted, what nothing owns swept), and after a guest powered itself off.
import type { ObservedState } from '../../drivers/driver.js';
import type { ExpectedState } from '../db/database.js';
import type { HostContext } from '../hosts/context.js';
import { instanceDir, lockKey, ownsVolume, type InstanceServiceDeps } from './context.js';
import { handleIn, handleOf, syncLeases } from './placement.js';
import { INSTANCE_CREATE, INSTANCE_DELETE, intentsByInstance, recoverInstance } from './recover.js';
import { settleOrphanTools, sweepHost } from './sweep.js';
import { recoverMoves } from './move.js';

/** What an observed state means for the recorded one: a faulted instance still runs as far as its resources go. */
export function expectedFrom(st: ObservedState): ExpectedState {
  return st.state === 'running' || st.state === 'error' ? 'running' : st.state === 'frozen' ? 'frozen' : 'stopped';
}

/** Compares the rows of a host's instances with what runs there; reports drift as events, forgets instances deleted behind hangard's back, then rewrites the leases. */
export async function reconcile(d: InstanceServiceDeps, h: HostContext): Promise<void> {
  // Before any instance is read: a tool the ended daemon left running would change it behind this reconciliation's back.
  await settleOrphanTools(d, h);
  for (const row of d.db.listInstances().filter((r) => r.host === h.name)) {
    await d.locks.withLock(lockKey(row.name), async () => {
      const handle = handleIn(d, h, row);
      // An imported domain has no root volume of Hangar's: its disks are where they were.
      const rootExists = !ownsVolume(row) || await h.pool.instanceExists(row.name);
      let st = await handle.state();
      // Read under the lock: an intent of this daemon's own change of the instance is gone by now.
      const intents = intentsByInstance(d).get(row.name) ?? [];
      // A half-made instance (an interrupted create or copy) is removed whatever it got to, a half-deleted one too.
      if (intents.some((i) => i.kind === INSTANCE_CREATE || i.kind === INSTANCE_DELETE)) {
        await recoverInstance(d, h, row, handle, st, intents);
        return;
      }
      // Something that still runs is adopted even without its root volume; a stopped instance without one is gone.
      if (!rootExists && expectedFrom(st) === 'stopped') {
        d.events.emit({ type: 'instance-drift', instance: row.name, message: `Instance "${row.name}" was deleted while hangard was down`, data: { expected: row.expectedState, actual: 'deleted' } });
        await handle.delete().catch(() => undefined);
        await h.host.fs.rm(instanceDir(h, row.name), { recursive: true, force: true });
        d.db.deleteInstance(row.name);
        return;
      }
      // What an interrupted change left (a snapshot's freeze, volumes out of step with rows) is repaired first.
      if (rootExists) {
        const repaired = await recoverInstance(d, h, row, handle, st, intents);
        if (repaired === 'removed') return;
        st = repaired;
      }
      // A faulted instance's fault is reported by its own instance-error event.
      const actual = expectedFrom(st);
      const where = h.local ? 'hangard was down' : `hangard was down or host "${h.name}" was unreachable`;
      if (actual !== row.expectedState) {
        d.events.emit({ type: 'instance-drift', instance: row.name, message: `Instance "${row.name}" is ${actual} but was ${row.expectedState}`, data: { expected: row.expectedState, actual, host: h.name } });
      } else if (actual !== 'stopped' && row.initPid !== null && (st.pid !== row.initPid || st.startTime !== row.initStartTime)) {
        d.events.emit({ type: 'instance-drift', instance: row.name, message: `Instance "${row.name}" was restarted while ${where}`, data: { expected: row.expectedState, actual, previousPid: row.initPid, pid: st.pid, host: h.name } });
      }
      d.db.updateInstance(row.name, { expectedState: actual, initPid: st.pid, initStartTime: st.startTime });
    });
  }
  // Intents of instances that are gone (deleted, or forgotten above) have nothing left to repair.
  const known = new Set(d.db.listInstances().map((r) => r.name));
  for (const [name, list] of intentsByInstance(d)) if (!known.has(name)) for (const i of list) d.db.removeIntent(i.id);
  await syncLeases(d, h);
  await recoverMoves(d);
  await sweepHost(d, h);
}

/** Records a guest's own power-off once its backend sees it stopped, releasing what the backend held (a VM's tap); a stop Hangar asked for has already been recorded. */
export async function recordGuestShutdown(d: InstanceServiceDeps, name: string): Promise<void> {
  await d.locks.withLock(lockKey(name), async () => {
    const row = d.db.getInstance(name);
    if (!row || row.expectedState === 'stopped') return;
    const handle = handleOf(d, row);
    for (let i = 0; i < 100; i++) {
      if ((await handle.state()).state === 'stopped') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if ((await handle.state()).state !== 'stopped') return;
    await handle.stop({ force: true, timeoutMs: 1_000 });
    d.db.updateInstance(name, { expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null });
    d.events.emit({ type: 'instance-stopped', instance: name, data: { by: 'guest' } });
  });
}
