// The HTTP + websocket API: thin routes over the core services; buildServer() never listens itself.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import type { z } from 'zod';
import { AppError, toErrorBody } from '../shared/errors.js';
import * as S from '../shared/schemas.js';
import type { HostInfo, Operation, VirtFact } from '../shared/schemas.js';
import type { InstanceService } from '../core/instances.js';
import type { ImageService } from '../core/images/service.js';
import type { OperationManager } from '../core/operations.js';
import type { EventBus } from '../core/events.js';
import type { HostProcess } from '../host/host.js';
import { encodeExecFrame, ExecFrame } from '../shared/exec-frames.js';
import { httpStatusFor } from './http-status.js';
import { buildOpenApi } from './openapi.js';

/** What the API needs from the daemon. */
export interface ApiDeps {
  version: string;
  instances: InstanceService;
  images: ImageService;
  ops: OperationManager;
  events: EventBus;
  hostInfo(): Promise<HostInfo>;
  detect(root: string, cpuid: string | null | undefined): Promise<VirtFact[]>;
}

type Params = Record<string, string>;
type Handler = (req: IncomingMessage, params: Params, query: URLSearchParams) => Promise<Reply>;
type Reply = { status: number; body: unknown; contentType?: string } | { operation: Operation } | { stream: (res: ServerResponse) => void };
type WsHandler = (ws: WebSocket, params: Params, query: URLSearchParams) => void;

const MAX_BODY = 1024 * 1024;

function compile(path: string): RegExp {
  return new RegExp(`^${path.replace(/\{(\w+)\}/g, '(?<$1>[^/]+)')}$`);
}

/** The request target as a URL; an unparsable one (a bad absolute URL) is the client's error. */
function requestUrl(raw: string | undefined): URL {
  try {
    return new URL(raw ?? '/', 'http://hangar');
  } catch (e) {
    throw new AppError('INVALID_ARGUMENT', `Invalid request target ${JSON.stringify((raw ?? '').slice(0, 200))}`, { cause: e });
  }
}

/** The decoded path parameters of a match; a bad %-escape is the client's error, not the daemon's. */
function paramsOf(m: RegExpExecArray): Params {
  const params: Params = {};
  for (const [k, v] of Object.entries(m.groups ?? {})) {
    try {
      params[k] = decodeURIComponent(v);
    } catch (e) {
      throw new AppError('INVALID_ARGUMENT', `Invalid %-escape in the ${k} of the request path: ${JSON.stringify(v.slice(0, 200))}`, { cause: e });
    }
    if (params[k]!.includes('\0')) throw new AppError('INVALID_ARGUMENT', `The ${k} in the request path contains a NUL byte`);
  }
  return params;
}

async function readJson<T extends z.ZodType>(req: IncomingMessage, schema: T): Promise<z.infer<T>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new AppError('INVALID_ARGUMENT', 'Request body too large');
    chunks.push(chunk as Buffer);
  }
  let data: unknown;
  try {
    data = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
  } catch (e) {
    throw new AppError('INVALID_ARGUMENT', 'Request body is not valid JSON', { cause: e });
  }
  return parseWith(schema, data);
}

function parseWith<T extends z.ZodType>(schema: T, data: unknown): z.infer<T> {
  const res = schema.safeParse(data);
  if (!res.success) {
    const msg = res.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ');
    throw new AppError('INVALID_ARGUMENT', `Invalid request: ${msg}`);
  }
  return res.data;
}

const ok = (body: unknown, status = 200): Reply => ({ status, body });

