// The core with a driver that keeps the disk itself (storage 'backend', the openvz7 driver on a scripted OpenVZ 7 node): no root volume, no image copied, the template name as the image, copy refused, CTs already on the node adopted (hangar import openvz7); in-process, no root.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildServer } from '../../src/api/server.js';
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

  it('numbers CTs per node: a CTID taken on one node is free on another, and refused on its own', async () => {
    const fake2 = new FakeVz7({ name: 'vz2' });
    d.connector.machines.set('127.0.0.1:2231', { key: { type: 'ssh-ed25519', fingerprint: testFingerprint('vz7-node2') }, host: () => fake2.host, drivers: 'openvz7' });
    await d.hosts.add(await d.hosts.validateAdd({ name: 'vz2', url: 'ssh://root@127.0.0.1:2231', identityFile: join(d.dir, 'id_vz7') }));
    await d.instances.create(d.instances.validateCreate({ name: `${name}-n1`, image: 'centos-7-x86_64', host: 'vz1', driver: 'openvz7', config: { 'openvz.ctid': '150' } }));
    try {
      expect(d.instances.validateCreate({ name: `${name}-n2`, image: 'centos-7-x86_64', host: 'vz2', driver: 'openvz7', config: { 'openvz.ctid': '150' } }).config['openvz.ctid']).toBe('150');
      const taken = (() => { try { return d.instances.validateCreate({ name: `${name}-n3`, image: 'centos-7-x86_64', host: 'vz1', driver: 'openvz7', config: { 'openvz.ctid': '150' } }); } catch (e) { return e; } })();
      expect(isAppError(taken, 'ALREADY_EXISTS') && taken.message).toBe(`CTID 150 is taken by instance "${name}-n1" (on host vz1)`);
    } finally {
      await d.instances.delete(`${name}-n1`, true);
      await d.hosts.remove('vz2');
    }
  });

  it('does not hold a backend disk against the pool\'s size (the local pool claims 8 GiB), while a tree-storage driver still is', () => {
    expect(d.instances.validateCreate({ name: `${name}-big`, image: 'centos-7-x86_64', driver: 'openvz7', config: { 'limits.disk': '100GiB' } })).toMatchObject({ image: 'centos-7-x86_64' });
    expect(isAppError((() => { try { return d.instances.validateCreate({ name: `${name}-big`, image: 'busybox', driver: 'fake', config: { 'limits.disk': '100GiB' } }); } catch (e) { return e; } })(), 'INVALID_SIZE')).toBe(true);
  });

  it('imports a CT already on the node: translated dry, adopted as it is (no vzctl create, no pool volume), refused twice, unknown or on a host without the driver before anything is recorded', async () => {
    const h = d.hosts.get('vz1');
    const subnet = h.network.subnet;
    expect(subnet.cidr).toMatch(/\/24$/);
    const net = subnet.network.split('.').slice(0, 3).join('.');
    const ct = fake.addCt({ ctid: '300', name: 'legacy', state: 'running', ips: [`${net}.200`, `${net}.201`], ramBytes: 1024 ** 3, cpus: 1, hostname: 'legacy.example.org', diskKiB: 5 * 1024 * 1024 });
    const imp = `${name}-imp`;
    const createVolume = vi.spyOn(h.pool, 'createInstanceVolume');
    const rows = () => d.db.listInstances().map((r) => r.name).sort();
    const before = rows();

    const t = await d.imports.translate({ kind: 'openvz7', host: 'vz1', ctid: '300' });
    expect(t).toMatchObject({
      driver: 'openvz7', ctid: '300', uuid: ct.uuid, ctName: 'legacy', name: 'legacy', host: 'vz1', state: 'running', addresses: [`${net}.200`, `${net}.201`],
      config: { 'openvz.ctid': '300', 'limits.memory': '1GiB', 'limits.cpu': '1', 'limits.disk': '5GiB', 'openvz.ipadd': `${net}.201`, 'openvz.hostname': 'legacy.example.org' },
    });
    expect(rows()).toEqual(before);

    // Through the API: the dry run answers the translation; a CT the node does not have is the import route's 404, and no operation is made.
    const app = await buildServer(d);
    try {
      const dry = await app.inject({ method: 'POST', url: '/1.0/imports/translate', payload: { kind: 'openvz7', host: 'vz1', ctid: 'legacy' } });
      expect(dry.statusCode, dry.body).toBe(200);
      expect(JSON.parse(dry.body)).toMatchObject({ ctid: '300', driver: 'openvz7' });
      const opsBefore = d.ops.list().length;
      const unknown = await app.inject({ method: 'POST', url: '/1.0/instances/import', payload: { kind: 'openvz7', host: 'vz1', ctid: '4711' } });
      expect(unknown.statusCode, unknown.body).toBe(404);
      expect(JSON.parse(unknown.body)).toMatchObject({ error: { code: 'NOT_FOUND', message: 'CT "4711" not found on host vz1: no CT there has that CTID, name or UUID (prlctl list -i -j 4711)' } });
      expect(d.ops.list()).toHaveLength(opsBefore);
      const noText = await app.inject({ method: 'POST', url: '/1.0/instances/import', payload: { kind: 'openvz7', host: 'vz1', ctid: '300', text: 'x' } });
      expect(noText.statusCode).toBe(400);
    } finally {
      await app.close();
    }
    expect(rows()).toEqual(before);

    const vzctlBefore = fake.calls('vzctl').length;
    const made = await d.imports.run(await d.imports.validate({ kind: 'openvz7', host: 'vz1', ctid: 'legacy', name: imp }));
    expect(made).toMatchObject({ name: imp, host: 'vz1', driver: 'openvz7', image: '', ipv4: `${net}.200`, state: 'running' });
    expect((await d.instances.list('vz1')).find((i) => i.name === imp)).toMatchObject({ driver: 'openvz7', host: 'vz1', state: 'running', config: { 'openvz.ctid': '300' } });
    expect(d.db.getInstance(imp)?.origin).toMatchObject({ kind: 'openvz7-import', ctid: '300', uuid: ct.uuid });
    // Adopted while it runs, it is recorded as running: a restart's reconciliation finds no drift.
    expect(d.db.getInstance(imp)?.expectedState).toBe('running');
    expect(createVolume).not.toHaveBeenCalled();
    expect(await h.host.fs.stat(h.pool.instancePath(imp))).toBeUndefined();
    expect(fake.calls('vzctl').slice(vzctlBefore)).toEqual([]);
    expect(fake.cts.get('300')).toMatchObject({ name: 'legacy', state: 'running', ips: [`${net}.200`, `${net}.201`] });
    // Its first config change is one vzctl set of what changed.
    await d.instances.patchConfig(imp, { 'limits.memory': '2GiB' }, []);
    expect(fake.calls('vzctl').slice(vzctlBefore)).toEqual([['set', '300', '--ram', '2G', '--save']]);

    const again = await caught(d.imports.validate({ kind: 'openvz7', host: 'vz1', ctid: '300', name: `${imp}-2` }));
    expect(isAppError(again, 'ALREADY_EXISTS') && again.message).toBe(`Cannot import CT 300 ("legacy") on host vz1: Hangar manages it already, as instance "${imp}"`);
    // A CT Hangar made itself (its CTID chosen, not in its config) is known by its name.
    const own = await d.instances.create(d.instances.validateCreate({ name: `${name}-own`, image: 'centos-7-x86_64', host: 'vz1', driver: 'openvz7' }));
    const ownCt = [...fake.cts.values()].find((c) => c.name === own.name)!;
    expect(isAppError(await caught(d.imports.validate({ kind: 'openvz7', host: 'vz1', ctid: ownCt.ctid, name: `${imp}-3` })), 'ALREADY_EXISTS')).toBe(true);

    // Addresses outside the node's subnet, or none: refused, naming what to do.
    fake.addCt({ ctid: '301', name: 'lan', ips: ['192.0.2.9'] });
    const lan = await caught(d.imports.validate({ kind: 'openvz7', host: 'vz1', ctid: '301' }));
    expect(isAppError(lan, 'INVALID_ADDRESS') && lan.message).toBe(`Cannot import CT 301 ("lan") on host vz1: its address 192.0.2.9 is outside the subnet ${subnet.cidr} of host vz1, where Hangar places its instances' addresses; add the node with the bridge of the CTs' own network (hangar host add NAME URL --bridge BRIDGE), so that its subnet is theirs`);
    fake.addCt({ ctid: '302', name: 'dark' });
    const dark = await caught(d.imports.validate({ kind: 'openvz7', host: 'vz1', ctid: 'dark' }));
    expect(isAppError(dark, 'UNSUPPORTED') && dark.message).toMatch(/^Cannot import CT 302 \("dark"\) on host vz1: it has no venet IPv4 address/);

    // The local host has the openvz7 driver enabled but no prlctl: UNSUPPORTED with why; an unknown host is NOT_FOUND.
    const local = await caught(d.imports.validate({ kind: 'openvz7', host: 'local', ctid: '300' }));
    expect(isAppError(local, 'UNSUPPORTED') && local.message).toBe('Cannot import CT "300" on host local: the openvz7 driver is not available there: prlctl is not installed on host local: not an OpenVZ 7 / Virtuozzo host');
    expect(isAppError(await caught(d.imports.translate({ kind: 'openvz7', host: 'nowhere', ctid: '300' })), 'NOT_FOUND')).toBe(true);
    // A host whose HANGAR_DRIVERS do not name openvz7 at all.
    const plain = new FakeVz7({ name: 'plain' });
    d.connector.machines.set('127.0.0.1:2231', { key: { type: 'ssh-ed25519', fingerprint: testFingerprint('plain-node') }, host: () => plain.host, drivers: 'fake' });
    await d.hosts.add(await d.hosts.validateAdd({ name: 'plain', url: 'ssh://root@127.0.0.1:2231', identityFile: join(d.dir, 'id_vz7') }));
    const notEnabled = await caught(d.imports.translate({ kind: 'openvz7', host: 'plain', ctid: '300' }));
    expect(isAppError(notEnabled, 'UNSUPPORTED') && notEnabled.message).toBe('Cannot import CT "300" on host plain: the openvz7 driver is not available there: it is not enabled (HANGAR_DRIVERS names fake)');
    expect(plain.calls('prlctl')).toEqual([]);
    expect(rows()).toEqual([...before, imp, `${name}-own`].sort());

    // Deleting the adopted instance destroys its CT, as for one Hangar made.
    await d.instances.delete(imp, true);
    expect(fake.cts.has('300')).toBe(false);
    await d.instances.delete(`${name}-own`, true);
  });
});
