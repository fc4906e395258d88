// Test helper: a tiny fake hangard on a unix socket in a temp dir (node:http + ws) with canned routes and a request log.
import { encodeExecFrame } from '../shared/exec-frames.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { HangarEvent, Instance, Operation } from '../shared/schemas.js';

/** One request the fake daemon saw. */
export interface SeenRequest {
  method: string;
  path: string;
  body: unknown;
}

/** A running fake daemon. */
export interface FakeDaemon {
  socketPath: string;
  requests: SeenRequest[];
  /** Pushes an event to every events subscriber whose type filter matches. */
  emit(event: HangarEvent): void;
  /** Resolves once n events subscribers are connected. */
  subscribers(n: number): Promise<void>;
  close(): Promise<void>;
}

/** A valid instance for canned answers. */
export function fakeInstance(name: string, over: Partial<Instance> = {}): Instance {
  return {
    name,
    type: 'container',
    driver: 'lxc',
    state: 'running',
    image: 'busybox',
    ipv4: '10.99.0.2',
    mac: '00:16:3e:00:00:01',
    config: { 'limits.memory': '256MiB' },
    pendingConfig: {},
    pid: 4242,
    createdAt: '2024-01-01T00:00:00Z',
    technology: { kernel: 'shared', memory: 'burstable', isolation: 'namespaces+cgroups' },
    features: { freeze: true, snapshots: false, statefulStop: false, console: true, execTty: true, liveCopy: true, graphicalConsole: false, monitor: false },
    ...over,
  };
}

/** A valid operation for canned answers. */
export function fakeOperation(id: string, over: Partial<Operation> = {}): Operation {
  return {
    id,
    description: `op ${id}`,
    status: 'running',
    resources: [],
    progress: null,
    createdAt: '2024-01-01T00:00:00Z',
    updatedAt: '2024-01-01T00:00:00Z',
    error: null,
    ...over,
  };
}

const ERR_NOT_FOUND = { error: { code: 'NOT_FOUND', message: 'Instance "missing" not found', causes: ['no row in instances', 'lookup by name'] } };