/** Builds the API server (not listening). */
export function buildServer(deps: ApiDeps): Server {
  const { instances, images, ops } = deps;
  const op = (description: string, resources: string[], fn: (progress: (m: string) => void) => Promise<unknown>): Reply =>
    ({ operation: ops.start(description, resources, (ctx) => fn((m) => ctx.progress(m))) });
  const openapi = buildOpenApi(deps.version);

  const routes: [string, RegExp, Handler][] = [];
  const route = (method: string, path: string, h: Handler) => routes.push([method, compile(path), h]);

  route('GET', '/1.0', async () => ok({ apiVersion: '1.0', serverVersion: deps.version, pid: process.pid }));
  route('GET', '/1.0/openapi.json', async () => ok(openapi));
  route('GET', '/1.0/host', async () => ok(await deps.hostInfo()));
  route('GET', '/1.0/host/detect', async (_r, _p, q) => ok(await deps.detect(q.get('root') ?? '/', q.has('cpuid') ? q.get('cpuid') : undefined)));
  route('GET', '/1.0/instances', async () => ok(await instances.list()));
  route('POST', '/1.0/instances', async (req) => {
    const body = await readJson(req, S.CreateInstanceRequestSchema);
    const plan = instances.validateCreate(body);
    return op(`${plan.start ? 'Launching' : 'Creating'} instance "${plan.name}"`, [`/1.0/instances/${plan.name}`], (p) => instances.create(plan, p));
  });
  route('GET', '/1.0/instances/{name}', async (_r, p) => ok(await instances.get(p.name!)));
  route('DELETE', '/1.0/instances/{name}', async (_r, p, q) => {
    await instances.get(p.name!);
    return op(`Deleting instance "${p.name}"`, [`/1.0/instances/${p.name}`], () => instances.delete(p.name!, q.get('force') === 'true'));
  });
  route('PUT', '/1.0/instances/{name}/state', async (req, p) => {
    const body = await readJson(req, S.StateChangeRequestSchema);
    await instances.get(p.name!);
    const name = p.name!;
    const opts = { ...(body.force !== undefined ? { force: body.force } : {}), ...(body.timeout !== undefined ? { timeout: body.timeout } : {}), ...(body.stateful ? { stateful: true } : {}) };
    const run = {
      start: () => instances.start(name),
      stop: () => instances.stop(name, opts),
      restart: () => instances.restart(name, opts),
      freeze: () => instances.freeze(name),
      unfreeze: () => instances.unfreeze(name),
    }[body.action];
    const verb = { start: 'Starting', stop: 'Stopping', restart: 'Restarting', freeze: 'Freezing', unfreeze: 'Unfreezing' }[body.action];
    return op(`${verb} instance "${name}"`, [`/1.0/instances/${name}`], run);
  });
  route('PATCH', '/1.0/instances/{name}/config', async (req, p) => {
    const body = await readJson(req, S.ConfigPatchRequestSchema);
    return ok(await instances.patchConfig(p.name!, body.set ?? {}, body.unset ?? []));
  });
  route('POST', '/1.0/instances/{name}/copy', async (req, p) => {
    const body = await readJson(req, S.CopyRequestSchema);
    await instances.get(p.name!);
    return op(`Copying instance "${p.name}" to "${body.name}"`, [`/1.0/instances/${p.name}`, `/1.0/instances/${body.name}`], () => instances.copy(p.name!, body.name, body.ipv4));
  });
  route('GET', '/1.0/instances/{name}/snapshots', async (_r, p) => ok(instances.listSnapshots(p.name!)));
  route('POST', '/1.0/instances/{name}/snapshots', async (req, p) => {
    const body = await readJson(req, S.SnapshotRequestSchema);
    instances.listSnapshots(p.name!);
    return op(`Snapshotting instance "${p.name}" as "${body.name}"`, [`/1.0/instances/${p.name}`], () => instances.createSnapshot(p.name!, body.name, { stateful: body.stateful === true }));
  });
  route('POST', '/1.0/instances/{name}/snapshots/{snap}/restore', async (_r, p) => {
    instances.listSnapshots(p.name!);
    return op(`Restoring snapshot "${p.snap}" of instance "${p.name}"`, [`/1.0/instances/${p.name}`], () => instances.restoreSnapshot(p.name!, p.snap!));
  });
  route('DELETE', '/1.0/instances/{name}/snapshots/{snap}', async (_r, p) => {
    instances.listSnapshots(p.name!);
    return op(`Deleting snapshot "${p.snap}" of instance "${p.name}"`, [`/1.0/instances/${p.name}`], () => instances.deleteSnapshot(p.name!, p.snap!));
  });
  route('POST', '/1.0/instances/{name}/exec', async (req, p) => {
    const body = await readJson(req, S.ExecRunRequestSchema);
    const proc = await instances.exec(p.name!, { command: body.command, ...(body.env ? { env: body.env } : {}), ...(body.cwd ? { cwd: body.cwd } : {}) });
    return { stream: (res: ServerResponse) => streamExec(res, proc, body.stdin === undefined ? undefined : Buffer.from(body.stdin, 'base64')) };
  });
  route('POST', '/1.0/instances/{name}/monitor', async (req, p) => {
    const body = await readJson(req, S.MonitorRequestSchema);
    return ok({ return: (await instances.monitor(p.name!, body.command, body.arguments)) ?? null });
  });
  route('GET', '/1.0/instances/{name}/console/log', async (_r, p) => ({ status: 200, body: await instances.consoleLog(p.name!), contentType: 'text/plain; charset=utf-8' }));
  route('GET', '/1.0/images', async () => ok(images.list()));
  route('POST', '/1.0/images', async (req) => {
    const body = await readJson(req, S.ImageBuildRequestSchema);
    const { alias } = images.validateBuild(body.kind, body);
    return op(`Building image "${alias}"`, [`/1.0/images/${alias}`], (p) => images.build(body.kind, body, p));
  });
  route('POST', '/1.0/images/import', async (req) => {
    const body = await readJson(req, S.ImageImportRequestSchema);
    const vm = body.vm === true;
    await images.validateImport(body.path, body.alias, vm);
    return op(`Importing ${vm ? 'VM ' : ''}image "${body.alias}"`, [`/1.0/images/${body.alias}`], (p) => images.import(body.path, body.alias, p, { vm }));
  });
  route('DELETE', '/1.0/images/{alias}', async (_r, p, q) => {
    const type = q.get('type') === 'vm' ? 'vm' : 'container';
    images.get(p.alias!, type);
    return op(`Deleting image "${p.alias}"`, [`/1.0/images/${p.alias}`], () => images.delete(p.alias!, type));
  });
  route('GET', '/1.0/operations', async () => ok(ops.list()));
  route('GET', '/1.0/operations/{id}', async (_r, p) => ok(ops.get(p.id!)));
  route('GET', '/1.0/operations/{id}/wait', async (_r, p, q) => {
    const timeout = Number(q.get('timeout') ?? 60);
    return ok(await ops.wait(p.id!, Math.max(0, Math.min(timeout, 86400)) * 1000));
  });

  const wsRoutes: [RegExp, WsHandler][] = [
    [compile('/1.0/events'), (ws, _p, q) => handleEvents(ws, deps.events, q)],
    [compile('/1.0/instances/{name}/exec'), (ws, p) => handleStream(ws, async (first) => {
      const req = parseWith(S.ExecRequestSchema, first);
      return instances.exec(p.name!, {
        command: req.command, ...(req.env ? { env: req.env } : {}), ...(req.cwd ? { cwd: req.cwd } : {}),
        ...(req.tty ? { tty: { cols: req.cols ?? 80, rows: req.rows ?? 24 } } : {}),
      });
    })],
    [compile('/1.0/instances/{name}/console'), (ws, p, q) => q.get('type') === 'vga' ? handleVga(ws, () => instances.openGraphicalConsole(p.name!)) : handleStream(ws, async (first) => {
      const size = parseWith(S.ConsoleSizeSchema, first);
      return instances.attachConsole(p.name!, { cols: size.cols ?? 80, rows: size.rows ?? 24 });
    })],
  ];

  const server = createServer((req, res) => {
    void dispatch(req, res);
  });

  async function dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = requestUrl(req.url);
      const path = url.pathname.replace(/\/+$/, '') || '/';
      let matchedPath = false;
      for (const [method, re, handler] of routes) {
        const m = re.exec(path);
        if (!m) continue;
        matchedPath = true;
        if (method !== req.method) continue;
        const params = paramsOf(m);
        const reply = await handler(req, params, url.searchParams);
        if ('stream' in reply) {
          reply.stream(res);
        } else if ('operation' in reply) {
          send(res, 202, reply.operation, { Location: `/1.0/operations/${reply.operation.id}` });
        } else if (reply.contentType) {
          res.writeHead(reply.status, { 'Content-Type': reply.contentType });
          res.end(String(reply.body));
        } else {
          send(res, reply.status, reply.body);
        }
        return;
      }
      if (matchedPath) throw new AppError('INVALID_ARGUMENT', `Method ${req.method} not allowed on ${path}`);
      throw new AppError('NOT_FOUND', `No such API endpoint: ${req.method} ${path}`);
    } catch (err) {
      const body = toErrorBody(err);
      send(res, httpStatusFor(body.code), { error: body });
    }
  }

  const wss = new WebSocketServer({ noServer: true });
  // Whatever a client sends on an upgrade, the answer is an HTTP error or a websocket: nothing here may throw out of the
  // event handler (that would end the daemon).
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    try {
      const url = requestUrl(req.url);
      for (const [re, handler] of wsRoutes) {
        const m = re.exec(url.pathname);
        if (!m) continue;
        const params = paramsOf(m);
        wss.handleUpgrade(req, socket, head, (ws) => {
          // A protocol violation (bad opcode, oversized frame) arrives as an error event: close, never throw.
          ws.on('error', () => ws.terminate());
          try {
            handler(ws, params, url.searchParams);
          } catch (err) {
            ws.send(JSON.stringify({ type: 'error', error: toErrorBody(err) }));
            ws.close();
          }
        });
        return;
      }
      throw new AppError('NOT_FOUND', `No such websocket endpoint: ${url.pathname}`);
    } catch (err) {
      rejectUpgrade(socket, err);
    }
  });
  server.on('close', () => wss.close());
  return server;
}

