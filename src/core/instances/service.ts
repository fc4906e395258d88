// The instance service: creates, runs and manages instances through their drivers on their hosts, recording state and emitting events (the API and the daemon use this class).
import type { Duplex } from 'node:stream';
import { AppError, isAppError } from '../../shared/errors.js';
import { assertName } from '../../shared/names.js';
import { LOCAL_HOST } from '../../shared/hosts.js';
import { resourcesOf, type InstanceConfig } from '../../shared/config.js';
import type { Beancounter, ConfigChangeResult, CreateInstanceRequest, ExecInfo, ExecSignal, Instance, Snapshot } from '../../shared/schemas.js';
import type { BackendEvent, ExecSpec, HostDriver, ObservedState } from '../../drivers/driver.js';
import type { HostProcess } from '../../host/host.js';
import { Reverter } from '../../host/reverter.js';
import type { InstanceRow } from '../db/database.js';
import type { HostContext } from '../hosts/context.js';
import { ensureImageOn } from '../hosts/images.js';
import { assertLegal } from './actions.js';
import { DEFAULT_STOP_TIMEOUT_S, hostOf, instanceDir, lockKey, ownsVolume, rowOf, wrap, type InstanceServiceDeps, type LockedLifecycle, type StopRequest } from './context.js';
import {
  admit, checkRequestedAddress, checkRequestedMac, chooseCpuset, chooseDriver, handleIn, handleOf, idmapBlockFor, placeAddress, syncLeases, uniqueMac, validateFor, volumeLimit,
} from './placement.js';
import { reconcile, recordGuestShutdown } from './reconcile.js';
import { checkMove, moveInstance } from './move.js';
import * as snapshots from './snapshots.js';
import { toWire } from './wire.js';
import { ExitWatcher } from './exit-watch.js';
import { ExecRegistry, type StartedExec } from './execs.js';
import { EXEC_RUNNING, INSTANCE_CREATE, INSTANCE_DELETE } from './recover.js';

/** Dependencies of the instance service (defined in context.ts, shared by its parts). */
export type { InstanceServiceDeps } from './context.js';

/** A create request that passed validation. */
export interface CreatePlan {
  name: string;
  /** The host it goes on. */
  host: string;
  image: string;
  driver: HostDriver;
  config: InstanceConfig;
  ipv4?: string;
  start: boolean;
  /** Build this built-in image first (it was missing when the request came in). */
  buildImage?: { kind: 'busybox' | 'debian'; vm: boolean };
}

/** An existing domain to adopt (an import): what it is called, where it lives, its translated config and addresses, where it came from. */
export interface AdoptRequest {
  name: string;
  host: string;
  driver: string;
  config: InstanceConfig;
  ipv4?: string;
  mac?: string;
  origin: Record<string, unknown>;
  /** The driver makes its disks in an (empty) volume of Hangar's own: an OpenVZ CT's private area made from the imported one. */
  volume?: boolean;
}

/** An adoption that passed validation. */
export interface AdoptPlan extends AdoptRequest {
  driverInstance: HostDriver;
}

/** Creates, runs and manages instances. */
export class InstanceService {
  // What a snapshot restore and a backend restart run while they hold the instance's lock.
  private readonly locked: LockedLifecycle = {
    start: async (name) => { await this.startLocked(name); },
    stop: (name, opts) => this.stopLocked(name, opts),
  };

  /** The inits of running containers and the QEMUs of VMs, watched so that an end outside Hangar is recorded at once. */
  private readonly exits: ExitWatcher;

  /** The commands running through exec, listed and signalled by id. */
  private readonly execs = new ExecRegistry();

  constructor(private readonly d: InstanceServiceDeps) {
    this.exits = new ExitWatcher(d, (name) => this.start(name));
  }

  /** Ends the watches of inits and pending automatic restarts (daemon shutdown, tests). */
  close(): void {
    this.exits.close();
  }

  // ---- queries ----

