// E2e of the API itself: OpenAPI document, operations (202, Location, get, wait), the events stream, error mapping.
import { PassThrough, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HangarEvent, Operation } from '../../src/shared/schemas.js';
import { HangarClient } from '../../src/client/client.js';
import { isAppError } from '../../src/shared/errors.js';
import { cliOk, sharedDaemon, TEST_ENV, uniquePrefix } from '../helpers/daemon.js';
import { collectEvents, deleteAllWithPrefix, pollUntil } from '../helpers/e2e.js';

const P = uniquePrefix('api');
let client: HangarClient;

beforeAll(async () => {
  await sharedDaemon();
  client = new HangarClient({ socketPath: TEST_ENV.HANGAR_SOCKET });
});

afterAll(() => {
  client?.close();
  deleteAllWithPrefix(P);
}, 120_000);

describe('API', () => {
  it('serves an OpenAPI 3.1 document generated from the schemas', async () => {
    const r = await client.request('GET', '/1.0/openapi.json');
    const doc = r.body as { openapi: string; paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown>; additionalProperties?: unknown } }> } }>> };
    expect(doc.openapi).toBe('3.1.0');
    const create = doc.paths['/1.0/instances']?.post?.requestBody?.content['application/json']?.schema;
    expect(Object.keys(create?.properties ?? {})).toEqual(expect.arrayContaining(['name', 'image', 'config', 'ipv4', 'start']));
    // Unknown keys are rejected: the schema says so.
    expect(create?.additionalProperties).toBe(false);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/1.0/instances/{name}/state', '/1.0/operations/{id}/wait', '/1.0/events']));
  });

  it('answers long actions with 202 and an operation that can be fetched and waited for; events report the lifecycle', async () => {
    const name = `${P}a`;
    const stream = await collectEvents({ types: ['instance-created', 'instance-starting', 'instance-started', 'instance-stopped', 'instance-deleted', 'operation-created', 'operation-progress', 'operation-completed'] });
    try {
      const raw = await client.request('POST', '/1.0/instances', { name, image: 'busybox', start: true });
      expect(raw.status).toBe(202);
      const op = raw.body as Operation;
      expect(raw.headers.location).toBe(`/1.0/operations/${op.id}`);
      expect(op.resources).toContain(`/1.0/instances/${name}`);
      const fetched = await client.getOperation(op.id);
      expect(fetched.id).toBe(op.id);
      const done = await client.waitForOperation(op.id, 60);
      expect(done.status).toBe('success');
      expect((done.result as { name: string }).name).toBe(name);
      await client.waitOperation(await client.changeState(name, { action: 'stop', force: true }));
      await client.waitOperation(await client.deleteInstance(name));
      const mine = (e: HangarEvent) => e.instance === name || e.operation === op.id;
      const seen = await pollUntil(() => stream.events.filter(mine).some((e) => e.type === 'instance-deleted'), 50, 100);
      expect(seen).toBe(true);
      const types = stream.events.filter(mine).map((e) => e.type);
      expect(types).toEqual(expect.arrayContaining(['operation-created', 'operation-progress', 'instance-created', 'instance-starting', 'instance-started', 'operation-completed', 'instance-stopped', 'instance-deleted']));
      expect(types.indexOf('instance-created')).toBeLessThan(types.indexOf('instance-started'));
      expect(types.indexOf('instance-started')).toBeLessThan(types.indexOf('instance-stopped'));
    } finally {
      stream.close();
    }
  });

  it('maps errors to statuses with a message naming the subject and rejects unknown keys', async () => {
    const missing = await client.request('GET', `/1.0/instances/${P}nope`).then(() => undefined, (e: unknown) => e);
    expect(isAppError(missing, 'NOT_FOUND')).toBe(true);
    expect(String((missing as Error).message)).toContain(`${P}nope`);
    const unknownKey = await client.request('POST', '/1.0/instances', { name: `${P}b`, image: 'busybox', colour: 'red' }).then(() => undefined, (e: unknown) => e);
    expect(isAppError(unknownKey, 'INVALID_ARGUMENT')).toBe(true);
    expect(String((unknownKey as Error).message)).toMatch(/colour|unrecognized/i);
    const badOp = await client.getOperation('no-such-operation').then(() => undefined, (e: unknown) => e);
    expect(isAppError(badOp, 'NOT_FOUND')).toBe(true);
    expect((await client.listInstances()).some((i) => i.name === `${P}b`)).toBe(false);
  });

  it('exec with a terminal runs the command on a pty of the requested size', async () => {
    const name = `${P}t`;
    cliOk(['launch', 'busybox', name]);
    let out = '';
    const stdout = new Writable({ write(c, _e, cb) { out += String(c); cb(); } });
    const stdin = new PassThrough();
    const done = client.exec(name, { command: ['sh', '-c', 'tty; stty size; exit 4'], tty: true, cols: 100, rows: 33 }, { stdin, stdout, onResize: () => () => undefined });
    stdin.end();
    expect(await done).toBe(4);
    expect(out).toMatch(/\/dev\/pts\/\d+/);
    expect(out).toMatch(/33 100/);
  });

  it('the console websocket attaches to the container console (login prompt), and detaching leaves it running', async () => {
    const name = `${P}t`;
    let out = '';
    const stdin = new PassThrough();
    const ac = new AbortController();
    const stdout = new Writable({ write(c, _e, cb) { out += String(c); cb(); } });
    const session = client.console(name, { cols: 80, rows: 24 }, { stdin, stdout, signal: ac.signal });
    // Enter until getty answers with its prompt (under load a first one may reach it before it reads the console).
    let polls = 0;
    const prompt = await pollUntil(() => {
      if (polls++ % 10 === 0) stdin.write('\r');
      return /login:/.test(out);
    }, 200, 100);
    ac.abort();
    await session;
    expect(prompt, out).toBe(true);
    expect((await client.getInstance(name)).state).toBe('running');
  });
});

