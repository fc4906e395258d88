// Tests of the small websocket client: frame coding, and a real `ws` server on a unix socket as the other end.
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { connectWebSocket, frame, parseFrame, WebSocketRefused, type UnixWebSocket } from './websocket.js';

/** Unmasks a client frame as a server would: answers opcode, payload. */
function unmask(f: Buffer): { op: number; fin: boolean; masked: boolean; payload: Buffer } {
  let len = f[1]! & 0x7f;
  let off = 2;
  if (len === 126) { len = f.readUInt16BE(2); off = 4; } else if (len === 127) { len = Number(f.readBigUInt64BE(2)); off = 10; }
  const key = f.subarray(off, off + 4);
  const payload = Buffer.from(f.subarray(off + 4, off + 4 + len).map((b, i) => b ^ key[i & 3]!));
  return { op: f[0]! & 0x0f, fin: (f[0]! & 0x80) !== 0, masked: (f[1]! & 0x80) !== 0, payload };
}

describe('frame coding', () => {
  it('masks every client frame with a fresh key and the right length form', () => {
    for (const size of [0, 5, 125, 126, 65535, 65536, 200_000]) {
      const payload = Buffer.alloc(size, 0x61);
      const f = frame(2, payload);
      const u = unmask(f);
      expect(u).toMatchObject({ op: 2, fin: true, masked: true });
      expect(u.payload.equals(payload)).toBe(true);
      expect(f.length).toBe(2 + (size < 126 ? 0 : size < 65536 ? 2 : 8) + 4 + size);
    }
    const keys = new Set(Array.from({ length: 50 }, () => frame(1, Buffer.from('x')).subarray(2, 6).toString('hex')));
    expect(keys.size).toBeGreaterThan(45);
  });

  it('parses server frames, waits for missing bytes and names protocol errors', () => {
    const text = Buffer.from([0x81, 0x02, 0x68, 0x69]);
    expect(parseFrame(text)).toMatchObject({ fin: true, op: 1, size: 4 });
    expect((parseFrame(text) as { payload: Buffer }).payload.toString()).toBe('hi');
    expect(parseFrame(text.subarray(0, 3))).toBeNull();
    const mid = Buffer.concat([Buffer.from([0x02, 126, 0x01, 0x00]), Buffer.alloc(256, 7)]);
    expect(parseFrame(mid)).toMatchObject({ fin: false, op: 2, size: 260 });
    expect(parseFrame(mid.subarray(0, 100))).toBeNull();
    const big = Buffer.alloc(10);
    big[0] = 0x82;
    big[1] = 127;
    big.writeBigUInt64BE(2n ** 40n, 2);
    expect(parseFrame(big)).toMatchObject({ code: 1009 });
    expect(parseFrame(Buffer.from([0x81, 0x81, 0, 0, 0, 0, 0]))).toMatchObject({ code: 1002, error: 'masked frame from the server' });
    expect(parseFrame(Buffer.from([0xc1, 0x00]))).toMatchObject({ code: 1002 });
    expect(parseFrame(Buffer.from([0x83, 0x00]))).toMatchObject({ code: 1002, error: 'unknown opcode 3' });
    expect(parseFrame(Buffer.from([0x09, 0x00]))).toMatchObject({ code: 1002 });
  });
});

