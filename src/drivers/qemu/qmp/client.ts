// QmpClient: Hangar's own QEMU Machine Protocol client over a Host unix-socket connection (commands, events, jobs).
import type { Duplex } from 'node:stream';
import { AppError } from '../../../shared/errors.js';
import type { Host } from '../../../host/host.js';
import { JsonLines, openSocket } from '../json-lines.js';
import type {
  QmpBalloonInfo, QmpBlockIoThrottle, QmpErrorBody, QmpEvent, QmpGreeting, QmpJobInfo, QmpKvmInfo,
  QmpMigrationInfo, QmpStatusInfo,
} from './types.js';

export type * from './types.js';

/** Options of QmpClient.connect. */
export interface QmpConnectOptions {
  /** Budget for the greeting and capabilities negotiation (default 10 s). */
  timeoutMs?: number;
  /** Keep retrying while the socket is missing or refuses (ENOENT/ECONNREFUSED) for this long (default 0). */
  retryForMs?: number;
  /** Default per-command timeout (default 30 s). */
  commandTimeoutMs?: number;
}

/** Options of a single command. */
export interface QmpCommandOptions {
  /** Reject with TIMEOUT after this long (default: the client's commandTimeoutMs; 0 waits forever). */
  timeoutMs?: number;
}

/** A listener for QMP events. */
export type QmpEventListener = (ev: QmpEvent) => void;
/** A listener for the end of the connection. */
export type QmpDisconnectListener = (err: AppError) => void;

interface Waiter {
  promise: Promise<QmpEvent>;
  cancel(): void;
}

const MAX_LINE = 16 * 1024 * 1024;
// The greeting waits under this key; commands wait under their numeric ids.
const GREETING = 'greeting';

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Milliseconds since the epoch of an event's QEMU timestamp. */
export function eventTimeMs(ev: QmpEvent): number {
  return ev.timestamp.seconds * 1000 + Math.floor(ev.timestamp.microseconds / 1000);
}

/** True when err is the rejection of a command or waiter because the QMP connection ended. */
export function isQmpDisconnect(err: unknown): boolean {
  return err instanceof AppError && err.details?.disconnected === true;
}

/** A connected, negotiated QMP session; one per QEMU at a time (QEMU serves one client per socket). */
export class QmpClient {
  /** The QEMU version and capabilities from the greeting. */
  greeting: QmpGreeting | undefined;
  private nextId = 1;
  private readonly listeners = new Map<string, Set<QmpEventListener>>();
  private readonly disconnectListeners = new Set<QmpDisconnectListener>();
  private readonly link: JsonLines;
  private readonly commandTimeoutMs: number;

  private constructor(sock: Duplex, readonly path: string, opts: QmpConnectOptions) {
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 30_000;
    this.link = new JsonLines(sock, path, { protocol: 'QMP', maxLineBytes: MAX_LINE }, {
      message: (msg) => this.onMessage(msg),
      closeError: (label) => this.disconnectError(label),
      closed: () => this.onClosed(),
    });
  }

  /** Connects to QEMU's QMP socket at path on host, reads the greeting and negotiates capabilities. */
  static async connect(host: Host, path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const sock = await openSocket(host, path, { protocol: 'QMP', timeoutMs, retryForMs: opts.retryForMs ?? 0 });
    const client = new QmpClient(sock, path, opts);
    try {
      await client.handshake(timeoutMs);
    } catch (e) {
      void client.link.close();
      throw e;
    }
    return client;
  }

  private async handshake(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await this.link.request(GREETING, undefined, {
      label: GREETING, timeoutMs,
      timeoutError: () => new AppError('TIMEOUT', `No QMP greeting on ${this.path} within ${timeoutMs} ms (is another client connected?)`, { details: { socket: this.path } }),
    });
    await this.execute('qmp_capabilities', undefined, { timeoutMs: Math.max(1, deadline - Date.now()) });
  }

  /** True until the connection ends. */
  get connected(): boolean {
    return this.link.connected;
  }

  /** Resolves once the connection has ended (for any reason). */
  get closed(): Promise<void> {
    return this.link.closed;
  }

  /** Sends a command and resolves with its "return" value; QMP errors become BACKEND_FAILED, silence TIMEOUT. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: QmpCommandOptions = {}): Promise<T> {
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    const msg = JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id });
    return this.link.request<T>(id, `${msg}\n`, {
      label: command, timeoutMs,
      timeoutError: () => new AppError('TIMEOUT', `QMP ${command} timed out after ${timeoutMs} ms on ${this.path}`, { details: { socket: this.path, command } }),
    });
  }

  /** Listens to one QMP event by name, every event with '*', or the end of the connection with 'disconnected'. */
  on(name: 'disconnected', fn: QmpDisconnectListener): this;
  on(name: string, fn: QmpEventListener): this;
  on(name: string, fn: QmpEventListener | QmpDisconnectListener): this {
    if (name === 'disconnected') {
      this.disconnectListeners.add(fn as QmpDisconnectListener);
    } else {
      let set = this.listeners.get(name);
      if (!set) this.listeners.set(name, (set = new Set()));
      set.add(fn as QmpEventListener);
    }
    return this;
  }

