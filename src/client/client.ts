// Typed client of the Hangar REST API over the daemon's unix socket (see docs/api.md).
import { UnixHttpPool, type UnixResponse } from './unix-http.js';
import { AppError } from '../shared/errors.js';
import { ExecFrame } from '../shared/exec-frames.js';
import { ROUTES, routePath, type RouteId, type RouteParams } from '../shared/routes.js';
import type { ResponseOf } from '../shared/route-schemas.js';
import type {
  AddHostRequest,
  ConfigChangeResult,
  ConfigPatchRequest,
  CopyRequest,
  MoveRequest,
  CreateInstanceRequest,
  ExecRequest,
  ExecRunRequest,
  HangarEvent,
  HostInfo,
  HostRecord,
  Image,
  ImageBuildRequest,
  ImageImportRequest,
  ImportInstanceRequest,
  ImportTranslateRequest,
  Instance,
  MonitorRequest,
  MonitorResponse,
  Operation,
  ServerInfo,
  Snapshot,
  StateChangeRequest,
  TrustHostRequest,
  VirtFact,
  ImportTranslation,
  Beancounter,
  ExecInfo,
  ExecSignal,
} from '../shared/schemas.js';
import { noExitError, runStreamSession, subscribeEvents, type EventStream, type EventsOptions, type StreamIo } from './streams.js';
import { appErrorFromBody, connectionError, DEFAULT_SOCKET, errorFromResponse } from './wire-errors.js';

/** Error rebuilding and the default socket, for callers that only import the client. */
export { appErrorFromBody, DEFAULT_SOCKET } from './wire-errors.js';
/** Stream types used by events(), exec() and console(). */
export type { EventStream, EventsOptions, StreamIo } from './streams.js';

type RouteSchemas = typeof import('../shared/route-schemas.js');


/** The part of a zod schema the client uses, so the client itself stays free of zod until it validates. */
type Validator = { safeParse(v: unknown): { success: true; data: unknown } | { success: false; error: { issues: Array<{ path: PropertyKey[]; message: string }> } } };

/** What GET /1.0 answers. */
export type { ServerInfo } from '../shared/schemas.js';

/** Options of the client. */
export interface ClientOptions {
  /** Daemon socket; defaults to $HANGAR_SOCKET or /run/hangar/hangar.sock. */
  socketPath?: string;
  /** Validate answers with the zod schemas (loaded lazily on first use); default true. */
  validate?: boolean;
}

/** Options of waitOperation. */
export interface WaitOptions {
  /** Give up (TIMEOUT) after this many seconds; waits forever when omitted. */
  timeoutS?: number;
  /** Receives operation-progress messages of this operation (from the events websocket). */
  onProgress?: (message: string) => void;
}

/** Remote console size. */
export interface ConsoleSize {
  cols: number;
  rows: number;
}

const WAIT_SLICE_S = 30;

/** Client for hangard's API; its own kept-alive connections per instance. */
export class HangarClient {
  /** The unix socket this client talks to. */
  readonly socketPath: string;
  private readonly http: UnixHttpPool;
  private readonly validate: boolean;
  private schemas?: Promise<RouteSchemas>;

  constructor(opts: ClientOptions = {}) {
    this.socketPath = opts.socketPath ?? process.env.HANGAR_SOCKET ?? DEFAULT_SOCKET;
    this.validate = opts.validate ?? true;
    this.http = new UnixHttpPool(this.socketPath);
  }

  /** Closes its connections, idle ones and those of requests under way (a running POST exec sees its client go). */
  close(): void {
    this.http.close();
  }

  /** Sends one request; answers the parsed JSON (or text for non-JSON answers); throws AppError for non-2xx. */
  async request(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown; headers: UnixResponse['headers'] }> {
    try {
      return await this.requestOnce(method, path, body);
    } catch (err) {
      // A kept-alive connection the daemon closed meanwhile: retry once on a fresh one.
      if ((err as { staleKeepAlive?: boolean }).staleKeepAlive) return this.requestOnce(method, path, body);
      throw err;
    }
  }

