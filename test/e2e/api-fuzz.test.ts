// Fuzz test of the API as a hostile client would talk to it: random paths, escapes, methods, headers, bodies and upgrade requests; the daemon must answer every one with a 4xx and keep running.
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedDaemon, TEST_ENV, uniquePrefix } from '../helpers/daemon.js';
import { daemonPid, deleteAllWithPrefix } from '../helpers/e2e.js';

const P = uniquePrefix('fz');
const SOCKET = TEST_ENV.HANGAR_SOCKET;
// Seeded, so a failure can be replayed: FUZZ_SEED=<n> npx vitest run test/e2e/api-fuzz.test.ts
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const REQUESTS = 1500;
const BUDGET_MS = 60_000;

let state = SEED;
const rnd = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!;

const NASTY = ['%ZZ', '%', '%0', '%00', '%2e%2e', '..', '.', '%2F', '%c0%af', '\u00e9', '%E2%82', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'a'.repeat(300), '%7B%7D', ' ', '%20', '*', '?', '#', '%3F', '~', '-', '0', '999999999999999999999'];
const segment = () => (rnd() < 0.6 ? pick(NASTY) : `${P}${Math.floor(rnd() * 1e6).toString(36)}`) + (rnd() < 0.2 ? pick(NASTY) : '');
const TEMPLATES = [
  '/1.0', '/1.0/host', '/1.0/host/detect', '/1.0/instances', '/1.0/instances/{}', '/1.0/instances/{}/state', '/1.0/instances/{}/config',
  '/1.0/instances/{}/copy', '/1.0/instances/{}/snapshots', '/1.0/instances/{}/snapshots/{}/restore', '/1.0/instances/{}/snapshots/{}',
  '/1.0/instances/{}/exec', '/1.0/instances/{}/monitor', '/1.0/instances/{}/console', '/1.0/instances/{}/console/log', '/1.0/images',
  '/1.0/images/import', '/1.0/images/{}', '/1.0/operations', '/1.0/operations/{}', '/1.0/operations/{}/wait', '/1.0/events', '/{}', '/1.0/{}/{}', '',
  '/1.0/hosts', '/1.0/hosts/{}', '/1.0/hosts/{}/trust', '/1.0/instances/import', '/1.0/imports/translate',
];
const QUERIES = ['', '?host=local', '?host=%00', '?force=true', '?timeout=abc', '?timeout=-1', '?timeout=1e999', '?type=vm', '?root=%ZZ', '?cpuid=%00', '?replay=true&type=%', '?a=1&a=2', '?%ZZ=1', `?root=/${'x'.repeat(2000)}`];
const path = () => pick(TEMPLATES).replace(/\{\}/g, segment) + (rnd() < 0.4 ? pick(QUERIES) : '');

// Values that are wrong for every schema in some way: types, NUL bytes, prototype keys, sizes, deep nesting.
const VALUES: unknown[] = [null, true, 0, -1, 1.5, 1e308, 'x', '', 'a\u0000b', '1', '1B', '100TiB', '-5MiB', [], [null], {}, { '\u0000': 1 }, 'é'.repeat(100), ['sh', 'a\u0000'], { constructor: 'x' }, 'auto'];
const KEYS = ['name', 'image', 'type', 'config', 'ipv4', 'start', 'action', 'force', 'timeout', 'stateful', 'set', 'unset', 'command', 'env', 'cwd', 'tty', 'cols', 'rows', 'stdin', 'arguments', 'kind', 'alias', 'path', 'vm', 'release', 'constructor', '__proto__', 'toString', 'limits.memory', 'boot.accel', 'user.x', 'host', 'text', 'source', 'identityFile', 'fingerprint'];
function value(depth = 0): unknown {
  const r = rnd();
  if (depth < 3 && r < 0.25) return Object.fromEntries(Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => [pick(KEYS), value(depth + 1)]));
  if (depth < 3 && r < 0.35) return Array.from({ length: Math.floor(rnd() * 3) }, () => value(depth + 1));
  return pick(VALUES);
}
function body(): Buffer | undefined {
  const r = rnd();
  if (r < 0.15) return undefined;
  if (r < 0.25) return Buffer.from(pick(['{', '[1,', 'null', '"x"', '\u0000\u0001\u0002', '{"a":', '{"name": "' + 'x'.repeat(100) + '"}']));
  if (r < 0.28) return Buffer.alloc(1024 * 1024 + 10, 0x20);
  // Mostly objects with schema-ish keys, so the requests get past JSON parsing into validation and the services.
  const obj = Object.fromEntries(Array.from({ length: 1 + Math.floor(rnd() * 5) }, () => [pick(KEYS), value()]));
  if (typeof obj.name === 'string') obj.name = `${P}${obj.name}`;
  if (obj.kind !== undefined) delete obj.kind; // never start a real image build
  return Buffer.from(JSON.stringify(obj));
}