/** Starts the fake daemon; routes mirror docs/api.md for the cases the client and CLI tests need. */
export async function startFakeDaemon(): Promise<FakeDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-fake-'));
  const socketPath = join(dir, 'hangar.sock');
  const requests: SeenRequest[] = [];
  const ops = new Map<string, Operation>();
  const subs = new Set<{ ws: WebSocket; types: string[] | null }>();
  let subWaiters: Array<() => void> = [];
  let nextOp = 1;

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const startOp = (res: ServerResponse, final: Partial<Operation>): void => {
    const id = `op-${nextOp++}`;
    const op = fakeOperation(id);
    ops.set(id, { ...op, ...final, status: final.status ?? 'success' });
    res.setHeader('location', `/1.0/operations/${id}`);
    send(res, 202, op);
  };
  const emit = (event: HangarEvent): void => {
    for (const s of subs) if (!s.types || s.types.includes(event.type)) s.ws.send(JSON.stringify(event));
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: string): void => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = url.pathname;
    const body: unknown = raw ? JSON.parse(raw) : undefined;
    requests.push({ method: req.method ?? '', path: `${path}${url.search}`, body });
    const key = `${req.method} ${path}`;
    if (key === 'GET /1.0') return send(res, 200, { apiVersion: '1.0', serverVersion: 'fake', pid: process.pid });
    if (key === 'GET /1.0/instances') return send(res, 200, [fakeInstance('web1'), fakeInstance('db1', { state: 'stopped', ipv4: null, image: 'debian, "bookworm"' })]);
    if (key === 'GET /1.0/instances/web1') return send(res, 200, fakeInstance('web1', { usage: { cpuTimeNs: 1_500_000_000, memoryBytes: 1048576, processes: 3 } }));
    if (key === 'GET /1.0/instances/bad-shape') return send(res, 200, { name: 'bad-shape' });
    if (req.method === 'GET' && path.startsWith('/1.0/instances/')) return send(res, 404, ERR_NOT_FOUND);
    if (req.method === 'POST' && /^\/1\.0\/instances\/[^/]+\/exec$/.test(path)) return fakeExecPost(res, path, body as { command: string[]; stdin?: string });
    if (key === 'POST /1.0/instances') {
      const name = (body as { name: string }).name;
      const id = `op-${nextOp}`;
      // Progress goes out shortly after the 202, like a real daemon working in the background.
      setTimeout(() => emit({ type: 'operation-progress', time: new Date().toISOString(), operation: id, message: 'unpacking rootfs' }), 5);
      return startOp(res, { result: fakeInstance(name) });
    }
    if (key === 'PUT /1.0/instances/web1/state') {
      return startOp(res, { status: 'failure', error: { code: 'BACKEND_FAILED', message: 'Failed to start instance "web1"', causes: ['lxc-start exited with status 1', 'cgroup memory controller missing'] } });
    }
    if (key === 'PATCH /1.0/instances/web1/config') return send(res, 200, { live: ['limits.memory'], pending: ['limits.cpu'] });
    if (req.method === 'GET' && /^\/1\.0\/operations\/[^/]+\/wait$/.test(path)) {
      const op = ops.get(path.split('/')[3]!);
      if (!op) return send(res, 404, { error: { code: 'NOT_FOUND', message: 'Operation not found', causes: [] } });
      // Finish a little later than the progress event, as a real operation would.
      return void setTimeout(() => send(res, 200, op), 30);
    }
    if (key === 'GET /1.0/broken') {
      res.writeHead(500, { 'content-type': 'text/plain' });
      return void res.end('boom');
    }
    send(res, 404, { error: { code: 'NOT_FOUND', message: `No route ${key}`, causes: [] } });
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    if (url.pathname === '/1.0/instances/missing/exec') {
      const text = JSON.stringify(ERR_NOT_FOUND);
      socket.end(`HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      requests.push({ method: 'WS', path: `${url.pathname}${url.search}`, body: undefined });
      if (url.pathname === '/1.0/events') {
        const t = url.searchParams.get('type');
        const sub = { ws, types: t ? t.split(',') : null };
        subs.add(sub);
        ws.on('close', () => subs.delete(sub));
        const waiters = subWaiters;
        subWaiters = [];
        for (const w of waiters) w();
        return;
      }
      if (/^\/1\.0\/instances\/[^/]+\/exec$/.test(url.pathname)) return fakeExec(ws);
      ws.close();
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));

  return {
    socketPath,
    requests,
    emit,
    async subscribers(n) {
      while (subs.size < n) await new Promise<void>((resolve) => subWaiters.push(resolve));
    },
    async close() {
      for (const s of subs) s.ws.terminate();
      for (const c of wss.clients) c.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Fake exec: `cat` echoes stdin to stdout after eof, writes "warn\n" to stderr and exits 3;
 * `env` prints the request JSON and exits 0; `explode` answers an error message.
 */
function fakeExec(ws: WebSocket): void {
  let req: { command: string[] } | undefined;
  const stdin: Buffer[] = [];
  const frame = (ch: number, text: string | Buffer): Buffer => Buffer.concat([Buffer.from([ch]), Buffer.from(text)]);
  const exit = (code: number): void => {
    ws.send(JSON.stringify({ type: 'exit', code }));
    ws.close();
  };
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
    if (isBinary) {
      if (buf[0] === 0) stdin.push(buf.subarray(1));
      return;
    }
    const msg = JSON.parse(buf.toString('utf8')) as { type?: string; command?: string[] };
    if (!req) {
      req = msg as { command: string[] };
      if (req.command[0] === 'env') {
        ws.send(frame(1, `${JSON.stringify(req)}\n`));
        exit(0);
      } else if (req.command[0] === 'explode') {
        ws.send(JSON.stringify({ type: 'error', error: { code: 'BACKEND_FAILED', message: 'Failed to exec in "web1"', causes: ['lxc-attach: no such container'] } }));
        ws.close();
      }
      return;
    }
    if (msg.type === 'eof' && req.command[0] === 'cat') {
      ws.send(frame(1, Buffer.concat(stdin)));
      ws.send(frame(2, 'warn\n'));
      exit(3);
    }
  });
}

/** The same fake commands over POST exec, answered as a framed stream (1 stdout, 2 stderr, 3 exit). */
function fakeExecPost(res: ServerResponse, path: string, req: { command: string[]; stdin?: string }): void {
  if (path === '/1.0/instances/missing/exec') {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(ERR_NOT_FOUND));
    return;
  }
  if (req.command[0] === 'explode') {
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'BACKEND_FAILED', message: 'Failed to exec in "web1"', causes: ['lxc-attach: no such container'] } }));
    return;
  }
  const frame = (ch: number, data: string | Buffer): Uint8Array => encodeExecFrame(ch, Buffer.from(data));
  res.writeHead(200, { 'content-type': 'application/vnd.hangar.exec-stream' });
  if (req.command[0] === 'env') {
    const { stdin: _stdin, ...shown } = req;
    res.write(frame(1, `${JSON.stringify(shown)}\n`));
    res.end(frame(3, JSON.stringify({ code: 0 })));
    return;
  }
  res.write(frame(1, Buffer.from(req.stdin ?? '', 'base64')));
  res.write(frame(2, 'warn\n'));
  res.end(frame(3, JSON.stringify({ code: 3 })));
}
