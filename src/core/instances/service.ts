// The instance service: creates, runs and manages instances through their drivers, recording state and emitting events (the API and the daemon use this class).
import type { Duplex } from 'node:stream';
import { AppError, isAppError } from '../../shared/errors.js';
import { assertName } from '../../shared/names.js';
import { resourcesOf, type InstanceConfig } from '../../shared/config.js';
import type { ConfigChangeResult, CreateInstanceRequest, Instance, Snapshot } from '../../shared/schemas.js';
import type { BackendEvent, ExecSpec, HostDriver } from '../../drivers/driver.js';
import type { HostProcess } from '../../host/host.js';
import { Reverter } from '../../host/reverter.js';
import type { InstanceRow } from '../db/database.js';
import { assertLegal } from './actions.js';
import { DEFAULT_STOP_TIMEOUT_S, instanceDir, lockKey, rowOf, wrap, type InstanceServiceDeps, type LockedLifecycle, type StopRequest } from './context.js';
import {
  admit, checkRequestedAddress, chooseCpuset, chooseDriver, handleOf, idmapBlockFor, placeAddress, syncLeases, uniqueMac, validateFor, volumeLimit,
} from './placement.js';
import { reconcile, recordGuestShutdown } from './reconcile.js';
import * as snapshots from './snapshots.js';
import { toWire } from './wire.js';

/** Dependencies of the instance service (defined in context.ts, shared by its parts). */
export type { InstanceServiceDeps } from './context.js';

/** A create request that passed validation. */
export interface CreatePlan {
  name: string;
  image: string;
  driver: HostDriver;
  config: InstanceConfig;
  ipv4?: string;
  start: boolean;
  /** Build this built-in image first (it was missing when the request came in). */
  buildImage?: { kind: 'busybox' | 'debian'; vm: boolean };
}

/** Creates, runs and manages instances. */
export class InstanceService {
  // What a snapshot restore and a backend restart run while they hold the instance's lock.
  private readonly locked: LockedLifecycle = {
    start: (name) => this.startLocked(name),
    stop: (name, opts) => this.stopLocked(name, opts),
  };

  constructor(private readonly d: InstanceServiceDeps) {}

  // ---- queries ----

  /** Every instance with its observed state. */
  async list(): Promise<Instance[]> {
    return Promise.all(this.d.db.listInstances().map((r) => toWire(this.d, r, false)));
  }

  /** One instance with usage. */
  async get(name: string): Promise<Instance> {
    return toWire(this.d, rowOf(this.d, name), true);
  }

  /** The persistent console log of an instance. */
  async consoleLog(name: string): Promise<string> {
    const handle = handleOf(this.d, rowOf(this.d, name));
    return (await this.d.host.fs.readTextIfExists(handle.consoleLogPath())) ?? '';
  }

  // ---- create / delete ----

  /** Validates a create request without side effects; throws the first problem. */
  validateCreate(req: CreateInstanceRequest): CreatePlan {
    const name = assertName(req.name, 'instance');
    if (this.d.db.getInstance(name)) throw new AppError('ALREADY_EXISTS', `Instance "${name}" already exists`);
    const { driver, type } = chooseDriver(this.d, req);
    // A missing built-in image (busybox, debian) is built by the launch itself, as its first step.
    const buildImage = (req.image === 'busybox' || req.image === 'debian') && !this.d.images.has(req.image, type) ? { kind: req.image, vm: type === 'vm' } as const : undefined;
    const image = buildImage ? { alias: req.image } : this.d.images.get(req.image, type);
    const config = validateFor(this.d, driver, name, req.config ?? {});
    if (req.ipv4 !== undefined) checkRequestedAddress(this.d, req.ipv4);
    return { name, image: image.alias, driver, config, ...(req.ipv4 !== undefined ? { ipv4: req.ipv4 } : {}), start: req.start ?? false, ...(buildImage ? { buildImage } : {}) };
  }