  /** Removes a listener added with on(). */
  off(name: 'disconnected', fn: QmpDisconnectListener): this;
  off(name: string, fn: QmpEventListener): this;
  off(name: string, fn: QmpEventListener | QmpDisconnectListener): this {
    if (name === 'disconnected') this.disconnectListeners.delete(fn as QmpDisconnectListener);
    else this.listeners.get(name)?.delete(fn as QmpEventListener);
    return this;
  }

  /**
   * Resolves with the next event called name (matching predicate) received from now on; registers at once, so
   * call it before sending the command that triggers the event (or use executeAndWaitEvent).
   */
  waitForEvent(name: string, predicate?: (ev: QmpEvent) => boolean, timeoutMs?: number): Promise<QmpEvent> {
    return this.eventWaiter(name, predicate, timeoutMs).promise;
  }

  /** Sends a command and waits for both its reply and the event it triggers (listening before sending). */
  async executeAndWaitEvent<T = unknown>(
    command: string, args: Record<string, unknown> | undefined, event: string,
    predicate?: (ev: QmpEvent) => boolean, opts: QmpCommandOptions = {},
  ): Promise<{ result: T; event: QmpEvent }> {
    const waiter = this.eventWaiter(event, predicate, opts.timeoutMs);
    let result: T;
    try {
      result = await this.execute<T>(command, args, opts);
    } catch (e) {
      waiter.cancel();
      throw e;
    }
    return { result, event: await waiter.promise };
  }

  private eventWaiter(name: string, predicate: ((ev: QmpEvent) => boolean) | undefined, timeoutMs?: number): Waiter {
    const ms = timeoutMs ?? this.commandTimeoutMs;
    let cleanup = (): void => {};
    const promise = new Promise<QmpEvent>((resolve, reject) => {
      if (!this.link.connected) { reject(this.disconnectError(undefined, name)); return; }
      const onEvent = (ev: QmpEvent): void => {
        let ok = true;
        try { ok = predicate ? predicate(ev) : true; } catch (e) { cleanup(); reject(e); return; }
        if (ok) { cleanup(); resolve(ev); }
      };
      const onDisconnect = (): void => { cleanup(); reject(this.disconnectError(undefined, name)); };
      const timer = ms > 0
        ? setTimeout(() => {
          cleanup();
          reject(new AppError('TIMEOUT', `QMP event ${name} not received within ${ms} ms on ${this.path}`, { details: { socket: this.path, event: name } }));
        }, ms)
        : undefined;
      cleanup = () => {
        if (timer) clearTimeout(timer);
        this.off(name, onEvent);
        this.off('disconnected', onDisconnect);
      };
      this.on(name, onEvent);
      this.on('disconnected', onDisconnect);
    });
    // A cancelled or abandoned waiter must not surface as an unhandled rejection.
    promise.catch(() => undefined);
    return { promise, cancel: () => cleanup() };
  }

  /** Closes the connection; pending commands reject. QEMU then accepts the next client. */
  close(): Promise<void> {
    return this.link.close();
  }

  private onMessage(msg: Record<string, unknown>): void {
    if ('QMP' in msg) {
      this.greeting = msg as unknown as QmpGreeting;
      this.link.take(GREETING)?.resolve(undefined);
    } else if (typeof msg.event === 'string') {
      this.dispatchEvent({
        event: msg.event,
        data: (msg.data as Record<string, unknown> | undefined) ?? {},
        timestamp: (msg.timestamp as QmpEvent['timestamp'] | undefined) ?? { seconds: 0, microseconds: 0 },
      });
    } else if ('return' in msg || 'error' in msg) {
      const id = msg.id;
      if (typeof id !== 'number') return;
      const p = this.link.take(id);
      if (!p) return; // already timed out
      if ('error' in msg) {
        const err = (msg.error ?? {}) as Partial<QmpErrorBody>;
        const desc = err.desc ?? 'unknown error';
        p.reject(new AppError('BACKEND_FAILED', `QMP ${p.label} failed: ${desc}`, {
          details: { class: err.class ?? 'GenericError', desc, command: p.label, socket: this.path },
        }));
      } else {
        p.resolve(msg.return);
      }
    }
  }