interface Answer { what: string; status: number; text: string }

function httpCall(): Promise<Answer> {
  const method = pick(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'FOO']);
  const p = path();
  const b = body();
  const headers: Record<string, string> = { ...(rnd() < 0.7 ? { 'Content-Type': pick(['application/json', 'text/plain', 'x/\u00ff']) } : {}) };
  if (b) headers['Content-Length'] = String(b.length);
  return new Promise((resolve) => {
    const what = `${method} ${p} ${b ? b.subarray(0, 120).toString('utf8') : ''}`;
    let req;
    try {
      req = request({ socketPath: SOCKET, method, path: p || '/', headers }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => { if (text.length < 2000) text += d; });
        res.on('end', () => resolve({ what, status: res.statusCode ?? 0, text }));
        res.on('error', () => resolve({ what, status: res.statusCode ?? 0, text }));
      });
    } catch (e) {
      // Node itself refuses some paths (invalid characters) before sending: nothing reached the daemon.
      resolve({ what, status: 400, text: `client refused: ${String(e)}` });
      return;
    }
    req.on('error', (e: NodeJS.ErrnoException) => {
      // A malformed request (a raw byte in its path) with a 1 MiB body: the parser refuses it and closes the socket
      // while the client is still writing the body, so the client sees EPIPE, not the 400 (counted as 0, like rawCall's).
      const cut = b !== undefined && b.length > 1024 * 1024 && (e.code === 'EPIPE' || e.code === 'ECONNRESET');
      resolve({ what, status: cut ? 0 : -1, text: String(e) });
    });
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.end(b);
  });
}

/** A raw request on the socket: upgrade requests with hostile targets, and malformed HTTP. */
function rawCall(): Promise<Answer> {
  const target = pick([path(), `${path()}${pick(NASTY)}`, 'http://[', 'http://hangar:99999/1.0/events', '//x', '*', '/1.0/instances/%ZZ/exec', '/1.0/instances/%/console', '/1.0/events?type=%']);
  const upgrade = rnd() < 0.8;
  const lines = upgrade
    ? [`GET ${target} HTTP/1.1`, 'Host: hangar', 'Connection: Upgrade', 'Upgrade: websocket', `Sec-WebSocket-Version: ${pick(['13', '8', 'x'])}`, `Sec-WebSocket-Key: ${pick(['dGhlIHNhbXBsZSBub25jZQ==', '', 'short'])}`]
    : [pick([`GET ${target} HTTP/1.1`, `${target} HTTP/9.9`, 'GARBAGE', `POST ${target} HTTP/1.1`]), 'Host: hangar', pick(['Content-Length: 5', 'Content-Length: -1', 'Transfer-Encoding: chunked', 'X: \u00ff'])];
  const payload = `${lines.join('\r\n')}\r\n\r\n${upgrade && rnd() < 0.5 ? '\x81\xfe\xff\xffjunk' : pick(['', 'zz\r\n', '0\r\n\r\n'])}`;
  return new Promise((resolve) => {
    const what = `raw ${JSON.stringify(payload.slice(0, 200))}`;
    const sock = connect(SOCKET);
    let text = '';
    const done = () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ what, status: m ? Number(m[1]) : 0, text: text.slice(0, 500) });
    };
    sock.setTimeout(5_000, () => sock.destroy());
    sock.on('data', (d) => {
      text += d.toString('latin1');
      // A websocket that opened: end it from this side (the handler is what had to survive).
      if (/^HTTP\/1\.1 101/.test(text)) sock.destroy();
    });
    sock.on('close', done);
    sock.on('error', () => undefined);
    sock.write(payload, 'latin1');
    setTimeout(() => sock.end(), 200);
  });
}