  private async requestOnce(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown; headers: UnixResponse['headers'] }> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string | number> = { accept: 'application/json' };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = payload.length;
    }
    const what = `${method} ${path}`;
    let res: UnixResponse & { body: Buffer };
    try {
      res = await this.http.request({ method, path, headers, ...(payload ? { body: payload } : {}) });
    } catch (err) {
      const mapped = connectionError(err, this.socketPath);
      if ((err as { staleKeepAlive?: boolean }).staleKeepAlive && typeof mapped === 'object' && mapped !== null) (mapped as { staleKeepAlive?: boolean }).staleKeepAlive = true;
      throw mapped;
    }
    const text = res.body.toString('utf8');
    if (res.status < 200 || res.status >= 300) throw errorFromResponse(res.status, text, what);
    if (!(res.headers['content-type'] ?? '').includes('json')) return { status: res.status, body: text, headers: res.headers };
    try {
      return { status: res.status, body: text.length ? JSON.parse(text) : undefined, headers: res.headers };
    } catch (err) {
      throw new AppError('INTERNAL', `hangard answered invalid JSON to ${what}`, { cause: err });
    }
  }

  /** Calls one catalogue route: its method and path come from ROUTES, its answer is checked against its schema. */
  private async call<K extends RouteId>(id: K, params: RouteParams<K>, opts: { query?: Record<string, string | number | boolean | undefined>; body?: unknown } = {}): Promise<ResponseOf<K>> {
    const method = ROUTES[id].method;
    const path = routePath(id, params, opts.query);
    const res = await this.request(method, path, opts.body);
    return this.check(res.body, id, `${method} ${path}`);
  }

  private async check<K extends RouteId>(value: unknown, id: K, what: string): Promise<ResponseOf<K>> {
    if (!this.validate) return value as ResponseOf<K>;
    this.schemas ??= import('../shared/route-schemas.js');
    const schema = ((await this.schemas).ROUTE_SCHEMAS[id] as { response?: Validator }).response;
    if (!schema) return value as ResponseOf<K>;
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data as ResponseOf<K>;
    const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
    throw new AppError('INTERNAL', `Unexpected answer from hangard to ${what}`, { cause: new Error(issues.join('; ')) });
  }

  /** GET /1.0: API and server version. */
  serverInfo(): Promise<ServerInfo> {
    return this.call('serverInfo', {});
  }

  /** GET /1.0/host: facts, drivers, storage and network of a host (default the local one). */
  hostInfo(host?: string): Promise<HostInfo> {
    return this.call('hostInfo', {}, { query: { host } });
  }

  /** GET /1.0/hosts: the local host and every remote one, with state and pinned key. */
  listHosts(): Promise<HostRecord[]> {
    return this.call('listHosts', {});
  }

  /** GET /1.0/hosts/{host}: one host, also while it is down (then with why). */
  getHost(host: string): Promise<HostRecord> {
    return this.call('getHost', { host });
  }

  /** POST /1.0/hosts: starts adding a remote host (its key pinned at first contact); the operation's result is the Host. */
  addHost(req: AddHostRequest): Promise<Operation> {
    return this.call('addHost', {}, { body: req });
  }

  /** DELETE /1.0/hosts/{host}: forgets a remote host (refused while instances live there); answers the host as it was. */
  removeHost(host: string): Promise<HostRecord> {
    return this.call('removeHost', { host });
  }

  /** POST /1.0/hosts/{host}/trust: pins the key the host presents now (fingerprint: only if it is this one); the result is the Host. */
  trustHost(host: string, req: TrustHostRequest = {}): Promise<Operation> {
    return this.call('trustHost', { host }, { body: req });
  }

  /** POST /1.0/imports/translate: what Hangar makes of a foreign config (an xl.cfg's or a CTID.conf's text), creating nothing. */
  translateImport(req: ImportTranslateRequest): Promise<ImportTranslation> {
    return this.call('translateImport', {}, { body: req });
  }

  /** POST /1.0/instances/import: adopts a foreign domain as an instance on a host; the operation's result is the Instance. */
  importInstance(req: ImportInstanceRequest): Promise<Operation> {
    return this.call('importInstance', {}, { body: req });
  }

  /** GET /1.0/host/detect: virtualization layers the host runs in (root and cpuid override the probes). */
  hostDetect(opts: { root?: string; cpuid?: string } = {}): Promise<VirtFact[]> {
    return this.call('hostDetect', {}, { query: { root: opts.root, cpuid: opts.cpuid } });
  }

  /** GET /1.0/instances (only those of one host with host). */
  listInstances(opts: { host?: string } = {}): Promise<Instance[]> {
    return this.call('listInstances', {}, { query: { host: opts.host } });
  }

  /** GET /1.0/instances/{name}: the instance with usage counters. */
  getInstance(name: string): Promise<Instance> {
    return this.call('getInstance', { name });
  }

  /** POST /1.0/instances: starts creating (and with start: true, launching) an instance. */
  createInstance(req: CreateInstanceRequest): Promise<Operation> {
    return this.call('createInstance', {}, { body: req });
  }

  /** Creates and starts an instance, waits, and answers the instance. */
  async launch(req: Omit<CreateInstanceRequest, 'start'>, opts: WaitOptions = {}): Promise<Instance> {
    const result = await this.runOperation(() => this.createInstance({ ...req, start: true }), opts);
    return this.check(result, 'getInstance', 'launch');
  }

  /** PUT /1.0/instances/{name}/state: start, stop, restart, freeze or unfreeze. */
  changeState(name: string, req: StateChangeRequest): Promise<Operation> {
    return this.call('changeState', { name }, { body: req });
  }

  /** DELETE /1.0/instances/{name}; force stops a running instance first. */
  deleteInstance(name: string, opts: { force?: boolean } = {}): Promise<Operation> {
    return this.call('deleteInstance', { name }, { query: { force: opts.force ? 'true' : undefined } });
  }

  /** PATCH /1.0/instances/{name}/config: which keys applied live and which wait for a restart. */
  patchConfig(name: string, patch: ConfigPatchRequest): Promise<ConfigChangeResult> {
    return this.call('patchConfig', { name }, { body: patch });
  }

  /** POST /1.0/instances/{name}/copy. */
  copyInstance(name: string, req: CopyRequest): Promise<Operation> {
    return this.call('copyInstance', { name }, { body: req });
  }

  /** Moves a container to another host (an operation; offline). */
  moveInstance(name: string, req: MoveRequest): Promise<Operation> {
    return this.call('moveInstance', { name }, { body: req });
  }

  /** GET /1.0/instances/{name}/snapshots. */
  listSnapshots(name: string): Promise<Snapshot[]> {
    return this.call('listSnapshots', { name });
  }

  /** GET /1.0/instances/{name}/execs: the commands running in it through exec. */
  listExecs(name: string): Promise<ExecInfo[]> {
    return this.call('listExecs', { name });
  }

  /** POST /1.0/instances/{name}/execs/{id}/signal. */
  signalExec(name: string, id: string, signal: ExecSignal): Promise<ExecInfo> {
    return this.call('signalExec', { name, id }, { body: { signal } });
  }

  /** POST /1.0/instances/{name}/snapshots. */
  createSnapshot(name: string, snapshot: string, opts: { stateful?: boolean } = {}): Promise<Operation> {
    return this.call('createSnapshot', { name }, { body: { name: snapshot, ...(opts.stateful ? { stateful: true } : {}) } });
  }

  /** POST /1.0/instances/{name}/snapshots/{snap}/restore. */
  restoreSnapshot(name: string, snapshot: string): Promise<Operation> {
    return this.call('restoreSnapshot', { name, snap: snapshot });
  }

  /** DELETE /1.0/instances/{name}/snapshots/{snap}. */
  deleteSnapshot(name: string, snapshot: string): Promise<Operation> {
    return this.call('deleteSnapshot', { name, snap: snapshot });
  }

  /** GET /1.0/instances/{name}/beancounters: a container's beancounters. */
  beancounters(name: string): Promise<Beancounter[]> {
    return this.call('beancounters', { name });
  }

  /** POST /1.0/instances/{name}/monitor: one backend monitor (QMP) command and its result. */
  monitor(name: string, req: MonitorRequest): Promise<MonitorResponse> {
    return this.call('monitor', { name }, { body: req });
  }

  /** GET /1.0/instances/{name}/console/log: the persistent console log as text. */
  async consoleLog(name: string): Promise<string> {
    const res = await this.request(ROUTES.consoleLog.method, routePath('consoleLog', { name }));
    return typeof res.body === 'string' ? res.body : JSON.stringify(res.body);
  }

  /** GET /1.0/images. */
  listImages(): Promise<Image[]> {
    return this.call('listImages', {});
  }

  /** POST /1.0/images: builds a built-in image (busybox, debian). */
  buildImage(req: ImageBuildRequest): Promise<Operation> {
    return this.call('buildImage', {}, { body: req });
  }

  /** POST /1.0/images/import: imports a file on the daemon's host (a rootfs tarball; with vm: true a qcow2/raw disk). */
  importImage(req: ImageImportRequest): Promise<Operation> {
    return this.call('importImage', {}, { body: { path: req.path, alias: req.alias, ...(req.vm ? { vm: true } : {}) } });
  }

  /** DELETE /1.0/images/{alias} (the VM variant with vm: true). */
  deleteImage(alias: string, opts: { vm?: boolean } = {}): Promise<Operation> {
    return this.call('deleteImage', { alias }, { query: { type: opts.vm ? 'vm' : undefined } });
  }

  /** GET /1.0/operations. */
  listOperations(): Promise<Operation[]> {
    return this.call('listOperations', {});
  }

  /** GET /1.0/operations/{id}. */
  getOperation(id: string): Promise<Operation> {
    return this.call('getOperation', { id });
  }

  /** GET /1.0/operations/{id}/wait: the operation once done, or still running when timeoutS passes. */
  waitForOperation(id: string, timeoutS: number): Promise<Operation> {
    return this.call('waitOperation', { id }, { query: { timeout: Math.max(0, Math.ceil(timeoutS)) } });
  }

  /** Waits until op is done; answers its result, or throws its error as an AppError with the cause chain. */
  async waitOperation(op: Operation | string, opts: WaitOptions = {}): Promise<unknown> {
    if (opts.onProgress) return this.runOperation(async () => (typeof op === 'string' ? this.getOperation(op) : op), opts);
    return this.waitLoop(typeof op === 'string' ? await this.getOperation(op) : op, opts.timeoutS);
  }

  /** Subscribes to progress first (when asked), then starts the operation and waits for it: no early progress is lost. */
  async runOperation(start: () => Promise<Operation>, opts: WaitOptions = {}): Promise<unknown> {
    const onProgress = opts.onProgress;
    if (!onProgress) return this.waitLoop(await start(), opts.timeoutS);
    let opId: string | undefined;
    const early: HangarEvent[] = [];
    const deliver = (ev: HangarEvent): void => {
      if (ev.operation === opId && ev.message) onProgress(ev.message);
    };
    const stream = this.events({ types: ['operation-progress'], onEvent: (ev) => (opId === undefined ? early.push(ev) : deliver(ev)) });
    try {
      // Progress is cosmetic: an events stream that cannot open must not fail the action.
      await stream.ready.catch(() => undefined);
      const op = await start();
      opId = op.id;
      for (const ev of early.splice(0)) deliver(ev);
      return await this.waitLoop(op, opts.timeoutS);
    } finally {
      stream.close();
    }
  }

  private async waitLoop(first: Operation, timeoutS?: number): Promise<unknown> {
    const deadline = timeoutS === undefined ? Infinity : Date.now() + timeoutS * 1000;
    let op = first;
    while (op.status === 'pending' || op.status === 'running') {
      const left = (deadline - Date.now()) / 1000;
      if (left <= 0) throw new AppError('TIMEOUT', `Timed out after ${timeoutS}s waiting for operation ${op.id} (${op.description})`);
      op = await this.waitForOperation(op.id, Math.min(WAIT_SLICE_S, Math.max(1, left)));
    }
    if (op.status === 'failure') {
      throw op.error ? appErrorFromBody(op.error) : new AppError('INTERNAL', `Operation ${op.id} (${op.description}) failed`);
    }
    return op.result;
  }

  /** Opens the events websocket; `ready` resolves once subscribed. */
  events(opts: EventsOptions): EventStream {
    return subscribeEvents(this.socketPath, opts);
  }

  /** Runs a command in an instance, streaming stdin/stdout/stderr; answers the remote exit code. */
  async exec(name: string, req: ExecRequest, io: StreamIo): Promise<number> {
    // Without a terminal or a streamed stdin, a plain POST on a kept-alive connection does the job and saves the
    // websocket's connect and upgrade; signals then go by the exec's id (signalExec).
    if (!req.tty && !io.onResize && !io.signal && (io.stdin === undefined || typeof io.stdin === 'string' || Buffer.isBuffer(io.stdin))) {
      return this.execPost(name, req, io);
    }
    const code = await runStreamSession(this.socketPath, routePath('execSession', { name }), req, io);
    if (code === null) throw noExitError(`exec in "${name}"`);
    return code;
  }

  private execPost(name: string, req: ExecRequest, io: StreamIo): Promise<number> {
    const body: ExecRunRequest = {
      command: req.command, ...(req.env ? { env: req.env } : {}), ...(req.cwd ? { cwd: req.cwd } : {}), ...(req.disconnectSignal ? { disconnectSignal: req.disconnectSignal } : {}),
    };
    if (io.stdin !== undefined) body.stdin = Buffer.from(io.stdin as string | Buffer).toString('base64');
    const payload = Buffer.from(JSON.stringify(body));
    const path = routePath('execRun', { name });
    const attempt = (): Promise<number> => new Promise((resolve, reject) => {
      let status = 0;
      let buf: Buffer<ArrayBufferLike> = Buffer.alloc(0);
      const errorBody: Buffer[] = [];
      let code: number | undefined;
      this.http.send({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body: payload }, {
        head: (res) => {
          status = res.status;
          const id = res.headers['x-hangar-exec-id'];
          if (status >= 200 && status < 300 && id !== undefined) {
            io.onExecId?.(id);
            forward.ready(id);
          }
        },
        data: (c) => {
          if (status < 200 || status >= 300) return void errorBody.push(c);
          buf = buf.length ? Buffer.concat([buf, c]) : c;
          while (buf.length >= 5) {
            const len = buf.readUInt32BE(1);
            if (buf.length < 5 + len) break;
            const ch = buf[0];
            const data = buf.subarray(5, 5 + len);
            buf = buf.subarray(5 + len);
            if (ch === ExecFrame.stdout) io.stdout.write(data);
            else if (ch === ExecFrame.stderr) (io.stderr ?? io.stdout).write(data);
            else if (ch === ExecFrame.exit) code = (JSON.parse(data.toString('utf8')) as { code: number }).code;
          }
        },
        end: () => {
          if (status < 200 || status >= 300) reject(errorFromResponse(status, Buffer.concat(errorBody).toString('utf8'), `POST ${path}`));
          else if (code === undefined) reject(noExitError(`exec in "${name}"`));
          else resolve(code);
        },
        error: (err) => {
          const mapped = connectionError(err, this.socketPath);
          if (err.staleKeepAlive && typeof mapped === 'object' && mapped !== null) (mapped as { staleKeepAlive?: boolean }).staleKeepAlive = true;
          reject(mapped);
        },
      });
    });
    const forward = this.signalForwarder(name, io.onSignal);
    return attempt()
      .catch((err: unknown) => {
        if ((err as { staleKeepAlive?: boolean }).staleKeepAlive) return attempt();
        throw err;
      })
      .finally(() => forward.stop());
  }

  /** Forwards local signals to a POST exec by its id: those caught before the id is known go once it is. */
  private signalForwarder(name: string, onSignal: StreamIo['onSignal']): { ready: (id: string) => void; stop: () => void } {
    if (!onSignal) return { ready: () => undefined, stop: () => undefined };
    let id: string | undefined;
    const early: string[] = [];
    // The command may have ended meanwhile (NOT_FOUND): the signal then has nothing left to reach.
    const send = (signal: string): void => void this.signalExec(name, id!, signal as ExecSignal).catch(() => undefined);
    const stop = onSignal((signal) => (id === undefined ? early.push(signal) : send(signal)));
    return {
      ready: (execId) => {
        id = execId;
        for (const s of early.splice(0)) send(s);
      },
      stop,
    };
  }

  /** Attaches to an instance's console until the daemon closes it or io.signal aborts (detach). */
  async console(name: string, size: ConsoleSize, io: StreamIo): Promise<void> {
    await runStreamSession(this.socketPath, routePath('console', { name }), { cols: size.cols, rows: size.rows }, io);
  }
}
