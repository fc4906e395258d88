// Unit tests of adopting CTs already on an OpenVZ 7 node (FakeVz7): inspectForeign's translation and what it does not keep, lookups by CTID and name, refusals, and create() recording an imported CT instead of making one.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../shared/config.js';
import { isAppError } from '../../shared/errors.js';
import { driverEnv } from '../../../test/helpers/driver-env.js';
import type { ForeignInstance, HostDriver, InstanceRecord } from '../driver.js';
import { IMPORT_ORIGIN, openvz7Driver, STATE_FILE } from './driver.js';
import { FakeVz7, type FakeCt } from './fake-vz7.js';
import { parsePrlctlElements, parseVzlistJson, translateCt } from './parse.js';

const DIR = '/var/lib/hangar/instances/legacy-web';
const MIB = 1024 ** 2;
const GIB = 1024 ** 3;
const fixture = (f: string) => readFileSync(join(import.meta.dirname, '../../../test/fixtures/openvz7', f), 'utf8');
const open = (fake: FakeVz7): Promise<HostDriver> => openvz7Driver.open(driverEnv(fake.host, { dataDir: '/var/lib/hangar' }));
const caught = async (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e);
const vzctlCalls = (fake: FakeVz7) => fake.calls('vzctl').filter((a) => a[0] !== '--version');
const inspect = (hd: HostDriver, ref: string): Promise<ForeignInstance> => hd.inspectForeign!(ref);

/** A CT made on the node long before Hangar: every setting the translation maps, and some it does not. */
const LEGACY: Partial<FakeCt> & { ctid: string } = {
  ctid: '201', name: 'web201', state: 'running', ramBytes: 2 * GIB, swapBytes: 512 * MIB, guarantee: 50, cpus: 2, cpuunits: 2000, cpulimit: 150, numproc: 400,
  diskKiB: 20 * 1024 * 1024, ips: ['10.123.0.21', '10.123.0.22', '2001:db8::21'], hostname: 'web201.example.org', nameservers: ['192.0.2.53', '2001:db8::53'],
  searchdomains: ['example.org'], autostart: true, description: 'front end', ostemplate: 'centos-7-x86_64',
  extraHardware: {
    net0: { enabled: true, type: 'bridged', iface: 'eth0', mac: '001C42AB7F01', network: 'Bridged' },
    hdd1: { enabled: true, port: 'scsi:1', image: '/vz/private/201/data.hdd', type: 'expanded', size: '10240Mb', mnt: '/data' },
  },
};

const WANT_CONFIG = {
  'openvz.ctid': '201', 'limits.memory': '2GiB', 'limits.memory.swap': '512MiB', 'limits.memory.guarantee': '1GiB', 'limits.cpu': '2', 'limits.cpu.weight': '200',
  'limits.cpu.cap': '150%', 'limits.processes': '400', 'limits.disk': '20GiB', 'openvz.ipadd': '10.123.0.22', 'openvz.hostname': 'web201.example.org',
  'openvz.nameserver': '192.0.2.53', 'openvz.searchdomain': 'example.org', 'openvz.ostemplate': 'centos-7-x86_64', 'user.description': 'front end', 'boot.autostart': 'true',
};

/** The record the service gives an adopted CT: the import's config, its first address, its origin, no image. */
const adopted = (t: ForeignInstance, over: Partial<InstanceRecord> = {}): InstanceRecord => ({
  name: 'legacy-web', host: 'vz7node', type: 'container', driver: 'openvz7', image: '', config: t.config,
  rootPath: '/var/lib/hangar/hosts/vz7node/pool/instances/legacy-web', instanceDir: DIR,
  nic: { bridge: 'br0', hostIfName: 'hgu0a1b2c3d', mac: '02:48:47:00:00:21', ipv4: t.addresses[0]!, prefixLength: 24, gateway: '10.123.0.1' },
  imageProps: {}, origin: { kind: IMPORT_ORIGIN, source: 'vz7node:201', ctid: t.id, uuid: t.uuid, untranslated: t.untranslated },
  ...over,
});

async function node() {
  const fake = new FakeVz7();
  const ct = fake.addCt(LEGACY);
  const hd = await open(fake);
  return { fake, ct, hd };
}

