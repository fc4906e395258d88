// The instance service: creates, runs and manages instances through their drivers, recording state and emitting events.
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { AppError, isAppError } from '../shared/errors.js';
import { assertName } from '../shared/names.js';
import { keyAllowed, resourcesOf, unsupportedKeys, validateConfig, type InstanceConfig } from '../shared/config.js';
import type { ConfigChangeResult, CreateInstanceRequest, Instance, InstanceState, Snapshot } from '../shared/schemas.js';
import type { BackendEvent, ExecSpec, HostDriver, InstanceHandle, InstanceRecord, ObservedState } from '../drivers/driver.js';
import type { DriverSet } from '../drivers/registry.js';
import type { HostProcess, Host } from '../host/host.js';
import { IDS_PER_CONTAINER, type HostSnapshot } from '../host/facts.js';
import type { StateDb, InstanceRow, ExpectedState } from './db/database.js';
import type { EventBus } from './events.js';
import type { LockManager } from './locks.js';
import type { ImageService } from './images/service.js';
import type { BtrfsPool } from './storage/btrfs-pool.js';
import type { NetworkManager } from './network/manager.js';
import { allocateAddress, checkAddress, macFor } from './network/ipam.js';
import { Reverter } from '../host/reverter.js';
import { formatSize } from '../shared/units.js';

/** Dependencies of the instance service. */
export interface InstanceServiceDeps {
  host: Host;
  db: StateDb;
  events: EventBus;
  locks: LockManager;
  drivers: DriverSet;
  images: ImageService;
  pool: BtrfsPool;
  network: NetworkManager;
  facts: HostSnapshot;
  /** Root of per-instance directories (console logs, driver files). */
  instancesDir: string;
  prefix: string;
  poolSizeBytes: number;
  memoryReserveBytes: number;
}

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

const DEFAULT_STOP_TIMEOUT_S = 30;
const lockKey = (name: string) => `instance/${name}`;

/** Creates, runs and manages instances. */
export class InstanceService {
  constructor(private readonly d: InstanceServiceDeps) {}

  // ---- queries ----

  /** Every instance with its observed state. */
  async list(): Promise<Instance[]> {
    const rows = this.d.db.listInstances();
    return Promise.all(rows.map((r) => this.toWire(r, false)));
  }

  /** One instance with usage. */
  async get(name: string): Promise<Instance> {
    return this.toWire(this.row(name), true);
  }

  /** The persistent console log of an instance. */
  async consoleLog(name: string): Promise<string> {
    const handle = this.handle(this.row(name));
    return (await this.d.host.fs.readTextIfExists(handle.consoleLogPath())) ?? '';
  }

  // ---- create / delete ----

