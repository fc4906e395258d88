// Renders docs/api.md from the route catalogue and the event enum (golden-tested: the document cannot drift from the code).
import { z } from 'zod';
import type { ErrorCode } from '../shared/errors.js';
import { ErrorCodes } from '../shared/errors.js';
import { ROUTES, type RouteId } from '../shared/routes.js';
import { ROUTE_SCHEMAS, StreamControlFrameSchema, StreamServerFrameSchema, type RouteSchema } from '../shared/route-schemas.js';
import * as S from '../shared/schemas.js';
import { httpStatusFor } from './http-status.js';

/** What the table cannot say about a route: details a user needs. */
const ROUTE_NOTES: Partial<Record<RouteId, string>> = {
  hostInfo: '`host=NAME` a remote host (`HOST_UNREACHABLE` while it is down; `GET /1.0/hosts/{host}` says why); `storage.state` (`ok`, `degraded`, `read-only`, `unmounted`) and `storage.warnings` say what needs attention; per driver, `accelerator` says what VMs get (`default`: `kvm`, `tcg`, or null while the check runs), `kvmUsable` and `reason`',
  hostDetect: '`root` defaults to `/`; `cpuid` overrides the native CPUID probe',
  listInstances: 'an instance in state `error` carries `error: { reason, since }` (e.g. QEMU\'s message after a guest fault); every host\'s instances (`host=` one host\'s): those of a host that is down are `unknown`, with the host\'s reason in `error`, at once',
  createInstance: '`start: true` launches; `driver` picks the backend (default: the first of its type in `HANGAR_DRIVERS`); `host` the host (default `local`); the result is the `Instance`',
  addHost: '`url` is `ssh://USER@ADDRESS[:PORT]`; the key the host presents first is pinned (or must be `fingerprint`); the result is the `Host`',
  trustHost: 'pins the key the host presents now, after connecting with it; until then the old key stays pinned; the result is the `Host`',
  removeHost: 'what the host holds (its state directory, its copy of the network) stays there; the answer is the `Host` as it was',
  importInstance: 'the domain\'s disks are kept where they are (no root volume is made); refused with `UNSUPPORTED` when the kind\'s driver is not available on the host; kind `openvz7` reads the CT on its node before answering (a CT it does not have is `NOT_FOUND` here, no operation is made); the result is the `Instance`',
  translateImport: 'kinds `xen` and `openvz` are pure: they need no Xen or OpenVZ host; bad xl syntax is `INVALID_CONFIG` with `file:line:column`, a bad CTID.conf line with `file:line`; kind `openvz` answers every beancounter pair read; kind `openvz7` reads the CT on its node (`host`), which must be up with its openvz7 driver available',
  getInstance: 'with `usage` and, where the backend reports them, `details` (a VM\'s machine type, accelerator, boot path, firmware, disk ports, guest RAM)',
  copyInstance: 'the result is the new `Instance`',
  moveInstance: 'the result is the moved `Instance`',
  execRun: 'no tty; the whole stdin base64 in `stdin`; the answer is frames `[channel][uint32 BE length][payload]`: 1 stdout, 2 stderr, 3 exit `{"code":n}` (last)',
  signalExec: 'the id comes from `GET .../execs` or the `x-hangar-exec-id` header of the POST exec answer; a container\'s exec gets the signal in its whole process group; when a client goes away, its exec gets `disconnectSignal` (default SIGKILL; any other is followed by SIGKILL after 10 s); a VM\'s exec is signalled by a guest `kill` of its process group run through the agent, `UNSUPPORTED` in a guest without a POSIX kill',
  monitor: 'a QMP command of a running VM, as `virsh qemu-monitor-command`; `UNSUPPORTED` for backends without a monitor; QEMU\'s error is the cause of a `BACKEND_FAILED`',
  importImage: 'a path on the daemon\'s host; `vm: true` imports a qcow2 or raw disk as a VM image (format from `qemu-img info`, never the name), refused with `INVALID_ARCHIVE` before anything is created: other formats, backing or external data files, encryption, a qcow2 that `qemu-img check` calls corrupt, a raw file that is not whole 512-byte sectors with the boot signature 55 AA at offset 510',
  waitOperation: 'answers once the operation is done, or when the timeout (default 60 s) passes with it still running',
  events: 'one text frame per `HangarEvent`; `replay=true` first sends the recent history (the last 512 events, e.g. drift found at start-up)',
};

