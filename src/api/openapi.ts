// Builds the OpenAPI 3.1 document from the zod wire schemas.
import { z } from 'zod';
import * as S from '../shared/schemas.js';

type Route = { method: string; path: string; summary: string; body?: z.ZodType; response?: z.ZodType; status?: number; websocket?: boolean };

/** Every route of the API, as documented in docs/api.md. */
export const ROUTES: Route[] = [
  { method: 'get', path: '/1.0', summary: 'Server information' },
  { method: 'get', path: '/1.0/openapi.json', summary: 'This document' },
  { method: 'get', path: '/1.0/host', summary: 'Host information', response: S.HostInfoSchema },
  { method: 'get', path: '/1.0/host/detect', summary: 'Virtualization layers this host (or a root tree) runs in', response: z.array(S.VirtFactSchema) },
  { method: 'get', path: '/1.0/instances', summary: 'List instances', response: z.array(S.InstanceSchema) },
  { method: 'post', path: '/1.0/instances', summary: 'Create (and with start=true, launch) an instance', body: S.CreateInstanceRequestSchema, response: S.OperationSchema, status: 202 },
  { method: 'get', path: '/1.0/instances/{name}', summary: 'One instance with usage', response: S.InstanceSchema },
  { method: 'delete', path: '/1.0/instances/{name}', summary: 'Delete an instance (force=true stops it first)', response: S.OperationSchema, status: 202 },
  { method: 'put', path: '/1.0/instances/{name}/state', summary: 'Start, stop, restart, freeze or unfreeze', body: S.StateChangeRequestSchema, response: S.OperationSchema, status: 202 },
  { method: 'patch', path: '/1.0/instances/{name}/config', summary: 'Change config', body: S.ConfigPatchRequestSchema, response: S.ConfigChangeResultSchema },
  { method: 'post', path: '/1.0/instances/{name}/copy', summary: 'Copy an instance', body: S.CopyRequestSchema, response: S.OperationSchema, status: 202 },
  { method: 'get', path: '/1.0/instances/{name}/snapshots', summary: 'List snapshots', response: z.array(S.SnapshotSchema) },
  { method: 'post', path: '/1.0/instances/{name}/snapshots', summary: 'Create a snapshot', body: S.SnapshotRequestSchema, response: S.OperationSchema, status: 202 },
  { method: 'post', path: '/1.0/instances/{name}/snapshots/{snap}/restore', summary: 'Restore a snapshot', response: S.OperationSchema, status: 202 },
  { method: 'delete', path: '/1.0/instances/{name}/snapshots/{snap}', summary: 'Delete a snapshot', response: S.OperationSchema, status: 202 },
  { method: 'post', path: '/1.0/instances/{name}/monitor', summary: 'Run one command on the backend monitor (QMP for VMs) and return its result', body: S.MonitorRequestSchema, response: S.MonitorResponseSchema },
  { method: 'post', path: '/1.0/instances/{name}/exec', summary: 'Run a command without a terminal; output as a framed stream (1 stdout, 2 stderr, 3 exit)', body: S.ExecRunRequestSchema },
  { method: 'get', path: '/1.0/instances/{name}/exec', summary: 'Websocket: run a command (first frame ExecRequest)', body: S.ExecRequestSchema, websocket: true },
  { method: 'get', path: '/1.0/instances/{name}/console', summary: 'Websocket: attach to the console', websocket: true },
  { method: 'get', path: '/1.0/instances/{name}/console/log', summary: 'Persistent console log (text/plain)' },
  { method: 'get', path: '/1.0/images', summary: 'List images', response: z.array(S.ImageSchema) },
  { method: 'post', path: '/1.0/images', summary: 'Build a built-in image', body: S.ImageBuildRequestSchema, response: S.OperationSchema, status: 202 },
  { method: 'post', path: '/1.0/images/import', summary: 'Import a rootfs tarball, or with vm: true a qcow2/raw disk', body: S.ImageImportRequestSchema, response: S.OperationSchema, status: 202 },
  { method: 'delete', path: '/1.0/images/{alias}', summary: 'Delete an image', response: S.OperationSchema, status: 202 },
  { method: 'get', path: '/1.0/operations', summary: 'List operations', response: z.array(S.OperationSchema) },
  { method: 'get', path: '/1.0/operations/{id}', summary: 'One operation', response: S.OperationSchema },
  { method: 'get', path: '/1.0/operations/{id}/wait', summary: 'Wait for an operation', response: S.OperationSchema },
  { method: 'get', path: '/1.0/events', summary: 'Websocket: event stream', response: S.EventSchema, websocket: true },
];

/** The OpenAPI document. */
export function buildOpenApi(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const error = { description: 'Error', content: { 'application/json': { schema: z.toJSONSchema(S.ErrorResponseSchema, { unrepresentable: 'any' }) } } };
  for (const r of ROUTES) {
    const params = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const op: Record<string, unknown> = {
      summary: r.summary,
      ...(params.length ? { parameters: params } : {}),
      responses: {
        [String(r.websocket ? 101 : r.status ?? 200)]: {
          description: r.websocket ? 'Switching protocols' : 'OK',
          ...(r.response ? { content: { 'application/json': { schema: z.toJSONSchema(r.response, { unrepresentable: 'any' }) } } } : {}),
        },
        default: error,
      },
    };
    if (r.body && !r.websocket) op.requestBody = { required: true, content: { 'application/json': { schema: z.toJSONSchema(r.body, { unrepresentable: 'any' }) } } };
    if (r.websocket && r.body) op['x-first-frame'] = z.toJSONSchema(r.body, { unrepresentable: 'any' });
    paths[r.path] = { ...(paths[r.path] ?? {}), [r.method]: op };
  }
  return { openapi: '3.1.0', info: { title: 'Hangar API', version }, paths };
}
