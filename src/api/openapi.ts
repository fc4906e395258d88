// Builds the OpenAPI 3.1 document from the route catalogue: paths, parameters, bodies, answers, error codes and websocket frames.
import { z } from 'zod';
import type { ErrorCode } from '../shared/errors.js';
import { ROUTES, type RouteId } from '../shared/routes.js';
import { ROUTE_SCHEMAS, type RouteSchema } from '../shared/route-schemas.js';
import { ErrorResponseSchema } from '../shared/schemas.js';
import { httpStatusFor } from './http-status.js';

const json = (schema: z.ZodType, io: 'input' | 'output') => z.toJSONSchema(schema, { unrepresentable: 'any', io });

/** Query parameters of a strict object schema, one entry per key. */
function queryParameters(schema: z.ZodType): unknown[] {
  const doc = json(schema, 'input') as { properties?: Record<string, unknown>; required?: string[] };
  return Object.entries(doc.properties ?? {}).map(([name, s]) => ({ name, in: 'query', required: doc.required?.includes(name) ?? false, schema: s }));
}

/** The OpenAPI document. */
export function buildOpenApi(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const errorSchema = json(ErrorResponseSchema, 'output');
  for (const id of Object.keys(ROUTES) as RouteId[]) {
    const r = ROUTES[id];
    const s = ROUTE_SCHEMAS[id] as RouteSchema;
    const ws = r.kind === 'websocket';
    const parameters = [
      ...[...r.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } })),
      ...(s.query ? queryParameters(s.query) : []),
    ];
    const ok = ws ? 101 : r.kind === 'operation' ? 202 : 200;
    const content = r.kind === 'text' ? { 'text/plain': { schema: { type: 'string' } } }
      : r.kind === 'exec-stream' ? { 'application/vnd.hangar.exec-stream': { schema: { type: 'string', format: 'binary' } } }
        : s.response && !ws ? { 'application/json': { schema: json(s.response, 'output') } } : undefined;
    // Each error code this route answers, grouped by the HTTP status it maps to.
    const codes: ErrorCode[] = ['INVALID_ARGUMENT', ...r.errors, 'INTERNAL'];
    const byStatus = new Map<number, ErrorCode[]>();
    for (const c of codes) byStatus.set(httpStatusFor(c), [...(byStatus.get(httpStatusFor(c)) ?? []), c]);
    const responses: Record<string, unknown> = {
      [String(ok)]: { description: ws ? 'Switching protocols' : r.kind === 'operation' ? 'Accepted: the operation (its URL in Location)' : 'OK', ...(content ? { content } : {}) },
    };
    for (const [status, cs] of byStatus) {
      responses[String(status)] = { description: `Error: ${[...new Set(cs)].join(', ')}`, content: { 'application/json': { schema: errorSchema } } };
    }
    const op: Record<string, unknown> = {
      operationId: id,
      summary: r.summary,
      ...(parameters.length ? { parameters } : {}),
      responses,
    };
    if (s.body) op.requestBody = { required: true, content: { 'application/json': { schema: json(s.body, 'input') } } };
    if (s.frames) {
      op['x-websocket-frames'] = {
        ...(s.frames.first ? { first: json(s.frames.first, 'input') } : {}),
        ...(s.frames.client ? { client: json(s.frames.client, 'input') } : {}),
        server: json(s.frames.server, 'output'),
      };
    }
    const path = r.path;
    paths[path] = { ...(paths[path] ?? {}), [r.method.toLowerCase()]: op };
  }
  return { openapi: '3.1.0', info: { title: 'Hangar API', version }, paths };
}