describe('openvz7 import: reading a CT the node has', () => {
  it('translates every setting it maps into Hangar keys, with the addresses in order, and lists what it does not keep', async () => {
    const { fake, ct, hd } = await node();
    const t = await inspect(hd, '201');
    expect(t).toMatchObject({ id: '201', uuid: ct.uuid, name: 'web201', state: 'running', addresses: ['10.123.0.21', '10.123.0.22'] });
    expect(t.config).toEqual(WANT_CONFIG);
    // What the translation makes passes Hangar's own checks and the driver's, on this node.
    expect(validateConfig(t.config)).toEqual(t.config);
    expect(hd.validate(t.config)).toEqual([]);
    expect(t.untranslated.map((u) => `${u.key}=${u.value}`).sort()).toEqual([
      'Autostop=suspend', 'DNS Servers=2001:db8::53', 'Hardware.hdd1=/vz/private/201/data.hdd', 'Hardware.net0=eth0', 'Hardware.venet0.ips=2001:db8::21', 'vzlist.diskinodes=655360',
    ]);
    expect(t.untranslated.find((u) => u.key === 'Hardware.net0')?.reason).toBe('a veth NIC of the CT: the openvz7 driver manages venet addresses only; it stays as it is');
    expect(t.untranslated.find((u) => u.key === 'vzlist.diskinodes')?.reason).toMatch(/fixed when it was made/);
    expect(t.translated.find((x) => x.key === 'Hardware.memory_guarantee')).toEqual({ key: 'Hardware.memory_guarantee', value: '50%', to: ['limits.memory.guarantee'], note: 'a percentage of the RAM on VZ7, as a size' });
    expect(t.translated.find((x) => x.key === 'Hardware.venet0.ips')?.to).toEqual(['ipv4', 'openvz.ipadd']);
    // Read with one prlctl and one vzlist, nothing changed on the node.
    expect(fake.calls('prlctl').slice(1)).toEqual([['list', '-i', '-j', '201']]);
    expect(fake.calls('vzlist')).toEqual([['-a', '-j', '-o', 'ctid,ostemplate,swappages,numproc,diskspace,diskinodes', '201']]);
    expect(vzctlCalls(fake)).toEqual([]);
  });

  it('finds a CT by its name too, and says which settings of a bare CT need no key', async () => {
    const { fake, hd } = await node();
    fake.addCt({ ctid: '202', name: '202' });
    expect((await inspect(hd, 'web201')).id).toBe('201');
    const bare = await inspect(hd, '202');
    expect(bare.config).toEqual({ 'openvz.ctid': '202', 'limits.memory': '512MiB', 'limits.disk': '10GiB', 'openvz.ostemplate': 'centos-7-x86_64', 'boot.autostart': 'false' });
    expect(bare.addresses).toEqual([]);
    const none = bare.translated.filter((x) => x.to.length === 0).map((x) => x.key);
    expect(none).toEqual(expect.arrayContaining(['vzlist.swappages', 'Hardware.memory_guarantee', 'Hardware.cpu.cpus', 'Hardware.cpu.cpuunits', 'vzlist.numproc', 'Hostname']));
  });

  it('refuses an unknown CT with NOT_FOUND naming the node, a reference prlctl would take for an option, and a node without the driver', async () => {
    const { fake, hd } = await node();
    const err = await caught(inspect(hd, '4711'));
    expect(isAppError(err, 'NOT_FOUND') && err.message).toBe('CT "4711" not found on host vz7node: no CT there has that CTID, name or UUID (prlctl list -i -j 4711)');
    const before = fake.host.calls.length;
    expect(isAppError(await caught(inspect(hd, '--all')), 'INVALID_ARGUMENT')).toBe(true);
    expect(fake.host.calls.length).toBe(before);
    fake.failNext.set('prlctl list -i', { code: 1, stderr: 'Unable to connect to Virtuozzo. You may not have sufficient permissions.\n' });
    const broken = await caught(inspect(hd, '201'));
    expect(isAppError(broken, 'BACKEND_FAILED') && broken.message).toBe('Failed to read CT "201" on host vz7node');
    const bare = await open(new FakeVz7({ installed: false, name: 'box' }));
    const unavailable = await caught(inspect(bare, '201'));
    expect(isAppError(unavailable, 'UNSUPPORTED') && unavailable.message).toContain('the openvz7 driver is not available on host box');
  });

  it('translates the recorded prlctl element with what vzlist gave, and lists what vzlist did not print', () => {
    const [el] = parsePrlctlElements(fixture('prlctl-list-i-j.json'));
    const [row] = parseVzlistJson(fixture('vzlist-usage-j.json'));
    const t = translateCt(el!, row!);
    expect(t.config).toEqual({
      'openvz.ctid': '201', 'limits.memory': '2GiB', 'limits.cpu': '2', 'limits.cpu.weight': '200', 'limits.cpu.cap': '150%', 'limits.processes': '400', 'limits.disk': '10GiB',
      'openvz.ipadd': '192.0.2.22', 'openvz.hostname': 'web201.example.org', 'openvz.nameserver': '192.0.2.53 198.51.100.53', 'openvz.searchdomain': 'example.org',
      'user.description': 'front end', 'boot.autostart': 'true',
    });
    expect(t.addresses).toEqual(['192.0.2.21', '192.0.2.22']);
    expect(t.untranslated.map((u) => u.key)).toEqual(['vzlist.swappages']);
    // A CPU limit in MHz is no percentage: not kept. CPU units that are no multiple of 10 are rounded, and said so.
    const mhz = structuredClone(el!);
    ((mhz.element.Hardware as Record<string, Record<string, unknown>>).cpu!).cpulimit = '1000Mhz';
    mhz.ct.cpulimitPct = null;
    mhz.ct.cpuunits = 1234;
    const t2 = translateCt(mhz, null);
    expect(t2.config['limits.cpu.cap']).toBeUndefined();
    expect(t2.untranslated.find((u) => u.key === 'Hardware.cpu.cpulimit')?.reason).toMatch(/^not a percentage of one CPU/);
    expect(t2.translated.find((x) => x.key === 'Hardware.cpu.cpuunits')).toMatchObject({ to: ['limits.cpu.weight'], note: expect.stringMatching(/^rounded: weight 123 is 1230 units/) });
  });
});

