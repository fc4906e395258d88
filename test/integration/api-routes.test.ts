// In-process API tests: every catalogue route through the real server (answers checked against their schemas) over the fake driver, without root.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import * as tar from 'tar';
import { WebSocket } from 'ws';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../src/api/server.js';
import { HangarClient } from '../../src/client/client.js';
import { ROUTES, routePath, type RouteId, type RouteParams } from '../../src/shared/routes.js';
import { ROUTE_SCHEMAS, type RouteSchema } from '../../src/shared/route-schemas.js';
import { ErrorResponseSchema, type HangarEvent, type Operation } from '../../src/shared/schemas.js';
import { inProcessDaemon, type InProcessDaemon } from '../helpers/in-process.js';

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

/** Runs an operation route and waits for it through the wait route; answers the finished operation. */
async function operation<K extends RouteId>(id: K, params: RouteParams<K>, opts: { query?: Query; body?: unknown } = {}): Promise<Operation> {
  const r = await call(id, params, opts);
  expect(r.status, `${id}: ${r.text}`).toBe(202);
  const op = r.body as Operation;
  expect(r.headers.location).toBe(`/1.0/operations/${op.id}`);
  const done = await call('waitOperation', { id: op.id }, { query: { timeout: 30 } });
  return done.body as Operation;
}

function sink(): Writable & { text(): string } {
  const chunks: Buffer[] = [];
  const w = new Writable({ write(c: Buffer, _e, cb) { chunks.push(Buffer.from(c)); cb(); } });
  return Object.assign(w, { text: () => Buffer.concat(chunks).toString('utf8') });
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
    await refused('hostInfo', {}, 'INVALID_ARGUMENT', { query: { host: 'other' } });
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
    const bad = await client.exec(name, { command: [] }, { stdout: sink(), onSignal: () => () => undefined }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^Invalid first frame/) });
    expect(await client.exec(`${P}-none`, { command: ['true'] }, { stdout: sink(), onSignal: () => () => undefined }).catch((e: unknown) => e)).toMatchObject({ code: 'NOT_FOUND' });
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

  it('covered every route, each with a success and an error', () => {
    const all = Object.keys(ROUTES) as RouteId[];
    expect(all.filter((id) => !ok.has(id)), 'routes never answered successfully').toEqual([]);
    expect(all.filter((id) => !failed.has(id)), 'routes never answered an error').toEqual([]);
  });
});