  private dispatchEvent(ev: QmpEvent): void {
    for (const key of [ev.event, '*']) {
      const set = this.listeners.get(key);
      if (!set) continue;
      for (const fn of [...set]) {
        // A throwing listener must not break the reader or starve the other listeners.
        try { fn(ev); } catch { /* listener's own problem */ }
      }
    }
  }

  private disconnectError(command?: string, event?: string): AppError {
    const what = this.link.endText(this.path);
    const message = command ? `QMP ${command} failed: ${what}` : event ? `QMP event ${event} not received: ${what}` : what;
    return this.link.disconnectError(message, command ? { command } : {});
  }

  private onClosed(): void {
    const err = this.disconnectError();
    for (const fn of [...this.disconnectListeners]) {
      try { fn(err); } catch { /* listener's own problem */ }
    }
  }

  // Typed helpers for the commands the QEMU driver needs.

  /** query-status: run state and whether vCPUs run. */
  queryStatus(): Promise<QmpStatusInfo> {
    return this.execute<QmpStatusInfo>('query-status');
  }

  /** query-kvm: whether KVM is present and used ({enabled:false} under TCG). */
  queryKvm(): Promise<QmpKvmInfo> {
    return this.execute<QmpKvmInfo>('query-kvm');
  }

  /** system_powerdown: presses the ACPI power button (the guest may ignore it). */
  async systemPowerdown(): Promise<void> {
    await this.execute('system_powerdown');
  }

  /** quit: QEMU emits SHUTDOWN and exits; a connection that drops before the reply also counts as done. */
  async quit(opts: QmpCommandOptions = {}): Promise<void> {
    try {
      await this.execute('quit', undefined, opts);
    } catch (e) {
      if (!isQmpDisconnect(e) || (e as AppError).details?.closedByClient === true) throw e;
    }
  }

  /** stop: pauses the vCPUs (STOP event). */
  async stop(): Promise<void> {
    await this.execute('stop');
  }

  /** cont: resumes the vCPUs (RESUME event). */
  async cont(): Promise<void> {
    await this.execute('cont');
  }

  /** system_reset: hard reset (RESET event). */
  async systemReset(): Promise<void> {
    await this.execute('system_reset');
  }

  /** balloon: asks the guest's balloon driver for this many bytes of guest memory (BALLOON_CHANGE events follow). */
  async balloon(bytes: number): Promise<void> {
    await this.execute('balloon', { value: bytes });
  }

  /** qom-get: one property of a QOM object (e.g. the limits of a throttle group). */
  qomGet<T = unknown>(path: string, property: string): Promise<T> {
    return this.execute<T>('qom-get', { path, property });
  }

  /** qom-set: changes one property of a QOM object live (e.g. a throttle group's limits). */
  async qomSet(path: string, property: string, value: unknown): Promise<void> {
    await this.execute('qom-set', { path, property, value });
  }

  /** query-balloon: current guest memory in bytes as the balloon sees it. */
  queryBalloon(): Promise<QmpBalloonInfo> {
    return this.execute<QmpBalloonInfo>('query-balloon');
  }

  /** migrate-set-capabilities, e.g. { events: true, 'auto-converge': true }. */
  async migrateSetCapabilities(caps: Record<string, boolean>): Promise<void> {
    await this.execute('migrate-set-capabilities', {
      capabilities: Object.entries(caps).map(([capability, state]) => ({ capability, state })),
    });
  }

  /** migrate: starts an outgoing migration to uri ("unix:/path", "exec:cat > file", "tcp:host:port"). */
  async migrate(uri: string): Promise<void> {
    await this.execute('migrate', { uri });
  }

  /** migrate-incoming: starts an incoming migration on a QEMU started with -incoming defer. */
  async migrateIncoming(uri: string): Promise<void> {
    await this.execute('migrate-incoming', { uri });
  }

  /** query-migrate: state and statistics of the current or last migration. */
  queryMigrate(): Promise<QmpMigrationInfo> {
    return this.execute<QmpMigrationInfo>('query-migrate');
  }

