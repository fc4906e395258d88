// Test helper: a fake hangard on a unix socket: the real route catalogue and framework (src/api/app.ts) with canned handlers and a request log.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { buildApp, type Handlers } from '../../src/api/app.js';
import { eventsSession, streamSession } from '../../src/api/streams.js';
import { appErrorFromBody } from '../../src/client/wire-errors.js';
import { AppError } from '../../src/shared/errors.js';
import { STREAM_SIGNALS } from '../../src/shared/exec-frames.js';
import { ROUTE_SCHEMAS } from '../../src/shared/route-schemas.js';
import { ROUTES, type RouteId } from '../../src/shared/routes.js';
import type { HangarEvent, HostInfo, HostRecord, Instance, Operation } from '../../src/shared/schemas.js';
import type { HostProcess } from '../../src/host/host.js';
import { importXlConfigText } from '../../src/drivers/xen/import.js';
import { importVzConfText } from '../../src/drivers/openvz/import.js';

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
    host: 'local',
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

/** A valid host record for canned answers: "local", or a remote host (up unless over says otherwise). */
export function fakeHost(name: string, over: Partial<HostRecord> = {}): HostRecord {
  const local = name === 'local';
  return {
    name, local,
    url: local ? null : `ssh://root@192.0.2.10:2222`, address: local ? null : '192.0.2.10', port: local ? null : 2222, user: local ? null : 'root',
    identityFile: local ? null : '/root/.ssh/id_ed25519', keyType: local ? null : 'ssh-ed25519',
    fingerprint: local ? null : 'SHA256:AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFake0', addedAt: local ? null : '2024-01-01T00:00:00Z',
    state: 'up', reason: null, since: '2024-01-01T00:00:00Z', instances: 0,
    facts: { hostname: name, os: 'Debian GNU/Linux 12 (bookworm)', kernel: '6.1.0', cpus: 4, memoryBytes: 8 * 1024 ** 3 },
    storage: { driver: local ? 'btrfs' : 'dir', path: '/var/lib/hangar/pool' },
    network: { bridge: 'hgrbr0', subnet: '10.99.0.0/24', gateway: '10.99.0.1', problem: null, mode: 'managed' },
    drivers: [{ name: 'lxc', type: 'container', available: true, version: '5.0.2', reason: null, default: true, features: fakeInstance('x').features, details: {} }],
    ...over,
  };
}

/** The canned hosts: local, dom0 (down, with dom1 on it) and spare (up, empty). */
const HOSTS = (): HostRecord[] => [
  fakeHost('local', { instances: 2 }),
  fakeHost('dom0', { state: 'down', reason: 'Host "dom0" is unreachable (root@192.0.2.10:2222): connect ECONNREFUSED 192.0.2.10:2222', since: '2024-01-02T00:00:00Z', instances: 1 }),
  fakeHost('spare', { url: 'ssh://admin@192.0.2.11', address: '192.0.2.11', port: 22, user: 'admin' }),
];

