// Unit tests of the framework layer: validation by the catalogue's schemas, the one error shape, 404 vs 405, bodies, upgrades.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../shared/errors.js';
import { ROUTES, type RouteId } from '../shared/routes.js';
import { buildApp, type Handlers } from './app.js';

/** Handlers that answer NOT_FOUND everywhere, with a few overridden. */
function stubHandlers(over: Partial<Handlers>): Handlers {
  const out: Record<string, unknown> = {};
  for (const id of Object.keys(ROUTES) as RouteId[]) {
    out[id] = ROUTES[id].kind === 'websocket' ? { open: (ws: { close(): void }) => ws.close() } : async () => { throw new AppError('NOT_FOUND', `stub ${id}`); };
  }
  return { ...(out as Handlers), ...over };
}

let app: FastifyInstance;
let dir: string;
let socket: string;
const seen: unknown[] = [];

beforeAll(async () => {
  app = await buildApp(stubHandlers({
    serverInfo: async () => ({ apiVersion: '1.0', serverVersion: 't', pid: 1 }),
    deleteInstance: async ({ params, query }) => {
      seen.push({ params, query });
      return { id: 'op1', description: 'd', status: 'running', resources: [], progress: null, createdAt: 'x', updatedAt: 'x', error: null };
    },
    patchConfig: async ({ body }) => { seen.push(body); return { live: [], pending: [] }; },
    listInstances: async () => [{ name: 'bad' }] as never,
  }), { validateResponses: true });
  dir = mkdtempSync(join(tmpdir(), 'hangar-app-test-'));
  socket = join(dir, 's.sock');
  await app.listen({ path: socket });
});

afterAll(async () => {
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A raw request on the unix socket, for targets node:http would refuse to send. */
function raw(lines: string[]): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(socket);
    let text = '';
    s.on('data', (d) => { text += d.toString('latin1'); });
    s.on('close', () => resolve(text));
    s.on('error', () => resolve(text));
    s.write(`${lines.join('\r\n')}\r\n\r\n`);
    setTimeout(() => s.end(), 300);
  });
}

