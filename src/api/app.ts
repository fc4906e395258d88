// Mounts the route catalogue on Fastify: validation by the routes' zod schemas, one error shape, 405s, websockets, 202 operations.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import websocket from '@fastify/websocket';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { AppError, toErrorBody } from '../shared/errors.js';
import { ROUTES, type RouteId } from '../shared/routes.js';
import { ROUTE_SCHEMAS, type BodyOf, type ParamsOf, type QueryOf, type ResponseOf, type RouteSchema } from '../shared/route-schemas.js';
import type { Operation } from '../shared/schemas.js';
import { httpStatusFor } from './http-status.js';
import { streamExec, type SessionProcess } from './streams.js';

/** A validated request as a handler sees it. */
export interface RouteRequest<K extends RouteId> {
  params: ParamsOf<K>;
  query: QueryOf<K>;
  body: BodyOf<K>;
}

/** What a POST exec handler starts: the process, its exec id, the whole stdin to feed it, and what its client's going away does. */
export interface ExecStart extends SessionProcess {
  id: string;
  stdin?: Buffer;
}

/** A websocket route: an optional check before the upgrade (so a missing instance answers 404), then the session. */
export interface WebsocketRoute<K extends RouteId> {
  check?: (req: RouteRequest<K>) => Promise<void>;
  open: (ws: WebSocket, req: RouteRequest<K>) => void;
}

type Kind<K extends RouteId> = (typeof ROUTES)[K]['kind'];

/** The handler a route of a given kind needs. */
export type HandlerFor<K extends RouteId> = Kind<K> extends 'websocket'
  ? WebsocketRoute<K>
  : Kind<K> extends 'exec-stream'
    ? (req: RouteRequest<K>) => Promise<ExecStart>
    : Kind<K> extends 'operation'
      ? (req: RouteRequest<K>) => Promise<Operation>
      : (req: RouteRequest<K>) => Promise<ResponseOf<K>>;

/** One handler per route id: the compiler refuses a missing one. */
export type Handlers = { [K in RouteId]: HandlerFor<K> };

/** Options of the app. */
export interface AppOptions {
  /** Check every 2xx JSON answer against its route's response schema (tests; production serialises without checking). */
  validateResponses?: boolean;
}

const MAX_BODY = 1024 * 1024;
const NO_QUERY: z.ZodType = z.strictObject({});

/** Compiles a catalogue path to a regex, for telling a wrong method (405) from an unknown path (404). */
const PATHS = Object.values(ROUTES).map((r) => ({ method: r.method, re: new RegExp(`^${r.path.replace(/\{(\w+)\}/g, '[^/]+')}$`) }));

/** Formats zod issues as "where: what; ..." for the error message. */
function issues(err: z.ZodError, where: string): string {
  return err.issues.slice(0, 10).map((i) => `${i.path.map(String).join('.') || where}: ${i.message}`).join('; ');
}

const CONTEXT: Record<string, string> = { body: 'Invalid request', params: 'Invalid request path', querystring: 'Invalid query' };

/** Turns what Fastify or a handler threw into an AppError: the client's mistakes become INVALID_ARGUMENT, never INTERNAL. */
function appErrorOf(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const e = err as { code?: string; statusCode?: number; message?: string };
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new AppError('INVALID_ARGUMENT', 'Request body too large', { cause: err });
  if (e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) return new AppError('INVALID_ARGUMENT', 'Request body is not valid JSON', { cause: err });
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return new AppError('INVALID_ARGUMENT', e.message ?? 'Bad request', { cause: err });
  return err;
}

const DRAIN_LIMIT = 16 * 1024 * 1024;
const DRAIN_MS = 5_000;

