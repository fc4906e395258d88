// In-process API tests: every catalogue route through the real server (answers checked against their schemas) over the fake driver, without root.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import * as tar from 'tar';
import { WebSocket } from 'ws';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../src/api/server.js';
import { HangarClient } from '../../src/client/client.js';
import { ROUTES, routePath, type RouteId, type RouteParams } from '../../src/shared/routes.js';
import { ROUTE_SCHEMAS, type RouteSchema } from '../../src/shared/route-schemas.js';
import { ErrorResponseSchema, type HangarEvent, type HostRecord, type Instance, type Operation } from '../../src/shared/schemas.js';
import { FakeXl } from '../../src/drivers/xen/fake-xl.js';
import { inProcessDaemon, type InProcessDaemon } from '../helpers/in-process.js';
import { testFingerprint } from '../helpers/loopback-hosts.js';
import { sink } from '../helpers/sink.js';

let d: InProcessDaemon;
let app: FastifyInstance;
let client: HangarClient;
let dir: string;
const P = `api${process.pid}`;
const ok = new Set<RouteId>();
const failed = new Set<RouteId>();

type Query = Record<string, string | number | boolean | undefined>;
interface Answer { status: number; body: unknown; headers: Record<string, unknown>; text: string }

/** Calls a route in-process and checks the answer's shape: its schema on success, the error schema otherwise. */
async function call<K extends RouteId>(id: K, params: RouteParams<K>, opts: { query?: Query; body?: unknown } = {}): Promise<Answer> {
  const r = await app.inject({ method: ROUTES[id].method, url: routePath(id, params, opts.query), ...(opts.body === undefined ? {} : { payload: opts.body as object }) });
  const text = r.body;
  const body: unknown = String(r.headers['content-type'] ?? '').includes('json') ? JSON.parse(text) : text;
  if (r.statusCode < 300) {
    const schema = (ROUTE_SCHEMAS[id] as RouteSchema).response;
    if (schema) expect(schema.safeParse(body).success, `${id} answer ${text.slice(0, 300)}`).toBe(true);
    expect(r.statusCode, id).toBe(ROUTES[id].kind === 'operation' ? 202 : 200);
    ok.add(id);
  } else {
    expect(ErrorResponseSchema.safeParse(body).success, `${id} error ${text.slice(0, 300)}`).toBe(true);
    failed.add(id);
  }
  return { status: r.statusCode, body, headers: r.headers, text };
}

/** Calls a route that must fail with this code. */
async function refused<K extends RouteId>(id: K, params: RouteParams<K>, code: string, opts: { query?: Query; body?: unknown } = {}): Promise<string> {
  const r = await call(id, params, opts);
  expect(r.status, `${id}: ${r.text}`).toBeGreaterThanOrEqual(400);
  const err = (r.body as { error: { code: string; message: string } }).error;
  expect(err.code, `${id}: ${err.message}`).toBe(code);
  return err.message;
}

/** Polls a host's record (up to 5 s) until pred holds. */
async function hostUntil(name: string, pred: (h: HostRecord) => boolean): Promise<void> {
  for (let i = 0; i < 50 && !pred((await call('getHost', { host: name })).body as HostRecord); i++) await new Promise((r) => setTimeout(r, 100));
}

/** Runs an operation route and waits for it through the wait route; answers the finished operation. */
async function operation<K extends RouteId>(id: K, params: RouteParams<K>, opts: { query?: Query; body?: unknown } = {}): Promise<Operation> {
  const r = await call(id, params, opts);
  expect(r.status, `${id}: ${r.text}`).toBe(202);
  const op = r.body as Operation;
  expect(r.headers.location).toBe(`/1.0/operations/${op.id}`);
  const done = await call('waitOperation', { id: op.id }, { query: { timeout: 30 } });
  return done.body as Operation;
}
beforeAll(async () => {
  d = await inProcessDaemon();
  app = await buildServer(d, { validateResponses: true });
  dir = mkdtempSync(join(tmpdir(), 'hangar-api-test-'));
  await app.listen({ path: join(dir, 'api.sock') });
  client = new HangarClient({ socketPath: join(dir, 'api.sock') });
});