  /** Every instance (or those of one host) with its observed state; instances of a host that is down are unknown, with why. */
  async list(host?: string): Promise<Instance[]> {
    if (host !== undefined && !this.d.hosts.has(host)) throw new AppError('NOT_FOUND', `Host "${host}" not found`, { details: { hint: 'hangar host list' } });
    const rows = this.d.db.listInstances().filter((r) => host === undefined || r.host === host);
    return Promise.all(rows.map((r) => toWire(this.d, r, false)));
  }

  /** One instance with usage. */
  async get(name: string): Promise<Instance> {
    return toWire(this.d, rowOf(this.d, name), true);
  }

  /** The persistent console log of an instance. */
  async consoleLog(name: string): Promise<string> {
    const row = rowOf(this.d, name);
    const h = hostOf(this.d, row);
    return (await h.host.fs.readTextIfExists(handleIn(this.d, h, row).consoleLogPath())) ?? '';
  }

  // ---- create / delete ----

  /** Validates a create request without side effects; throws the first problem. */
  validateCreate(req: CreateInstanceRequest): CreatePlan {
    const name = assertName(req.name, 'instance');
    this.assertFree(name);
    const h = this.hostFor(req.host ?? LOCAL_HOST, name);
    const { driver, type } = chooseDriver(h, req);
    // A backend that keeps the disk itself (openvz7) takes its own OS template's name: Hangar's image store is not asked, its driver checks the name.
    const backend = driver.driver.storage === 'backend';
    // A missing built-in image (busybox, debian) is built by the launch itself, as its first step.
    const buildImage = !backend && (req.image === 'busybox' || req.image === 'debian') && !this.d.images.has(req.image, type) ? { kind: req.image, vm: type === 'vm' } as const : undefined;
    const image = backend || buildImage ? { alias: req.image } : this.d.images.get(req.image, type);
    const config = validateFor(this.d, h, driver, name, req.config ?? {});
    if (req.ipv4 !== undefined) checkRequestedAddress(this.d, h, req.ipv4);
    return { name, host: h.name, image: image.alias, driver, config, ...(req.ipv4 !== undefined ? { ipv4: req.ipv4 } : {}), start: req.start ?? false, ...(buildImage ? { buildImage } : {}) };
  }

