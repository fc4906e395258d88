// Reconciliation of the database with what really runs: at daemon start (drift reported as events, what is there adopted) and after a guest powered itself off.
import type { ObservedState } from '../../drivers/driver.js';
import type { ExpectedState } from '../db/database.js';
import { instanceDir, lockKey, type InstanceServiceDeps } from './context.js';
import { handleOf, syncLeases } from './placement.js';

/** What an observed state means for the recorded one: a faulted instance still runs as far as its resources go. */
export function expectedFrom(st: ObservedState): ExpectedState {
  return st.state === 'running' || st.state === 'error' ? 'running' : st.state === 'frozen' ? 'frozen' : 'stopped';
}

/** Compares every instance's row with what runs; reports drift as events, forgets instances deleted behind hangard's back, then rewrites the leases. */
export async function reconcile(d: InstanceServiceDeps): Promise<void> {
  for (const row of d.db.listInstances()) {
    await d.locks.withLock(lockKey(row.name), async () => {
      const handle = handleOf(d, row);
      const rootExists = await d.pool.instanceExists(row.name);
      const st = await handle.state();
      // Something that still runs is adopted even without its root volume; a stopped instance without one is gone.
      if (!rootExists && expectedFrom(st) === 'stopped') {
        d.events.emit({ type: 'instance-drift', instance: row.name, message: `Instance "${row.name}" was deleted while hangard was down`, data: { expected: row.expectedState, actual: 'deleted' } });
        await handle.delete().catch(() => undefined);
        await d.host.fs.rm(instanceDir(d, row.name), { recursive: true, force: true });
        d.db.deleteInstance(row.name);
        return;
      }
      // A faulted instance's fault is reported by its own instance-error event.
      const actual = expectedFrom(st);
      if (actual !== row.expectedState) {
        d.events.emit({ type: 'instance-drift', instance: row.name, message: `Instance "${row.name}" is ${actual} but was ${row.expectedState}`, data: { expected: row.expectedState, actual } });
      } else if (actual !== 'stopped' && row.initPid !== null && (st.pid !== row.initPid || st.startTime !== row.initStartTime)) {
        d.events.emit({ type: 'instance-drift', instance: row.name, message: `Instance "${row.name}" was restarted while hangard was down`, data: { expected: row.expectedState, actual, previousPid: row.initPid, pid: st.pid } });
      }
      d.db.updateInstance(row.name, { expectedState: actual, initPid: st.pid, initStartTime: st.startTime });
    });
  }
  await syncLeases(d);
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
