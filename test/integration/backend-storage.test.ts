// The core with a driver that keeps the disk itself (storage 'backend', the openvz7 driver on a scripted OpenVZ 7 node): no root volume, no image copied, the template name as the image, copy refused; in-process, no root.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FakeVz7 } from '../../src/drivers/openvz7/fake-vz7.js';
import { causeChain, isAppError } from '../../src/shared/errors.js';
import { inProcessDaemon, type InProcessDaemon } from '../helpers/in-process.js';
import { testFingerprint } from '../helpers/loopback-hosts.js';

const caught = async (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e);

describe('storage "backend": a launch on an OpenVZ 7 node makes no pool volume', () => {
  let d: InProcessDaemon;
  const fake = new FakeVz7({ name: 'vz1' });
  const name = `bk-${process.pid}`;

  beforeAll(async () => {
    d = await inProcessDaemon({ drivers: 'fake,openvz7' });
    d.connector.machines.set('127.0.0.1:2230', { key: { type: 'ssh-ed25519', fingerprint: testFingerprint('vz7-node') }, host: () => fake.host, drivers: 'openvz7' });
    const key = join(d.dir, 'id_vz7');
    writeFileSync(key, 'test key\n', { mode: 0o600 });
    const added = await d.hosts.add(await d.hosts.validateAdd({ name: 'vz1', url: 'ssh://root@127.0.0.1:2230', identityFile: key }));
    expect(added.drivers).toEqual([expect.objectContaining({ name: 'openvz7', available: true })]);
  });
  afterAll(async () => { await d?.cleanup(); });

  it('records the template as the image, makes the CT on the node and nothing in the pool, and deletes without a volume', async () => {
    const pool = d.hosts.get('vz1').pool;
    const createVolume = vi.spyOn(pool, 'createInstanceVolume');
    const deleteVolume = vi.spyOn(pool, 'deleteInstanceVolume');
    // Not an image of Hangar's: its image store has busybox only, and the node's template is taken as it is.
    expect(d.images.list().map((i) => i.alias)).toEqual(['busybox']);
    const plan = d.instances.validateCreate({ name, image: 'centos-7-x86_64', host: 'vz1', driver: 'openvz7', config: { 'limits.memory': '1GiB', 'limits.disk': '20GiB' } });
    expect(plan.buildImage).toBeUndefined();
    const made = await d.instances.create(plan);
    expect(made).toMatchObject({ name, host: 'vz1', driver: 'openvz7', image: 'centos-7-x86_64', state: 'stopped' });
    expect(d.db.getInstance(name)).toMatchObject({ image: 'centos-7-x86_64', imageFingerprint: '' });
    expect(createVolume).not.toHaveBeenCalled();
    expect(fake.host.calls.some((c) => c.argv[0] === 'tar')).toBe(false);
    expect(await fake.host.fs.stat(pool.instancePath(name))).toBeUndefined();
    expect(fake.calls('vzctl').find((a) => a[0] === 'create')).toEqual(['create', '101', '--ostemplate', 'centos-7-x86_64', '--name', name, '--hostname', name, '--diskspace', '20G']);

    await d.instances.start(name);
    const running = await d.instances.get(name);
    expect(running.state).toBe('running');
    // Disk use is the node's (vzlist), as the pool has no volume of it.
    expect(running.usage).toMatchObject({ diskUsedBytes: 612_352 * 1024, processes: 37 });

    const copy = await caught(d.instances.copy(name, `${name}-copy`));
    expect(isAppError(copy, 'UNSUPPORTED') && copy.message).toBe(`Cannot copy instance "${name}": its openvz7 backend keeps its disk on its host itself, so Hangar has no volume of it to copy (on an OpenVZ 7 node, prlctl clone copies a CT)`);
    expect(d.db.getInstance(`${name}-copy`)).toBeUndefined();

    await d.instances.delete(name, true);
    expect(fake.calls('vzctl').slice(-2)).toEqual([['stop', '101', '--fast'], ['destroy', '101']]);
    expect(deleteVolume).not.toHaveBeenCalled();
    expect(fake.cts.size).toBe(0);
    expect(d.db.getInstance(name)).toBeUndefined();
  });

  it('refuses a template the node does not have, recording nothing', async () => {
    const err = await caught(d.instances.create(d.instances.validateCreate({ name: `${name}-x`, image: 'no-such-template', host: 'vz1', driver: 'openvz7' })));
    expect(isAppError(err, 'NOT_FOUND')).toBe(true);
    expect(causeChain(err).join(' ')).toContain('OS template "no-such-template" is not on host vz1');
    expect(d.db.getInstance(`${name}-x`)).toBeUndefined();
  });

  it('does not hold a backend disk against the pool\'s size (the local pool claims 8 GiB), while a tree-storage driver still is', () => {
    expect(d.instances.validateCreate({ name: `${name}-big`, image: 'centos-7-x86_64', driver: 'openvz7', config: { 'limits.disk': '100GiB' } })).toMatchObject({ image: 'centos-7-x86_64' });
    expect(isAppError((() => { try { return d.instances.validateCreate({ name: `${name}-big`, image: 'busybox', driver: 'fake', config: { 'limits.disk': '100GiB' } }); } catch (e) { return e; } })(), 'INVALID_SIZE')).toBe(true);
  });
});
