// The HTTP + websocket API: one thin handler per catalogue route over the core services; buildServer() never listens itself.
import type { FastifyInstance } from 'fastify';
import type { HostInfo, Operation, VirtFact } from '../shared/schemas.js';
import { ROUTE_SCHEMAS } from '../shared/route-schemas.js';
import type { InstanceService } from '../core/instances/service.js';
import type { HostService } from '../core/hosts/service.js';
import type { ImportService } from '../core/imports/service.js';
import type { ImageService } from '../core/images/service.js';
import type { OperationManager } from '../core/operations.js';
import type { EventBus } from '../core/events.js';
import { buildApp, type AppOptions, type Handlers } from './app.js';
import { buildOpenApi } from './openapi.js';
import { eventsSession, relaySession, streamSession } from './streams.js';

/** What the API needs from the daemon. */
export interface ApiDeps {
  version: string;
  instances: InstanceService;
  images: ImageService;
  hosts: HostService;
  imports: ImportService;
  ops: OperationManager;
  events: EventBus;
  /** Facts, drivers, storage and network of a host (default the local one). */
  hostInfo(host?: string): Promise<HostInfo>;
  detect(root: string, cpuid: string | null | undefined): Promise<VirtFact[]>;
}

const VERBS = { start: 'Starting', stop: 'Stopping', restart: 'Restarting', freeze: 'Freezing', unfreeze: 'Unfreezing', mount: 'Mounting', umount: 'Unmounting' } as const;