describe('openvz7 import: create() records an existing CT instead of making one', () => {
  it('runs no vzctl create or set, records the CTID and the CT\'s settings, a later change sends only the difference, and forget() leaves the CT', async () => {
    const { fake, ct, hd } = await node();
    const t = await inspect(hd, '201');
    const h = hd.load(adopted(t));
    await h.create();
    expect(vzctlCalls(fake)).toEqual([]);
    expect(JSON.parse(fake.host.text(`${DIR}/${STATE_FILE}`)!)).toMatchObject({ ctid: '201', uuid: ct.uuid, applied: { ramBytes: 2 * GIB, cpus: 2, addresses: ['10.123.0.21', '10.123.0.22'] } });
    // The instance's name is not the CT's: the CT keeps its own, and is not taken for a CT Hangar did not make.
    expect(fake.cts.get('201')?.name).toBe('web201');
    expect((await h.state()).state).toBe('running');
    expect(await h.details!()).toMatchObject({ ct: `201 (uuid ${ct.uuid}, name web201)`, 'os template': 'centos-7-x86_64', venet: '10.123.0.21 10.123.0.22 2001:db8::21' });
    // Created again (a change while stopped), nothing changed: nothing run.
    const n = fake.host.calls.length;
    await h.create();
    expect(fake.host.calls.length).toBe(n);

    expect(await h.applyConfig({ ...t.config, 'limits.cpu': '1', 'user.owner': 'ops' }, t.config)).toEqual({ live: ['limits.cpu', 'user.owner'], pending: [] });
    expect(vzctlCalls(fake)).toEqual([['set', '201', '--cpus', '1', '--save']]);
    // The IPv6 address Hangar does not manage stays on the CT.
    const next = { ...t.config, 'limits.cpu': '1', 'openvz.ipadd': '10.123.0.23' };
    await h.applyConfig(next, { ...t.config, 'limits.cpu': '1' });
    expect(vzctlCalls(fake).at(-1)).toEqual(['set', '201', '--ipdel', '10.123.0.22', '--ipadd', '10.123.0.23', '--save']);
    expect(fake.cts.get('201')?.ips).toEqual(['10.123.0.21', '2001:db8::21', '10.123.0.23']);

    // An import undone after this point forgets the CT: its record goes, the CT stays on the node, no vzctl destroy.
    await h.forget!();
    expect(fake.host.text(`${DIR}/${STATE_FILE}`)).toBeUndefined();
    expect(fake.cts.has('201')).toBe(true);
    expect(vzctlCalls(fake).some((c) => c[0] === 'destroy')).toBe(false);
  });

  it('gives the CT what changed on it since the import read it, and refuses a CT that is gone or is another one by now', async () => {
    const { fake, ct, hd } = await node();
    const t = await inspect(hd, '201');
    ct.cpus = 4;
    await hd.load(adopted(t)).create();
    expect(vzctlCalls(fake)).toEqual([['set', '201', '--cpus', '2', '--save']]);

    const other = await node();
    const t2 = await inspect(other.hd, '201');
    other.fake.cts.delete('201');
    other.fake.addCt({ ...LEGACY, uuid: '5f0c3a52-1b7e-4c0d-9a44-999999999999' });
    const replaced = await caught(other.hd.load(adopted(t2)).create());
    expect(isAppError(replaced, 'CONFLICT') && replaced.message).toBe(`Failed to import instance "legacy-web": CT 201 on host vz7node is not the CT the import read (UUID 5f0c3a52-1b7e-4c0d-9a44-999999999999, not ${t2.uuid}); import it again`);
    other.fake.cts.delete('201');
    const gone = await caught(other.hd.load(adopted(t2)).create());
    expect(isAppError(gone, 'NOT_FOUND') && gone.message).toBe('Failed to import instance "legacy-web": CT 201 is no longer on host vz7node');
    expect(vzctlCalls(other.fake)).toEqual([]);
    expect(other.fake.host.text(`${DIR}/${STATE_FILE}`)).toBeUndefined();
  });
});
