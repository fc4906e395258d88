// The zod side of the route catalogue: params, query, body, response and websocket frames of every route in routes.ts.
import { z } from 'zod';
import type { RouteId } from './routes.js';
import * as S from './schemas.js';

/** What one route takes and answers; websockets describe their frames instead of a body. */
export interface RouteSchema {
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  response?: z.ZodType;
  frames?: { first?: z.ZodType; client?: z.ZodType; server: z.ZodType };
}

// A path segment reaches names, paths and SQL: a NUL byte in it is refused before any handler runs.
const segment = (what: string) => z.string().min(1).refine((s) => !s.includes('\0'), `The ${what} in the request path contains a NUL byte`);
const instanceParams = z.strictObject({ name: segment('name') });
const snapshotParams = z.strictObject({ name: segment('name'), snap: segment('snap') });
const execParams = z.strictObject({ name: segment('name'), id: segment('id') });
const hostParams = z.strictObject({ host: segment('host') });
const hostQuery = z.strictObject({ host: segment('host').optional() });
const flag = z.enum(['true', 'false']).transform((v) => v === 'true');

/** Client → server control frames of the exec and console websockets (text, or binary on channel 255). */
export const StreamControlFrameSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('eof') }),
  z.strictObject({ type: z.literal('resize'), cols: z.number().int().min(1).max(10_000), rows: z.number().int().min(1).max(10_000) }),
  z.strictObject({ type: z.literal('signal'), signal: S.ExecSignalSchema }),
]);

/** Server → client text frames of the exec and console websockets: how the session ended. */
export const StreamServerFrameSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('exit'), code: z.number().int() }),
  z.strictObject({ type: z.literal('error'), error: S.ErrorResponseSchema.shape.error }),
]);

/** A comma-separated list of event types for the events websocket's type= filter. */
const eventTypeList = z.string().transform((s, ctx) => {
  const types = s.split(',').filter(Boolean);
  for (const t of types) {
    if (!S.EventTypeSchema.safeParse(t).success) {
      ctx.addIssue({ code: 'custom', message: `Unknown event type "${t.slice(0, 100)}"` });
      return z.NEVER;
    }
  }
  return types as S.EventType[];
});

/** Seconds to wait, 0 to 86400. */
const waitSeconds = z.string().regex(/^\d{1,9}(\.\d+)?$/, 'a number of seconds').transform(Number).pipe(z.number().min(0).max(86400));

/** Every route's schemas, keyed like ROUTES (the compiler insists on one entry per route). */
export const ROUTE_SCHEMAS = {
  serverInfo: { response: S.ServerInfoSchema },
  openapi: { response: z.record(z.string(), z.unknown()) },
  hostInfo: { query: hostQuery, response: S.HostInfoSchema },
  hostDetect: {
    query: z.strictObject({ root: z.string().min(1).max(4096).refine((s) => !s.includes('\0'), 'root must not contain a NUL byte').optional(), cpuid: z.string().max(64).optional() }),
    response: z.array(S.VirtFactSchema),
  },
  listHosts: { response: z.array(S.HostSchema) },
  addHost: { body: S.AddHostRequestSchema, response: S.OperationSchema },
  getHost: { params: hostParams, response: S.HostSchema },
  removeHost: { params: hostParams, response: S.HostSchema },
  trustHost: { params: hostParams, body: S.TrustHostRequestSchema, response: S.OperationSchema },
  listInstances: { query: hostQuery, response: z.array(S.InstanceSchema) },
  createInstance: { body: S.CreateInstanceRequestSchema, response: S.OperationSchema },
  importInstance: { body: S.ImportInstanceRequestSchema, response: S.OperationSchema },
  translateImport: { body: S.ImportTranslateRequestSchema, response: S.ImportTranslationSchema },
  getInstance: { params: instanceParams, response: S.InstanceSchema },
  deleteInstance: { params: instanceParams, query: z.strictObject({ force: flag.optional() }), response: S.OperationSchema },
  changeState: { params: instanceParams, body: S.StateChangeRequestSchema, response: S.OperationSchema },
  patchConfig: { params: instanceParams, body: S.ConfigPatchRequestSchema, response: S.ConfigChangeResultSchema },
  copyInstance: { params: instanceParams, body: S.CopyRequestSchema, response: S.OperationSchema },
  moveInstance: { params: instanceParams, body: S.MoveRequestSchema, response: S.OperationSchema },
  listSnapshots: { params: instanceParams, response: z.array(S.SnapshotSchema) },
  createSnapshot: { params: instanceParams, body: S.SnapshotRequestSchema, response: S.OperationSchema },
  restoreSnapshot: { params: snapshotParams, response: S.OperationSchema },
  deleteSnapshot: { params: snapshotParams, response: S.OperationSchema },
  execRun: { params: instanceParams, body: S.ExecRunRequestSchema },
  listExecs: { params: instanceParams, response: z.array(S.ExecInfoSchema) },
  signalExec: { params: execParams, body: S.ExecSignalRequestSchema, response: S.ExecInfoSchema },
  execSession: { params: instanceParams, frames: { first: S.ExecRequestSchema, client: StreamControlFrameSchema, server: StreamServerFrameSchema } },
  console: {
    params: instanceParams,
    query: z.strictObject({ type: z.enum(['text', 'vga']).optional() }),
    frames: { first: S.ConsoleSizeSchema, client: StreamControlFrameSchema, server: StreamServerFrameSchema },
  },
  consoleLog: { params: instanceParams, response: z.string() },
  beancounters: { params: instanceParams, response: z.array(S.BeancounterSchema) },
  monitor: { params: instanceParams, body: S.MonitorRequestSchema, response: S.MonitorResponseSchema },
  listImages: { response: z.array(S.ImageSchema) },
  buildImage: { body: S.ImageBuildRequestSchema, response: S.OperationSchema },
  importImage: { body: S.ImageImportRequestSchema, response: S.OperationSchema },
  deleteImage: { params: z.strictObject({ alias: segment('alias') }), query: z.strictObject({ type: S.InstanceTypeSchema.optional() }), response: S.OperationSchema },
  listOperations: { response: z.array(S.OperationSchema) },
  getOperation: { params: z.strictObject({ id: segment('id') }), response: S.OperationSchema },
  waitOperation: { params: z.strictObject({ id: segment('id') }), query: z.strictObject({ timeout: waitSeconds.optional() }), response: S.OperationSchema },
  events: { query: z.strictObject({ type: eventTypeList.optional(), replay: flag.optional() }), frames: { server: S.EventSchema } },
} as const satisfies Record<RouteId, RouteSchema>;

type Schemas = typeof ROUTE_SCHEMAS;
type Infer<T> = T extends z.ZodType ? z.output<T> : undefined;

/** The validated path parameters of a route. */
export type ParamsOf<K extends RouteId> = Schemas[K] extends { params: infer P } ? Infer<P> : Record<string, never>;
/** The validated query of a route. */
export type QueryOf<K extends RouteId> = Schemas[K] extends { query: infer Q } ? Infer<Q> : Record<string, never>;
/** The validated body of a route. */
export type BodyOf<K extends RouteId> = Schemas[K] extends { body: infer B } ? Infer<B> : undefined;
/** What a route answers. */
export type ResponseOf<K extends RouteId> = Schemas[K] extends { response: infer R } ? Infer<R> : undefined;
/** A client control frame. */
export type StreamControlFrame = z.infer<typeof StreamControlFrameSchema>;
/** A server frame that ends a stream session. */
export type StreamServerFrame = z.infer<typeof StreamServerFrameSchema>;