  /** Creates (and with plan.start, starts) an instance; on any failure everything done so far is undone. */
  async create(plan: CreatePlan, progress: (m: string) => void = () => undefined): Promise<Instance> {
    return this.d.locks.withLock([lockKey(plan.name), `image/${plan.image}`], async () => {
      if (this.d.db.getInstance(plan.name)) throw new AppError('ALREADY_EXISTS', `Instance "${plan.name}" already exists`);
      if (plan.buildImage && !this.d.images.has(plan.image, plan.driver.driver.type)) {
        progress(`Building the ${plan.buildImage.kind}${plan.buildImage.vm ? ' VM' : ''} image first`);
        await this.d.images.build(plan.buildImage.kind, { vm: plan.buildImage.vm }, progress);
      }
      const image = this.d.images.get(plan.image, plan.driver.driver.type);
      const ipv4 = placeAddress(this.d, plan.name, plan.ipv4);
      const mac = uniqueMac(this.d, plan.name);
      const r = new Reverter();
      try {
        const row: InstanceRow = {
          name: plan.name, type: plan.driver.driver.type, driver: plan.driver.driver.name, image: image.alias, imageFingerprint: image.fingerprint,
          config: plan.config, pendingConfig: {}, ipv4, mac, expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null,
          idmapBlock: idmapBlockFor(this.d, plan.driver, plan.config, null), host: this.d.host.name, createdAt: new Date().toISOString(),
        };
        this.d.db.insertInstance(row);
        r.add('delete database row', () => this.d.db.deleteInstance(plan.name));
        progress('Creating root volume');
        await this.d.pool.createInstanceVolume(plan.name, image.fingerprint, volumeLimit(plan.driver, plan.config));
        r.add('delete root volume', () => this.d.pool.deleteInstanceVolume(plan.name));
        await this.d.host.fs.mkdir(instanceDir(this.d, plan.name), { recursive: true });
        r.add('remove instance directory', () => this.d.host.fs.rm(instanceDir(this.d, plan.name), { recursive: true, force: true }));
        const handle = handleOf(this.d, row);
        await handle.initRoot?.();
        await handle.create();
        r.add('delete backend files', () => handle.delete());
        await syncLeases(this.d);
        r.add('remove address lease', () => syncLeases(this.d, plan.name));
        this.d.events.emit({ type: 'instance-created', instance: plan.name, data: { image: image.alias, ipv4 } });
        if (plan.start) {
          progress('Starting');
          await this.startLocked(plan.name);
        }
        r.success();
        return await toWire(this.d, rowOf(this.d, plan.name), false);
      } catch (err) {
        await r.fail();
        if (r.undoErrors.length > 0) {
          throw new AppError('BACKEND_FAILED', `Failed to create instance "${plan.name}" (and could not undo everything: ${r.undoErrors.map((u) => u.what).join(', ')})`, { cause: err });
        }
        throw wrap(err, `Failed to create instance "${plan.name}"`);
      }
    });
  }