/** What each event means (the compiler insists on one line per event type). */
const EVENT_NOTES: Record<S.EventType, string> = {
  'instance-created': 'an instance was created',
  'instance-deleted': 'an instance was deleted',
  'instance-starting': 'a start began',
  'instance-started': 'an instance runs',
  'instance-stopping': 'a stop began',
  'instance-stopped': 'an instance stopped',
  'instance-restarted': 'a restart the backend asked for (a VM\'s reboot into a new config) or `boot.autorestart` (`by: autorestart`, with `attempt`) succeeded',
  'instance-restart-failed': 'such a restart failed',
  'instance-frozen': 'an instance was frozen (paused)',
  'instance-unfrozen': 'an instance was thawed',
  'instance-config-changed': 'config keys changed (`data`: what applied live, what waits)',
  'instance-mounted': 'an OpenVZ CT\'s private area was mounted at its root (vzctl mount)',
  'instance-unmounted': 'an OpenVZ CT\'s private area was unmounted (vzctl umount)',
  'instance-moved': 'a container moved to another host (data: from, to, restarted)',
  'instance-drift': 'reconciliation found the state different from the database (`data: { expected, actual }`)',
  'instance-error': 'a VM entered a fault run state: QMP `internal-error`, `io-error`, `guest-panicked` or a held `shutdown` (`data: { reason, runState, since }`)',
  'instance-accel-fallback': 'a VM faulted under KVM before its guest ran: KVM is marked broken on the host and the VM restarts with TCG',
  'instance-snapshot-created': 'a snapshot was taken',
  'instance-snapshot-deleted': 'a snapshot was deleted',
  'instance-snapshot-restored': 'a snapshot was restored',
  'instance-shutdown': 'QMP SHUTDOWN (`data.guest` true when the guest powered itself off)',
  'instance-reset': 'QMP RESET',
  'instance-paused': 'QMP STOP',
  'instance-resumed': 'QMP RESUME',
  'instance-panicked': 'QMP GUEST_PANICKED',
  'instance-balloon-changed': 'QMP BALLOON_CHANGE',
  'image-created': 'an image was built or imported',
  'image-deleted': 'an image was deleted',
  'operation-created': 'an operation began',
  'operation-progress': 'an operation reports progress (`message`)',
  'operation-completed': 'an operation ended (`data: { status }`)',
  'pool-state-changed': 'the storage pool became degraded or read-only, or recovered (`data: { state, warnings }`)',
  'host-added': 'a remote host was added, its host key pinned (`data: { host, keyType, fingerprint }`)',
  'host-removed': 'a remote host was removed (`data: { host }`)',
  'host-trusted': 'a remote host\'s new host key was pinned (`data: { host, keyType, fingerprint, previous }`)',
  'host-unreachable': 'a remote host went down or cannot be reached (`message`: why; `data: { host }`); its instances are listed as `unknown`',
  'host-reachable': 'a remote host is back (`data: { host }`)',
};

/** Names of the shared schemas, so the table can say `CreateInstanceRequest` instead of a JSON schema. */
const NAMES = new Map<z.ZodType, string>(Object.entries({ ...S, StreamServerFrameSchema, StreamControlFrameSchema }).filter(([k, v]) => k.endsWith('Schema') && v instanceof z.ZodType).map(([k, v]) => [v as z.ZodType, k.replace(/Schema$/, '')]));

function typeName(schema: z.ZodType | undefined): string {
  if (!schema) return '';
  const named = NAMES.get(schema);
  if (named) return `\`${named}\``;
  if (schema instanceof z.ZodArray) {
    const inner = NAMES.get(schema.element as z.ZodType);
    if (inner) return `\`${inner}[]\``;
  }
  if (schema instanceof z.ZodString) return 'text';
  return 'JSON';
}

function queryText(schema: z.ZodType | undefined): string {
  if (!schema) return '';
  const doc = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, { enum?: unknown[]; type?: string }> };
  const keys = Object.entries(doc.properties ?? {}).map(([k, p]) => `${k}=${p.enum ? p.enum.join('\\|') : (p.type ?? 'value').toUpperCase()}`);
  return keys.length ? `?${keys.join('&')}` : '';
}

function answerText(id: RouteId): string {
  const r = ROUTES[id];
  const s = ROUTE_SCHEMAS[id] as RouteSchema;
  switch (r.kind) {
    case 'operation': return '202 `Operation`';
    case 'text': return '200 `text/plain`';
    case 'exec-stream': return '200 framed stream';
    case 'websocket': return `101; first frame ${typeName(s.frames?.first) || 'none'}; server frames ${typeName(s.frames?.server) || 'see below'}`;
    default: return `200 ${typeName(s.response)}`;
  }
}