describe('against a ws server on a unix socket', () => {
  let dir: string;
  let server: Server;
  let wss: WebSocketServer;
  let path: string;
  /** What the next connection's server side does. */
  let onConnection: (ws: WebSocket) => void = () => undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hangar-ws-'));
    path = join(dir, 'ws.sock');
    server = createHttpServer((req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"no such route"}');
    });
    wss = new WebSocketServer({ noServer: true, perMessageDeflate: true });
    server.on('upgrade', (req, socket, head) => {
      if (req.url !== '/ws') {
        socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\n\r\nno way');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws));
    });
    await new Promise<void>((r) => server.listen(path, r));
  });
  afterAll(async () => {
    wss.close();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** Collects the client's messages until the connection closes. */
  function collect(ws: UnixWebSocket): Promise<{ messages: Array<[string, boolean]>; code: number }> {
    const messages: Array<[string, boolean]> = [];
    ws.on('message', (d: Buffer, binary: boolean) => messages.push([d.toString(), binary]));
    return new Promise((r) => ws.on('close', (code: number) => r({ messages, code })));
  }

  it('echoes text and binary messages, in both directions, without negotiating compression', async () => {
    let extensions = 'unset';
    onConnection = (ws) => {
      extensions = ws.extensions;
      ws.on('message', (d, binary) => {
        if (!binary && d.toString() === 'bye') return ws.close(1000);
        ws.send(d, { binary });
      });
    };
    const ws = await connectWebSocket(path, '/ws');
    const done = collect(ws);
    ws.send('hello');
    ws.send(Buffer.alloc(70_000, 0x62));
    ws.send('bye');
    const r = await done;
    expect(extensions).toBe('');
    expect(r.messages[0]).toEqual(['hello', false]);
    expect(r.messages[1]![0]).toBe('b'.repeat(70_000));
    expect(r.messages[1]![1]).toBe(true);
    expect(r.code).toBe(1000);
  });

  it('joins fragmented messages, answers pings and closes cleanly when asked to', async () => {
    let pong = '';
    let serverClose = 0;
    onConnection = (ws) => {
      ws.on('pong', (d) => (pong = d.toString()));
      ws.on('close', (code) => (serverClose = code));
      ws.send('frag', { fin: false });
      ws.ping('are you there');
      ws.send('mented', { fin: true });
    };
    const ws = await connectWebSocket(path, '/ws');
    const done = collect(ws);
    await new Promise((r) => setTimeout(r, 100));
    ws.close();
    const r = await done;
    expect(r.messages).toEqual([['fragmented', false]]);
    expect(pong).toBe('are you there');
    expect(serverClose).toBe(1000);
  });

  it('holds messages while paused and delivers them on resume', async () => {
    onConnection = (ws) => {
      for (const m of ['a', 'b', 'c']) ws.send(m);
      setTimeout(() => ws.close(), 200);
    };
    const ws = await connectWebSocket(path, '/ws');
    const seen: string[] = [];
    ws.on('message', (d: Buffer) => {
      seen.push(d.toString());
      if (seen.length === 1) {
        ws.pause();
        setTimeout(() => {
          expect(seen).toEqual(['a']);
          ws.resume();
        }, 50);
      }
    });
    await new Promise((r) => ws.on('close', r));
    expect(seen).toEqual(['a', 'b', 'c']);
  });

  it('rejects a refused upgrade with its status and body', async () => {
    const err = await connectWebSocket(path, '/nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WebSocketRefused);
    expect(err).toMatchObject({ status: 403, body: 'no way' });
  });

  it('rejects a server whose accept key is wrong, and a missing socket', async () => {
    const bad = join(dir, 'bad.sock');
    const liar: NetServer = createNetServer((s) => s.once('data', () => s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n')));
    await new Promise<void>((r) => liar.listen(bad, r));
    try {
      const err = await connectWebSocket(bad, '/ws').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WebSocketRefused);
      expect((err as Error).message).toMatch(/Sec-WebSocket-Accept/);
    } finally {
      await new Promise<void>((r) => liar.close(() => r()));
    }
    expect(await connectWebSocket(join(dir, 'missing.sock'), '/ws').catch((e: unknown) => (e as NodeJS.ErrnoException).code)).toBe('ENOENT');
  });

  it('fails the connection on a protocol error from the server', async () => {
    const bad = join(dir, 'proto.sock');
    const { createHash } = await import('node:crypto');
    const liar: NetServer = createNetServer((s) => s.once('data', (d) => {
      const key = /sec-websocket-key: (\S+)/i.exec(d.toString())![1]!;
      const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
      s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      s.write(Buffer.from([0x81, 0x81, 1, 2, 3, 4, 0x41]));
    }));
    await new Promise<void>((r) => liar.listen(bad, r));
    try {
      const ws = await connectWebSocket(bad, '/ws');
      const errors: string[] = [];
      ws.on('error', (e: Error) => errors.push(e.message));
      const messages: unknown[] = [];
      ws.on('message', (m) => messages.push(m));
      await new Promise((r) => ws.on('close', r));
      expect(errors).toEqual(['websocket protocol error: masked frame from the server']);
      expect(messages).toEqual([]);
    } finally {
      await new Promise<void>((r) => liar.close(() => r()));
    }
  });
});
