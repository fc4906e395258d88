// Unit tests of the JSON-lines transport: opening through a Host (retry, timeout), framing, the reset byte, requests, timeouts and the end of the connection.
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Host } from '../../host/host.js';
import { ScriptedHost } from '../../host/scripted.js';
import { AppError } from '../../shared/errors.js';
import { JsonLines, openSocket, type JsonLinesOptions } from './json-lines.js';

/** The far end of a connection: what the client wrote, and a way to send it bytes or hang up. */
interface Peer {
  sock: Duplex;
  written: string[];
  send(data: string | Buffer): void;
  hangUp(): void;
}

function peer(): Peer {
  const written: string[] = [];
  const sock = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) { written.push(chunk.toString('utf8')); cb(); },
  });
  return { sock, written, send: (d) => { sock.push(typeof d === 'string' ? Buffer.from(d) : d); }, hangUp: () => { sock.push(null); } };
}

/** A connection over a fresh peer, recording messages, resets and its end. */
function connection(opts: Partial<JsonLinesOptions> = {}) {
  const p = peer();
  const messages: Record<string, unknown>[] = [];
  let resets = 0;
  let closedCalls = 0;
  const link: JsonLines = new JsonLines(p.sock, '/run/x.sock', { protocol: 'test', maxLineBytes: 1024, ...opts }, {
    message: (m) => messages.push(m),
    reset: () => { resets++; },
    closeError: (label): AppError => link.disconnectError(`test ${label} failed: ${link.endText('/run/x.sock')}`, { command: label }),
    closed: () => { closedCalls++; },
  });
  return { p, link, messages, resets: () => resets, closedCalls: () => closedCalls };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

async function rejection(p: Promise<unknown>): Promise<AppError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

const timeout = (label: string) => ({ label, timeoutMs: 1000, timeoutError: () => new AppError('TIMEOUT', `${label} timed out`) });

describe('openSocket', () => {
  const hostWith = (connectUnix: Host['connectUnix']): Host => Object.assign(new ScriptedHost(), { connectUnix }) as unknown as Host;
  const enoent = () => Object.assign(new Error('connect ENOENT'), { code: 'ENOENT' });

  it('retries a missing socket within retryForMs, and fails at once without it', async () => {
    let tries = 0;
    const { sock } = peer();
    const host = hostWith(async () => { if (++tries < 3) throw enoent(); return sock; });
    expect(await openSocket(host, '/run/q.sock', { protocol: 'QMP', timeoutMs: 1000, retryForMs: 1000 })).toBe(sock);
    expect(tries).toBe(3);
    const err = await rejection(openSocket(hostWith(async () => { throw enoent(); }), '/run/q.sock', { protocol: 'QMP', timeoutMs: 1000 }));
    expect(err.code).toBe('BACKEND_FAILED');
    expect(err.message).toBe('Cannot connect to QMP socket /run/q.sock');
    expect(err.details).toEqual({ socket: '/run/q.sock', code: 'ENOENT' });
  });

  it('times out an attempt that hangs, and passes the host\'s own errors through', async () => {
    const err = await rejection(openSocket(hostWith(() => new Promise<Duplex>(() => undefined)), '/run/g.sock', { protocol: 'guest agent', timeoutMs: 30 }));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe('Connecting to guest agent socket /run/g.sock timed out after 30 ms');
    expect((await rejection(openSocket(new ScriptedHost(), '/run/g.sock', { protocol: 'guest agent', timeoutMs: 30 }))).code).toBe('HOST_FAILED');
  });
});

describe('JsonLines framing', () => {
  it('parses lines split across chunks (inside a UTF-8 character too), several per chunk, and skips blank, garbled and non-object lines', async () => {
    const c = connection();
    const text = Buffer.from('{"a":"é€😀"}\r\n\n{"b":1}\nnot json\n42\nnull\n{"c":');
    for (let i = 0; i < text.length; i += 3) c.p.send(text.subarray(i, i + 3));
    await tick();
    expect(c.messages).toEqual([{ a: 'é€😀' }, { b: 1 }]);
    c.p.send('true}\n');
    await tick();
    expect(c.messages.at(-1)).toEqual({ c: true });
  });

  it('drops everything before a reset byte unparsed, and tells the protocol', async () => {
    const c = connection({ resetByte: 0xff });
    c.p.send(Buffer.concat([Buffer.from('{"stale":1}\n{"par'), Buffer.from([0xff]), Buffer.from('{"x":1}\n{"dropped":1}\n'), Buffer.from([0xff]), Buffer.from('{"y":')]));
    c.p.send('2}\n');
    await tick();
    expect(c.resets()).toBe(2);
    expect(c.messages).toEqual([{ y: 2 }]);
  });

  it('ends the connection on a line longer than maxLineBytes, naming that as the cause', async () => {
    const c = connection({ maxLineBytes: 16 });
    const pending = c.link.request('k', 'ask\n', timeout('ask'));
    c.p.send('{"long":"0123456789abcdef"');
    const err = await rejection(pending);
    expect(err.message).toBe('test ask failed: test connection to /run/x.sock lost (QEMU exited or closed the socket)');
    expect((err.cause as Error).message).toBe('Test message longer than 16 bytes');
    expect(c.link.connected).toBe(false);
  });
});

describe('JsonLines requests', () => {
  it('writes the request, and take() hands it over once; a request without data waits for an unasked answer', async () => {
    const c = connection();
    const a = c.link.request<number>(1, '{"ask":1}\n', timeout('one'));
    const greeting = c.link.request('hello', undefined, timeout('hello'));
    expect(c.p.written).toEqual(['{"ask":1}\n']);
    const p = c.link.take(1);
    expect(p?.label).toBe('one');
    p?.resolve(7);
    expect(c.link.take(1)).toBeUndefined();
    expect(await a).toBe(7);
    c.link.take('hello')?.reject(new AppError('BACKEND_FAILED', 'no'));
    expect((await rejection(greeting)).message).toBe('no');
  });

  it('times out a silent request and forgets it; 0 waits forever', async () => {
    const c = connection();
    const err = await rejection(c.link.request('k', 'x\n', { label: 'slow', timeoutMs: 20, timeoutError: () => new AppError('TIMEOUT', 'slow timed out') }));
    expect(err.message).toBe('slow timed out');
    expect(c.link.take('k')).toBeUndefined();
    void c.link.request('forever', 'y\n', { label: 'forever', timeoutMs: 0, timeoutError: () => new AppError('TIMEOUT', 'never') }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 30));
    expect(c.link.take('forever')).toBeDefined();
  });

  it('send() writes without waiting, and nothing once the connection ended', async () => {
    const c = connection();
    c.link.send('fire\n');
    c.p.hangUp();
    await c.link.closed;
    c.link.send('late\n');
    expect(c.p.written).toEqual(['fire\n']);
  });
});

