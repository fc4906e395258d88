// The API's route catalogue: method, path, kind, summary and error codes of every route, zod-free so the CLI loads it cheaply.
import type { ErrorCode } from './errors.js';

/** How a route answers: JSON, a 202 operation, plain text, the framed exec stream, or a websocket. */
export type RouteKind = 'json' | 'operation' | 'text' | 'exec-stream' | 'websocket';

/** What the catalogue says about one route; its zod schemas live in route-schemas.ts under the same id. */
export interface RouteMeta {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path with {param} placeholders. */
  path: string;
  kind: RouteKind;
  summary: string;
  /** Error codes this route answers beyond the ones every route can (INVALID_ARGUMENT for bad input, INTERNAL). */
  errors: readonly ErrorCode[];
}

const INSTANCE_STATE: readonly ErrorCode[] = ['NOT_FOUND', 'INVALID_STATE', 'BUSY'];

/** Every route of the API, by id; the server, the OpenAPI document, the client and the test fakes all read this. */
export const ROUTES = {
  serverInfo: { method: 'GET', path: '/1.0', kind: 'json', summary: 'Server information', errors: [] },
  openapi: { method: 'GET', path: '/1.0/openapi.json', kind: 'json', summary: 'This API as an OpenAPI 3.1 document', errors: [] },
  hostInfo: { method: 'GET', path: '/1.0/host', kind: 'json', summary: 'Host facts, drivers, storage and network (host= a remote host; default the local one)', errors: ['NOT_FOUND', 'HOST_FAILED', 'HOST_UNREACHABLE'] },
  hostDetect: { method: 'GET', path: '/1.0/host/detect', kind: 'json', summary: 'Virtualization layers this host (or a root tree) runs in', errors: ['NOT_FOUND', 'HOST_FAILED'] },
  listHosts: { method: 'GET', path: '/1.0/hosts', kind: 'json', summary: 'List hosts: the local one and every remote one, with its state (why not up) and pinned key', errors: [] },
  addHost: {
    method: 'POST', path: '/1.0/hosts', kind: 'operation', summary: 'Add a remote host over SSH: its host key is pinned on first contact, then its drivers are opened there',
    errors: ['INVALID_NAME', 'NOT_FOUND', 'ALREADY_EXISTS', 'CONFLICT', 'HOST_UNREACHABLE', 'HOST_FAILED'],
  },
  getHost: { method: 'GET', path: '/1.0/hosts/{host}', kind: 'json', summary: 'One host: state, pinned key, facts, storage, network and drivers', errors: ['NOT_FOUND'] },
  removeHost: { method: 'DELETE', path: '/1.0/hosts/{host}', kind: 'json', summary: 'Forget a remote host (refused while instances live there)', errors: ['NOT_FOUND', 'IN_USE'] },
  trustHost: {
    method: 'POST', path: '/1.0/hosts/{host}/trust', kind: 'operation', summary: 'Pin the host key a remote host presents now (after a reinstall), then reconnect',
    errors: ['NOT_FOUND', 'CONFLICT', 'HOST_UNREACHABLE', 'HOST_FAILED'],
  },
  listInstances: { method: 'GET', path: '/1.0/instances', kind: 'json', summary: 'List instances (host= only those of one host)', errors: ['NOT_FOUND'] },
  createInstance: {
    method: 'POST', path: '/1.0/instances', kind: 'operation', summary: 'Create (and with start=true, launch) an instance',
    errors: ['INVALID_NAME', 'INVALID_CONFIG', 'INVALID_SIZE', 'INVALID_ADDRESS', 'NOT_FOUND', 'ALREADY_EXISTS', 'UNSUPPORTED', 'INSUFFICIENT_RESOURCES', 'HOST_UNREACHABLE'],
  },
  importInstance: {
    method: 'POST', path: '/1.0/instances/import', kind: 'operation', summary: 'Adopt an existing domain: translate its config (an xl.cfg, an OpenVZ CTID.conf, a CT read on an OpenVZ 7 node) and create the instance on a host',
    errors: ['INVALID_CONFIG', 'INVALID_NAME', 'INVALID_ADDRESS', 'NOT_FOUND', 'ALREADY_EXISTS', 'CONFLICT', 'UNSUPPORTED', 'HOST_UNREACHABLE', 'BACKEND_FAILED', 'TIMEOUT'],
  },
  translateImport: {
    method: 'POST', path: '/1.0/imports/translate', kind: 'json', summary: 'Translate a foreign config (an xl.cfg, an OpenVZ CTID.conf, a CT read on an OpenVZ 7 node) into Hangar terms without creating anything',
    errors: ['INVALID_CONFIG', 'INVALID_NAME', 'NOT_FOUND', 'UNSUPPORTED', 'HOST_UNREACHABLE', 'BACKEND_FAILED', 'TIMEOUT'],
  },
  getInstance: { method: 'GET', path: '/1.0/instances/{name}', kind: 'json', summary: 'One instance with usage', errors: ['NOT_FOUND'] },
  deleteInstance: { method: 'DELETE', path: '/1.0/instances/{name}', kind: 'operation', summary: 'Delete an instance (force=true stops it first)', errors: INSTANCE_STATE },
  changeState: { method: 'PUT', path: '/1.0/instances/{name}/state', kind: 'operation', summary: 'Start, stop, restart, freeze or unfreeze', errors: INSTANCE_STATE },
  patchConfig: {
    method: 'PATCH', path: '/1.0/instances/{name}/config', kind: 'json', summary: 'Change config: which keys applied live, which wait for a restart',
    errors: ['NOT_FOUND', 'INVALID_CONFIG', 'INVALID_SIZE', 'INSUFFICIENT_RESOURCES', 'BUSY'],
  },
  copyInstance: {
    method: 'POST', path: '/1.0/instances/{name}/copy', kind: 'operation', summary: 'Copy an instance',
    errors: ['NOT_FOUND', 'INVALID_NAME', 'INVALID_ADDRESS', 'ALREADY_EXISTS', 'INVALID_STATE', 'BUSY'],
  },
  moveInstance: {
    method: 'POST', path: '/1.0/instances/{name}/move', kind: 'operation', summary: 'Move a container to another host (offline: stopped, its volume copied, started there if it ran)',
    errors: ['NOT_FOUND', 'INVALID_ARGUMENT', 'INVALID_STATE', 'UNSUPPORTED', 'INVALID_CONFIG', 'HOST_UNREACHABLE', 'HOST_FAILED', 'BUSY'],
  },
  listSnapshots: { method: 'GET', path: '/1.0/instances/{name}/snapshots', kind: 'json', summary: 'List snapshots', errors: ['NOT_FOUND'] },
  createSnapshot: {
    method: 'POST', path: '/1.0/instances/{name}/snapshots', kind: 'operation', summary: 'Create a snapshot',
    errors: ['NOT_FOUND', 'INVALID_NAME', 'ALREADY_EXISTS', 'UNSUPPORTED', 'INVALID_STATE', 'BUSY'],
  },
  restoreSnapshot: { method: 'POST', path: '/1.0/instances/{name}/snapshots/{snap}/restore', kind: 'operation', summary: 'Restore a snapshot', errors: INSTANCE_STATE },
  deleteSnapshot: { method: 'DELETE', path: '/1.0/instances/{name}/snapshots/{snap}', kind: 'operation', summary: 'Delete a snapshot', errors: INSTANCE_STATE },
  execRun: {
    method: 'POST', path: '/1.0/instances/{name}/exec', kind: 'exec-stream',
    summary: 'Run a command without a terminal; its output comes back as a framed stream (1 stdout, 2 stderr, 3 exit)', errors: ['NOT_FOUND', 'INVALID_STATE'],
  },
  listExecs: { method: 'GET', path: '/1.0/instances/{name}/execs', kind: 'json', summary: 'Commands running in an instance through exec (POST or websocket), with their ids', errors: ['NOT_FOUND'] },
  signalExec: {
    method: 'POST', path: '/1.0/instances/{name}/execs/{id}/signal', kind: 'json', summary: 'Send a signal to a running exec (its process group in a container)', errors: ['NOT_FOUND', 'INVALID_ARGUMENT', 'UNSUPPORTED'],
  },
  execSession: {
    method: 'GET', path: '/1.0/instances/{name}/exec', kind: 'websocket',
    summary: 'Websocket: run a command, optionally on a terminal (first frame: the request; then channel frames and control frames)', errors: ['NOT_FOUND', 'INVALID_STATE'],
  },
  console: {
    method: 'GET', path: '/1.0/instances/{name}/console', kind: 'websocket',
    summary: 'Websocket: attach to the text console (first frame: the terminal size), or with type=vga relay the graphical console as RFB', errors: ['NOT_FOUND', 'INVALID_STATE', 'UNSUPPORTED'],
  },
  beancounters: {
    method: 'GET', path: '/1.0/instances/{name}/beancounters', kind: 'json', summary: 'Beancounters of a container (held, maxheld, barrier, limit, failcnt) from its cgroups', errors: ['NOT_FOUND', 'INVALID_STATE', 'UNSUPPORTED'],
  },
  consoleLog: { method: 'GET', path: '/1.0/instances/{name}/console/log', kind: 'text', summary: 'Persistent console log (text/plain)', errors: ['NOT_FOUND', 'UNSUPPORTED'] },
  monitor: {
    method: 'POST', path: '/1.0/instances/{name}/monitor', kind: 'json', summary: 'Run one command on the backend monitor (QMP for VMs) and return its result',
    errors: ['NOT_FOUND', 'INVALID_STATE', 'UNSUPPORTED', 'BACKEND_FAILED'],
  },
  listImages: { method: 'GET', path: '/1.0/images', kind: 'json', summary: 'List images', errors: [] },
  buildImage: { method: 'POST', path: '/1.0/images', kind: 'operation', summary: 'Build a built-in image', errors: ['INVALID_NAME', 'ALREADY_EXISTS', 'UNSUPPORTED'] },
  importImage: {
    method: 'POST', path: '/1.0/images/import', kind: 'operation', summary: 'Import a rootfs tarball, or with vm: true a qcow2/raw disk',
    errors: ['INVALID_NAME', 'INVALID_ARCHIVE', 'NOT_FOUND', 'ALREADY_EXISTS'],
  },
  deleteImage: { method: 'DELETE', path: '/1.0/images/{alias}', kind: 'operation', summary: 'Delete an image (type=vm for the VM variant)', errors: ['NOT_FOUND', 'IN_USE'] },
  listOperations: { method: 'GET', path: '/1.0/operations', kind: 'json', summary: 'List operations', errors: [] },
  getOperation: { method: 'GET', path: '/1.0/operations/{id}', kind: 'json', summary: 'One operation', errors: ['NOT_FOUND'] },
  waitOperation: { method: 'GET', path: '/1.0/operations/{id}/wait', kind: 'json', summary: 'Wait (up to timeout seconds) for an operation to finish', errors: ['NOT_FOUND'] },
  events: { method: 'GET', path: '/1.0/events', kind: 'websocket', summary: 'Websocket: the event stream (type= filters, replay=true sends recent history first)', errors: [] },
} as const satisfies Record<string, RouteMeta>;

/** A route id. */
export type RouteId = keyof typeof ROUTES;

/** Names of a path's {placeholders}. */
type PathParams<P extends string> = P extends `${string}{${infer K}}${infer Rest}` ? K | PathParams<Rest> : never;

/** The path parameters a route takes, as strings. */
export type RouteParams<K extends RouteId> = { [P in PathParams<(typeof ROUTES)[K]['path']>]: string };

/** Builds a request path: fills (and %-encodes) the placeholders and appends the query (undefined values left out). */
export function routePath<K extends RouteId>(id: K, params: RouteParams<K>, query?: Record<string, string | number | boolean | undefined>): string {
  const values = params as Record<string, string>;
  const path = ROUTES[id].path.replace(/\{(\w+)\}/g, (_m, k: string) => encodeURIComponent(values[k] ?? ''));
  if (!query) return path;
  const q = Object.entries(query).filter(([, v]) => v !== undefined).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  return q.length ? `${path}?${q.join('&')}` : path;
}