  /** Validates a create request without side effects; throws the first problem. */
  validateCreate(req: CreateInstanceRequest): CreatePlan {
    const name = assertName(req.name, 'instance');
    if (this.d.db.getInstance(name)) throw new AppError('ALREADY_EXISTS', `Instance "${name}" already exists`);
    const chosen = req.driver !== undefined ? this.d.drivers.get(req.driver) : undefined;
    if (chosen && req.type !== undefined && chosen.driver.type !== req.type) throw new AppError('INVALID_ARGUMENT', `Driver "${req.driver}" runs ${chosen.driver.type}s, not ${req.type}s`);
    const type = req.type ?? chosen?.driver.type ?? 'container';
    // A missing built-in image (busybox, debian) is built by the launch itself, as its first step.
    const buildImage = (req.image === 'busybox' || req.image === 'debian') && !this.d.images.has(req.image, type) ? { kind: req.image, vm: type === 'vm' } as const : undefined;
    const image = buildImage ? { alias: req.image } : this.d.images.get(req.image, type);
    const driver = chosen ?? this.d.drivers.forType(type);
    const config = this.validateFor(driver, name, req.config ?? {});
    if (req.ipv4 !== undefined) checkAddress(this.d.network.subnet, req.ipv4, this.takenAddresses());
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
      const taken = this.takenAddresses();
      if (plan.ipv4) checkAddress(this.d.network.subnet, plan.ipv4, taken);
      const ipv4 = plan.ipv4 ?? allocateAddress(this.d.network.subnet, plan.name, taken);
      const mac = this.uniqueMac(plan.name);
      const r = new Reverter();
      try {
        const row: InstanceRow = {
          name: plan.name, type: plan.driver.driver.type, driver: plan.driver.driver.name, image: image.alias, imageFingerprint: image.fingerprint,
          config: plan.config, pendingConfig: {}, ipv4, mac, expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null,
          idmapBlock: this.idmapBlockFor(plan.driver, plan.config, null), host: this.d.host.name, createdAt: new Date().toISOString(),
        };
        this.d.db.insertInstance(row);
        r.add('delete database row', () => this.d.db.deleteInstance(plan.name));
        progress('Creating root volume');
        // A container's disk limit is a quota on its volume; a VM's is the virtual size of its qcow2 (set by the driver).
        await this.d.pool.createInstanceVolume(plan.name, image.fingerprint, plan.driver.driver.storage === 'tree' ? resourcesOf(plan.config).diskBytes : undefined);
        r.add('delete root volume', () => this.d.pool.deleteInstanceVolume(plan.name));
        await this.d.host.fs.mkdir(this.instanceDir(plan.name), { recursive: true });
        r.add('remove instance directory', () => this.d.host.fs.rm(this.instanceDir(plan.name), { recursive: true, force: true }));
        const handle = this.handle(row);
        await handle.initRoot?.();
        await handle.create();
        r.add('delete backend files', () => handle.delete());
        await this.syncLeases();
        r.add('remove address lease', () => this.syncLeases(plan.name));
        this.d.events.emit({ type: 'instance-created', instance: plan.name, data: { image: image.alias, ipv4 } });
        if (plan.start) {
          progress('Starting');
          await this.startLocked(plan.name);
        }
        r.success();
        return await this.toWire(this.row(plan.name), false);
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
      const row = this.row(name);
      const handle = this.handle(row);
      const st = await handle.state();
      if (st.state === 'running' || st.state === 'frozen') {
        if (!force) throw new AppError('INVALID_STATE', `Instance "${name}" is ${st.state}; stop it first or delete with --force`);
        await handle.stop({ force: true, timeoutMs: 10_000 });
      } else if (st.state === 'error') {
        // Nothing runs in a faulted instance that a delete could lose; its process only holds resources.
        await handle.stop({ force: true, timeoutMs: 10_000 });
      }
      try {
        await handle.delete();
        await this.d.pool.deleteInstanceVolume(name);
        await this.d.host.fs.rm(this.instanceDir(name), { recursive: true, force: true });
        this.d.db.deleteInstance(name);
        await this.syncLeases();
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
      const from = this.row(src);
      if (this.d.db.getInstance(dst)) throw new AppError('ALREADY_EXISTS', `Instance "${dst}" already exists`);
      const driver = this.d.drivers.get(from.driver);
      if (!driver.driver.features.liveCopy && (await this.handle(from).state()).state !== 'stopped') throw new AppError('INVALID_STATE', `Cannot copy ${from.type === 'vm' ? 'VM' : 'instance'} "${src}" while it runs: stop it first (the ${from.driver} backend copies stopped instances only)`);
      const taken = this.takenAddresses();
      if (ipv4) checkAddress(this.d.network.subnet, ipv4, taken);
      const row: InstanceRow = {
        ...from, name: dst, ipv4: ipv4 ?? allocateAddress(this.d.network.subnet, dst, taken), mac: this.uniqueMac(dst),
        expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null, createdAt: new Date().toISOString(), pendingConfig: {},
        config: { ...from.config, ...from.pendingConfig }, idmapBlock: null,
      };
      // A copy is another container: its own id map, never its source's.
      row.idmapBlock = this.idmapBlockFor(driver, row.config, null);
      const r = new Reverter();
      try {
        this.d.db.insertInstance(row);
        r.add('delete database row', () => this.d.db.deleteInstance(dst));
        await this.d.pool.copyInstance(src, dst, driver.driver.storage === 'tree' ? resourcesOf(row.config).diskBytes : undefined);
        r.add('delete root volume', () => this.d.pool.deleteInstanceVolume(dst));
        await this.d.host.fs.mkdir(this.instanceDir(dst), { recursive: true });
        r.add('remove instance directory', () => this.d.host.fs.rm(this.instanceDir(dst), { recursive: true, force: true }));
        const handle = this.handle(row);
        await handle.initRoot?.();
        await handle.create();
        r.add('delete backend files', () => handle.delete());
        await this.syncLeases();
        r.success();
      } catch (err) {
        await r.fail();
        throw wrap(err, `Failed to copy instance "${src}" to "${dst}"`);
      }
      this.d.events.emit({ type: 'instance-created', instance: dst, data: { copyOf: src, ipv4: row.ipv4 } });
      return this.toWire(this.row(dst), false);
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
      const st = await this.handle(this.row(name)).state();
      if (st.state === 'running' || st.state === 'frozen' || st.state === 'error') await this.stopLocked(name, opts);
      await this.startLocked(name);
    });
  }