/** Host info for canned answers. */
function fakeHostInfo(name: string): HostInfo {
  const h = fakeHost(name);
  return {
    hostname: name, kernel: '6.1.0', os: 'Debian GNU/Linux 12 (bookworm)', cpus: 4, memoryBytes: 8 * 1024 ** 3, cgroupLayout: 'v2',
    storage: { driver: h.storage!.driver, path: h.storage!.path, sizeBytes: null, usedBytes: null, state: 'ok', warnings: [] },
    network: { bridge: 'hgrbr0', subnet: '10.99.0.0/24', gateway: '10.99.0.1' }, drivers: h.drivers, cpuVirtFlags: [],
    kvm: { present: false, usable: false, reason: 'fake' }, runsIn: [],
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

const notFound = () => appErrorFromBody({ code: 'NOT_FOUND', message: 'Instance "missing" not found', causes: ['no row in instances', 'lookup by name'] });
const backendFailed = () => appErrorFromBody({ code: 'BACKEND_FAILED', message: 'Failed to exec in "web1"', causes: ['lxc-attach: no such container'] });

/**
 * A fake process: `cat` echoes its stdin after eof, writes "warn\n" to stderr and exits 3;
 * `env` prints what it was asked to run (as JSON) and exits 0.
 */
/** The one running exec the fake daemon lists. */
const FAKE_EXEC = { id: 'e1f00d', command: ['sleep', '99'], tty: false, startedAt: '2026-01-02T03:04:05.000Z', disconnectSignal: 'SIGTERM' as const };

/** Ends the running `wait-signal` command with a signal's number. */
let waiting: ((signal: number) => void) | undefined;

function fakeProcess(req: { command: string[]; env?: Record<string, string>; cwd?: string; disconnectSignal?: string }): HostProcess {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let exited!: (r: { code: number | null; signal: string | null }) => void;
  const exit = new Promise<{ code: number | null; signal: string | null }>((r) => { exited = r; });
  const finish = (code: number) => { stdout.end(); stderr.end(); exited({ code, signal: null }); };
  if (req.command[0] === 'wait-signal') {
    // Runs until signalled (signalExec by id "waiting"), then exits 128 + the signal's number.
    waiting = (n) => finish(128 + n);
  } else if (req.command[0] === 'env') {
    stdout.write(`${JSON.stringify({ command: req.command, ...(req.env ? { env: req.env } : {}), ...(req.cwd ? { cwd: req.cwd } : {}), ...(req.disconnectSignal ? { disconnectSignal: req.disconnectSignal } : {}) })}\n`);
    stdin.resume();
    setImmediate(() => finish(0));
  } else {
    const input: Buffer[] = [];
    stdin.on('data', (d: Buffer) => input.push(d));
    stdin.on('end', () => {
      stdout.write(Buffer.concat(input));
      stderr.write('warn\n');
      finish(3);
    });
  }
  return { pid: Promise.resolve(4243), stdin, stdout, stderr, wait: () => exit, kill: () => finish(137) };
}

/** Starts the fake daemon; its canned answers are what the client and CLI tests expect. */
export async function startFakeDaemon(): Promise<FakeDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-fake-'));
  const socketPath = join(dir, 'hangar.sock');
  const requests: SeenRequest[] = [];
  const ops = new Map<string, Operation>();
  const listeners = new Set<(e: HangarEvent) => void>();
  let subWaiters: Array<() => void> = [];
  let nextOp = 1;

  const startOp = (final: Partial<Operation>): Operation => {
    const id = `op-${nextOp++}`;
    const op = fakeOperation(id);
    ops.set(id, { ...op, ...final, status: final.status ?? 'success' });
    return op;
  };
  const unexpected = (id: RouteId) => async (): Promise<never> => { throw new AppError('NOT_FOUND', `The fake daemon has no answer for ${ROUTES[id].method} ${ROUTES[id].path}`); };
  const instanceOnly = (name: string) => { if (name !== 'web1') throw notFound(); };

  const canned: Partial<Handlers> = {
    serverInfo: async () => ({ apiVersion: '1.0', serverVersion: 'fake', pid: process.pid }),
    listInstances: async ({ query }) => {
      const all = [
        fakeInstance('web1'), fakeInstance('db1', { state: 'stopped', ipv4: null, image: 'debian, "bookworm"' }),
        fakeInstance('dom1', { host: 'dom0', driver: 'xen', type: 'vm', image: '', state: 'unknown', pid: null, ipv4: '10.99.0.7', error: { reason: HOSTS()[1]!.reason!, since: '2024-01-02T00:00:00Z' } }),
      ];
      if (query.host !== undefined && !HOSTS().some((h) => h.name === query.host)) throw new AppError('NOT_FOUND', `Host "${query.host}" not found`);
      return all.filter((i) => query.host === undefined || i.host === query.host);
    },
    hostInfo: async ({ query }) => {
      const h = HOSTS().find((x) => x.name === (query.host ?? 'local'));
      if (!h) throw new AppError('NOT_FOUND', `Host "${query.host}" not found`);
      if (h.state !== 'up') throw new AppError('HOST_UNREACHABLE', h.reason!);
      return fakeHostInfo(h.name);
    },
    listHosts: async () => HOSTS(),
    getHost: async ({ params }) => {
      const h = HOSTS().find((x) => x.name === params.host);
      if (!h) throw new AppError('NOT_FOUND', `Host "${params.host}" not found`);
      return h;
    },
    addHost: async ({ body }) => {
      if (HOSTS().some((h) => h.name === body.name)) throw new AppError('ALREADY_EXISTS', `Host "${body.name}" already exists`);
      return startOp({ result: fakeHost(body.name, { url: body.url, identityFile: body.identityFile ?? '/root/.ssh/id_ed25519', fingerprint: 'SHA256:NewHostKeyNewHostKeyNewHostKeyNewHostKey123' }) });
    },
    removeHost: async ({ params }) => {
      if (params.host === 'dom0') throw new AppError('IN_USE', 'Host "dom0" cannot be removed: 1 instance lives there (dom1); delete them first');
      if (params.host !== 'spare') throw new AppError('NOT_FOUND', `Host "${params.host}" not found`);
      return HOSTS()[2]!;
    },
    trustHost: async ({ params }) => {
      if (params.host !== 'dom0') throw new AppError('NOT_FOUND', `Host "${params.host}" not found`);
      return startOp({ result: fakeHost('dom0', { fingerprint: 'SHA256:ReinstalledReinstalledReinstalledReinstall1', instances: 1 }) });
    },
    translateImport: async ({ body }) => {
      // The fake daemon's one OpenVZ 7 node, vz1, has CT 201.
      if (body.kind === 'openvz7') {
        if (body.host !== 'vz1') throw new AppError('NOT_FOUND', `Host "${body.host}" not found`);
        if (body.ctid !== '201' && body.ctid !== 'web201') throw new AppError('NOT_FOUND', `CT "${body.ctid}" not found on host vz1: no CT there has that CTID, name or UUID (prlctl list -i -j ${body.ctid})`);
        return {
          ctid: '201', uuid: '5f0c3a52-1b7e-4c0d-9a44-000000000201', ctName: 'web201', name: body.name ?? 'web201', host: 'vz1', type: 'container' as const, driver: 'openvz7' as const,
          state: 'running' as const, config: { 'openvz.ctid': '201', 'limits.memory': '2GiB' }, addresses: ['10.123.0.21'],
          translated: [{ key: 'Hardware.memsize', value: '2048Mb', to: ['limits.memory'] }], untranslated: [{ key: 'Hardware.cpu.cpulimit', value: '150Mhz', reason: 'not a percentage of one CPU' }],
        };
      }
      return body.kind === 'openvz'
        ? importVzConfText(body.text, { source: body.source ?? 'CTID.conf', ...(body.name ? { name: body.name } : {}) })
        : importXlConfigText(body.text, { ...(body.source ? { source: body.source } : {}), ...(body.name ? { name: body.name } : {}) });
    },
    importInstance: async ({ body }) => {
      if (body.kind === 'openvz7') throw new AppError('NOT_FOUND', `Host "${body.host}" not found`);
      if (body.kind === 'openvz') {
        const ct = importVzConfText(body.text, { source: body.source ?? 'CTID.conf' });
        throw new AppError('UNSUPPORTED', `Cannot import container ${ct.ctid} ("${ct.name}") on host ${body.host ?? 'local'}: the openvz driver is not available there: it is not enabled (HANGAR_DRIVERS names lxc, qemu)`);
      }
      const t = importXlConfigText(body.text, { ...(body.source ? { source: body.source } : {}), ...(body.name ? { name: body.name } : {}) });
      const host = body.host ?? 'local';
      if (host !== 'dom0') throw new AppError('UNSUPPORTED', `Cannot import domain "${t.name}" on host ${host}: the xen driver is not available on host ${host}: it is not enabled there (HANGAR_DRIVERS names lxc, qemu)`);
      return startOp({ result: fakeInstance(t.name, { host, driver: 'xen', type: 'vm', image: '', state: 'stopped', pid: null, config: t.config }) });
    },
    getInstance: async ({ params }) => {
      if (params.name === 'web1') return fakeInstance('web1', { usage: { cpuTimeNs: 1_500_000_000, memoryBytes: 1048576, processes: 3 } });
      // An answer that breaks the schema, for the client's validation.
      if (params.name === 'bad-shape') return { name: 'bad-shape' } as Instance;
      throw notFound();
    },
    createInstance: async ({ body }) => {
      const id = `op-${nextOp}`;
      // Progress goes out shortly after the 202, like a real daemon working in the background.
      setTimeout(() => { for (const l of listeners) l({ type: 'operation-progress', time: new Date().toISOString(), operation: id, message: 'unpacking rootfs' }); }, 5);
      return startOp({ result: fakeInstance(body.name, { host: body.host ?? 'local' }) });
    },
    changeState: async ({ params }) => {
      instanceOnly(params.name);
      return startOp({ status: 'failure', error: { code: 'BACKEND_FAILED', message: 'Failed to start instance "web1"', causes: ['lxc-start exited with status 1', 'cgroup memory controller missing'] } });
    },
    patchConfig: async ({ params }) => { instanceOnly(params.name); return { live: ['limits.memory'], pending: ['limits.cpu'] }; },
    waitOperation: async ({ params }) => {
      const op = ops.get(params.id);
      if (!op) throw new AppError('NOT_FOUND', 'Operation not found');
      // Finish a little later than the progress event, as a real operation would.
      await new Promise((r) => setTimeout(r, 30));
      return op;
    },
    execRun: async ({ params, body }) => {
      if (params.name === 'missing') throw notFound();
      if (body.command[0] === 'explode') throw backendFailed();
      return { id: body.command[0] === 'wait-signal' ? 'waiting' : 'fake', proc: fakeProcess(body), ...(body.stdin === undefined ? {} : { stdin: Buffer.from(body.stdin, 'base64') }) };
    },
    listExecs: async ({ params }) => { instanceOnly(params.name); return [FAKE_EXEC]; },
    signalExec: async ({ params, body }) => {
      instanceOnly(params.name);
      if (params.id === 'waiting' && waiting) {
        waiting(STREAM_SIGNALS[body.signal]);
        waiting = undefined;
        return { ...FAKE_EXEC, id: 'waiting', command: ['wait-signal'] };
      }
      if (params.id !== FAKE_EXEC.id) throw new AppError('NOT_FOUND', `No running exec "${params.id}" in instance "${params.name}"`);
      return FAKE_EXEC;
    },
    execSession: {
      check: async ({ params }) => { if (params.name === 'missing') throw notFound(); },
      open: (ws) => streamSession(ws, ROUTE_SCHEMAS.execSession.frames.first, async (req) => {
        if (req.command[0] === 'explode') throw backendFailed();
        return { proc: fakeProcess(req) };
      }),
    },
    events: {
      open: (ws, { query }) => {
        eventsSession(ws, {
          recent: () => [],
          subscribe: (fn) => { listeners.add(fn); return () => listeners.delete(fn); },
        }, { types: query.type, replay: query.replay });
        const waiters = subWaiters;
        subWaiters = [];
        for (const w of waiters) w();
      },
    },
  };
  const handlers = Object.fromEntries((Object.keys(ROUTES) as RouteId[]).map((id) => [id, canned[id] ?? (ROUTES[id].kind === 'websocket' ? { open: (ws: { close(): void }) => ws.close() } : unexpected(id))])) as Handlers;

  const app = await buildApp(handlers);
  app.addHook('preValidation', async (req) => {
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase() === 'websocket';
    requests.push({ method: upgrade ? 'WS' : req.method, path: req.url, body: upgrade ? undefined : req.body });
  });
  // Outside the catalogue: a daemon answering an error as plain text, for the client's error mapping.
  app.get('/1.0/broken', async (_req, reply) => reply.code(500).type('text/plain').send('boom'));
  await app.listen({ path: socketPath });

  return {
    socketPath,
    requests,
    emit: (event) => { for (const l of listeners) l(event); },
    async subscribers(n) {
      while (listeners.size < n) await new Promise<void>((resolve) => subWaiters.push(resolve));
    },
    async close() {
      for (const c of app.websocketServer.clients) c.terminate();
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