  /** Polls query-migrate until completed; failed or cancelled reject with BACKEND_FAILED, slowness with TIMEOUT. */
  async waitMigration(opts: { timeoutMs?: number; intervalMs?: number } = {}): Promise<QmpMigrationInfo> {
    const timeoutMs = opts.timeoutMs ?? 300_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.queryMigrate();
      if (info.status === 'completed') return info;
      if (info.status === 'failed' || info.status === 'cancelled') {
        throw new AppError('BACKEND_FAILED', `QMP migration ${info.status}${info['error-desc'] ? `: ${info['error-desc']}` : ''}`, { details: { socket: this.path, status: info.status } });
      }
      if (Date.now() >= deadline) {
        throw new AppError('TIMEOUT', `QMP migration not completed within ${timeoutMs} ms on ${this.path} (status ${info.status ?? 'none'})`, { details: { socket: this.path } });
      }
      await sleep(opts.intervalMs ?? 20);
    }
  }

  /** block_set_io_throttle: sets I/O limits on a disk (by qdev id); omitted rates are 0, i.e. unlimited. */
  async blockSetIoThrottle(t: QmpBlockIoThrottle): Promise<void> {
    await this.execute('block_set_io_throttle', {
      bps: 0, bps_rd: 0, bps_wr: 0, iops: 0, iops_rd: 0, iops_wr: 0,
      ...Object.fromEntries(Object.entries(t).filter(([, v]) => v !== undefined)),
    });
  }

  /**
   * human-monitor-command: runs an HMP command line (savevm/loadvm exist only there in 7.2) and returns its output.
   * HMP reports failures as text; with checkError, output starting with "Error:" rejects with BACKEND_FAILED.
   */
  async humanMonitorCommand(commandLine: string, opts: QmpCommandOptions & { checkError?: boolean } = {}): Promise<string> {
    const out = await this.execute<string>('human-monitor-command', { 'command-line': commandLine }, opts);
    if (opts.checkError && /^Error:/m.test(out)) {
      throw new AppError('BACKEND_FAILED', `QMP HMP "${commandLine}" failed: ${out.trim()}`, { details: { socket: this.path, command: commandLine } });
    }
    return out;
  }

  /** query-jobs: every job QEMU knows (concluded ones stay until dismissed). */
  queryJobs(): Promise<QmpJobInfo[]> {
    return this.execute<QmpJobInfo[]>('query-jobs');
  }

  /** job-dismiss: removes a concluded job. */
  async jobDismiss(jobId: string): Promise<void> {
    await this.execute('job-dismiss', { id: jobId });
  }

  /** snapshot-save: starts a job saving VM state to vmstate (a -blockdev node) and disk snapshots of devices; then waitJob. */
  async snapshotSave(jobId: string, tag: string, vmstate: string, devices: string[]): Promise<void> {
    await this.execute('snapshot-save', { 'job-id': jobId, tag, vmstate, devices });
  }

  /** snapshot-load: starts a job restoring snapshot tag; then waitJob. */
  async snapshotLoad(jobId: string, tag: string, vmstate: string, devices: string[]): Promise<void> {
    await this.execute('snapshot-load', { 'job-id': jobId, tag, vmstate, devices });
  }

  /** snapshot-delete: starts a job deleting snapshot tag from devices; then waitJob. */
  async snapshotDelete(jobId: string, tag: string, devices: string[]): Promise<void> {
    await this.execute('snapshot-delete', { 'job-id': jobId, tag, devices });
  }

  /**
   * Waits until job jobId concludes (JOB_STATUS_CHANGE matched on data.id, other jobs' events ignored), dismisses
   * it, and resolves with its final info; a job that ended with an error rejects with BACKEND_FAILED after dismissal.
   * Safe to call after the job already concluded: it checks query-jobs once it listens.
   */
  async waitJob(jobId: string, opts: { timeoutMs?: number } = {}): Promise<QmpJobInfo> {
    const timeoutMs = opts.timeoutMs ?? 300_000;
    const concluded = this.eventWaiter(
      'JOB_STATUS_CHANGE', (ev) => ev.data.id === jobId && ev.data.status === 'concluded', timeoutMs,
    );
    try {
      const job = (await this.queryJobs()).find((j) => j.id === jobId);
      if (!job) throw new AppError('NOT_FOUND', `QMP job ${jobId} not found on ${this.path}`, { details: { socket: this.path, jobId } });
      if (job.status !== 'concluded') {
        try {
          await concluded.promise;
        } catch (e) {
          if (e instanceof AppError && e.code === 'TIMEOUT') {
            throw new AppError('TIMEOUT', `QMP job ${jobId} did not conclude within ${timeoutMs} ms on ${this.path}`, { details: { socket: this.path, jobId } });
          }
          throw e;
        }
      }
    } finally {
      concluded.cancel();
    }
    const info = (await this.queryJobs()).find((j) => j.id === jobId);
    if (!info) throw new AppError('NOT_FOUND', `QMP job ${jobId} vanished on ${this.path}`, { details: { socket: this.path, jobId } });
    await this.jobDismiss(jobId);
    if (info.error) {
      throw new AppError('BACKEND_FAILED', `QMP job ${jobId} (${info.type}) failed: ${info.error}`, { details: { socket: this.path, jobId, type: info.type } });
    }
    return info;
  }
}
