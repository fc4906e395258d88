// Moving a container to another host (hangar move, vzmigrate --offline): stopped, its volume streamed there, its record re-homed, started again if it ran; undone on failure. The caller holds its lock.
import { AppError } from '../../shared/errors.js';
import { Reverter } from '../../host/reverter.js';
import { subnetContains } from '../network/ipam.js';
import type { HostContext } from '../hosts/context.js';
import { streamTree } from '../hosts/images.js';
import { DEFAULT_STOP_TIMEOUT_S, hostOf, instanceDir, lockKey, rowOf, wrap, type InstanceServiceDeps, type LockedLifecycle } from './context.js';
import { handleIn, idmapBlockFor, subnetOf, syncLeases, validateFor, volumeLimit } from './placement.js';

/** The journal kind of a move: {from, to}, the hosts it goes between. */
export const INSTANCE_MOVE = 'instance-move';

/**
 * Undoes or finishes the moves a daemon's end interrupted, each once both its hosts are up (at start, and as each
 * remote host comes up): a record still on the source keeps the instance there and the target's copy goes; a record
 * on the target gets its backend files there and the source's volume and files go. Either way the instance is left
 * stopped (it was stopped for the move), reported as drift.
 */
export async function recoverMoves(d: InstanceServiceDeps): Promise<void> {
  for (const intent of d.db.listIntents().filter((i) => i.kind === INSTANCE_MOVE)) {
    const name = intent.instance;
    const [fromName, toName] = [String(intent.data.from), String(intent.data.to)];
    if (!d.hosts.has(fromName) || !d.hosts.has(toName)) { d.db.removeIntent(intent.id); continue; }
    if (d.hosts.problem(fromName) || d.hosts.problem(toName)) continue;
    await d.locks.withLock(lockKey(name), async () => {
      const row = d.db.getInstance(name);
      if (!row) { d.db.removeIntent(intent.id); return; }
      const from = d.hosts.get(fromName);
      const to = d.hosts.get(toName);
      const shared = await sameMachine(from, to);
      const drift = (message: string, repair: string) => d.events.emit({ type: 'instance-drift', instance: name, message, data: { repair, from: fromName, to: toName, host: row.host } });
      try {
        if (row.host === fromName) {
          await to.pool.deleteInstanceVolume(name);
          if (!shared) await to.host.fs.rm(instanceDir(to, name), { recursive: true, force: true });
          drift(`Moving instance "${name}" to host ${toName} was interrupted by hangard's end before it was re-homed: it stays on host ${fromName}, the copy there is removed`, 'move-undone');
        } else if (row.host === toName) {
          const moved = handleIn(d, to, row);
          await to.host.fs.mkdir(instanceDir(to, name), { recursive: true });
          await moved.delete().catch(() => undefined);
          await moved.create();
          if (!shared) {
            await handleIn(d, from, row).delete().catch(() => undefined);
            await from.host.fs.rm(instanceDir(from, name), { recursive: true, force: true });
          }
          await from.pool.deleteInstanceVolume(name);
          await syncLeases(d, to);
          drift(`Moving instance "${name}" to host ${toName} was interrupted by hangard's end after it was re-homed: the move is finished`, 'move-finished');
        }
        d.db.removeIntent(intent.id);
      } catch (err) {
        drift(`Could not repair the interrupted move of instance "${name}" to host ${toName}: ${err instanceof Error ? err.message : String(err)}`, 'failed');
      }
    });
  }
}

/** True when two host entries reach one machine (the same boot): their paths outside the pools are then the same files. */
async function sameMachine(a: HostContext, b: HostContext): Promise<boolean> {
  const boot = (h: HostContext) => h.host.fs.readTextIfExists('/proc/sys/kernel/random/boot_id').then((t) => t?.trim());
  const [x, y] = await Promise.all([boot(a), boot(b)]);
  return x !== undefined && x === y;
}

/** Checks a move without side effects: the target host, its driver, the instance's kind, snapshots, volume, config and address there. */
export function checkMove(d: InstanceServiceDeps, name: string, target: string): { from: HostContext; to: HostContext } {
  const row = rowOf(d, name);
  if (!d.hosts.has(target)) throw new AppError('NOT_FOUND', `Host "${target}" not found`, { details: { hint: 'hangar host list' } });
  if (row.host === target) throw new AppError('INVALID_ARGUMENT', `Instance "${name}" is on host ${target} already`);
  const from = hostOf(d, row);
  const to = d.hosts.get(target);
  const refuse = (why: string) => new AppError('UNSUPPORTED', `Cannot move instance "${name}" to host ${target}: ${why}`);
  if (row.type !== 'container') throw refuse('only containers move between hosts (a VM\'s disks are backed by images that are the host\'s own)');
  const driver = to.drivers.all().find((x) => x.driver.name === row.driver);
  if (!driver) throw refuse(`the ${row.driver} driver is not enabled there`);
  if (driver.driver.storage === 'backend') throw refuse(`its ${row.driver} backend keeps its disk on its node itself (move it with the node's own tools)`);
  if (!driver.probe.available) throw refuse(`the ${row.driver} driver is not available there: ${driver.probe.reason ?? 'its probe failed'}`);
  if (to.networkProblem) throw refuse(to.networkProblem);
  const snaps = d.db.listSnapshots(name);
  if (snaps.length > 0) throw refuse(`it has ${snaps.length} snapshot${snaps.length === 1 ? '' : 's'} (${snaps.map((s) => s.name).join(', ')}), which stay in host ${from.name}'s pool; delete them first`);
  if (!subnetContains(subnetOf(to), row.ipv4)) throw refuse(`its address ${row.ipv4} is not in host ${target}'s network ${subnetOf(to).cidr}`);
  validateFor(d, to, driver, name, { ...row.config, ...row.pendingConfig });
  return { from, to };
}