describe('JsonLines end of the connection', () => {
  it('the peer hanging up rejects pending requests with closeError, calls closed() once, and refuses later requests', async () => {
    const c = connection();
    const pending = c.link.request(1, 'a\n', timeout('cmd'));
    c.p.hangUp();
    const err = await rejection(pending);
    expect(err.code).toBe('BACKEND_FAILED');
    expect(err.message).toBe('test cmd failed: test connection to /run/x.sock lost (QEMU exited or closed the socket)');
    expect(err.details).toEqual({ socket: '/run/x.sock', disconnected: true, closedByClient: false, command: 'cmd' });
    await c.link.closed;
    expect(c.closedCalls()).toBe(1);
    expect(c.link.connected).toBe(false);
    expect((await rejection(c.link.request(2, 'b\n', timeout('later')))).details?.command).toBe('later');
  });

  it('close() ends it as closed by the client, and requests after it fail at once', async () => {
    const c = connection();
    const pending = c.link.request(1, 'a\n', timeout('cmd'));
    const closing = c.link.close();
    expect(c.link.usable).toBe(false);
    expect((await rejection(c.link.request(2, 'b\n', timeout('next')))).message).toBe('test next failed: test connection to /run/x.sock was closed by the client');
    await closing;
    expect((await rejection(pending)).details?.closedByClient).toBe(true);
    expect(c.link.closedByClient).toBe(true);
  });
});