/** The status each error code maps to, for the conventions section. */
function statusTable(): string {
  const by = new Map<number, ErrorCode[]>();
  for (const c of ErrorCodes) by.set(httpStatusFor(c), [...(by.get(httpStatusFor(c)) ?? []), c]);
  return [...by.entries()].sort(([a], [b]) => a - b).map(([status, codes]) => `${codes.join(' / ')} → ${status}`).join('; ');
}

/** The whole of docs/api.md. */
export function renderApiDocs(): string {
  const rows = (Object.keys(ROUTES) as RouteId[]).map((id) => {
    const r = ROUTES[id];
    const s = ROUTE_SCHEMAS[id] as RouteSchema;
    const method = r.kind === 'websocket' ? 'GET (websocket)' : r.method;
    const n = ROUTE_NOTES[id];
    const note = n ? ` ${n[0]!.toUpperCase()}${n.slice(1)}.` : '';
    return `| ${method} | ${r.path}${queryText(s.query)} | ${typeName(s.body)} | ${answerText(id)} | ${r.errors.join(', ')} | ${r.summary}.${note} |`;
  });
  return [
    '# Hangar REST API (v1.0)',
    '',
    '<!-- Generated from src/shared/routes.ts and src/shared/route-schemas.ts by src/api/api-docs.ts: run `UPDATE_GOLDEN=1 npx vitest run test/golden/api` to refresh. -->',
    '',
    'Transport: HTTP/1.1 over the unix socket (`HANGAR_SOCKET`, default `/run/hangar/hangar.sock`). JSON bodies. Every route is defined once, in the catalogue `src/shared/routes.ts` (method, path, kind, errors) with its zod schemas in `src/shared/route-schemas.ts` (params, query, body, answer, websocket frames): the server, the typed client, the OpenAPI document (`GET /1.0/openapi.json`) and this page are made from it.',
    '',
    '## Conventions',
    '- Success: `200` with the resource JSON directly (no envelope).',
    '- Long actions: `202 Accepted`, body = `Operation`, header `Location: /1.0/operations/{id}`; progress and completion also arrive on the events websocket.',
    '- Errors: non-2xx with body `{ "error": { "code": ErrorCode, "message": string, "causes": string[], "details"?: object } }`.',
    `  Status mapping: ${statusTable()}.`,
    '- Bad input never reaches a handler: an unknown body key or query parameter, a wrong type, invalid JSON, a body over 1 MiB, a NUL byte or bad %-escape in the path all answer `400 INVALID_ARGUMENT` naming the problem. A known path with the wrong method answers `405 METHOD_NOT_ALLOWED` with an `Allow` header; an unknown path `404 NOT_FOUND`.',
    '- An operation that fails reports `status: "failure"` and `error` (same shape as above).',
    '- Every route may also answer `INVALID_ARGUMENT` and `INTERNAL`; the errors column lists the others.',
    '',
    '## Routes',
    '| method | path | body | answer | errors | what |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    '## Stream websockets (exec, console)',
    '- The first text frame is the request (`ExecRequest`, or the console\'s `ConsoleSize`); a missing instance is refused before the upgrade (HTTP 404).',
    '- Binary frames carry data; the first byte is the channel: `0` stdin (client → server), `1` stdout, `2` stderr (server → client), `255` a control frame (JSON payload); the rest is the payload.',
    '- Control frames (text, or binary on channel 255), client → server: `{ "type": "eof" }` (stdin closed), `{ "type": "resize", "cols": n, "rows": n }` (1-10000), `{ "type": "signal", "signal": "SIGHUP|SIGINT|SIGQUIT|SIGKILL|SIGTERM" }`; frames that do not match are ignored.',
    '- Server → client text frames: `{ "type": "exit", "code": n }` (then the server closes), `{ "type": "error", "error": { code, message, causes } }` (then the server closes).',
    '- With a tty (exec `tty: true`, and the console) stdout carries the terminal and there is no stderr.',
    '- `console?type=vga` relays the graphical console instead: raw RFB bytes in binary frames, as noVNC expects; errors arrive as an error text frame.',
    '',
    '## Events',
    '`HangarEvent` `{ type, time, instance?, operation?, message?, data? }`; `type` is one of:',
    '',
    ...Object.entries(EVENT_NOTES).map(([t, n]) => `- \`${t}\`: ${n}.`),
    '',
  ].join('\n');
}