/**
 * Moves a container (offline): a running one is stopped first; its volume is streamed into the target's pool; the
 * record moves (its name, address, MAC and CTID stay, an isolated id map gets a block of the target's); the backend
 * writes its files there and, if it ran, it starts there. Until then every step is undone on failure and the source is
 * untouched; only after it are the source's volume and files removed.
 */
export async function moveInstance(d: InstanceServiceDeps, name: string, target: string, life: LockedLifecycle, progress: (m: string) => void): Promise<void> {
  const { from, to } = checkMove(d, name, target);
  const before = rowOf(d, name);
  const driver = to.drivers.get(before.driver);
  if (!(await from.pool.instanceExists(name))) throw new AppError('UNSUPPORTED', `Cannot move instance "${name}" to host ${target}: it has no volume in host ${from.name}'s pool (an imported domain keeps its disks where they are)`);
  const st = await handleIn(d, from, before).state();
  if (st.state === 'unknown') throw new AppError('INVALID_STATE', `Cannot move instance "${name}": its state on host ${from.name} is unknown`);
  const wasRunning = st.state === 'running' || st.state === 'frozen' || st.state === 'error';
  const r = new Reverter();
  // Journaled: a move the daemon's end cuts off is undone (record still on the source) or finished (record re-homed) by
  // the next daemon once both hosts are up (recoverMoves below).
  const intent = d.db.addIntent(INSTANCE_MOVE, name, { from: from.name, to: to.name });
  await r.run(async () => {
    if (wasRunning) {
      progress(`Stopping it on host ${from.name}`);
      await life.stop(name, { force: st.state === 'error', timeout: DEFAULT_STOP_TIMEOUT_S });
      if (st.state !== 'error') r.add(`start it again on host ${from.name}`, () => life.start(name));
    }
    const row = rowOf(d, name);
    progress(`Copying its volume to host ${to.name}`);
    await to.pool.createInstanceVolume(name, null, volumeLimit(driver, { ...row.config, ...row.pendingConfig }), { empty: true });
    r.add(`delete the volume on host ${to.name}`, () => to.pool.deleteInstanceVolume(name));
    await streamTree(from, from.pool.instancePath(name), to, to.pool.instancePath(name));
    const shared = await sameMachine(from, to);
    d.db.updateInstance(name, { host: to.name, idmapBlock: idmapBlockFor(d, to, driver, row.config, null), cpuset: null });
    r.add('record it on its host again', () => d.db.updateInstance(name, { host: from.name, idmapBlock: row.idmapBlock }));
    await to.host.fs.mkdir(instanceDir(to, name), { recursive: true });
    if (!shared) r.add(`remove its directory on host ${to.name}`, () => to.host.fs.rm(instanceDir(to, name), { recursive: true, force: true }));
    const moved = handleIn(d, to, rowOf(d, name));
    await moved.create();
    // On one machine the backend's files are the source's too: giving them back means writing the source's again.
    r.add(`delete its backend files on host ${to.name}`, async () => {
      await moved.delete();
      if (shared) await handleIn(d, from, row).create();
    });
    await syncLeases(d, to);
    if (wasRunning) {
      progress(`Starting it on host ${to.name}`);
      await life.start(name);
      r.add(`stop it on host ${to.name}`, () => life.stop(name, { force: true }));
    }
    r.success();
    // The move is done: what is left on the source goes (a failure here leaves files behind, said in the log, never the instance).
    try {
      if (!shared) {
        await handleIn(d, from, row).delete();
        await from.host.fs.rm(instanceDir(from, name), { recursive: true, force: true });
      }
      await from.pool.deleteInstanceVolume(name);
    } catch (err) {
      d.log?.(`instance "${name}" moved to host ${to.name}, but its files on host ${from.name} were not all removed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }).catch((err: unknown) => { throw wrap(err, `Failed to move instance "${name}" to host ${target}`); }).finally(() => d.db.removeIntent(intent));
  d.events.emit({ type: 'instance-moved', instance: name, data: { from: from.name, to: to.name, restarted: wasRunning } });
}
