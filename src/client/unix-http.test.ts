// Tests of the client's HTTP/1.1 over a unix socket: framing by hand, then a node:http server as the other end.
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BodyDecoder, encodeRequest, parseHead, UnixHttpPool } from './unix-http.js';

/** Feeds a body to a decoder in pieces of `step` bytes; answers what came out and what was left over. */
function decode(headers: Record<string, string>, wire: string, step: number, status = 200): { body: string; done: boolean; rest: string } {
  const out: Buffer[] = [];
  const d = new BodyDecoder({ status, headers }, 'GET', (c) => out.push(Buffer.from(c)));
  let rest = Buffer.alloc(0);
  const bytes = Buffer.from(wire);
  for (let i = 0; i < bytes.length; i += step) rest = Buffer.concat([rest, d.push(bytes.subarray(i, i + step))]);
  return { body: Buffer.concat(out).toString(), done: d.done, rest: rest.toString() };
}

describe('framing', () => {
  it('writes a request with a length and refuses header values that would split it', () => {
    expect(encodeRequest({ method: 'POST', path: '/1.0/x?a=1', headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') }).toString())
      .toBe('POST /1.0/x?a=1 HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}');
    expect(encodeRequest({ method: 'POST', path: '/s' }).toString()).toContain('content-length: 0\r\n');
    expect(encodeRequest({ method: 'GET', path: '/s' }).toString()).not.toContain('content-length');
    expect(() => encodeRequest({ method: 'GET', path: '/', headers: { x: 'a\r\nGET /evil HTTP/1.1' } })).toThrow(/Invalid header/);
  });

  it('parses a head once it is whole, joining repeated headers', () => {
    const head = 'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nX-A: 1\r\nx-a: 2\r\n\r\n{';
    expect(parseHead(Buffer.from(head.slice(0, 30)))).toBeNull();
    expect(parseHead(Buffer.from(head))).toEqual({ res: { status: 202, headers: { 'content-type': 'application/json', 'x-a': '1, 2' } }, size: head.length - 1 });
    expect(() => parseHead(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'))).toThrow(/status line/);
    expect(() => parseHead(Buffer.from('HTTP/1.1 200 OK\r\nno colon\r\n\r\n'))).toThrow(/header line/);
  });

  it('decodes Content-Length and chunked bodies split anywhere, handing back what follows', () => {
    for (const step of [1, 2, 3, 7, 100]) {
      expect(decode({ 'content-length': '5' }, 'helloHTTP/1.1', step)).toEqual({ body: 'hello', done: true, rest: 'HTTP/1.1' });
      expect(decode({ 'transfer-encoding': 'chunked' }, '3\r\nabc\r\na;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT', step)).toEqual({ body: 'abc0123456789', done: true, rest: 'NEXT' });
    }
    expect(decode({}, 'until the end', 4)).toEqual({ body: 'until the end', done: false, rest: '' });
    expect(decode({ 'content-length': '9' }, '', 1, 204)).toEqual({ body: '', done: true, rest: '' });
    expect(() => decode({ 'transfer-encoding': 'chunked' }, 'zz\r\n', 10)).toThrow(/chunk size/);
    expect(() => decode({ 'transfer-encoding': 'chunked' }, '2\r\nabX\r\n', 10)).toThrow(/CRLF/);
    expect(() => decode({ 'content-length': '-1' }, '', 1)).toThrow(/content-length/);
  });
});

describe('against a node:http server on a unix socket', () => {
  let dir: string;
  let server: Server;
  let pool: UnixHttpPool;
  let connections = 0;
  let hangClosed = false;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hangar-uhttp-'));
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        if (req.url === '/hang') {
          res.on('close', () => (hangClosed = true));
          res.writeHead(200);
          res.write('started');
        } else if (req.url === '/chunked') {
          res.writeHead(200, { 'x-hangar-exec-id': 'e1' });
          res.write('first,');
          setTimeout(() => res.end('second'), 20);
        } else if (req.url === '/close') {
          res.writeHead(200, { connection: 'close' }).end('bye');
        } else if (req.url === '/empty') {
          res.writeHead(204).end();
        } else {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ method: req.method, url: req.url, body }));
        }
      });
    });
    server.on('connection', () => connections++);
    server.keepAliveTimeout = 200;
    await new Promise<void>((r) => server.listen(join(dir, 'h.sock'), r));
    pool = new UnixHttpPool(join(dir, 'h.sock'));
  });
  afterAll(async () => {
    pool.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends requests with bodies and reuses one connection for requests one after another', async () => {
    const before = connections;
    const a = await pool.request({ method: 'POST', path: '/a', headers: { 'content-type': 'application/json' }, body: Buffer.from('{"x":1}') });
    expect(a.status).toBe(200);
    expect(JSON.parse(a.body.toString())).toEqual({ method: 'POST', url: '/a', body: '{"x":1}' });
    for (const p of ['/b', '/c', '/empty']) expect((await pool.request({ method: 'GET', path: p })).status).toBe(p === '/empty' ? 204 : 200);
    expect(connections - before).toBe(1);
    // Requests at once each get a connection of their own.
    const many = await Promise.all(['/1', '/2', '/3'].map((p) => pool.request({ method: 'GET', path: p })));
    expect(many.map((r) => JSON.parse(r.body.toString()).url)).toEqual(['/1', '/2', '/3']);
  });

  it('streams a chunked answer as it comes, and drops a connection the server closes', async () => {
    const seen: string[] = [];
    await new Promise<void>((resolve, reject) => pool.send({ method: 'POST', path: '/chunked' }, {
      head: (res) => seen.push(`head ${res.status} ${res.headers['x-hangar-exec-id']}`),
      data: (c) => seen.push(c.toString()),
      end: resolve,
      error: reject,
    }));
    expect(seen).toEqual(['head 200 e1', 'first,', 'second']);
    const own = new UnixHttpPool(pool.socketPath);
    const before = connections;
    expect((await own.request({ method: 'GET', path: '/close' })).body.toString()).toBe('bye');
    expect((await own.request({ method: 'GET', path: '/after' })).status).toBe(200);
    expect((await own.request({ method: 'GET', path: '/again' })).status).toBe(200);
    expect(connections - before).toBe(2);
    own.close();
  });

  it('marks a failure on a reused connection before any answer as stale (the client retries those), not on a new one', async () => {
    const path = join(dir, 'drop.sock');
    let requests = 0;
    // Answers the first request of each connection, then drops the connection at the second without a word.
    const raw = createNetServer((s) => {
      let n = 0;
      s.on('data', () => {
        requests++;
        if (++n === 1) s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
        else s.destroy();
      });
    });
    await new Promise<void>((r) => raw.listen(path, r));
    try {
      const p = new UnixHttpPool(path);
      expect((await p.request({ method: 'GET', path: '/1' })).body.toString()).toBe('ok');
      const err = (await p.request({ method: 'GET', path: '/2' }).catch((e: unknown) => e)) as { staleKeepAlive?: boolean; code?: string };
      expect(err).toMatchObject({ staleKeepAlive: true, code: 'ECONNRESET' });
      expect((await p.request({ method: 'GET', path: '/3' })).body.toString()).toBe('ok');
      expect(requests).toBe(3);
      p.close();
    } finally {
      await new Promise<void>((r) => raw.close(() => r()));
    }
  });

  it('close() ends requests under way too, as a client that goes away must: the server sees its connection close', async () => {
    const own = new UnixHttpPool(pool.socketPath);
    let started!: () => void;
    const head = new Promise<void>((r) => (started = r));
    const pending = new Promise<void>((resolve, reject) => own.send({ method: 'POST', path: '/hang' }, { head: () => started(), data: () => undefined, end: resolve, error: reject }));
    await head;
    own.close();
    await expect(pending).rejects.toMatchObject({ code: 'ECONNRESET' });
    for (let i = 0; i < 100 && !hangClosed; i++) await new Promise((r) => setTimeout(r, 10));
    expect(hangClosed).toBe(true);
  });

  it('drops a parked connection the server closes, and names a missing socket by its code', async () => {
    await pool.request({ method: 'GET', path: '/warm' });
    // The server's keep-alive timeout closes the idle connection; a parked one that closes is dropped, not reused.
    await new Promise((r) => setTimeout(r, 400));
    expect((await pool.request({ method: 'GET', path: '/fresh' })).status).toBe(200);
    const err = await new UnixHttpPool(join(dir, 'missing.sock')).request({ method: 'GET', path: '/' }).catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).toBe('ENOENT');
  });
});
