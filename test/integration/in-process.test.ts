// The in-process daemon: an instance's whole life through the real InstanceService over the fake driver, a directory pool and a fake network, without root.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError, type AppError } from '../../src/shared/errors.js';
import type { HostProcess } from '../../src/host/host.js';
import { inProcessDaemon, type InProcessDaemon } from '../helpers/in-process.js';

async function codeOf(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    if (isAppError(e)) return e;
    throw e;
  }
  throw new Error('expected a failure');
}

async function finish(proc: HostProcess): Promise<{ code: number | null; out: string }> {
  const chunks: Buffer[] = [];
  proc.stdout?.on('data', (d: Buffer) => chunks.push(d));
  proc.stdin?.end();
  const { code } = await proc.wait();
  return { code, out: Buffer.concat(chunks).toString() };
}

describe('in-process daemon (fake driver, directory pool, fake network)', () => {
  let d: InProcessDaemon;
  const name = `inproc-${process.pid}`;

  beforeAll(async () => { d = await inProcessDaemon(); });
  afterAll(async () => { await d?.cleanup(); });

  it('reports itself like the daemon does', async () => {
    const info = await d.hostInfo();
    expect(info.storage.driver).toBe('dir');
    expect(info.network.subnet).toBe('10.250.0.0/24');
    expect(info.drivers.map((x) => x.name)).toEqual(['fake']);
    expect(d.images.list().map((i) => i.alias)).toEqual(['busybox']);
  });

  it('creates, starts, runs a command, stops, snapshots and deletes an instance', async () => {
    const seen: string[] = [];
    const unsubscribe = d.events.subscribe((e) => { if (e.instance === name) seen.push(e.type); });
    const plan = d.instances.validateCreate({ name, image: 'busybox' });
    expect(plan.driver.driver.name).toBe('fake');
    // Through an operation, as the API runs it.
    const op = d.ops.start(`Creating instance "${name}"`, [`/1.0/instances/${name}`], (ctx) => d.instances.create(plan, (m) => ctx.progress(m)));
    const done = await d.ops.wait(op.id, 10_000);
    expect(done.status, JSON.stringify(done.error)).toBe('success');
    const created = await d.instances.get(name);
    expect(created.state).toBe('stopped');
    expect(d.network.addressOf(name)).toBe(created.ipv4);
    expect(existsSync(d.pool.instancePath(name))).toBe(true);

    await d.instances.start(name);
    expect((await d.instances.get(name)).state).toBe('running');

    const run = await finish((await d.instances.exec(name, { command: ['true'] })).proc);
    expect(run.code).toBe(0);

    await d.instances.stop(name);
    expect((await d.instances.get(name)).state).toBe('stopped');

    await d.instances.createSnapshot(name, 'snap0');
    expect(d.instances.listSnapshots(name).map((s) => s.name)).toEqual(['snap0']);
    expect(existsSync(d.pool.snapshotPath(name, 'snap0'))).toBe(true);
    await d.instances.restoreSnapshot(name, 'snap0');

    await d.instances.delete(name, false);
    expect(d.db.getInstance(name)).toBeUndefined();
    expect(existsSync(d.pool.instancePath(name))).toBe(false);
    expect(d.network.addressOf(name)).toBeUndefined();
    expect((await codeOf(d.instances.get(name))).code).toBe('NOT_FOUND');
    unsubscribe();
    expect(seen).toEqual([
      'instance-created', 'instance-starting', 'instance-started', 'instance-stopping', 'instance-stopped',
      'instance-snapshot-created', 'instance-snapshot-restored', 'instance-deleted',
    ]);
  });

  it('copies a running instance (the fake backend copies live) with its own address and MAC', async () => {
    const src = `${name}-src`;
    await d.instances.create(d.instances.validateCreate({ name: src, image: 'busybox', start: true }));
    try {
      const copy = await d.instances.copy(src, `${src}-copy`);
      const from = await d.instances.get(src);
      expect(copy.state).toBe('stopped');
      expect(copy.ipv4).not.toBe(from.ipv4);
      expect(copy.mac).not.toBe(from.mac);
      expect(d.network.leases().map((l) => l.name).sort()).toEqual([src, `${src}-copy`]);
    } finally {
      await d.instances.delete(`${src}-copy`, true).catch(() => undefined);
      await d.instances.delete(src, true);
    }
  });

  it('answers INVALID_STATE for an action the state does not allow, naming the instance, its state and the action', async () => {
    const other = `${name}-b`;
    await d.instances.create(d.instances.validateCreate({ name: other, image: 'busybox' }));
    try {
      const stopped = await codeOf(d.instances.stop(other));
      expect(stopped.code).toBe('INVALID_STATE');
      expect(stopped.message).toBe(`Cannot stop instance "${other}": it is already stopped`);
      expect((await codeOf(d.instances.exec(other, { command: ['true'] }))).message).toBe(`Cannot run a command in instance "${other}": it is stopped`);
      await d.instances.start(other);
      const del = await codeOf(d.instances.delete(other, false));
      expect(del.code).toBe('INVALID_STATE');
      expect(del.message).toContain('stop it first or delete with --force');
      // Freezing twice is no error; the second one does nothing.
      await d.instances.freeze(other);
      await d.instances.freeze(other);
      expect((await d.instances.get(other)).state).toBe('frozen');
      expect((await codeOf(d.instances.start(other))).message).toBe(`Cannot start instance "${other}": it is already frozen`);
    } finally {
      await d.instances.delete(other, true);
    }
    expect(d.db.listInstances()).toEqual([]);
  });
});