function sendError(reply: FastifyReply, err: unknown): void {
  const body = toErrorBody(appErrorOf(err));
  const send = () => void reply.code(httpStatusFor(body.code)).type('application/json').send(JSON.stringify({ error: body }));
  const raw = reply.request.raw;
  // A refused upgrade ends its connection: the socket was taken from the HTTP server, nothing else would close it.
  if (isUpgrade(reply.request)) {
    void reply.header('connection', 'close');
    reply.raw.once('finish', () => raw.socket.destroySoon());
    return send();
  }
  if (raw.complete || raw.readableEnded) return send();
  // Refused before its body was read (too large, no such route): the answer waits until the client has sent the body
  // (up to a bound), so it is not cut off mid-upload, and the connection closes so no later request lands on unread bytes.
  void reply.header('connection', 'close');
  let drained = 0;
  let answered = false;
  const answer = () => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    send();
  };
  const timer = setTimeout(answer, DRAIN_MS);
  raw.on('data', (c: Buffer) => { drained += c.length; if (drained > DRAIN_LIMIT) answer(); });
  raw.once('end', answer);
  raw.once('error', answer);
  raw.resume();
}

/** Answers a request the HTTP parser could not read: 400 with the error body, Connection: close, then the socket ends. */
function answerClientError(error: Error, socket: Socket): void {
  const err = error as Error & { code?: string; rawPacket?: Buffer };
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  if (!socket.writable) { socket.destroy(); return; }
  const data = JSON.stringify({ error: toErrorBody(new AppError('INVALID_ARGUMENT', `Malformed HTTP request: ${err.message}`)) });
  // After a HEAD the client reads no body: one would be taken for the next answer.
  const head = err.rawPacket?.subarray(0, 5).toString('latin1') === 'HEAD ';
  socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(data)}\r\nConnection: close\r\n\r\n${head ? '' : data}`);
  socket.destroySoon();
}

function isUpgrade(req: FastifyRequest): boolean {
  return String(req.headers.upgrade ?? '').toLowerCase() === 'websocket';
}

/** Builds the Fastify app with every route of the catalogue mounted on `handlers` (not listening). */
export async function buildApp(handlers: Handlers, opts: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_BODY,
    exposeHeadRoutes: false,
    routerOptions: { ignoreTrailingSlash: true, ignoreDuplicateSlashes: true, maxParamLength: 4096 },
    // A request Node's parser refuses (bad method, bad characters, bad framing) gets the API's error and a closed connection.
    clientErrorHandler: answerClientError,
    // A bad %-escape or URL is the client's error, answered in the API's error shape.
    frameworkErrors: (error, _req, reply) => sendError(reply, new AppError('INVALID_ARGUMENT', `Invalid request target: ${error.message}`, { cause: error })),
  });

  // Schemas are zod: validation is safeParse, and its issues become the API's INVALID_ARGUMENT message.
  app.setValidatorCompiler(({ schema, httpPart }) => (data: unknown) => {
    const res = (schema as unknown as z.ZodType).safeParse(data);
    if (res.success) return { value: res.data };
    const what = CONTEXT[httpPart ?? ''] ?? 'Invalid request';
    return { error: new AppError('INVALID_ARGUMENT', `${what}: ${issues(res.error, httpPart === 'body' ? '(body)' : '(root)')}`) };
  });
  app.setSerializerCompiler(({ schema }) => (data: unknown) => {
    if (opts.validateResponses) {
      const res = (schema as unknown as z.ZodType).safeParse(data);
      if (!res.success) throw new AppError('INTERNAL', `Answer does not match its schema: ${issues(res.error, '(root)')}`);
    }
    return JSON.stringify(data);
  });

  // Every body is JSON whatever the content type says (as before the framework); an empty one is {}.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: MAX_BODY }, (_req, text, done) => {
    const s = String(text);
    if (s.trim() === '') return done(null, {});
    try {
      done(null, JSON.parse(s) as unknown);
    } catch (e) {
      done(new AppError('INVALID_ARGUMENT', 'Request body is not valid JSON', { cause: e }), undefined);
    }
  });

  app.setErrorHandler((err, _req, reply) => sendError(reply, err));
  app.setNotFoundHandler((req, reply) => {
    const path = (req.url.split('?')[0] ?? '/').replace(/\/+$/, '') || '/';
    const allowed = PATHS.filter((p) => p.re.test(path)).map((p) => p.method);
    if (allowed.length > 0) {
      void reply.header('allow', [...new Set(allowed)].join(', '));
      return sendError(reply, new AppError('METHOD_NOT_ALLOWED', `Method ${req.method} not allowed on ${path} (allowed: ${[...new Set(allowed)].join(', ')})`));
    }
    sendError(reply, new AppError('NOT_FOUND', `No such API endpoint: ${req.method} ${path.slice(0, 200)}`));
  });

  await app.register(websocket, {
    options: { maxPayload: MAX_BODY, perMessageDeflate: false },
    // After the upgrade, a broken socket (bad opcode, oversized frame) just closes: it must never reach the process.
    errorHandler: (_err, socket) => socket.terminate(),
  });

  for (const id of Object.keys(ROUTES) as RouteId[]) mountRoute(app, id, handlers[id] as unknown);
  return app;
}

// Inside the mounting code handlers are seen loosely; Handlers keeps each one's real type at the call sites.
type LooseRequest = { params: Record<string, string>; query: Record<string, unknown>; body: unknown };
type LooseHandler = (req: LooseRequest) => Promise<unknown>;
type LooseWebsocket = { check?: (req: LooseRequest) => Promise<void>; open: (ws: WebSocket, req: LooseRequest) => void };

function mountRoute(app: FastifyInstance, id: RouteId, handler: unknown): void {
  const meta = ROUTES[id];
  const rs = ROUTE_SCHEMAS[id] as RouteSchema;
  const schema: Record<string, unknown> = {};
  if (rs.params) schema.params = rs.params;
  // A route without query parameters refuses any: a misspelt ?forse=true must not be ignored silently.
  schema.querystring = rs.query ?? NO_QUERY;
  if (rs.body) schema.body = rs.body;
  if (rs.response && meta.kind !== 'text') schema.response = { [meta.kind === 'operation' ? 202 : 200]: rs.response };
  const url = meta.path.replace(/\{(\w+)\}/g, ':$1');
  const request = (req: FastifyRequest) => ({ params: req.params ?? {}, query: req.query ?? {}, body: req.body }) as LooseRequest;
  const call = handler as LooseHandler;

  const routeOpts = {
    method: meta.method, url, schema, config: { kind: meta.kind },
    // A request without a body is an empty object (the schema then says what is missing).
    ...(rs.body ? { preValidation: async (req: FastifyRequest) => { if (req.body === undefined) req.body = {}; } } : {}),
    onRequest: async (req: FastifyRequest) => {
      if (isUpgrade(req) && meta.kind !== 'websocket') throw new AppError('INVALID_ARGUMENT', `${meta.method} ${meta.path} is not a websocket endpoint`);
    },
  };

  if (meta.kind === 'websocket') {
    const ws = handler as LooseWebsocket;
    app.route({
      ...routeOpts,
      method: 'GET',
      ...(ws.check ? { preHandler: async (req: FastifyRequest) => { if (isUpgrade(req)) await ws.check!(request(req)); } } : {}),
      handler: async () => { throw new AppError('INVALID_ARGUMENT', `GET ${meta.path} is a websocket: send an Upgrade request`); },
      wsHandler: (socket: WebSocket, req: FastifyRequest) => ws.open(socket, request(req)),
    });
    return;
  }
  app.route({
    ...routeOpts,
    handler: async (req: FastifyRequest, reply: FastifyReply) => {
      const r = request(req);
      switch (meta.kind) {
        case 'operation': {
          const op = await call(r) as Operation;
          return reply.code(202).header('location', `/1.0/operations/${op.id}`).send(op);
        }
        case 'text':
          return reply.type('text/plain; charset=utf-8').send(await call(r) as string);
        case 'exec-stream': {
          const start = await call(r) as ExecStart;
          reply.hijack();
          streamExec(reply.raw, start);
          return reply;
        }
        default:
          return reply.send(await call(r));
      }
    },
  });
}