describe('API framework layer', () => {
  it('answers a JSON route, with a trailing slash too', async () => {
    for (const url of ['/1.0', '/1.0/']) {
      const r = await app.inject({ method: 'GET', url });
      expect(r.statusCode).toBe(200);
      expect(r.json()).toEqual({ apiVersion: '1.0', serverVersion: 't', pid: 1 });
    }
  });

  it('answers an operation with 202 and its Location, the query validated and typed', async () => {
    const r = await app.inject({ method: 'DELETE', url: '/1.0/instances/web1?force=true' });
    expect(r.statusCode).toBe(202);
    expect(r.headers.location).toBe('/1.0/operations/op1');
    expect(seen.at(-1)).toEqual({ params: { name: 'web1' }, query: { force: true } });
  });

  it('refuses a bad or unknown query parameter with INVALID_ARGUMENT, before the handler', async () => {
    const before = seen.length;
    for (const url of ['/1.0/instances/web1?force=yes', '/1.0/instances/web1?nope=1', '/1.0/instances/web1?force=true&force=false']) {
      const r = await app.inject({ method: 'DELETE', url });
      expect(r.statusCode, url).toBe(400);
      expect(r.json().error.code, url).toBe('INVALID_ARGUMENT');
      expect(r.json().error.message, url).toMatch(/^Invalid query: /);
    }
    expect(seen.length).toBe(before);
  });

  it('validates bodies: unknown keys, wrong types, bad JSON, too large; a missing body is {}', async () => {
    const bad = await app.inject({ method: 'PATCH', url: '/1.0/instances/web1/config', payload: { set: { a: 1 } } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.message).toMatch(/^Invalid request: set\.a: /);
    const unknown = await app.inject({ method: 'PATCH', url: '/1.0/instances/web1/config', payload: { sett: {} } });
    expect(unknown.statusCode).toBe(400);
    const notJson = await app.inject({ method: 'PATCH', url: '/1.0/instances/web1/config', payload: '{"set":', headers: { 'content-type': 'application/json' } });
    expect(notJson.statusCode).toBe(400);
    expect(notJson.json().error).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'Request body is not valid JSON' });
    const big = await app.inject({ method: 'PATCH', url: '/1.0/instances/web1/config', payload: ' '.repeat(1024 * 1024 + 1), headers: { 'content-type': 'text/plain' } });
    expect(big.statusCode).toBe(400);
    expect(big.json().error.message).toBe('Request body too large');
    const none = await app.inject({ method: 'PATCH', url: '/1.0/instances/web1/config' });
    expect(none.statusCode).toBe(200);
    expect(seen.at(-1)).toEqual({});
  });

  it('tells a wrong method (405 with Allow) from an unknown path (404)', async () => {
    const wrong = await app.inject({ method: 'POST', url: '/1.0/instances/web1' });
    expect(wrong.statusCode).toBe(405);
    expect(wrong.headers.allow).toBe('GET, DELETE');
    expect(wrong.json().error.code).toBe('METHOD_NOT_ALLOWED');
    const none = await app.inject({ method: 'GET', url: '/1.0/nothing' });
    expect(none.statusCode).toBe(404);
    expect(none.json().error).toMatchObject({ code: 'NOT_FOUND', message: 'No such API endpoint: GET /1.0/nothing' });
  });

  it('refuses NUL bytes and bad %-escapes in the path with INVALID_ARGUMENT', async () => {
    const nul = await app.inject({ method: 'GET', url: '/1.0/instances/a%00b' });
    expect(nul.statusCode).toBe(400);
    expect(nul.json().error.message).toMatch(/NUL byte/);
    const esc = await app.inject({ method: 'GET', url: '/1.0/instances/a%ZZ' });
    expect(esc.statusCode).toBe(400);
    expect(esc.json().error.code).toBe('INVALID_ARGUMENT');
  });

  it('a request the HTTP parser refuses gets a 400 in the error shape and a closed connection (no body after HEAD)', async () => {
    const foo = await raw(['FOO /1.0 HTTP/1.1', 'Host: h', 'Content-Length: 2', '', '{}']);
    expect(foo).toMatch(/^HTTP\/1\.1 400 /);
    expect(foo).toMatch(/Connection: close/);
    expect(foo).toMatch(/"code":"INVALID_ARGUMENT"/);
    const head = await raw(['HEAD /1.0/\u00e9# HTTP/1.1', 'Host: h']);
    expect(head).toMatch(/^HTTP\/1\.1 400 /);
    expect(head.split('\r\n\r\n')[1]).toBe('');
  });

  it('an answer that breaks its schema is an INTERNAL error when answers are checked', async () => {
    const r = await app.inject({ method: 'GET', url: '/1.0/instances' });
    expect(r.statusCode).toBe(500);
    expect(r.json().error).toMatchObject({ code: 'INTERNAL' });
    expect(r.json().error.message).toMatch(/does not match its schema/);
  });

  it('a websocket route refuses a plain GET; an upgrade to a plain route or a bad target answers HTTP 400, not a socket', async () => {
    const plain = await app.inject({ method: 'GET', url: '/1.0/events' });
    expect(plain.statusCode).toBe(400);
    expect(plain.json().error.message).toMatch(/is a websocket/);
    const upgrade = (target: string) => raw([`GET ${target} HTTP/1.1`, 'Host: h', 'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==']);
    const notWs = await upgrade('/1.0/instances');
    expect(notWs).toMatch(/^HTTP\/1\.1 400 /);
    expect(notWs).toMatch(/not a websocket endpoint/);
    for (const target of ['/1.0/instances/%ZZ/exec', '/1.0/instances/x%/console', 'http://[/1.0/events', '/1.0/events?type=nope', '/1.0/events?type=%']) {
      const answer = await upgrade(target);
      expect(answer, target).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer, target).toMatch(/"code":"INVALID_ARGUMENT"/);
    }
    const ok = await upgrade('/1.0/events?type=instance-started,instance-stopped&replay=true');
    expect(ok).toMatch(/^HTTP\/1\.1 101 /);
  });
});