beforeAll(async () => {
  await sharedDaemon();
});

afterAll(() => {
  deleteAllWithPrefix(P);
});

describe('API fuzz', () => {
  it(`answers ${REQUESTS} hostile requests with 4xx (never 5xx) and keeps running (seed ${SEED})`, async () => {
    const pid = await daemonPid();
    const bad: Answer[] = [];
    const t0 = Date.now();
    let sent = 0;
    while (sent < REQUESTS && Date.now() - t0 < BUDGET_MS) {
      const batch = await Promise.all(Array.from({ length: 10 }, () => (rnd() < 0.75 ? httpCall() : rawCall())));
      sent += batch.length;
      // 101: an upgrade that became a websocket; 0: the server closed a malformed request without answering (Node's parser).
      for (const a of batch) if (a.status >= 500 || a.status === -1) bad.push(a);
      if (sent % 200 === 0) expect(await daemonPid(), `daemon gone after ${sent} requests; last batch: ${batch.map((b) => b.what).join('\n')}`).toBe(pid);
    }
    expect(await daemonPid()).toBe(pid);
    expect(bad.map((b) => `${b.status} ${b.what}\n  -> ${b.text.slice(0, 300)}`), `seed ${SEED}`).toEqual([]);
    expect(sent).toBeGreaterThan(100);
  }, 120_000);

  it('answers the probe\'s known killers with a 400 naming the problem: bad escapes and URLs on upgrades, prototype keys, NUL bytes, a 1-byte memory limit', async () => {
    const pid = await daemonPid();
    const upgrade = (target: string) => new Promise<string>((resolve) => {
      const sock = connect(SOCKET);
      let text = '';
      sock.on('data', (d) => { text += d.toString('latin1'); });
      sock.on('close', () => resolve(text));
      sock.on('error', () => resolve(text));
      sock.write(`GET ${target} HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    });
    for (const target of ['/1.0/instances/%ZZ/exec', '/1.0/instances/x%/console', 'http://[/1.0/events']) {
      const answer = await upgrade(target);
      expect(answer, target).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer, target).toMatch(/"code":"INVALID_ARGUMENT"/);
    }
    const call = (method: string, p: string, b: unknown) => new Promise<{ status: number; body: { error?: { code: string; message: string } } }>((resolve, reject) => {
      const req = request({ socketPath: SOCKET, method, path: p, headers: { 'Content-Type': 'application/json' } }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => { text += String(d); });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { error?: { code: string; message: string } } }));
      });
      req.on('error', reject);
      req.end(JSON.stringify(b));
    });
    const name = `${P}k`;
    for (const key of ['constructor', 'toString', '__defineGetter__']) {
      const r = await call('POST', '/1.0/instances', { name, image: 'busybox', config: { [key]: '1' } });
      expect(r.status, key).toBe(400);
      expect(r.body.error?.message, key).toBe(`Unknown config key "${key}"`);
    }
    const nul = await call('POST', `/1.0/instances/${name}/exec`, { command: ['sh', '-c', 'a\u0000b'] });
    expect(nul.status).toBe(400);
    expect(nul.body.error?.message).toMatch(/must not contain a NUL byte/);
    const tiny = await call('POST', '/1.0/instances', { name, image: 'busybox', config: { 'limits.memory': '1' } });
    expect(tiny.status).toBe(400);
    expect(tiny.body.error?.message).toMatch(/limits\.memory=1 is below the 16 MiB the lxc backend needs/);
    const vm = await call('POST', '/1.0/instances', { name, image: 'busybox', type: 'vm', config: { 'limits.memory': '32MiB' } });
    expect(vm.status).toBe(400);
    expect(vm.body.error?.message).toMatch(/limits\.memory=32MiB is below the 64 MiB the qemu backend needs/);
    const signal = await call('GET', `/1.0/instances/${name}`, undefined);
    expect(signal.status).toBe(404);
    expect(await daemonPid()).toBe(pid);
  });
});