  /** Freezes (pauses) every process of a running instance. */
  async freeze(name: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => {
      const row = this.row(name);
      const handle = this.handle(row);
      const st = await handle.state();
      if (st.state === 'frozen') return;
      if (st.state !== 'running') throw new AppError('INVALID_STATE', `Cannot freeze instance "${name}": it is ${stateText(st)}`);
      await handle.freeze().catch((e) => { throw wrap(e, `Failed to freeze instance "${name}"`); });
      this.d.db.updateInstance(name, { expectedState: 'frozen' });
      this.d.events.emit({ type: 'instance-frozen', instance: name });
    });
  }

  /** Resumes a frozen instance. */
  async unfreeze(name: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => {
      const row = this.row(name);
      const handle = this.handle(row);
      const st = await handle.state();
      if (st.state === 'running') return;
      if (st.state !== 'frozen') throw new AppError('INVALID_STATE', `Cannot unfreeze instance "${name}": it is ${stateText(st)}`);
      await handle.unfreeze().catch((e) => { throw wrap(e, `Failed to unfreeze instance "${name}"`); });
      this.d.db.updateInstance(name, { expectedState: 'running' });
      this.d.events.emit({ type: 'instance-unfrozen', instance: name });
    });
  }

  /** Changes config: validated, applied live where the backend can, otherwise pending until restart. */
  async patchConfig(name: string, set: InstanceConfig, unset: string[]): Promise<ConfigChangeResult> {
    return this.d.locks.withLock(lockKey(name), async () => {
      const row = this.row(name);
      const driver = this.d.drivers.get(row.driver);
      const current = { ...row.config, ...row.pendingConfig };
      const next: InstanceConfig = { ...current, ...set };
      for (const k of unset) delete next[k];
      const validated = this.validateFor(driver, name, next);
      const handle = this.handle(row);
      const st = await handle.state();
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
        this.admit(name, validated);
        let liveHandle = handle;
        const cpus = resourcesOf(validated).cpuCount;
        if (cpus !== resourcesOf(row.config).cpuCount) {
          const cpuset = this.chooseCpuset(name, cpus) ?? null;
          this.d.db.updateInstance(name, { cpuset });
          liveHandle = this.handle({ ...row, cpuset });
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
      const stoppedHandle = this.handle({ ...row, config: validated });
      await stoppedHandle.create();
      this.d.db.updateInstance(name, { config: validated, pendingConfig: {} });
      this.d.events.emit({ type: 'instance-config-changed', instance: name, data: { live: changed, pending: [] } });
      return { live: changed, pending: [] };
    });
  }

  // ---- snapshots ----

  /** Snapshots of an instance. */
  listSnapshots(name: string): Snapshot[] {
    this.row(name);
    return this.d.db.listSnapshots(name).map((s) => ({ name: s.name, createdAt: s.createdAt, stateful: s.stateful }));
  }

  /** Takes a snapshot: a backend one where the driver has them (qcow2, with RAM when stateful), else an instant copy-on-write snapshot of the root volume (frozen briefly when running). */
  async createSnapshot(name: string, snap: string, opts: { stateful?: boolean } = {}): Promise<void> {
    assertName(snap, 'snapshot');
    await this.d.locks.withLock(lockKey(name), async () => {
      const row = this.row(name);
      if (this.d.db.listSnapshots(name).some((s) => s.name === snap)) throw new AppError('ALREADY_EXISTS', `Snapshot "${snap}" of instance "${name}" already exists`);
      const handle = this.handle(row);
      const now = await handle.state();
      if (now.state === 'error') throw new AppError('INVALID_STATE', `Cannot snapshot instance "${name}": it is ${stateText(now)}`);
      if (handle.snapshots) {
        await handle.snapshots.create(snap, { stateful: opts.stateful ?? false }).catch((e) => { throw wrap(e, `Failed to snapshot instance "${name}"`); });
        this.d.db.insertSnapshot({ instance: name, name: snap, createdAt: new Date().toISOString(), stateful: opts.stateful ?? false });
        this.d.events.emit({ type: 'instance-snapshot-created', instance: name, data: { snapshot: snap, stateful: opts.stateful ?? false } });
        return;
      }
      if (opts.stateful) throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) has no stateful snapshots`);
      const st = await handle.state();
      const freeze = st.state === 'running';
      if (freeze) await handle.freeze();
      try {
        await this.d.pool.createSnapshot(name, snap);
      } catch (err) {
        throw wrap(err, `Failed to snapshot instance "${name}"`);
      } finally {
        if (freeze) await handle.unfreeze();
      }
      this.d.db.insertSnapshot({ instance: name, name: snap, createdAt: new Date().toISOString(), stateful: false });
      this.d.events.emit({ type: 'instance-snapshot-created', instance: name, data: { snapshot: snap } });
    });
  }

  /** Restores a snapshot; a running instance is stopped, restored and started again. */
  async restoreSnapshot(name: string, snap: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => {
      const row = this.row(name);
      const snapRow = this.d.db.listSnapshots(name).find((s) => s.name === snap);
      if (!snapRow) throw new AppError('NOT_FOUND', `Snapshot "${snap}" of instance "${name}" not found`);
      const handle = this.handle(row);
      const st = await handle.state();
      if (st.state === 'error') throw new AppError('INVALID_STATE', `Cannot restore a snapshot of instance "${name}": it is ${stateText(st)}; stop it first`);
      const wasRunning = st.state === 'running' || st.state === 'frozen';
      if (handle.snapshots) {
        // A stateful snapshot restores RAM too: the instance ends up running where the snapshot was taken.
        if (!snapRow.stateful && wasRunning) await this.stopLocked(name, { timeout: DEFAULT_STOP_TIMEOUT_S });
        await handle.snapshots.restore(snap, { stateful: snapRow.stateful }).catch((e) => { throw wrap(e, `Failed to restore snapshot "${snap}" of instance "${name}"`); });
        if (snapRow.stateful) {
          const now = await handle.state();
          this.d.db.updateInstance(name, { expectedState: 'running', initPid: now.pid, initStartTime: now.startTime });
        }
        this.d.events.emit({ type: 'instance-snapshot-restored', instance: name, data: { snapshot: snap, stateful: snapRow.stateful } });
        if (!snapRow.stateful && wasRunning) await this.startLocked(name);
        return;
      }
      if (wasRunning) await this.stopLocked(name, { timeout: DEFAULT_STOP_TIMEOUT_S });
      try {
        await this.d.pool.restoreSnapshot(name, snap);
      } catch (err) {
        throw wrap(err, `Failed to restore snapshot "${snap}" of instance "${name}"`);
      }
      this.d.events.emit({ type: 'instance-snapshot-restored', instance: name, data: { snapshot: snap } });
      if (wasRunning) await this.startLocked(name);
    });
  }

  /** Deletes a snapshot. */
  async deleteSnapshot(name: string, snap: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => {
      const row = this.row(name);
      if (!this.d.db.listSnapshots(name).some((s) => s.name === snap)) throw new AppError('NOT_FOUND', `Snapshot "${snap}" of instance "${name}" not found`);
      const handle = this.handle(row);
      if (handle.snapshots) await handle.snapshots.delete(snap);
      else await this.d.pool.deleteSnapshot(name, snap);
      this.d.db.deleteSnapshot(name, snap);
      this.d.events.emit({ type: 'instance-snapshot-deleted', instance: name, data: { snapshot: snap } });
    });
  }

  // ---- exec / console ----

  /** Runs a command in a running instance. */
  async exec(name: string, spec: ExecSpec): Promise<HostProcess> {
    const row = this.row(name);
    const driver = this.d.drivers.get(row.driver).driver;
    if (spec.tty && !driver.features.execTty) throw new AppError('UNSUPPORTED', `Instance "${name}" (${driver.name}) does not support a terminal for exec`);
    const handle = this.handle(row);
    const st = await handle.state();
    if (st.state !== 'running') throw new AppError('INVALID_STATE', `Cannot run a command in instance "${name}": it is ${stateText(st)}`);
    return handle.exec(spec);
  }

  /** Attaches to the console of a running instance. */
  async attachConsole(name: string, size: { cols: number; rows: number }): Promise<HostProcess> {
    const row = this.row(name);
    const handle = this.handle(row);
    const st = await handle.state();
    if (st.state !== 'running' && st.state !== 'frozen') throw new AppError('INVALID_STATE', `Cannot attach to the console of instance "${name}": it is ${stateText(st)} (its log: hangar console ${name} --show-log)`);
    return handle.attachConsole(size);
  }

  /** Opens the graphical console (VNC) of a running instance whose backend has one. */
  async openGraphicalConsole(name: string): Promise<Duplex> {
    const row = this.row(name);
    const handle = this.handle(row);
    if (!handle.openGraphicalConsole) throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) has no graphical console`);
    const st = await handle.state();
    if (st.state !== 'running' && st.state !== 'frozen') throw new AppError('INVALID_STATE', `Cannot open the graphical console of instance "${name}": it is ${stateText(st)}`);
    return handle.openGraphicalConsole();
  }

  /** Runs one command on the backend monitor of a running instance (QMP for VMs); the backend's error is the cause. */
  async monitor(name: string, command: string, args?: Record<string, unknown>): Promise<unknown> {
    const row = this.row(name);
    const handle = this.handle(row);
    if (!handle.monitor) throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) has no backend monitor`);
    const st = await handle.state();
    // A faulted VM keeps its monitor: that is where its state can be looked at.
    if (st.state !== 'running' && st.state !== 'frozen' && st.state !== 'error') throw new AppError('INVALID_STATE', `Cannot reach the monitor of instance "${name}": it is ${st.state}`);
    try {
      return await handle.monitor(command, args);
    } catch (err) {
      throw new AppError('BACKEND_FAILED', `Monitor command "${command}" failed on instance "${name}"`, { cause: err });
    }
  }

  // ---- daemon start ----

  /** Compares the database with what really runs; reports drift as events and adopts what is there. */
  async reconcile(): Promise<void> {
    for (const row of this.d.db.listInstances()) {
      await this.d.locks.withLock(lockKey(row.name), async () => {
        const handle = this.handle(row);
        const rootExists = await this.d.pool.instanceExists(row.name);
        const st = await handle.state();
        if (!rootExists && st.state !== 'running' && st.state !== 'frozen' && st.state !== 'error') {
          this.d.events.emit({ type: 'instance-drift', instance: row.name, message: `Instance "${row.name}" was deleted while hangard was down`, data: { expected: row.expectedState, actual: 'deleted' } });
          await handle.delete().catch(() => undefined);
          await this.d.host.fs.rm(this.instanceDir(row.name), { recursive: true, force: true });
          this.d.db.deleteInstance(row.name);
          return;
        }
        // A faulted instance still runs as far as its resources go; its fault is reported by its own instance-error event.
        const actual: ExpectedState = st.state === 'running' || st.state === 'error' ? 'running' : st.state === 'frozen' ? 'frozen' : 'stopped';
        if (actual !== row.expectedState) {
          this.d.events.emit({ type: 'instance-drift', instance: row.name, message: `Instance "${row.name}" is ${actual} but was ${row.expectedState}`, data: { expected: row.expectedState, actual } });
        } else if (actual !== 'stopped' && row.initPid !== null && (st.pid !== row.initPid || st.startTime !== row.initStartTime)) {
          this.d.events.emit({ type: 'instance-drift', instance: row.name, message: `Instance "${row.name}" was restarted while hangard was down`, data: { expected: row.expectedState, actual, previousPid: row.initPid, pid: st.pid } });
        }
        this.d.db.updateInstance(row.name, { expectedState: actual, initPid: st.pid, initStartTime: st.startTime });
      });
    }
    await this.syncLeases();
  }

  /** Starts every stopped instance with boot.autostart=true. */
  async autostart(onError: (name: string, err: unknown) => void): Promise<void> {
    for (const row of this.d.db.listInstances()) {
      if (row.config['boot.autostart'] !== 'true' || row.expectedState !== 'stopped') continue;
      try { await this.start(row.name); } catch (err) { onError(row.name, err); }
    }
  }

  // ---- internals ----

  /**
   * The isolated id map block of an unprivileged container (security.idmap.isolated, default true): its current one, or
   * the lowest no other instance holds; null for VMs, privileged containers and shared maps.
   */
  private idmapBlockFor(driver: HostDriver, config: InstanceConfig, current: number | null): number | null {
    if (driver.idmap?.(config) !== 'isolated') return null;
    if (current !== null) return current;
    const range = this.d.facts.idmapIsolated;
    if (!range) throw new AppError('INSUFFICIENT_RESOURCES', 'This host has no subordinate id range for isolated id maps (see /etc/subuid); set security.idmap.isolated=false to share one map');
    const used = new Set(this.d.db.listInstances().map((r) => r.idmapBlock).filter((b): b is number => b !== null));
    for (let b = 0; b < range.blocks; b++) if (!used.has(b)) return b;
    throw new AppError('INSUFFICIENT_RESOURCES', `All ${range.blocks} isolated id maps of this host are in use; set security.idmap.isolated=false to share one map`);
  }

  private async startLocked(name: string): Promise<void> {
    let row = this.row(name);
    const handle0 = this.handle(row);
    const st = await handle0.state();
    if (st.state === 'running' || st.state === 'frozen') throw new AppError('INVALID_STATE', `Instance "${name}" is already ${st.state}`);
    if (st.state === 'error') throw new AppError('INVALID_STATE', `Instance "${name}" is ${stateText(st)}; use restart, or stop it first`);
    if (Object.keys(row.pendingConfig).length > 0) {
      this.d.db.updateInstance(name, { config: { ...row.config, ...row.pendingConfig }, pendingConfig: {} });
      row = this.row(name);
    }
    this.admit(name, row.config);
    const cpuset = this.chooseCpuset(name, resourcesOf(row.config).cpuCount) ?? null;
    // A container switched to (or from) an isolated map gets (or gives back) its block now.
    const idmapBlock = this.idmapBlockFor(this.d.drivers.get(row.driver), row.config, row.idmapBlock);
    this.d.db.updateInstance(name, { cpuset, idmapBlock });
    row = this.row(name);
    this.d.events.emit({ type: 'instance-starting', instance: name });
    const handle = this.handle(row);
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

  private async stopLocked(name: string, opts: { force?: boolean; timeout?: number; stateful?: boolean }): Promise<void> {
    const row = this.row(name);
    if (opts.stateful && !this.d.drivers.get(row.driver).driver.features.statefulStop) {
      throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) cannot be stopped statefully`);
    }
    const handle = this.handle(row);
    const st = await handle.state();
    if (st.state === 'stopped') throw new AppError('INVALID_STATE', `Instance "${name}" is already stopped`);
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

  /** Refuses a start (or a live change) that would overcommit memory guarantees. */
  private admit(name: string, config: InstanceConfig): void {
    const want = resourcesOf(config).memoryGuarantee ?? 0;
    if (want === 0) return;
    let committed = 0;
    for (const r of this.d.db.listInstances()) {
      if (r.name === name || r.expectedState === 'stopped') continue;
      committed += resourcesOf(r.config).memoryGuarantee ?? 0;
    }
    const capacity = this.d.facts.memoryBytes - this.d.memoryReserveBytes;
    if (committed + want > capacity) {
      throw new AppError('INSUFFICIENT_RESOURCES', `Cannot start instance "${name}": its memory guarantee of ${formatSize(want)} would raise the guarantees of running instances to ${formatSize(committed + want)}, above the ${formatSize(capacity)} this host can guarantee (RAM minus a ${formatSize(this.d.memoryReserveBytes)} reserve)`);
    }
  }

  private validateFor(driver: HostDriver, name: string, config: InstanceConfig): InstanceConfig {
    const validated = validateConfig(config);
    const r = resourcesOf(validated);
    const facts = this.d.facts;
    if (r.memoryMax !== undefined && r.memoryMax > facts.memoryBytes) throw new AppError('INVALID_SIZE', `limits.memory ${validated['limits.memory']} of instance "${name}" is larger than this host's ${formatSize(facts.memoryBytes)} of RAM`);
    if (r.memoryGuarantee !== undefined && r.memoryGuarantee > facts.memoryBytes - this.d.memoryReserveBytes) throw new AppError('INVALID_SIZE', `limits.memory.guarantee ${validated['limits.memory.guarantee']} of instance "${name}" is larger than this host can guarantee`);
    if (r.cpuCount !== undefined && r.cpuCount > facts.cpus) throw new AppError('INVALID_CONFIG', `limits.cpu ${r.cpuCount} of instance "${name}" is more than this host's ${facts.cpus} CPUs`);
    if (r.diskBytes !== undefined && r.diskBytes > this.d.poolSizeBytes) throw new AppError('INVALID_SIZE', `limits.disk ${validated['limits.disk']} of instance "${name}" is larger than the storage pool (${formatSize(this.d.poolSizeBytes)})`);
    // A key this backend does not declare is refused, naming the backends that do honour it.
    const problems = unsupportedKeys(validated, driver.driver.keys).map((k) => {
      const others = this.d.drivers.all().filter((d) => keyAllowed(k, d.driver.keys)).map((d) => d.driver.name);
      return `${k} is not supported by the ${driver.driver.name} backend${others.length ? ` (it is a key of: ${others.join(', ')})` : ''}`;
    });
    problems.push(...driver.validate(validated));
    if (problems.length > 0) throw new AppError('UNSUPPORTED', `Invalid config for instance "${name}" on the ${driver.driver.name} backend: ${problems.join('; ')}`, { details: { problems } });
    return validated;
  }

  private row(name: string): InstanceRow {
    const row = this.d.db.getInstance(name);
    if (!row) throw new AppError('NOT_FOUND', `Instance "${name}" not found`);
    return row;
  }

  private instanceDir(name: string): string {
    return join(this.d.instancesDir, name);
  }

  /** The cpuset for an instance limited to n CPUs: the n least-used CPUs among running instances. */
  private chooseCpuset(name: string, n: number | undefined): string | undefined {
    if (n === undefined) return undefined;
    const load = new Map<number, number>(this.d.facts.cpuList.map((c) => [c, 0]));
    for (const r of this.d.db.listInstances()) {
      if (r.name === name || r.expectedState === 'stopped') continue;
      const cpus = r.cpuset;
      if (!cpus) continue;
      for (const c of cpus.split(',').map(Number)) load.set(c, (load.get(c) ?? 0) + 1);
    }
    const chosen = [...load.entries()].sort((a, b) => a[1] - b[1] || a[0] - b[0]).slice(0, n).map(([c]) => c).sort((a, b) => a - b);
    return chosen.join(',');
  }

  private record(row: InstanceRow): InstanceRecord {
    const subnet = this.d.network.subnet;
    const image = this.d.db.getImage(row.image, row.type);
    const iso = this.d.facts.idmapIsolated;
    const idmap = row.idmapBlock !== null && iso ? { uidStart: iso.uidStart + row.idmapBlock * IDS_PER_CONTAINER, gidStart: iso.gidStart + row.idmapBlock * IDS_PER_CONTAINER, count: IDS_PER_CONTAINER } : undefined;
    return {
      name: row.name, host: row.host, type: row.type, driver: row.driver, image: row.image, config: row.config,
      // A container's runtime mounts its root through the pool's second mount, which allows set-uid programs.
      rootPath: this.d.drivers.get(row.driver).driver.storage === 'tree' ? this.d.pool.containerRootPath(row.name) : this.d.pool.instancePath(row.name), instanceDir: this.instanceDir(row.name),
      ...(idmap ? { idmap } : {}),
      nic: { bridge: this.d.network.info().bridge, hostIfName: this.d.network.hostIfName(row.name), mac: row.mac, ipv4: row.ipv4, prefixLength: subnet.prefixLength, gateway: subnet.gateway },
      imageProps: image?.props ?? {},
      imagePath: image ? this.d.pool.imagePath(image.fingerprint) : undefined,
      cpuset: row.cpuset ?? undefined,
    };
  }

  private handle(row: InstanceRow): InstanceHandle {
    return this.d.drivers.get(row.driver).load(this.record(row));
  }

  /** Backend observations become events at once; a guest that powered itself off is recorded as stopped (the drivers' sink). */
  readonly onBackendEvent = (instance: string, event: BackendEvent): void => {
    this.d.events.emit({ type: event.type, instance, ...(event.message ? { message: event.message } : {}), ...(event.data ? { data: event.data } : {}) });
    if (event.type === 'instance-shutdown' && event.data?.guest === true) void this.afterGuestShutdown(instance).catch(() => undefined);
    if (event.action === 'restart') void this.restartForBackend(instance, event.type);
  };

  /** Restarts an instance its backend asked to restart (a VM moving from a broken KVM to TCG); failures become an event. */
  private async restartForBackend(name: string, why: string): Promise<void> {
    try {
      await this.d.locks.withLock(lockKey(name), async () => {
        const row = this.d.db.getInstance(name);
        if (!row || row.expectedState === 'stopped') return;
        const st = await this.handle(row).state();
        if (st.state !== 'stopped') await this.stopLocked(name, { force: true });
        await this.startLocked(name);
      });
      this.d.events.emit({ type: 'instance-restarted', instance: name, data: { by: why } });
    } catch (err) {
      this.d.events.emit({ type: 'instance-restart-failed', instance: name, message: `Restart of instance "${name}" after ${why} failed: ${err instanceof Error ? err.message : String(err)}`, data: { by: why } });
    }
  }

  private async afterGuestShutdown(name: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => {
      const row = this.d.db.getInstance(name);
      // A stop Hangar asked for has already recorded the new state.
      if (!row || row.expectedState === 'stopped') return;
      const handle = this.handle(row);
      for (let i = 0; i < 100; i++) {
        if ((await handle.state()).state === 'stopped') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      if ((await handle.state()).state !== 'stopped') return;
      // Releases what the backend holds for a running instance (a VM's tap).
      await handle.stop({ force: true, timeoutMs: 1_000 });
      this.d.db.updateInstance(name, { expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null });
      this.d.events.emit({ type: 'instance-stopped', instance: name, data: { by: 'guest' } });
    });
  }

  private takenAddresses(): Set<string> {
    return new Set(this.d.db.listInstances().map((r) => r.ipv4));
  }

  private uniqueMac(name: string): string {
    const used = new Set(this.d.db.listInstances().map((r) => r.mac));
    for (let i = 0; ; i++) {
      const mac = macFor(`${this.d.prefix}/${name}/${i}/${Date.now()}`);
      if (!used.has(mac)) return mac;
    }
  }

  private async syncLeases(without?: string): Promise<void> {
    const leases = this.d.db.listInstances().filter((r) => r.name !== without).map((r) => ({ name: r.name, mac: r.mac, ipv4: r.ipv4 }));
    await this.d.network.setLeases(leases);
  }

  private async toWire(row: InstanceRow, withUsage: boolean): Promise<Instance> {
    const driver = this.d.drivers.get(row.driver);
    const handle = this.handle(row);
    let state: InstanceState = 'unknown';
    let pid: number | null = null;
    let error: Instance['error'];
    try {
      const st = await handle.state();
      state = st.state;
      pid = st.pid;
      error = st.error;
    } catch (e) {
      state = 'error';
      error = { reason: `its state cannot be read: ${e instanceof Error ? e.message : String(e)}`, since: new Date().toISOString() };
    }
    const out: Instance = {
      name: row.name, type: row.type, driver: row.driver, state, image: row.image, ipv4: row.ipv4, mac: row.mac,
      config: row.config, pendingConfig: row.pendingConfig, pid, createdAt: row.createdAt, technology: driver.technology(row.config), features: driver.driver.features,
      ...(error ? { error } : {}),
    };
    if (withUsage) {
      const usage = state === 'running' || state === 'frozen' ? await handle.usage().catch(() => ({})) : {};
      const disk = await this.d.pool.instanceUsage(row.name).catch(() => undefined);
      out.usage = { ...usage, ...(disk ? { diskUsedBytes: disk.referencedBytes } : {}) };
      const details = handle.details ? await handle.details().catch(() => undefined) : undefined;
      if (details && Object.keys(details).length) out.details = details;
    }
    return out;
  }
}

/** A state for messages: "error (QEMU's reason)" for a fault, else the state itself. */
function stateText(st: ObservedState): string {
  return st.state === 'error' && st.error ? `in error (${st.error.reason})` : st.state;
}

/** Wraps an error in an AppError naming the subject, keeping AppError codes of the cause. */
function wrap(err: unknown, message: string): AppError {
  if (err instanceof AppError) return new AppError(err.code, message, { cause: err });
  return new AppError('BACKEND_FAILED', message, { cause: err });
}