  /** Creates (and with plan.start, starts) an instance; on any failure everything done so far is undone. */
  async create(plan: CreatePlan, progress: (m: string) => void = () => undefined): Promise<Instance> {
    return this.d.locks.withLock([lockKey(plan.name), `image/${plan.image}`], async () => {
      this.assertFree(plan.name);
      const h = this.hostFor(plan.host, plan.name);
      // Opened again meanwhile (a reconnection), the host's drivers are the new ones.
      const driver = h.drivers.get(plan.driver.driver.name);
      if (plan.buildImage && !this.d.images.has(plan.image, plan.driver.driver.type)) {
        progress(`Building the ${plan.buildImage.kind}${plan.buildImage.vm ? ' VM' : ''} image first`);
        await this.d.images.build(plan.buildImage.kind, { vm: plan.buildImage.vm }, progress);
      }
      const backend = driver.driver.storage === 'backend';
      const image = backend ? { alias: plan.image, fingerprint: '' } : this.d.images.get(plan.image, plan.driver.driver.type);
      const ipv4 = placeAddress(this.d, h, plan.name, plan.ipv4, plan.config);
      const mac = uniqueMac(this.d, plan.name);
      const r = new Reverter();
      // Journaled before the first side effect: a daemon that ends before it is done leaves the intent, and the next
      // one removes what was made (its operation answers "interrupted"; a half-made instance never lingers).
      const intent = this.d.db.addIntent(INSTANCE_CREATE, plan.name, { image: image.alias });
      try {
        const row: InstanceRow = {
          name: plan.name, type: driver.driver.type, driver: driver.driver.name, image: image.alias, imageFingerprint: image.fingerprint,
          config: plan.config, pendingConfig: {}, ipv4, mac, expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null,
          idmapBlock: idmapBlockFor(this.d, h, driver, plan.config, null), host: h.name, createdAt: new Date().toISOString(), origin: null,
        };
        // Checked with no await before the insert: a host removal (one synchronous transaction) cannot come in between.
        this.hostFor(plan.host, plan.name);
        this.d.db.insertInstance(row);
        r.add('delete database row', () => this.d.db.deleteInstance(plan.name));
        // The backend that keeps the disk itself gets no image and no root volume: its driver makes the CT from its template.
        if (!backend) {
          // A remote host gets its own copy of the image once (kept for the next instances made from it).
          if (!h.local) await ensureImageOn(this.d.hosts.local(), h, image.fingerprint, progress);
          progress('Creating root volume');
          // A VM driver makes its disks in the volume, backed by the image where it is: a copy of the image would be waste.
          await h.pool.createInstanceVolume(plan.name, image.fingerprint, volumeLimit(driver, plan.config), { empty: driver.driver.storage === 'image' });
          r.add('delete root volume', () => h.pool.deleteInstanceVolume(plan.name));
        }
        await h.host.fs.mkdir(instanceDir(h, plan.name), { recursive: true });
        r.add('remove instance directory', () => h.host.fs.rm(instanceDir(h, plan.name), { recursive: true, force: true }));
        const handle = handleIn(this.d, h, row);
        await handle.initRoot?.();
        await handle.create();
        r.add('delete backend files', () => handle.delete());
        await syncLeases(this.d, h);
        r.add('remove address lease', () => syncLeases(this.d, h, plan.name));
        this.d.events.emit({ type: 'instance-created', instance: plan.name, data: { image: image.alias, ipv4 } });
        let now: ObservedState | undefined;
        if (plan.start) {
          progress('Starting');
          // Made just now under its lock, it is stopped: no read needed (a foreign Xen domain of its name makes xl create fail).
          now = await this.startLocked(plan.name, { state: 'stopped', pid: null, startTime: null });
        }
        r.success();
        this.d.db.removeIntent(intent);
        return await toWire(this.d, rowOf(this.d, plan.name), false, now);
      } catch (err) {
        await r.fail();
        this.d.db.removeIntent(intent);
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
      const h = hostOf(this.d, row);
      const handle = handleIn(this.d, h, row);
      const st = await handle.state();
      assertLegal(force ? 'force-delete' : 'delete', st, name);
      // Nothing runs in a faulted instance that a delete could lose; its process only holds resources.
      // Journaled: a delete the daemon's end cuts off is finished by the next one (an instance half-deleted never lingers).
      const intent = this.d.db.addIntent(INSTANCE_DELETE, name, {});
      try {
        if (st.state === 'running' || st.state === 'frozen' || st.state === 'error') await handle.stop({ force: true, timeoutMs: 10_000 });
        await handle.delete();
        if (h.drivers.get(row.driver).driver.storage !== 'backend') await h.pool.deleteInstanceVolume(name);
        await h.host.fs.rm(instanceDir(h, name), { recursive: true, force: true });
        this.d.db.deleteInstance(name);
        this.d.db.removeIntent(intent);
        this.exits.disarm(name);
        await syncLeases(this.d, h);
      } catch (err) {
        // The instance is still there (its stop or removal failed): it can be deleted again, nothing to finish later.
        if (this.d.db.getInstance(name)) this.d.db.removeIntent(intent);
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
      this.assertFree(dst);
      if (hostOf(this.d, from).drivers.get(from.driver).driver.storage === 'backend') {
        throw new AppError('UNSUPPORTED', `Cannot copy instance "${src}": its ${from.driver} backend keeps its disk on its host itself, so Hangar has no volume of it to copy (on an OpenVZ 7 node, prlctl clone copies a CT)`);
      }
      if (!ownsVolume(from)) throw new AppError('UNSUPPORTED', `Instance "${src}" was imported with its disks where they are: Hangar has no volume of it to copy`);
      // A copy lives on its source's host, next to the volume it is copied from.
      const h = hostOf(this.d, from);
      const driver = h.drivers.get(from.driver);
      const live = driver.driver.features.liveCopy;
      assertLegal(live ? 'live-copy' : 'copy', await handleIn(this.d, h, from).state(), src, live ? undefined : `the ${from.driver} backend copies stopped instances only`);
      // Identities are the source's own: a copy gets no CTID or extra venet addresses of it.
      const { 'openvz.ctid': _ctid, 'openvz.ipadd': _extra, ...config } = { ...from.config, ...from.pendingConfig };
      const row: InstanceRow = {
        ...from, name: dst, ipv4: placeAddress(this.d, h, dst, ipv4), mac: uniqueMac(this.d, dst),
        expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null, createdAt: new Date().toISOString(), pendingConfig: {},
        // A copy is another container: its own id map, never its source's.
        config, idmapBlock: idmapBlockFor(this.d, h, driver, config, null),
      };
      const r = new Reverter();
      // Journaled like a create: an interrupted copy is removed by the next daemon.
      const intent = this.d.db.addIntent(INSTANCE_CREATE, dst, { copyOf: src });
      try {
        this.d.db.insertInstance(row);
        r.add('delete database row', () => this.d.db.deleteInstance(dst));
        await h.pool.copyInstance(src, dst, volumeLimit(driver, row.config));
        r.add('delete root volume', () => h.pool.deleteInstanceVolume(dst));
        await h.host.fs.mkdir(instanceDir(h, dst), { recursive: true });
        r.add('remove instance directory', () => h.host.fs.rm(instanceDir(h, dst), { recursive: true, force: true }));
        const handle = handleIn(this.d, h, row);
        await handle.initRoot?.();
        await handle.create();
        r.add('delete backend files', () => handle.delete());
        await syncLeases(this.d, h);
        r.success();
        this.d.db.removeIntent(intent);
      } catch (err) {
        await r.fail();
        this.d.db.removeIntent(intent);
        throw wrap(err, `Failed to copy instance "${src}" to "${dst}"`);
      }
      this.d.events.emit({ type: 'instance-created', instance: dst, data: { copyOf: src, ipv4: row.ipv4 } });
      return toWire(this.d, rowOf(this.d, dst), false);
    });
  }

  /** Checks a move to another host without side effects. */
  checkMove(name: string, host: string): void {
    checkMove(this.d, name, host);
  }

  /** Moves a container to another host, offline (src/core/instances/move.ts). */
  async move(name: string, host: string, progress: (m: string) => void = () => undefined): Promise<Instance> {
    await this.d.locks.withLock(lockKey(name), () => moveInstance(this.d, name, host, this.locked, progress));
    return toWire(this.d, rowOf(this.d, name), false);
  }

  // ---- lifecycle ----

  /** Starts a stopped instance. */
  async start(name: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => { await this.startLocked(name); });
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
      const h = hostOf(this.d, row);
      const driver = h.drivers.get(row.driver);
      const current = { ...row.config, ...row.pendingConfig };
      const next: InstanceConfig = { ...current, ...set };
      for (const k of unset) delete next[k];
      const validated = validateFor(this.d, h, driver, name, next);
      const handle = handleIn(this.d, h, row);
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
        await h.pool.setInstanceSize(name, resourcesOf(validated).diskBytes);
      }
      if (st.state === 'running' || st.state === 'frozen') {
        admit(this.d, h, name, validated, driver);
        let liveHandle = handle;
        const cpus = resourcesOf(validated).cpuCount;
        if (cpus !== resourcesOf(row.config).cpuCount) {
          const cpuset = chooseCpuset(this.d, h, name, cpus) ?? null;
          this.d.db.updateInstance(name, { cpuset });
          liveHandle = handleIn(this.d, h, { ...row, cpuset });
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
      const stoppedHandle = handleIn(this.d, h, { ...row, config: validated });
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
  async exec(name: string, spec: ExecSpec & { disconnectSignal?: ExecSignal | undefined }): Promise<StartedExec> {
    const row = rowOf(this.d, name);
    const h = hostOf(this.d, row);
    const driver = h.drivers.get(row.driver).driver;
    if (spec.tty && !driver.features.execTty) throw new AppError('UNSUPPORTED', `Instance "${name}" (${driver.name}) does not support a terminal for exec`);
    const handle = handleIn(this.d, h, row);
    assertLegal('exec', await handle.state(), name);
    const { disconnectSignal, ...run } = spec;
    const proc = handle.exec(run);
    // A container's exec on this machine leads a process group that outlives a killed daemon: journaled, so that the
    // next daemon ends what this one's death left without a client (recover.ts).
    const journal = (data: Record<string, unknown>) => {
      const intent = this.d.db.addIntent(EXEC_RUNNING, name, { ...data, daemon: process.pid });
      void proc.wait().catch(() => undefined).then(() => this.d.db.removeIntent(intent));
    };
    if (h.local && driver.type === 'container') {
      void proc.pid.then((pid) => { if (pid > 0) journal({ pid }); }).catch(() => undefined);
    } else if (proc.guestPid && handle.endGuestProcess) {
      // A VM's command outlives a killed daemon in the guest: journaled with the VM's QEMU it runs in.
      const vm = { vmPid: row.initPid, vmStart: row.initStartTime };
      void proc.guestPid.then((guestPid) => journal({ guestPid, ...vm })).catch(() => undefined);
    }
    return this.execs.add(name, proc, { command: spec.command, tty: spec.tty !== undefined, disconnectSignal });
  }

  /** The commands running in an instance through exec. */
  listExecs(name: string): ExecInfo[] {
    rowOf(this.d, name);
    return this.execs.list(name);
  }

  /** Sends a signal to a running exec of an instance. */
  signalExec(name: string, id: string, signal: ExecSignal): ExecInfo {
    rowOf(this.d, name);
    return this.execs.signal(name, id, signal);
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
  /** Mounts a stopped OpenVZ CT's private area at its root on the host (vzctl mount). */
  async mount(name: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => {
      const row = rowOf(this.d, name);
      const handle = handleOf(this.d, row);
      if (!handle.mount) throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) has no private area to mount: only OpenVZ containers have one`);
      if (assertLegal('mount', await handle.state(), name) === 'no-op') return;
      await handle.mount().catch((e) => { throw wrap(e, `Failed to mount instance "${name}"`); });
      this.d.events.emit({ type: 'instance-mounted', instance: name });
    });
  }

  /** Unmounts a stopped OpenVZ CT's private area (vzctl umount). */
  async umount(name: string): Promise<void> {
    await this.d.locks.withLock(lockKey(name), async () => {
      const row = rowOf(this.d, name);
      const handle = handleOf(this.d, row);
      if (!handle.umount) throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) has no private area to unmount: only OpenVZ containers have one`);
      assertLegal('umount', await handle.state(), name);
      await handle.umount().catch((e) => { throw wrap(e, `Failed to unmount instance "${name}"`); });
      this.d.events.emit({ type: 'instance-unmounted', instance: name });
    });
  }

  /** The beancounters of a running container (OpenVZ's). */
  async beancounters(name: string): Promise<Beancounter[]> {
    const row = rowOf(this.d, name);
    const handle = handleOf(this.d, row);
    if (!handle.beancounters) throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) has no beancounters: only OpenVZ containers have them`);
    assertLegal('beancounters', await handle.state(), name);
    return handle.beancounters();
  }

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

  /** Compares the database with what really runs on the local host; reports drift as events and adopts what is there (remote hosts: hostUp). */
  async reconcile(): Promise<void> {
    await reconcile(this.d, this.d.hosts.local());
    this.exits.armHost(LOCAL_HOST);
  }

  /** Starts every stopped instance of a host (default: the local one) with boot.autostart=true. */
  async autostart(onError: (name: string, err: unknown) => void, host: string = LOCAL_HOST): Promise<void> {
    for (const row of this.d.db.listInstances()) {
      if (row.host !== host || row.config['boot.autostart'] !== 'true' || row.expectedState !== 'stopped') continue;
      try { await this.start(row.name); } catch (err) { onError(row.name, err); }
    }
  }

  /** A remote host came up: its instances are reconciled with what runs there (drift as events), and the first time since start autostarted. */
  readonly hostUp = async (h: HostContext, first: boolean): Promise<void> => {
    await reconcile(this.d, h);
    this.exits.armHost(h.name);
    if (first) await this.autostart((name, err) => this.d.log?.(`autostart of "${name}" on host ${h.name} failed: ${err instanceof Error ? err.message : String(err)}`), h.name);
  };

  // ---- adoption (imports) ----

  /** Validates the adoption of an existing domain without side effects: its name, host, driver, config and addresses. */
  validateAdopt(req: AdoptRequest): AdoptPlan {
    const name = assertName(req.name, 'instance');
    this.assertFree(name);
    const h = this.hostFor(req.host, name, false);
    const driverInstance = h.drivers.get(req.driver);
    const config = validateFor(this.d, h, driverInstance, name, req.config);
    if (req.ipv4 !== undefined) checkRequestedAddress(this.d, h, req.ipv4);
    const mac = req.mac !== undefined ? checkRequestedMac(this.d, req.mac) : undefined;
    return { ...req, name, host: h.name, config, driverInstance, ...(mac ? { mac } : {}) };
  }

  /** Records an adopted domain as a stopped instance of its host (its disks stay where they are, Hangar makes no root volume) and lets its driver write its files. */
  async adopt(plan: AdoptPlan, progress: (m: string) => void = () => undefined): Promise<Instance> {
    return this.d.locks.withLock(lockKey(plan.name), async () => {
      this.assertFree(plan.name);
      const h = this.hostFor(plan.host, plan.name, false);
      const driver = h.drivers.get(plan.driver);
      const ipv4 = placeAddress(this.d, h, plan.name, plan.ipv4, plan.config);
      const mac = plan.mac !== undefined ? checkRequestedMac(this.d, plan.mac) : uniqueMac(this.d, plan.name);
      const row: InstanceRow = {
        name: plan.name, type: driver.driver.type, driver: driver.driver.name, image: '', imageFingerprint: '', config: plan.config, pendingConfig: {},
        ipv4, mac, expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null, idmapBlock: null, host: h.name,
        createdAt: new Date().toISOString(), origin: plan.origin,
      };
      const r = new Reverter();
      return r.run(async () => {
        this.hostFor(plan.host, plan.name, false);
        this.d.db.insertInstance(row);
        r.add('delete database row', () => this.d.db.deleteInstance(plan.name));
        progress(`Recording instance "${plan.name}" on host ${h.name}`);
        await h.host.fs.mkdir(instanceDir(h, plan.name), { recursive: true });
        r.add('remove instance directory', () => h.host.fs.rm(instanceDir(h, plan.name), { recursive: true, force: true }));
        if (plan.volume) {
          await h.pool.createInstanceVolume(plan.name, null, undefined, { empty: true });
          r.add('delete root volume', () => h.pool.deleteInstanceVolume(plan.name));
        }
        const handle = handleIn(this.d, h, row);
        await handle.create();
        // The domain was there before the import: its undo forgets it where the driver can, never destroys it.
        r.add('forget backend files', () => (handle.forget ? handle.forget() : handle.delete()));
        await syncLeases(this.d, h);
        r.add('remove address lease', () => syncLeases(this.d, h, plan.name));
        // A domain adopted while it runs is recorded as running (with its pid), not left for reconciliation to call drift.
        const now = await handle.state().catch(() => null);
        if (now && (now.state === 'running' || now.state === 'frozen')) {
          this.d.db.updateInstance(plan.name, { expectedState: now.state, initPid: now.pid, initStartTime: now.startTime });
          this.exits.arm(plan.name);
        }
        this.d.events.emit({ type: 'instance-created', instance: plan.name, data: { importedFrom: plan.origin.source ?? null, host: h.name, ipv4 } });
        return toWire(this.d, rowOf(this.d, plan.name), false);
      }).catch((err: unknown) => { throw wrap(err, `Failed to import instance "${plan.name}"`); });
    });
  }

  /** Backend observations become events at once; a guest that powered itself off is recorded as stopped (the drivers' sink). */
  readonly onBackendEvent = (instance: string, event: BackendEvent): void => {
    this.d.events.emit({ type: event.type, instance, ...(event.message ? { message: event.message } : {}), ...(event.data ? { data: event.data } : {}) });
    if (event.type === 'instance-shutdown' && event.data?.guest === true) void recordGuestShutdown(this.d, instance).catch(() => undefined);
    if (event.action === 'restart') void this.restartForBackend(instance, event.type);
  };

  // ---- internals ----

  /** Refuses a name another instance has, on any host (names are unique across hosts). */
  private assertFree(name: string): void {
    const other = this.d.db.getInstance(name);
    if (other) throw new AppError('ALREADY_EXISTS', `Instance "${name}" already exists${other.host === LOCAL_HOST ? '' : ` (on host ${other.host})`}`);
  }

  /** The host an instance is to be made on, up and with a network for its NIC (unless needsNetwork is false). */
  private hostFor(name: string, instance: string, needsNetwork = true): HostContext {
    if (!this.d.hosts.has(name)) throw new AppError('NOT_FOUND', `Host "${name}" not found`, { details: { hint: 'hangar host list' } });
    const h = this.d.hosts.get(name);
    if (needsNetwork && h.networkProblem) throw new AppError('UNSUPPORTED', `Cannot create instance "${instance}" on host "${h.name}": ${h.networkProblem}`);
    return h;
  }

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

  /** Starts it under its lock (`known`: its state, when the caller knows it); answers the state it was left in. */
  private async startLocked(name: string, known?: ObservedState): Promise<ObservedState> {
    let row = rowOf(this.d, name);
    const h = hostOf(this.d, row);
    const before = known ?? await handleIn(this.d, h, row).state();
    assertLegal('start', before, name);
    if (Object.keys(row.pendingConfig).length > 0) {
      this.d.db.updateInstance(name, { config: { ...row.config, ...row.pendingConfig }, pendingConfig: {} });
      row = rowOf(this.d, name);
    }
    admit(this.d, h, name, row.config, h.drivers.get(row.driver));
    const cpuset = chooseCpuset(this.d, h, name, resourcesOf(row.config).cpuCount) ?? null;
    // A container switched to (or from) an isolated map gets (or gives back) its block now.
    const idmapBlock = idmapBlockFor(this.d, h, h.drivers.get(row.driver), row.config, row.idmapBlock);
    this.d.db.updateInstance(name, { cpuset, idmapBlock });
    row = rowOf(this.d, name);
    this.d.events.emit({ type: 'instance-starting', instance: name });
    const handle = handleIn(this.d, h, row);
    let started: ObservedState | void;
    try {
      await handle.create();
      started = await handle.start(before);
    } catch (err) {
      throw wrap(err, `Failed to start instance "${name}"`);
    }
    const now = started ?? await handle.state();
    this.d.db.updateInstance(name, { expectedState: 'running', initPid: now.pid, initStartTime: now.startTime });
    this.exits.arm(name);
    this.d.events.emit({ type: 'instance-started', instance: name, data: { pid: now.pid } });
    return now;
  }

  private async stopLocked(name: string, opts: StopRequest): Promise<void> {
    const row = rowOf(this.d, name);
    const h = hostOf(this.d, row);
    if (opts.stateful && !h.drivers.get(row.driver).driver.features.statefulStop) {
      throw new AppError('UNSUPPORTED', `Instance "${name}" (${row.driver}) cannot be stopped statefully`);
    }
    const handle = handleIn(this.d, h, row);
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
    this.exits.disarm(name);
    this.d.events.emit({ type: 'instance-stopped', instance: name, ...(opts.stateful ? { data: { stateful: true } } : {}) });
  }
}