/** The handlers of every route, over the daemon's services. */
export function apiHandlers(deps: ApiDeps): Handlers {
  const { instances, images, hosts, imports, ops } = deps;
  const op = (description: string, resources: string[], fn: (progress: (m: string) => void) => Promise<unknown>): Operation =>
    ops.start(description, resources, (ctx) => fn((m) => ctx.progress(m)));
  const res = (name: string) => `/1.0/instances/${name}`;
  let openapi: Record<string, unknown> | undefined;

  return {
    serverInfo: async () => ({ apiVersion: '1.0', serverVersion: deps.version, pid: process.pid }),
    openapi: async () => (openapi ??= buildOpenApi(deps.version)),
    hostInfo: ({ query }) => deps.hostInfo(query.host),
    hostDetect: ({ query }) => deps.detect(query.root ?? '/', query.cpuid),
    listHosts: () => hosts.list(),
    addHost: async ({ body }) => {
      const plan = await hosts.validateAdd(body);
      return op(`Adding host "${plan.name}"`, [`/1.0/hosts/${plan.name}`], (p) => hosts.add(plan, p));
    },
    getHost: ({ params }) => hosts.info(params.host),
    removeHost: ({ params }) => hosts.remove(params.host),
    trustHost: async ({ params, body }) => {
      const plan = hosts.validateTrust(params.host, body);
      return op(`Trusting the host key of host "${plan.name}"`, [`/1.0/hosts/${plan.name}`], (p) => hosts.trust(plan, p));
    },
    listInstances: ({ query }) => instances.list(query.host),
    importInstance: async ({ body }) => {
      // An OpenVZ 7 CT is read on its node first: a CT that is not there is this answer's 404, not a failed operation.
      const plan = await imports.validate(body);
      return op(`Importing instance "${plan.adopt.name}" on host ${plan.adopt.host}`, [res(plan.adopt.name)], (p) => imports.run(plan, p));
    },
    translateImport: async ({ body }) => imports.translate(body),
    createInstance: async ({ body }) => {
      const plan = instances.validateCreate(body);
      return op(`${plan.start ? 'Launching' : 'Creating'} instance "${plan.name}"`, [res(plan.name)], (p) => instances.create(plan, p));
    },
    getInstance: ({ params }) => instances.get(params.name),
    deleteInstance: async ({ params, query }) => {
      await instances.get(params.name);
      return op(`Deleting instance "${params.name}"`, [res(params.name)], () => instances.delete(params.name, query.force === true));
    },
    changeState: async ({ params: { name }, body }) => {
      await instances.get(name);
      const opts = { ...(body.force !== undefined ? { force: body.force } : {}), ...(body.timeout !== undefined ? { timeout: body.timeout } : {}), ...(body.stateful ? { stateful: true } : {}) };
      const run = {
        start: () => instances.start(name),
        stop: () => instances.stop(name, opts),
        restart: () => instances.restart(name, opts),
        freeze: () => instances.freeze(name),
        unfreeze: () => instances.unfreeze(name),
        mount: () => instances.mount(name),
        umount: () => instances.umount(name),
      }[body.action];
      return op(`${VERBS[body.action]} instance "${name}"`, [res(name)], run);
    },
    beancounters: ({ params }) => instances.beancounters(params.name),
    patchConfig: ({ params, body }) => instances.patchConfig(params.name, body.set ?? {}, body.unset ?? []),
    copyInstance: async ({ params, body }) => {
      await instances.get(params.name);
      return op(`Copying instance "${params.name}" to "${body.name}"`, [res(params.name), res(body.name)], () => instances.copy(params.name, body.name, body.ipv4));
    },
    moveInstance: async ({ params, body }) => {
      instances.checkMove(params.name, body.host);
      return op(`Moving instance "${params.name}" to host ${body.host}`, [res(params.name)], (progress) => instances.move(params.name, body.host, progress));
    },
    listSnapshots: async ({ params }) => instances.listSnapshots(params.name),
    createSnapshot: async ({ params, body }) => {
      instances.listSnapshots(params.name);
      return op(`Snapshotting instance "${params.name}" as "${body.name}"`, [res(params.name)], () => instances.createSnapshot(params.name, body.name, { stateful: body.stateful === true }));
    },
    restoreSnapshot: async ({ params }) => {
      instances.listSnapshots(params.name);
      return op(`Restoring snapshot "${params.snap}" of instance "${params.name}"`, [res(params.name)], () => instances.restoreSnapshot(params.name, params.snap));
    },
    deleteSnapshot: async ({ params }) => {
      instances.listSnapshots(params.name);
      return op(`Deleting snapshot "${params.snap}" of instance "${params.name}"`, [res(params.name)], () => instances.deleteSnapshot(params.name, params.snap));
    },
    execRun: async ({ params, body }) => {
      const run = await instances.exec(params.name, {
        command: body.command, ...(body.env ? { env: body.env } : {}), ...(body.cwd ? { cwd: body.cwd } : {}), disconnectSignal: body.disconnectSignal,
      });
      return { ...run, ...(body.stdin === undefined ? {} : { stdin: Buffer.from(body.stdin, 'base64') }) };
    },
    listExecs: async ({ params }) => instances.listExecs(params.name),
    signalExec: async ({ params, body }) => instances.signalExec(params.name, params.id, body.signal),
    execSession: {
      check: async ({ params }) => { await instances.get(params.name); },
      open: (ws, { params }) => streamSession(ws, ROUTE_SCHEMAS.execSession.frames.first, (req) => instances.exec(params.name, {
        command: req.command, ...(req.env ? { env: req.env } : {}), ...(req.cwd ? { cwd: req.cwd } : {}),
        ...(req.tty ? { tty: { cols: req.cols ?? 80, rows: req.rows ?? 24 } } : {}), disconnectSignal: req.disconnectSignal,
      })),
    },
    console: {
      check: async ({ params }) => { await instances.get(params.name); },
      open: (ws, { params, query }) => (query.type === 'vga'
        ? relaySession(ws, () => instances.openGraphicalConsole(params.name))
        : streamSession(ws, ROUTE_SCHEMAS.console.frames.first, async (size) => ({ proc: await instances.attachConsole(params.name, { cols: size.cols ?? 80, rows: size.rows ?? 24 }) }))),
    },
    consoleLog: ({ params }) => instances.consoleLog(params.name),
    monitor: async ({ params, body }) => ({ return: (await instances.monitor(params.name, body.command, body.arguments)) ?? null }),
    listImages: async () => images.list(),
    buildImage: async ({ body }) => {
      const { alias } = images.validateBuild(body.kind, body);
      return op(`Building image "${alias}"`, [`/1.0/images/${alias}`], (p) => images.build(body.kind, body, p));
    },
    importImage: async ({ body }) => {
      const vm = body.vm === true;
      await images.validateImport(body.path, body.alias, vm);
      return op(`Importing ${vm ? 'VM ' : ''}image "${body.alias}"`, [`/1.0/images/${body.alias}`], (p) => images.import(body.path, body.alias, p, { vm }));
    },
    deleteImage: async ({ params, query }) => {
      const type = query.type ?? 'container';
      images.get(params.alias, type);
      return op(`Deleting image "${params.alias}"`, [`/1.0/images/${params.alias}`], () => images.delete(params.alias, type));
    },
    listOperations: async () => ops.list(),
    getOperation: async ({ params }) => ops.get(params.id),
    waitOperation: ({ params, query }) => ops.wait(params.id, (query.timeout ?? 60) * 1000),
    events: { open: (ws, { query }) => eventsSession(ws, deps.events, { types: query.type, replay: query.replay }) },
  };
}

/** Builds the API server (not listening): the Fastify app over the daemon's services. */
export function buildServer(deps: ApiDeps, opts: AppOptions = {}): Promise<FastifyInstance> {
  return buildApp(apiHandlers(deps), opts);
}