afterAll(async () => {
  client?.close();
  for (const i of d ? await d.instances.list() : []) await d.instances.delete(i.name, true).catch(() => undefined);
  await app?.close();
  await d?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('API routes in-process (fake driver)', () => {
  it('serves the server, host and document routes', async () => {
    expect((await call('serverInfo', {})).body).toMatchObject({ apiVersion: '1.0', pid: process.pid });
    const doc = (await call('openapi', {})).body as { paths: Record<string, Record<string, { operationId: string }>> };
    for (const [id, r] of Object.entries(ROUTES)) expect(doc.paths[r.path]?.[r.method.toLowerCase()]?.operationId, id).toBe(id);
    expect((await call('hostInfo', {})).body).toMatchObject({ drivers: [{ name: 'fake', available: true }] });
    expect(Array.isArray((await call('hostDetect', {}, { query: { root: '/' } })).body)).toBe(true);
    await refused('hostDetect', {}, 'INVALID_ARGUMENT', { query: { root: '' } });
    await refused('serverInfo', {}, 'INVALID_ARGUMENT', { query: { x: 1 } });
    await refused('openapi', {}, 'INVALID_ARGUMENT', { query: { format: 'yaml' } });
    await refused('hostInfo', {}, 'NOT_FOUND', { query: { host: 'other' } });
    await refused('hostInfo', {}, 'INVALID_ARGUMENT', { query: { hots: 'local' } });
    expect((await app.inject({ method: 'PUT', url: '/1.0' })).statusCode).toBe(405);
  });

  it('creates, inspects, changes and deletes an instance through its routes', async () => {
    const name = `${P}-a`;
    expect((await call('listInstances', {})).body).toEqual([]);
    await refused('createInstance', {}, 'INVALID_ARGUMENT', { body: { name, image: 'busybox', nope: 1 } });
    expect(await refused('createInstance', {}, 'INVALID_CONFIG', { body: { name, image: 'busybox', config: { 'no.such.key': '1' } } })).toMatch(/no\.such\.key/);
    const created = await operation('createInstance', {}, { body: { name, image: 'busybox', start: true } });
    expect(created.status, JSON.stringify(created.error)).toBe('success');
    expect((await call('getInstance', { name })).body).toMatchObject({ name, state: 'running', driver: 'fake' });
    await refused('getInstance', { name: `${P}-none` }, 'NOT_FOUND');
    expect((await call('listInstances', {})).body).toHaveLength(1);

    expect((await operation('changeState', { name }, { body: { action: 'freeze' } })).status).toBe('success');
    expect((await call('getInstance', { name })).body).toMatchObject({ state: 'frozen' });
    expect((await operation('changeState', { name }, { body: { action: 'unfreeze' } })).status).toBe('success');
    await refused('changeState', { name }, 'INVALID_ARGUMENT', { body: { action: 'explode' } });
    await refused('changeState', { name: `${P}-none` }, 'NOT_FOUND', { body: { action: 'start' } });
    const again = await operation('changeState', { name }, { body: { action: 'start' } });
    expect(again.status).toBe('failure');
    expect(again.error?.code).toBe('INVALID_STATE');

    expect((await call('patchConfig', { name }, { body: { set: { 'limits.memory': '128MiB' } } })).body).toMatchObject({ live: ['limits.memory'] });
    await refused('patchConfig', { name }, 'INVALID_SIZE', { body: { set: { 'limits.memory': 'lots' } } });

    const copy = await operation('copyInstance', { name }, { body: { name: `${name}-copy` } });
    expect(copy.status, JSON.stringify(copy.error)).toBe('success');
    await refused('copyInstance', { name: `${P}-none` }, 'NOT_FOUND', { body: { name: `${P}-c2` } });

    await refused('deleteInstance', { name }, 'INVALID_ARGUMENT', { query: { force: 'yes' } });
    const plain = await operation('deleteInstance', { name });
    expect(plain.error?.code).toBe('INVALID_STATE');
    expect((await operation('deleteInstance', { name }, { query: { force: true } })).status).toBe('success');
    expect((await operation('deleteInstance', { name: `${name}-copy` }, { query: { force: true } })).status).toBe('success');
    await refused('deleteInstance', { name }, 'NOT_FOUND');
  });

  it('snapshots: list, create, restore, delete, and their errors', async () => {
    const name = `${P}-s`;
    expect((await operation('createInstance', {}, { body: { name, image: 'busybox' } })).status).toBe('success');
    expect((await operation('createSnapshot', { name }, { body: { name: 'snap0' } })).status).toBe('success');
    expect((await call('listSnapshots', { name })).body).toMatchObject([{ name: 'snap0', stateful: false }]);
    expect((await operation('createSnapshot', { name }, { body: { name: 'snap0' } })).error?.code).toBe('ALREADY_EXISTS');
    await refused('createSnapshot', { name }, 'INVALID_ARGUMENT', { body: {} });
    expect((await operation('restoreSnapshot', { name, snap: 'snap0' })).status).toBe('success');
    expect((await operation('restoreSnapshot', { name, snap: 'nope' })).error?.code).toBe('NOT_FOUND');
    expect((await operation('deleteSnapshot', { name, snap: 'snap0' })).status).toBe('success');
    expect((await call('listSnapshots', { name })).body).toEqual([]);
    await refused('listSnapshots', { name: `${P}-none` }, 'NOT_FOUND');
    await refused('restoreSnapshot', { name: `${P}-none`, snap: 'x' }, 'NOT_FOUND');
    await refused('deleteSnapshot', { name: `${P}-none`, snap: 'x' }, 'NOT_FOUND');
    expect((await operation('deleteInstance', { name })).status).toBe('success');
  });

  it('exec (framed POST and websocket), console, console log and monitor', async () => {
    const name = `${P}-x`;
    expect((await operation('createInstance', {}, { body: { name, image: 'busybox', start: true } })).status).toBe('success');
    const out = sink();
    expect(await client.exec(name, { command: ['sh', '-c', 'echo hi; exit 4'] }, { stdout: out, stderr: sink() })).toBe(4);
    expect(out.text()).toBe('hi\n');
    ok.add('execRun');
    await refused('execRun', { name }, 'INVALID_ARGUMENT', { body: { command: [] } });
    await refused('execRun', { name: `${P}-none` }, 'NOT_FOUND', { body: { command: ['true'] } });

    // A signal handler makes the client use the websocket session.
    const wsOut = sink();
    expect(await client.exec(name, { command: ['cat'] }, { stdin: new PassThrough().end('typed'), stdout: wsOut, onSignal: () => () => undefined })).toBe(0);
    expect(wsOut.text()).toBe('typed');
    ok.add('execSession');
    // A command whose stdin stays open keeps running: listed by id, signalled through the API.
    const held = new PassThrough();
    const running = client.exec(name, { command: ['cat'] }, { stdin: held, stdout: sink(), onSignal: () => () => undefined }).catch(() => -1);
    let execs: { id: string; command: string[] }[] = [];
    for (let i = 0; i < 50 && execs.length === 0; i++) {
      execs = (await call('listExecs', { name })).body as typeof execs;
      if (execs.length === 0) await new Promise((r) => setTimeout(r, 20));
    }
    expect(execs.map((e) => e.command)).toEqual([['cat']]);
    expect((await call('signalExec', { name, id: execs[0]!.id }, { body: { signal: 'SIGTERM' } })).body).toMatchObject({ id: execs[0]!.id, command: ['cat'] });
    await refused('signalExec', { name, id: 'nope' }, 'NOT_FOUND', { body: { signal: 'SIGTERM' } });
    await refused('signalExec', { name, id: execs[0]!.id }, 'INVALID_ARGUMENT', { body: { signal: 'SIGFOO' } });
    await refused('listExecs', { name: `${P}-none` }, 'NOT_FOUND');
    held.end();
    await running;
    const bad = await client.exec(name, { command: [] }, { stdout: sink(), stdin: Readable.from([]) }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^Invalid first frame/) });
    expect(await client.exec(`${P}-none`, { command: ['true'] }, { stdout: sink(), stdin: Readable.from([]) }).catch((e: unknown) => e)).toMatchObject({ code: 'NOT_FOUND' });
    failed.add('execSession');

    const abort = new AbortController();
    const screen = sink();
    const attached = client.console(name, { cols: 80, rows: 24 }, { stdin: new PassThrough(), stdout: screen, signal: abort.signal });
    await new Promise((r) => setTimeout(r, 200));
    abort.abort();
    await attached;
    ok.add('console');
    expect((await call('getInstance', { name })).body).toMatchObject({ state: 'running' });
    expect(await client.console(`${P}-none`, { cols: 80, rows: 24 }, { stdout: sink() }).catch((e: unknown) => e)).toMatchObject({ code: 'NOT_FOUND' });
    failed.add('console');
    // The graphical console of a backend without one: the socket opens, then an error frame says why.
    const vga = new WebSocket(`ws+unix://${join(dir, 'api.sock')}:${routePath('console', { name }, { type: 'vga' })}`);
    const frame = await new Promise<string>((resolve, reject) => { vga.once('message', (m) => resolve(String(m))); vga.once('error', reject); });
    expect(JSON.parse(frame)).toMatchObject({ type: 'error', error: { code: 'UNSUPPORTED' } });
    vga.close();

    expect(typeof (await call('consoleLog', { name })).body).toBe('string');
    await refused('consoleLog', { name: `${P}-none` }, 'NOT_FOUND');
    expect((await call('monitor', { name }, { body: { command: 'query-status' } })).body).toEqual({ return: { status: 'running', running: true } });
    expect(await refused('monitor', { name }, 'BACKEND_FAILED', { body: { command: 'query-nothing' } })).toBe(`Monitor command "query-nothing" failed on instance "${name}"`);
    await refused('monitor', { name }, 'INVALID_ARGUMENT', { body: { command: 'not a command' } });
    expect((await call('beancounters', { name })).body).toEqual(expect.arrayContaining([expect.objectContaining({ resource: 'numproc', held: 1 })]));
    await refused('beancounters', { name: `${P}-none` }, 'NOT_FOUND');
    expect((await operation('deleteInstance', { name }, { query: { force: true } })).status).toBe('success');
  });

  it('images: list, build, import, delete, and their errors', async () => {
    expect((await call('listImages', {})).body).toMatchObject([{ alias: 'busybox' }]);
    await refused('buildImage', {}, 'ALREADY_EXISTS', { body: { kind: 'busybox' } });
    await refused('buildImage', {}, 'INVALID_ARGUMENT', { body: { kind: 'windows' } });
    const src = join(dir, 'rootfs');
    mkdirSync(join(src, 'bin'), { recursive: true });
    mkdirSync(join(src, 'sbin'), { recursive: true });
    writeFileSync(join(src, 'bin', 'sh'), '#!fake\n', { mode: 0o755 });
    writeFileSync(join(src, 'sbin', 'init'), '#!fake\n', { mode: 0o755 });
    const tarball = join(dir, 'rootfs.tar.gz');
    await tar.create({ gzip: true, file: tarball, cwd: src, portable: true }, ['bin', 'sbin']);
    await refused('importImage', {}, 'NOT_FOUND', { body: { path: join(dir, 'none.tar.gz'), alias: `${P}-img` } });
    const imported = await operation('importImage', {}, { body: { path: tarball, alias: `${P}-img` } });
    expect(imported.status, JSON.stringify(imported.error)).toBe('success');
    expect((await call('listImages', {})).body).toEqual(expect.arrayContaining([expect.objectContaining({ alias: `${P}-img`, type: 'container' })]));
    await refused('deleteImage', { alias: `${P}-img` }, 'INVALID_ARGUMENT', { query: { type: 'floppy' } });
    await refused('deleteImage', { alias: `${P}-none` }, 'NOT_FOUND');
    expect((await operation('deleteImage', { alias: `${P}-img` })).status).toBe('success');
    // The build's 202 is the route's answer; the build itself may need root, so only its shape is checked here.
    const build = await call('buildImage', {}, { body: { kind: 'busybox', alias: `${P}-bb` } });
    expect(build.status).toBe(202);
    await call('waitOperation', { id: (build.body as Operation).id }, { query: { timeout: 120 } });
    if ((await client.listImages()).some((i) => i.alias === `${P}-bb`)) await client.waitOperation(await client.deleteImage(`${P}-bb`));
  });

  it('operations and events', async () => {
    const events: HangarEvent[] = [];
    const stream = client.events({ types: ['instance-created', 'instance-deleted'], onEvent: (e) => events.push(e) });
    await stream.ready;
    ok.add('events');
    const name = `${P}-e`;
    const r = await call('createInstance', {}, { body: { name, image: 'busybox' } });
    const id = (r.body as Operation).id;
    expect((await call('getOperation', { id })).body).toMatchObject({ id });
    expect(((await call('listOperations', {})).body as Operation[]).some((o) => o.id === id)).toBe(true);
    expect((await call('waitOperation', { id }, { query: { timeout: 30 } })).body).toMatchObject({ id, status: 'success' });
    await refused('getOperation', { id: 'no-such-op' }, 'NOT_FOUND');
    await refused('waitOperation', { id }, 'INVALID_ARGUMENT', { query: { timeout: -1 } });
    await refused('listOperations', {}, 'INVALID_ARGUMENT', { query: { all: 1 } });
    await refused('listInstances', {}, 'INVALID_ARGUMENT', { query: { all: 1 } });
    await refused('listImages', {}, 'INVALID_ARGUMENT', { query: { all: 1 } });
    await operation('deleteInstance', { name });
    for (let i = 0; i < 50 && events.length < 2; i++) await new Promise((res) => setTimeout(res, 20));
    stream.close();
    expect(events.map((e) => [e.type, e.instance])).toEqual([['instance-created', name], ['instance-deleted', name]]);
    const badFilter = client.events({ types: ['no-such-event' as never], onEvent: () => undefined });
    expect(await badFilter.ready.catch((e: unknown) => e)).toMatchObject({ code: 'INVALID_ARGUMENT' });
    failed.add('events');
  });

  it('hosts: add (key pinned), list, get, host info, instances there, a host that goes away and comes back, trust, remove', async () => {
    const c = d.connector;
    const fpA = testFingerprint('key-a');
    const fpB = testFingerprint('key-b');
    c.machines.set('127.0.0.1:2201', { key: { type: 'ssh-ed25519', fingerprint: fpA } });
    const key = join(dir, 'id_test');
    writeFileSync(key, 'test key\n', { mode: 0o600 });
    const url = 'ssh://root@127.0.0.1:2201';
    const hostsNow = async () => ((await call('listHosts', {})).body as HostRecord[]).map((h) => h.name);
    expect(await hostsNow()).toEqual(['local']);
    await refused('listHosts', {}, 'INVALID_ARGUMENT', { query: { all: 1 } });

    // Bad input is refused before anything is tried; nothing is recorded.
    expect(await refused('addHost', {}, 'INVALID_ARGUMENT', { body: { name: 'r1', url: 'http://127.0.0.1', identityFile: key } })).toMatch(/only ssh:\/\/ URLs/);
    expect(await refused('addHost', {}, 'INVALID_ARGUMENT', { body: { name: 'r1', url: 'ssh://127.0.0.1', identityFile: key } })).toMatch(/user is missing/);
    expect(await refused('addHost', {}, 'INVALID_ARGUMENT', { body: { name: 'r1', url: 'ssh://root@127.0.0.1:99999', identityFile: key } })).toMatch(/port "99999"/);
    expect(await refused('addHost', {}, 'INVALID_NAME', { body: { name: 'local', url, identityFile: key } })).toMatch(/daemon's own machine/);
    await refused('addHost', {}, 'INVALID_NAME', { body: { name: 'R_1', url, identityFile: key } });
    expect(await refused('addHost', {}, 'NOT_FOUND', { body: { name: 'r1', url, identityFile: join(dir, 'no-key') } })).toMatch(/Identity file .* not found/);
    await refused('addHost', {}, 'INVALID_ARGUMENT', { body: { name: 'r1', url, identityFile: 'relative/key' } });
    expect(await refused('addHost', {}, 'INVALID_ARGUMENT', { body: { name: 'r1', url } })).toMatch(/No identity file given/);
    await refused('addHost', {}, 'INVALID_ARGUMENT', { body: { name: 'r1', url, identityFile: key, fingerprint: 'MD5:aa' } });
    await refused('addHost', {}, 'INVALID_ARGUMENT', { body: { name: 'r1', url, identityFile: key, bogus: 1 } });
    // Unreachable, or presenting another key than the one expected: the operation fails, nothing is added.
    const down = await operation('addHost', {}, { body: { name: 'r1', url: 'ssh://root@127.0.0.1:2299', identityFile: key } });
    expect(down.error).toMatchObject({ code: 'HOST_UNREACHABLE', message: expect.stringMatching(/127\.0\.0\.1:2299 cannot be reached \(nothing was added\)/) });
    const other = await operation('addHost', {}, { body: { name: 'r1', url, identityFile: key, fingerprint: fpB } });
    expect(other.error).toMatchObject({ code: 'CONFLICT', message: expect.stringContaining(`presents host key ssh-ed25519 ${fpA}, not the expected ${fpB}`) });
    expect(await hostsNow()).toEqual(['local']);

    const added = await operation('addHost', {}, { body: { name: 'r1', url, identityFile: key } });
    expect(added.status, JSON.stringify(added.error)).toBe('success');
    expect(added.result).toMatchObject({ name: 'r1', local: false, url, keyType: 'ssh-ed25519', fingerprint: fpA, state: 'up', instances: 0, drivers: [{ name: 'fake', available: true }] });
    await refused('addHost', {}, 'ALREADY_EXISTS', { body: { name: 'r1', url, identityFile: key } });
    expect(await hostsNow()).toEqual(['local', 'r1']);
    expect((await call('getHost', { host: 'r1' })).body).toMatchObject({ name: 'r1', state: 'up', fingerprint: fpA, identityFile: key });
    expect((await call('getHost', { host: 'local' })).body).toMatchObject({ name: 'local', local: true, state: 'up', fingerprint: null });
    await refused('getHost', { host: 'nope' }, 'NOT_FOUND');
    expect((await call('hostInfo', {}, { query: { host: 'r1' } })).body).toMatchObject({ drivers: [{ name: 'fake', available: true }], storage: { driver: 'dir' } });

    // Instances there: the image is copied to the host's pool once; names stay unique across hosts.
    const remote = `${P}-r`;
    const local = `${P}-l`;
    const made = await operation('createInstance', {}, { body: { name: remote, image: 'busybox', host: 'r1', start: true } });
    expect(made.status, JSON.stringify(made.error)).toBe('success');
    expect(made.result).toMatchObject({ name: remote, host: 'r1', state: 'running' });
    expect((await operation('createInstance', {}, { body: { name: local, image: 'busybox', start: true } })).status).toBe('success');
    expect(await refused('createInstance', {}, 'ALREADY_EXISTS', { body: { name: remote, image: 'busybox' } })).toBe(`Instance "${remote}" already exists (on host r1)`);
    await refused('createInstance', {}, 'NOT_FOUND', { body: { name: `${P}-n`, image: 'busybox', host: 'nope' } });
    expect(await refused('createInstance', {}, 'UNSUPPORTED', { body: { name: `${P}-n`, image: 'busybox', host: 'r1', config: { 'limits.disk': '1GiB' } } })).toMatch(/cannot be enforced on host "r1"/);
    expect(((await call('listInstances', {}, { query: { host: 'r1' } })).body as Instance[]).map((i) => i.name)).toEqual([remote]);
    await refused('listInstances', {}, 'NOT_FOUND', { query: { host: 'nope' } });
    expect((await call('getHost', { host: 'r1' })).body).toMatchObject({ instances: 1 });

    // The host goes away: its instances are unknown with the reason, at once; the local ones are untouched; actions there are refused.
    c.links.get('r1')!.setDown('connect ECONNREFUSED 127.0.0.1:2201');
    const t0 = Date.now();
    const listed = (await call('listInstances', {})).body as Instance[];
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(listed.find((i) => i.name === remote)).toMatchObject({ host: 'r1', state: 'unknown', error: { reason: expect.stringMatching(/Host "r1" is unreachable/) } });
    expect(listed.find((i) => i.name === local)).toMatchObject({ host: 'local', state: 'running' });
    // At once down (the link says so); the watcher then gives the link's own words.
    expect((await call('getHost', { host: 'r1' })).body).toMatchObject({ state: 'down' });
    await hostUntil('r1', (h) => h.reason?.includes('ECONNREFUSED') === true);
    expect((await call('getHost', { host: 'r1' })).body).toMatchObject({ state: 'down', reason: expect.stringContaining('ECONNREFUSED') });
    expect(await refused('hostInfo', {}, 'HOST_UNREACHABLE', { query: { host: 'r1' } })).toMatch(/ECONNREFUSED/);
    expect((await operation('changeState', { name: remote }, { body: { action: 'stop' } })).error?.code).toBe('HOST_UNREACHABLE');
    expect((await operation('deleteInstance', { name: remote }, { query: { force: true } })).error?.code).toBe('HOST_UNREACHABLE');
    expect(await refused('createInstance', {}, 'HOST_UNREACHABLE', { body: { name: `${P}-n`, image: 'busybox', host: 'r1' } })).toMatch(/ECONNREFUSED/);
    // It comes back: so do its instances.
    c.links.get('r1')!.setDown(null);
    let back: Instance | undefined;
    for (let i = 0; i < 50 && back?.state !== 'running'; i++) {
      back = ((await call('listInstances', {}, { query: { host: 'r1' } })).body as Instance[])[0];
      if (back?.state !== 'running') await new Promise((r) => setTimeout(r, 100));
    }
    expect(back).toMatchObject({ name: remote, state: 'running' });

    // A reinstalled host presents another key: refused until trusted; a wrong expected key or a down host change nothing.
    c.machines.set('127.0.0.1:2201', { key: { type: 'ssh-ed25519', fingerprint: fpB } });
    c.links.get('r1')!.setDown(`Host "r1" (root@127.0.0.1:2201) presented host key ${fpB}, not the pinned ${fpA}: refused`);
    await hostUntil('r1', (h) => h.reason?.includes('presented host key') === true);
    expect((await call('getHost', { host: 'r1' })).body).toMatchObject({ fingerprint: fpA, reason: expect.stringContaining(`presented host key ${fpB}`) });
    expect((await operation('trustHost', { host: 'r1' }, { body: { fingerprint: fpA } })).error?.code).toBe('CONFLICT');
    await refused('trustHost', { host: 'nope' }, 'NOT_FOUND', { body: {} });
    await refused('trustHost', { host: 'local' }, 'INVALID_ARGUMENT', { body: {} });
    await refused('trustHost', { host: 'r1' }, 'INVALID_ARGUMENT', { body: { fingerprint: 'nope' } });
    expect((await call('getHost', { host: 'r1' })).body).toMatchObject({ fingerprint: fpA });
    const trusted = await operation('trustHost', { host: 'r1' }, { body: { fingerprint: fpB } });
    expect(trusted.status, JSON.stringify(trusted.error)).toBe('success');
    expect(trusted.result).toMatchObject({ name: 'r1', fingerprint: fpB, state: 'up' });
    expect(d.db.getHost('r1')?.fingerprint).toBe(fpB);
    expect(((await call('listInstances', {}, { query: { host: 'r1' } })).body as Instance[])[0]).toMatchObject({ state: 'running' });

    // A container moves to the host with its volume (offline: stopped here, started there) and back; bad moves change nothing.
    const marker = join(d.pool.instancePath(local), 'moved-marker');
    writeFileSync(marker, 'mine\n');
    await refused('moveInstance', { name: local }, 'NOT_FOUND', { body: { host: 'nope' } });
    expect(await refused('moveInstance', { name: local }, 'INVALID_ARGUMENT', { body: { host: 'local' } })).toMatch(/is on host local already/);
    await refused('moveInstance', { name: `${P}-none` }, 'NOT_FOUND', { body: { host: 'r1' } });
    await refused('moveInstance', { name: local }, 'INVALID_ARGUMENT', { body: { host: 'r1', bogus: 1 } });
    expect((await operation('createSnapshot', { name: local }, { body: { name: 's1' } })).status).toBe('success');
    expect(await refused('moveInstance', { name: local }, 'UNSUPPORTED', { body: { host: 'r1' } })).toMatch(/1 snapshot \(s1\).*delete them first/);
    expect((await operation('deleteSnapshot', { name: local, snap: 's1' })).status).toBe('success');
    expect(d.db.getInstance(local)?.host).toBe('local');
    // A step that fails there (a volume of that name is in the way) undoes the others: it is back here, running, its volume kept.
    const inTheWay = join(d.dir, 'hosts', 'r1', 'pool', 'instances', local);
    mkdirSync(inTheWay, { recursive: true });
    const blocked = await operation('moveInstance', { name: local }, { body: { host: 'r1' } });
    expect(blocked.error).toMatchObject({ code: 'ALREADY_EXISTS', message: `Failed to move instance "${local}" to host r1` });
    expect(((await call('getInstance', { name: local })).body as Instance)).toMatchObject({ host: 'local', state: 'running' });
    expect(readFileSync(marker, 'utf8')).toBe('mine\n');
    rmSync(inTheWay, { recursive: true });
    const moved = await operation('moveInstance', { name: local }, { body: { host: 'r1' } });
    expect(moved.status, JSON.stringify(moved.error)).toBe('success');
    expect(moved.result).toMatchObject({ name: local, host: 'r1', state: 'running' });
    const there = join(d.dir, 'hosts', 'r1', 'pool', 'instances', local, 'moved-marker');
    expect(readFileSync(there, 'utf8')).toBe('mine\n');
    expect(existsSync(d.pool.instancePath(local))).toBe(false);
    const back2 = await operation('moveInstance', { name: local }, { body: { host: 'local' } });
    expect(back2.status, JSON.stringify(back2.error)).toBe('success');
    expect(back2.result).toMatchObject({ name: local, host: 'local', state: 'running' });
    expect(readFileSync(marker, 'utf8')).toBe('mine\n');
    expect(existsSync(join(d.dir, 'hosts', 'r1', 'pool', 'instances', local))).toBe(false);

    // Moves a daemon's end cut off (journaled): one not yet re-homed is undone, one re-homed is finished.
    const drift: HangarEvent[] = [];
    const unsub = d.events.subscribe((e) => { if (e.type === 'instance-drift' && e.instance === local) drift.push(e); });
    mkdirSync(join(d.dir, 'hosts', 'r1', 'pool', 'instances', local, 'partial'), { recursive: true });
    d.db.addIntent('instance-move', local, { from: 'local', to: 'r1' });
    await d.instances.reconcile();
    expect(existsSync(join(d.dir, 'hosts', 'r1', 'pool', 'instances', local))).toBe(false);
    expect(((await call('getInstance', { name: local })).body as Instance)).toMatchObject({ host: 'local', state: 'running' });
    expect((await operation('changeState', { name: local }, { body: { action: 'stop', force: true } })).status).toBe('success');
    mkdirSync(join(d.dir, 'hosts', 'r1', 'pool', 'instances', local), { recursive: true });
    writeFileSync(join(d.dir, 'hosts', 'r1', 'pool', 'instances', local, 'moved-marker'), 'mine\n');
    d.db.updateInstance(local, { host: 'r1' });
    d.db.addIntent('instance-move', local, { from: 'local', to: 'r1' });
    await d.instances.reconcile();
    unsub();
    // The sweep after it: this host's directory of an instance that lives on r1 now.
    expect(drift.map((e) => e.data?.repair)).toEqual(['move-undone', 'move-finished', 'directory-removed']);
    expect(existsSync(d.pool.instancePath(local))).toBe(false);
    expect(d.db.listIntents()).toEqual([]);
    expect((await operation('changeState', { name: local }, { body: { action: 'start' } })).status).toBe('success');
    expect(((await call('getInstance', { name: local })).body as Instance)).toMatchObject({ host: 'r1', state: 'running' });
    expect((await operation('moveInstance', { name: local }, { body: { host: 'local' } })).status).toBe('success');
    expect(readFileSync(marker, 'utf8')).toBe('mine\n');

    // Removing a host with instances is refused; without, it is forgotten.
    expect(await refused('removeHost', { host: 'r1' }, 'IN_USE')).toMatch(new RegExp(`1 instance lives there \\(${remote}\\)`));
    await refused('removeHost', { host: 'local' }, 'INVALID_ARGUMENT');
    expect((await operation('deleteInstance', { name: remote }, { query: { force: true } })).status).toBe('success');
    expect((await operation('deleteInstance', { name: local }, { query: { force: true } })).status).toBe('success');
    expect((await call('removeHost', { host: 'r1' })).body).toMatchObject({ name: 'r1' });
    await refused('removeHost', { host: 'r1' }, 'NOT_FOUND');
    expect(await hostsNow()).toEqual(['local']);
    expect(existsSync(join(d.dir, 'hosts', 'r1'))).toBe(false);
  });

  it('imports: translate an xl.cfg (pure), and adopt a domain on a host whose xen driver is available', async () => {
    const fixture = readFileSync(join(import.meta.dirname, '../fixtures/xen/xlexample.pvlinux'), 'utf8');
    const t = await call('translateImport', {}, { body: { kind: 'xen', text: fixture, source: 'xlexample.pvlinux' } });
    expect(t.body).toMatchObject({
      name: 'example-pvlinux', type: 'vm', driver: 'xen', guestType: 'pv', config: { 'limits.cpu': '2', 'limits.memory': '128MiB' },
      disks: [{ use: 'root', disk: { target: '/dev/vg/guest-volume', vdev: 'xvda' } }], nics: [{ use: 'primary' }],
    });
    expect((await call('translateImport', {}, { body: { kind: 'xen', text: fixture, name: 'web2' } })).body).toMatchObject({ name: 'web2' });
    expect(await refused('translateImport', {}, 'INVALID_CONFIG', { body: { kind: 'xen', text: 'name = "x"\nmemory = = 3\n', source: 'bad.cfg' } })).toMatch(/^bad\.cfg:2:\d+: /);
    await refused('translateImport', {}, 'INVALID_ARGUMENT', { body: { kind: 'vmware', text: fixture } });
    await refused('translateImport', {}, 'INVALID_NAME', { body: { kind: 'xen', text: 'name = "1234"\n' } });
    // An OpenVZ CT's config: translated (pure), the CTID from the file's name or given; adopting one needs the openvz driver on the host.
    const vz = await call('translateImport', {}, { body: { kind: 'openvz', text: 'PHYSPAGES="0:256M"\nIP_ADDRESS="192.0.2.7"\n', source: '/etc/vz/conf/107.conf' } });
    expect(vz.body).toMatchObject({ ctid: 107, name: 'ct107', driver: 'openvz', config: { 'limits.memory': '256MiB' }, addresses: ['192.0.2.7'] });
    expect((await call('translateImport', {}, { body: { kind: 'openvz', text: 'CPUS="1"\n', ctid: 9 } })).body).toMatchObject({ ctid: 9, config: { 'limits.cpu': '1' } });
    expect(await refused('translateImport', {}, 'INVALID_CONFIG', { body: { kind: 'openvz', text: 'garbage\n', source: '7.conf' } })).toBe('7.conf:1: not a KEY="value" line: "garbage"');
    expect(await refused('importInstance', {}, 'UNSUPPORTED', { body: { kind: 'openvz', text: 'CPUS="1"\n', source: '7.conf' } })).toMatch(/^Cannot import container 7 \("ct7"\) on host local: the openvz driver is not available there: it is not enabled/);

    // The local host runs only the fake driver: refused, naming why, before anything is made.
    expect(await refused('importInstance', {}, 'UNSUPPORTED', { body: { kind: 'xen', text: fixture } })).toMatch(/the xen driver is not available on host local: it is not enabled there/);
    await refused('importInstance', {}, 'NOT_FOUND', { body: { kind: 'xen', text: fixture, host: 'nope' } });
    await refused('importInstance', {}, 'INVALID_CONFIG', { body: { kind: 'xen', text: 'disk = [ "/x,raw,xvda,rw,bogus" ]\nname="a"\n' } });

    // A Dom0 (scripted xl) as a remote host: the domain is recorded there, with no root volume of Hangar's.
    const fp = testFingerprint('xen-dom0');
    d.connector.machines.set('127.0.0.1:2202', { key: { type: 'ssh-ed25519', fingerprint: fp }, host: () => new FakeXl().host, drivers: 'xen' });
    const key = join(dir, 'id_xen');
    writeFileSync(key, 'test key\n', { mode: 0o600 });
    const added = await operation('addHost', {}, { body: { name: 'xen1', url: 'ssh://root@127.0.0.1:2202', identityFile: key } });
    expect(added.status, JSON.stringify(added.error)).toBe('success');
    expect(added.result).toMatchObject({ drivers: [{ name: 'xen', available: true }] });
    const name = `${P}-imp`;
    const imported = await operation('importInstance', {}, { body: { kind: 'xen', text: fixture, source: 'xlexample.pvlinux', name, host: 'xen1' } });
    expect(imported.status, JSON.stringify(imported.error)).toBe('success');
    expect(imported.result).toMatchObject({ name, host: 'xen1', driver: 'xen', type: 'vm', image: '', state: 'stopped', config: { 'limits.cpu': '2' } });
    expect(d.db.getInstance(name)?.origin).toMatchObject({ kind: 'xen-import', source: 'xlexample.pvlinux', guestType: 'pv', disks: [{ use: 'root' }] });
    await refused('importInstance', {}, 'ALREADY_EXISTS', { body: { kind: 'xen', text: fixture, name, host: 'xen1' } });
    expect((await operation('copyInstance', { name }, { body: { name: `${name}-c` } })).error?.code).toBe('UNSUPPORTED');
    expect((await operation('deleteInstance', { name })).status).toBe('success');
    expect((await call('removeHost', { host: 'xen1' })).body).toMatchObject({ name: 'xen1' });
  });

  it('covered every route, each with a success and an error', () => {
    const all = Object.keys(ROUTES) as RouteId[];
    expect(all.filter((id) => !ok.has(id)), 'routes never answered successfully').toEqual([]);
    expect(all.filter((id) => !failed.has(id)), 'routes never answered an error').toEqual([]);
  });
});