  /** Deletes an instance; a running one only with force. */
  async delete(name: string, force: boolean): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => {
      const row = rowOf(this.d, name);
      const handle = handleOf(this.d, row);
      const st = await handle.state();
      assertLegal(force ? 'force-delete' : 'delete', st, name);
      // Nothing runs in a faulted instance that a delete could lose; its process only holds resources.
      if (st.state === 'running' || st.state === 'frozen' || st.state === 'error') await handle.stop({ force: true, timeoutMs: 10_000 });
      try {
        await handle.delete();
        await this.d.pool.deleteInstanceVolume(name);
        await this.d.host.fs.rm(instanceDir(this.d, name), { recursive: true, force: true });
        this.d.db.deleteInstance(name);
        await syncLeases(this.d);
      } catch (err) {
        throw wrap(err, `Failed to delete instance "${name}"`);
      }
      this.d.events.emit({ type: 'instance-deleted', instance: name });
    });
  }

  /** Copies an instance (stopped or running) to a new one with its own MAC, address, hostname and machine-id. */
  async copy(src: string, dst: string, ipv4?: string): Promise<Instance> {
    assertName(dst, 'instance');
    return this.d.locks.withLock([lockKey(src), lockKey(dst)], async () => {
      const from = rowOf(this.d, src);
      if (this.d.db.getInstance(dst)) throw new AppError('ALREADY_EXISTS', `Instance "${dst}" already exists`);
      const driver = this.d.drivers.get(from.driver);
      const live = driver.driver.features.liveCopy;
      assertLegal(live ? 'live-copy' : 'copy', await handleOf(this.d, from).state(), src, live ? undefined : `the ${from.driver} backend copies stopped instances only`);
      const config = { ...from.config, ...from.pendingConfig };
      const row: InstanceRow = {
        ...from, name: dst, ipv4: placeAddress(this.d, dst, ipv4), mac: uniqueMac(this.d, dst),
        expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null, createdAt: new Date().toISOString(), pendingConfig: {},
        // A copy is another container: its own id map, never its source's.
        config, idmapBlock: idmapBlockFor(this.d, driver, config, null),
      };
      const r = new Reverter();
      try {
        this.d.db.insertInstance(row);
        r.add('delete database row', () => this.d.db.deleteInstance(dst));
        await this.d.pool.copyInstance(src, dst, volumeLimit(driver, row.config));
        r.add('delete root volume', () => this.d.pool.deleteInstanceVolume(dst));
        await this.d.host.fs.mkdir(instanceDir(this.d, dst), { recursive: true });
        r.add('remove instance directory', () => this.d.host.fs.rm(instanceDir(this.d, dst), { recursive: true, force: true }));
        const handle = handleOf(this.d, row);
        await handle.initRoot?.();
        await handle.create();
        r.add('delete backend files', () => handle.delete());
        await syncLeases(this.d);
        r.success();
      } catch (err) {
        await r.fail();
        throw wrap(err, `Failed to copy instance "${src}" to "${dst}"`);
      }
      this.d.events.emit({ type: 'instance-created', instance: dst, data: { copyOf: src, ipv4: row.ipv4 } });
      return toWire(this.d, rowOf(this.d, dst), false);
    });
  }

  // ---- lifecycle ----

  /** Starts a stopped instance. */
  async start(name: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), () => this.startLocked(name));
  }

  /** Stops an instance: graceful within timeoutS, or at once with force. */
  async stop(name: string, opts: { force?: boolean; timeout?: number; stateful?: boolean } = {}): Promise<void> {
    await this.d.locks.withLock(lockKey(name), () => this.stopLocked(name, opts));
  }

  /** Stops (if running) and starts an instance. */
  async restart(name: string, opts: { force?: boolean; timeout?: number } = {}): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => {
      const st = await handleOf(this.d, rowOf(this.d, name)).state();
      assertLegal('restart', st, name);
      if (st.state === 'running' || st.state === 'frozen' || st.state === 'error') await this.stopLocked(name, opts);
      await this.startLocked(name);
    });
  }

  /** Freezes (pauses) every process of a running instance. */
  async freeze(name: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => {
      const handle = handleOf(this.d, rowOf(this.d, name));
      if (assertLegal('freeze', await handle.state(), name) === 'no-op') return;
      await handle.freeze().catch((e) => { throw wrap(e, `Failed to freeze instance "${name}"`); });
      this.d.db.updateInstance(name, { expectedState: 'frozen' });
      this.d.events.emit({ type: 'instance-frozen', instance: name });
    });
  }

  /** Resumes a frozen instance. */
  async unfreeze(name: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => {
      const handle = handleOf(this.d, rowOf(this.d, name));
      if (assertLegal('unfreeze', await handle.state(), name) === 'no-op') return;
      await handle.unfreeze().catch((e) => { throw wrap(e, `Failed to unfreeze instance "${name}"`); });
      this.d.db.updateInstance(name, { expectedState: 'running' });
      this.d.events.emit({ type: 'instance-unfrozen', instance: name });
    });
  }

  /** Changes config: validated, applied live where the backend can, otherwise pending until restart. */
  async patchConfig(name: string, set: InstanceConfig, unset: string[]): Promise<ConfigChangeResult> {
    return this.d.locks.withLock(lockKey(name), async () => {
      const row = rowOf(this.d, name);
      const driver = this.d.drivers.get(row.driver);
      const current = { ...row.config, ...row.pendingConfig };
      const next: InstanceConfig = { ...current, ...set };
      for (const k of unset) delete next[k];
      const validated = validateFor(this.d, driver, name, next);
      const handle = handleOf(this.d, row);
      const st = await handle.state();
      assertLegal('config-change', st, name);
      const changed = [...new Set([...Object.keys(validated), ...Object.keys(row.config)])].filter((k) => validated[k] !== row.config[k]);
      if (changed.length === 0) return { live: [], pending: [] };
      if (st.state === 'error') {
        // A faulted instance's process still holds its files: every change waits for the restart.
        const pendingConfig: InstanceConfig = { ...row.pendingConfig };
        for (const k of changed) pendingConfig[k] = validated[k] ?? '';
        this.d.db.updateInstance(name, { pendingConfig });
        this.d.events.emit({ type: 'instance-config-changed', instance: name, data: { live: [], pending: changed } });
        return { live: [], pending: changed };
      }
      if (driver.driver.storage === 'tree' && resourcesOf(validated).diskBytes !== resourcesOf(row.config).diskBytes) {
        await this.d.pool.setInstanceSize(name, resourcesOf(validated).diskBytes);
      }
      if (st.state === 'running' || st.state === 'frozen') {
        admit(this.d, name, validated);
        let liveHandle = handle;
        const cpus = resourcesOf(validated).cpuCount;
        if (cpus !== resourcesOf(row.config).cpuCount) {
          const cpuset = chooseCpuset(this.d, name, cpus) ?? null;
          this.d.db.updateInstance(name, { cpuset });
          liveHandle = handleOf(this.d, { ...row, cpuset });
        }
        const result = await liveHandle.applyConfig(validated, row.config).catch((e) => { throw wrap(e, `Failed to apply config to instance "${name}"`); });
        const diskLive = driver.driver.storage === 'tree' && changed.includes('limits.disk') ? ['limits.disk'] : [];
        const live = [...new Set([...result.live, ...diskLive])].filter((k) => changed.includes(k));
        const pending = changed.filter((k) => !live.includes(k));
        const applied: InstanceConfig = { ...row.config };
        for (const k of live) { if (validated[k] === undefined) delete applied[k]; else applied[k] = validated[k]!; }
        const pendingConfig: InstanceConfig = {};
        for (const k of pending) pendingConfig[k] = validated[k] ?? '';
        this.d.db.updateInstance(name, { config: applied, pendingConfig });
        this.d.events.emit({ type: 'instance-config-changed', instance: name, data: { live, pending } });
        return { live, pending };
      }
      const stoppedHandle = handleOf(this.d, { ...row, config: validated });
      await stoppedHandle.create();
      this.d.db.updateInstance(name, { config: validated, pendingConfig: {} });
      this.d.events.emit({ type: 'instance-config-changed', instance: name, data: { live: changed, pending: [] } });
      return { live: changed, pending: [] };
    });
  }

  // ---- snapshots ----

  /** Snapshots of an instance. */
  listSnapshots(name: string): Snapshot[] {
    return snapshots.listSnapshots(this.d, name);
  }

  /** Takes a snapshot: a backend one where the driver has them (qcow2, with RAM when stateful), else an instant copy-on-write snapshot of the root volume (frozen briefly when running). */
  async createSnapshot(name: string, snap: string, opts: { stateful?: boolean } = {}): Promise<void> {
    assertName(snap, 'snapshot');
    await this.d.locks.withLock(lockKey(name), () => snapshots.createSnapshot(this.d, name, snap, opts));
  }

  /** Restores a snapshot; a running instance is stopped, restored and started again. */
  async restoreSnapshot(name: string, snap: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), () => snapshots.restoreSnapshot(this.d, name, snap, this.locked));
  }

  /** Deletes a snapshot. */
  async deleteSnapshot(name: string, snap: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), () => snapshots.deleteSnapshot(this.d, name, snap));
  }

  // ---- exec / console ----

  /** Runs a command in a running instance. */
  async exec(name: string, spec: ExecSpec): Promise<HostProcess> {
    const row = rowOf(this.d, name);
    const driver = this.d.drivers.get(row.driver).driver;
    if (spec.tty && !driver.features.execTty) throw new AppError('UNSUPPORTED', `Instance "${name}" (${driver.name}) does not support a terminal for exec`);
    const handle = handleOf(this.d, row);
    assertLegal('exec', await handle.state(), name);
    return handle.exec(spec);
  }

  /** Attaches to the console of a running instance. */
  async attachConsole(name: string, size: { cols: number; rows: number }): Promise<HostProcess> {
    const handle = handleOf(this.d, rowOf(this.d, name));
    assertLegal('console', await handle.state(), name);
    return handle.attachConsole(size);
  }

  /** Opens the graphical console (VNC) of a running instance whose backend has one. */
  async openGraphicalConsole(name: string): Promise<Duplex> {
    const row = rowOf(this.d, name);
    const handle = handleOf(this.d, row);
    if (!handle.openGraphicalConsole) throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) has no graphical console`);
    assertLegal('graphical-console', await handle.state(), name);
    return handle.openGraphicalConsole();
  }

  /** Runs one command on the backend monitor of a running instance (QMP for VMs); the backend's error is the cause. */
  async monitor(name: string, command: string, args?: Record<string, unknown>): Promise<unknown> {
    const row = rowOf(this.d, name);
    const handle = handleOf(this.d, row);
    if (!handle.monitor) throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) has no backend monitor`);
    assertLegal('monitor', await handle.state(), name);
    try {
      return await handle.monitor(command, args);
    } catch (err) {
      throw new AppError('BACKEND_FAILED', `Monitor command "${command}" failed on instance "${name}"`, { cause: err });
    }
  }

  // ---- daemon start ----

  /** Compares the database with what really runs; reports drift as events and adopts what is there. */
  async reconcile(): Promise<void> {
    await reconcile(this.d);
  }

  /** Starts every stopped instance with boot.autostart=true. */
  async autostart(onError: (name: string, err: unknown) => void): Promise<void> {
    for (const row of this.d.db.listInstances()) {
      if (row.config['boot.autostart'] !== 'true' || row.expectedState !== 'stopped') continue;
      try { await this.start(row.name); } catch (err) { onError(row.name, err); }
    }
  }

  /** Backend observations become events at once; a guest that powered itself off is recorded as stopped (the drivers' sink). */
  readonly onBackendEvent = (instance: string, event: BackendEvent): void => {
    this.d.events.emit({ type: event.type, instance, ...(event.message ? { message: event.message } : {}), ...(event.data ? { data: event.data } : {}) });
    if (event.type === 'instance-shutdown' && event.data?.guest === true) void recordGuestShutdown(this.d, instance).catch(() => undefined);
    if (event.action === 'restart') void this.restartForBackend(instance, event.type);
  };

  // ---- internals ----

  /** Restarts an instance its backend asked to restart (a VM moving from a broken KVM to TCG); failures become an event. */
  private async restartForBackend(name: string, why: string): Promise<void> {
    try {
      await this.d.locks.withLock(lockKey(name), async () => {
        const row = this.d.db.getInstance(name);
        if (!row || row.expectedState === 'stopped') return;
        const st = await handleOf(this.d, row).state();
        if (st.state !== 'stopped') await this.stopLocked(name, { force: true });
        await this.startLocked(name);
      });
      this.d.events.emit({ type: 'instance-restarted', instance: name, data: { by: why } });
    } catch (err) {
      this.d.events.emit({ type: 'instance-restart-failed', instance: name, message: `Restart of instance "${name}" after ${why} failed: ${err instanceof Error ? err.message : String(err)}`, data: { by: why } });
    }
  }

  private async startLocked(name: string): Promise<void> {
    let row = rowOf(this.d, name);
    assertLegal('start', await handleOf(this.d, row).state(), name);
    if (Object.keys(row.pendingConfig).length > 0) {
      this.d.db.updateInstance(name, { config: { ...row.config, ...row.pendingConfig }, pendingConfig: {} });
      row = rowOf(this.d, name);
    }
    admit(this.d, name, row.config);
    const cpuset = chooseCpuset(this.d, name, resourcesOf(row.config).cpuCount) ?? null;
    // A container switched to (or from) an isolated map gets (or gives back) its block now.
    const idmapBlock = idmapBlockFor(this.d, this.d.drivers.get(row.driver), row.config, row.idmapBlock);
    this.d.db.updateInstance(name, { cpuset, idmapBlock });
    row = rowOf(this.d, name);
    this.d.events.emit({ type: 'instance-starting', instance: name });
    const handle = handleOf(this.d, row);
    try {
      await handle.create();
      await handle.start();
    } catch (err) {
      throw wrap(err, `Failed to start instance "${name}"`);
    }
    const now = await handle.state();
    this.d.db.updateInstance(name, { expectedState: 'running', initPid: now.pid, initStartTime: now.startTime });
    this.d.events.emit({ type: 'instance-started', instance: name, data: { pid: now.pid } });
  }

  private async stopLocked(name: string, opts: StopRequest): Promise<void> {
    const row = rowOf(this.d, name);
    if (opts.stateful && !this.d.drivers.get(row.driver).driver.features.statefulStop) {
      throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) cannot be stopped statefully`);
    }
    const handle = handleOf(this.d, row);
    assertLegal('stop', await handle.state(), name);
    const timeoutS = opts.timeout ?? DEFAULT_STOP_TIMEOUT_S;
    this.d.events.emit({ type: 'instance-stopping', instance: name, data: { force: opts.force ?? false } });
    try {
      await handle.stop({ force: opts.force ?? false, timeoutMs: timeoutS * 1000, ...(opts.stateful ? { stateful: true } : {}) });
    } catch (err) {
      if (isAppError(err, 'TIMEOUT')) throw new AppError('TIMEOUT', `Failed to stop instance "${name}" within ${timeoutS} s; use --force to kill it`, { cause: err });
      throw wrap(err, `Failed to stop instance "${name}"`);
    }
    this.d.db.updateInstance(name, { expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null });
    this.d.events.emit({ type: 'instance-stopped', instance: name, ...(opts.stateful ? { data: { stateful: true } } : {}) });
  }
}
