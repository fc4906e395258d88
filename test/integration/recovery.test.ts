// Start-up repair of interrupted changes (in-process daemon, fake driver, directory pool): a snapshot's freeze undone and its volume removed, an interrupted delete finished, rows and volumes brought into step, each reported as drift; restore and delete of a snapshot whose volume is gone.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HangarEvent } from '../../src/shared/schemas.js';
import { isAppError } from '../../src/shared/errors.js';
import { inProcessDaemon, type InProcessDaemon } from '../helpers/in-process.js';

const caught = async (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e);

describe('reconciliation repairs what an interrupted change left', () => {
  let d: InProcessDaemon;
  const name = `rec-${process.pid}`;
  const drift: HangarEvent[] = [];

  beforeAll(async () => {
    // Its own interface prefix: other in-process daemons sweep taps of theirs at the same time.
    d = await inProcessDaemon({ prefix: 'hgw' });
    d.events.subscribe((e) => { if (e.type === 'instance-drift') drift.push(e); });
    await d.instances.create(d.instances.validateCreate({ name, image: 'busybox' }));
    await d.instances.start(name);
  });
  afterAll(async () => { await d?.cleanup(); });

  it('journals a snapshot while it is taken and removes the intent once it is done', async () => {
    await d.instances.createSnapshot(name, 'good');
    expect(d.db.listIntents()).toEqual([]);
    expect(d.instances.listSnapshots(name).map((s) => s.name)).toEqual(['good']);
    expect((await d.instances.get(name)).state).toBe('running');
  });

  it('a snapshot cut off while the instance was frozen for it: thawed, its unacknowledged volume removed, the intent gone', async () => {
    // What a daemon killed between the pool snapshot and the row leaves: the intent, the freeze, the volume.
    d.db.addIntent('snapshot-create', name, { snapshot: 'cut', froze: true });
    await d.instances.freeze(name);
    d.db.updateInstance(name, { expectedState: 'running' });
    await d.pool.createSnapshot(name, 'cut');
    drift.length = 0;
    await d.instances.reconcile();
    expect((await d.instances.get(name)).state).toBe('running');
    expect(d.db.getInstance(name)?.expectedState).toBe('running');
    expect(existsSync(d.pool.snapshotPath(name, 'cut'))).toBe(false);
    expect(d.instances.listSnapshots(name).map((s) => s.name)).toEqual(['good']);
    expect(d.db.listIntents()).toEqual([]);
    expect(drift.map((e) => e.data?.repair)).toEqual(['unfrozen', 'snapshot-removed']);
    expect(drift[0]?.message).toBe(`Instance "${name}" was left frozen by snapshot "cut", which hangard's end interrupted: it is thawed`);
    // The name is free again.
    await d.instances.createSnapshot(name, 'cut');
    expect(d.instances.listSnapshots(name).map((s) => s.name)).toEqual(['good', 'cut']);
  });

  it('a freeze the user asked for is kept', async () => {
    d.db.addIntent('snapshot-create', name, { snapshot: 'other', froze: true });
    await d.instances.freeze(name);
    drift.length = 0;
    await d.instances.reconcile();
    expect((await d.instances.get(name)).state).toBe('frozen');
    expect(drift).toEqual([]);
    await d.instances.unfreeze(name);
  });

  it('an interrupted delete whose volume went is finished; rows without volumes are dropped, volumes without rows listed again', async () => {
    await d.pool.deleteSnapshot(name, 'cut');
    d.db.addIntent('snapshot-delete', name, { snapshot: 'cut' });
    d.db.insertSnapshot({ instance: name, name: 'ghost', createdAt: new Date().toISOString(), stateful: false });
    await d.pool.createSnapshot(name, 'orphan');
    drift.length = 0;
    await d.instances.reconcile();
    expect(d.instances.listSnapshots(name).map((s) => s.name).sort()).toEqual(['good', 'orphan']);
    expect(drift.map((e) => [e.data?.repair, e.data?.snapshot])).toEqual([['snapshot-forgotten', 'cut'], ['snapshot-forgotten', 'ghost'], ['snapshot-adopted', 'orphan']]);
    // A second start changes nothing.
    drift.length = 0;
    await d.instances.reconcile();
    expect(drift).toEqual([]);
  });

  it('restoring a snapshot whose volume is gone is refused before the running instance is stopped; deleting it forgets it', async () => {
    d.db.insertSnapshot({ instance: name, name: 'lost', createdAt: new Date().toISOString(), stateful: false });
    const pid = (await d.instances.get(name)).pid;
    const err = await caught(d.instances.restoreSnapshot(name, 'lost'));
    expect(isAppError(err, 'NOT_FOUND') && err.message).toBe(`Snapshot "lost" of instance "${name}" has no volume in the storage pool (it is dropped from the list at the daemon's next start)`);
    expect(await d.instances.get(name)).toMatchObject({ state: 'running', pid });
    await d.instances.deleteSnapshot(name, 'lost');
    expect(d.instances.listSnapshots(name).map((s) => s.name)).not.toContain('lost');
  });

  it('a create or copy the daemon\'s end interrupted is removed with all it made; finished ones leave no intent', async () => {
    const half = `${name}-half`;
    const copy = `${name}-copy`;
    await d.instances.create(d.instances.validateCreate({ name: half, image: 'busybox', start: true }));
    await d.instances.copy(name, copy);
    expect(d.db.listIntents()).toEqual([]);
    // What a kill in their middle leaves: the rows, volumes and backend files, and their intents.
    d.db.addIntent('instance-create', half, { image: 'busybox' });
    d.db.addIntent('instance-create', copy, { copyOf: name });
    drift.length = 0;
    await d.instances.reconcile();
    for (const n of [half, copy]) {
      expect(d.db.getInstance(n)).toBeUndefined();
      expect(existsSync(d.pool.instancePath(n))).toBe(false);
      expect(d.network.addressOf(n)).toBeUndefined();
    }
    expect(drift.map((e) => [e.instance, e.data?.repair])).toEqual([[copy, 'create-undone'], [half, 'create-undone']]);
    expect(d.db.listIntents()).toEqual([]);
    // The source is untouched, and the names are free again.
    expect((await d.instances.get(name)).state).toBe('running');
    await d.instances.copy(name, copy);
    await d.instances.delete(copy, true);
  });

  it('an interrupted delete is finished: the instance and all it had are gone, reported as delete-finished', async () => {
    const gone = `${name}-del`;
    await d.instances.create(d.instances.validateCreate({ name: gone, image: 'busybox', start: true }));
    d.db.addIntent('instance-delete', gone, {});
    drift.length = 0;
    await d.instances.reconcile();
    expect(d.db.getInstance(gone)).toBeUndefined();
    expect(existsSync(d.pool.instancePath(gone))).toBe(false);
    expect(existsSync(join(d.dir, 'instances', gone))).toBe(false);
    expect(drift.map((e) => [e.instance, e.data?.repair])).toEqual([[gone, 'delete-finished']]);
    expect(d.db.listIntents()).toEqual([]);
  });

  it('sweeps what no instance owns: a directory without a row goes, a volume without one is reported and kept', async () => {
    mkdirSync(join(d.dir, 'instances', 'stray-dir', 'sub'), { recursive: true });
    writeFileSync(join(d.dir, 'instances', 'stray-dir', 'sub', 'console.log'), 'x');
    await d.pool.createInstanceVolume('stray-vol', null, undefined, { empty: true });
    drift.length = 0;
    await d.instances.reconcile();
    expect(existsSync(join(d.dir, 'instances', 'stray-dir'))).toBe(false);
    expect(existsSync(join(d.dir, 'instances', name))).toBe(true);
    expect(existsSync(d.pool.instancePath('stray-vol'))).toBe(true);
    expect(drift.map((e) => [e.instance, e.data?.repair])).toEqual([['stray-dir', 'directory-removed'], ['stray-vol', 'volume-kept']]);
    await d.pool.deleteInstanceVolume('stray-vol');
  });

  it.skipIf(process.getuid?.() !== 0)('sweeps host interfaces of Hangar\'s naming: an unknown one and a stopped instance\'s go, a running instance\'s stays (needs root for taps)', async () => {
    const stopped = `${name}-st`;
    await d.instances.create(d.instances.validateCreate({ name: stopped, image: 'busybox' }));
    const taps = { unknown: d.network.hostIfName(`${name}-unknown`), stopped: d.network.hostIfName(stopped), running: d.network.hostIfName(name) };
    try {
      for (const t of Object.values(taps)) expect(spawnSync('ip', ['tuntap', 'add', 'dev', t, 'mode', 'tap']).status).toBe(0);
      drift.length = 0;
      await d.instances.reconcile();
      const exists = (t: string) => spawnSync('ip', ['link', 'show', t]).status === 0;
      expect([exists(taps.unknown), exists(taps.stopped), exists(taps.running)]).toEqual([false, false, true]);
      expect(drift.filter((e) => e.data?.repair === 'interface-removed').map((e) => [e.instance, e.data?.interface]).sort()).toEqual([[stopped, taps.stopped], [undefined, taps.unknown]].sort());
    } finally {
      for (const t of Object.values(taps)) spawnSync('ip', ['link', 'del', t]);
      await d.instances.delete(stopped, true);
    }
  });

  it('drops the intents of an instance that is gone', async () => {
    d.db.addIntent('snapshot-create', 'no-such-instance', { snapshot: 'x', froze: false });
    await d.instances.reconcile();
    expect(d.db.listIntents()).toEqual([]);
  });
});