/** Answers an upgrade request that cannot become a websocket with the error as JSON, then closes. */
function rejectUpgrade(socket: Duplex, err: unknown): void {
  const body = toErrorBody(err);
  const status = httpStatusFor(body.code);
  const data = JSON.stringify({ error: body });
  const reason = status === 404 ? 'Not Found' : status === 400 ? 'Bad Request' : status === 409 ? 'Conflict' : 'Error';
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(data)}\r\nConnection: close\r\n\r\n${data}`);
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

/** Streams a process's output as frames [channel][uint32 BE length][payload], ending with an exit frame (JSON). */
function streamExec(res: ServerResponse, proc: HostProcess, stdin: Buffer | undefined): void {
  res.writeHead(200, { 'Content-Type': 'application/vnd.hangar.exec-stream' });
  const frame = (ch: number, d: Buffer | string) => res.write(encodeExecFrame(ch, Buffer.isBuffer(d) ? d : Buffer.from(d)));
  proc.stdin?.end(stdin);
  proc.stdout?.on('data', (d: Buffer | string) => frame(ExecFrame.stdout, d));
  proc.stderr?.on('data', (d: Buffer | string) => frame(ExecFrame.stderr, d));
  res.on('close', () => { if (!res.writableFinished) proc.kill('SIGKILL'); });
  void exitCodeOf(proc).then((code) => {
    frame(ExecFrame.exit, JSON.stringify({ code }));
    res.end();
  });
}

/** Resolves with a process's exit code once its output streams have ended too (128+signal when killed). */
function exitCodeOf(proc: HostProcess): Promise<number> {
  const ended = (s: NodeJS.ReadableStream | null) => new Promise<void>((r) => {
    if (!s) { r(); return; }
    s.on('end', () => r());
    s.on('close', () => r());
    s.on('error', () => r());
  });
  return Promise.all([proc.wait(), ended(proc.stdout), ended(proc.stderr)]).then(([exit]) => exit.code ?? (exit.signal ? 128 + (SIGNALS[exit.signal] ?? 1) : 1));
}

/** Relays a graphical console as raw RFB bytes in binary frames, as noVNC expects; errors arrive as a JSON text frame. */
function handleVga(ws: WebSocket, open: () => Promise<Duplex>): void {
  const early: Buffer[] = [];
  const onEarly = (d: RawData) => { early.push(Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d as ArrayBuffer)); };
  ws.on('message', onEarly);
  open().then((sock) => {
    ws.off('message', onEarly);
    for (const b of early) sock.write(b);
    sock.on('data', (d: Buffer) => { if (ws.readyState === ws.OPEN) ws.send(d); });
    sock.on('close', () => ws.close());
    sock.on('error', () => ws.close());
    ws.on('message', (d: RawData) => sock.write(Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d as ArrayBuffer)));
    ws.on('close', () => sock.destroy());
  }, (err: unknown) => {
    if (ws.readyState === ws.OPEN) {
      ws.send(JSON.stringify({ type: 'error', error: toErrorBody(err) }));
      ws.close();
    }
  });
}

function handleEvents(ws: WebSocket, events: EventBus, q: URLSearchParams): void {
  const types = q.get('type')?.split(',').filter(Boolean);
  // replay=true first sends the daemon's recent history (e.g. drift found at start-up).
  if (q.get('replay') === 'true') {
    for (const e of events.recent()) if (!types || types.includes(e.type)) ws.send(JSON.stringify(e));
  }
  const unsubscribe = events.subscribe((e) => {
    if (types && !types.includes(e.type)) return;
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(e));
  });
  ws.on('close', unsubscribe);
  ws.on('error', unsubscribe);
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

/** Runs a process for a stream websocket: binary frames with a channel byte, JSON control frames. */
function handleStream(ws: WebSocket, startProc: (first: unknown) => Promise<HostProcess>): void {
  let proc: HostProcess | undefined;
  let started = false;
  const pending: Buffer[] = [];
  const fail = (err: unknown) => {
    if (ws.readyState === ws.OPEN) {
      ws.send(JSON.stringify({ type: 'error', error: toErrorBody(err) }));
      ws.close();
    }
  };
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (!started) {
      started = true;
      let first: unknown;
      try { first = JSON.parse(buf.toString('utf8')); } catch (e) { fail(new AppError('INVALID_ARGUMENT', 'First frame must be JSON', { cause: e })); return; }
      startProc(first).then((p) => {
        proc = p;
        for (const b of pending.splice(0)) handleFrame(b, true);
        pump(ws, p);
      }, fail);
      return;
    }
    if (!proc) { pending.push(isBinary ? buf : Buffer.concat([Buffer.from([255]), buf])); return; }
    handleFrame(buf, isBinary);
  });
  function handleFrame(buf: Buffer, isBinary: boolean) {
    if (!proc) return;
    if (isBinary && buf[0] !== 255) {
      if (buf[0] === 0) proc.stdin?.write(buf.subarray(1));
      return;
    }
    const text = (buf[0] === 255 ? buf.subarray(1) : buf).toString('utf8');
    let msg: { type?: string; cols?: number; rows?: number; signal?: string };
    try { msg = JSON.parse(text) as typeof msg; } catch { return; }
    const size = (n: unknown) => (Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 10_000 ? (n as number) : undefined);
    if (msg === null || typeof msg !== 'object') return;
    if (msg.type === 'eof') proc.stdin?.end();
    else if (msg.type === 'resize' && size(msg.cols) && size(msg.rows)) proc.resize?.(msg.cols!, msg.rows!);
    else if (msg.type === 'signal' && typeof msg.signal === 'string' && Object.hasOwn(SIGNALS, msg.signal)) proc.kill(msg.signal as NodeJS.Signals);
  }
  ws.on('close', () => {
    if (proc) { proc.stdin?.end(); proc.kill('SIGKILL'); }
  });
}

function pump(ws: WebSocket, proc: HostProcess): void {
  const frame = (ch: number, d: Buffer | string) => {
    if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([ch]), Buffer.isBuffer(d) ? d : Buffer.from(d)]));
  };
  proc.stdout?.on('data', (d: Buffer | string) => frame(1, d));
  proc.stderr?.on('data', (d: Buffer | string) => frame(2, d));
  void exitCodeOf(proc).then((code) => {
    if (ws.readyState === ws.OPEN) {
      ws.send(JSON.stringify({ type: 'exit', code }));
      ws.close();
    }
  });
}
