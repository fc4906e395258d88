// The host service: the local host and the remote ones (added over SSH with their key pinned), their state and why, and their facts for clients.
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import { assertHostName, assertBridgeName, LOCAL_HOST, parseSshUrl, sshUrl } from '../../shared/hosts.js';
import type { AddHostRequest, DriverInfo, HostInfo, HostRecord, TrustHostRequest, VirtFact } from '../../shared/schemas.js';
import type { DriverSet } from '../../drivers/registry.js';
import { parseFingerprint } from '../../host/ssh/host-key.js';
import { Reverter } from '../../host/reverter.js';
import type { HostRow, StateDb } from '../db/database.js';
import type { EventBus } from '../events.js';
import type { LockManager } from '../locks.js';
import type { HostContext, HostDirectory, HostProblem } from './context.js';
import type { HostConnector, RemoteLink } from './link.js';
import { RemoteHost } from './remote.js';

/** Dependencies of the host service. */
export interface HostServiceDeps {
  db: StateDb;
  events: EventBus;
  locks: LockManager;
  /** The daemon's own machine, opened by the daemon. */
  local: HostContext;
  connector: HostConnector;
  /** Opens a remote host's context over its link (src/core/hosts/remote-context.ts in the daemon). */
  open(link: RemoteLink, row: HostRow): Promise<HostContext>;
  /** The virtualization layers a host runs in (host info). */
  detect(ctx: HostContext): Promise<VirtFact[]>;
  /** What removing a host deletes there while it is reachable: the daemon's own files for it (its pool of image copies); not its network, which may be shared. */
  forget?(ctx: HostContext): Promise<void>;
  /** Private keys tried, in order, when a host is added without one (files on the daemon's machine). */
  defaultIdentityFiles: readonly string[];
  log(msg: string): void;
}

/** An add request that passed validation. */
export interface AddHostPlan {
  name: string;
  address: string;
  port: number;
  user: string;
  identityFile: string;
  /** The fingerprint the host must present, when the request named one. */
  expected?: string;
  /** The host's own bridge to attach instances to, or null for the managed network. */
  bridge: string | null;
}

/** A trust request that passed validation. */
export interface TrustHostPlan {
  name: string;
  expected?: string;
}

/** A host's drivers as clients see them: probe, default, features, facts and the accelerator. */
export function driverInfos(drivers: DriverSet): DriverInfo[] {
  return drivers.all().map((d) => {
    const a = d.accelerator?.();
    return {
      name: d.driver.name, type: d.driver.type, available: d.probe.available, version: d.probe.version, reason: d.probe.reason,
      default: drivers.isDefault(d), features: d.driver.features, details: d.details(), ...(a ? { accelerator: a } : {}),
    };
  });
}

const lockKey = (name: string) => `host/${name}`;

/** Keeps every host of the daemon: the local one, and each remote one with its link, state and opened context. */
export class HostService implements HostDirectory {
  private readonly remotes = new Map<string, RemoteHost>();
  private readonly upListeners: Array<(ctx: HostContext, first: boolean) => Promise<void>> = [];
  private readonly startedAt = new Date().toISOString();

  constructor(private readonly d: HostServiceDeps) {}

  /** Runs fn each time a remote host comes up (first: the first time since the daemon started or the host was added). */
  onHostUp(fn: (ctx: HostContext, first: boolean) => Promise<void>): void {
    this.upListeners.push(fn);
  }

  /** Starts connecting to every remote host the database knows, in the background. */
  start(): void {
    for (const row of this.d.db.listHosts()) {
      if (!this.remotes.has(row.name)) this.track(row, this.d.connector.link(row));
    }
  }

  /** Closes every remote link (the daemon is stopping; instances there keep running). */
  close(): void {
    for (const r of this.remotes.values()) r.stop();
    this.remotes.clear();
  }

  // ---- the directory the instance service uses ----

  /** The daemon's own machine. */
  local(): HostContext {
    return this.d.local;
  }

  /** True for "local" and every added host. */
  has(name: string): boolean {
    return name === LOCAL_HOST || this.remotes.has(name);
  }

  /** The context of a host that is up; NOT_FOUND or HOST_UNREACHABLE (with the host's reason) otherwise. */
  get(name: string): HostContext {
    if (name === LOCAL_HOST) return this.d.local;
    const r = this.remote(name);
    const problem = r.problem();
    if (problem || !r.ctx) throw new AppError('HOST_UNREACHABLE', problem?.reason ?? `Host "${name}" is not up`, { details: { host: name, state: r.state } });
    return r.ctx;
  }

  /** Why a host cannot be used now, or undefined when it is up (never waits). */
  problem(name: string): HostProblem | undefined {
    if (name === LOCAL_HOST) return undefined;
    const r = this.remotes.get(name);
    if (!r) return { reason: `Host "${name}" is not known to this daemon`, since: this.startedAt };
    return r.problem();
  }

  /** The local host and every remote one that is up. */
  up(): HostContext[] {
    return [this.d.local, ...[...this.remotes.values()].filter((r) => !r.problem() && r.ctx).map((r) => r.ctx!)];
  }

  // ---- queries ----

  /** Every host: the local one first, then the remote ones by name. */
  async list(): Promise<HostRecord[]> {
    return Promise.all([LOCAL_HOST, ...[...this.remotes.keys()].sort()].map((n) => this.record(n)));
  }

  /** One host with its state, key, facts and drivers; works for a host that is down. */
  async info(name: string): Promise<HostRecord> {
    if (!this.has(name)) throw this.notFound(name);
    return this.record(name);
  }

  /** Facts, drivers, storage and network of a host that is up (GET /1.0/host). */
  async hostInfo(name: string = LOCAL_HOST): Promise<HostInfo> {
    if (!this.has(name)) throw this.notFound(name);
    const ctx = this.get(name);
    const [poolInfo, runsIn] = await Promise.all([ctx.pool.info(), this.d.detect(ctx)]);
    const accel = ctx.drivers.all().map((d) => d.accelerator?.()).find((a) => a !== undefined);
    const f = ctx.facts;
    return {
      hostname: f.hostname, kernel: f.kernel, os: f.os, cpus: f.cpus, memoryBytes: f.memoryBytes, cgroupLayout: f.cgroupLayout,
      storage: { driver: poolInfo.driver, path: poolInfo.path, sizeBytes: poolInfo.sizeBytes, usedBytes: poolInfo.usedBytes, state: poolInfo.state, warnings: poolInfo.warnings },
      network: ctx.network.info(),
      drivers: driverInfos(ctx.drivers),
      cpuVirtFlags: f.cpuVirtFlags,
      kvm: accel ? { present: f.kvm.present, usable: accel.kvmUsable === true, reason: accel.reason } : f.kvm,
      runsIn,
    };
  }

  // ---- add, trust, remove ----

  /** Checks an add request without side effects: the name, the URL, the identity file, the expected fingerprint. */
  async validateAdd(req: AddHostRequest): Promise<AddHostPlan> {
    const name = assertHostName(req.name);
    if (this.has(name) || this.d.db.getHost(name)) throw new AppError('ALREADY_EXISTS', `Host "${name}" already exists`);
    const target = parseSshUrl(req.url);
    const identityFile = req.identityFile !== undefined ? await this.checkIdentity(req.identityFile) : await this.defaultIdentity();
    const expected = req.fingerprint !== undefined ? parseFingerprint(req.fingerprint) : undefined;
    if (req.bridge !== undefined) assertBridgeName(req.bridge);
    return { name, ...target, identityFile, ...(expected ? { expected } : {}), bridge: req.bridge ?? null };
  }

  /**
   * Adds a host: reads the key it presents (the first contact pins it), connects with it, opens its drivers, storage
   * and network there, and records it; any failure undoes every step (nothing is recorded, nothing stays open).
   */
  async add(plan: AddHostPlan, progress: (m: string) => void = () => undefined): Promise<HostRecord> {
    return this.d.locks.withLock(lockKey(plan.name), async () => {
      if (this.has(plan.name) || this.d.db.getHost(plan.name)) throw new AppError('ALREADY_EXISTS', `Host "${plan.name}" already exists`);
      const where = `${plan.address}:${plan.port}`;
      progress(`Reading the host key of ${where}`);
      const key = await this.d.connector.probeKey({ address: plan.address, port: plan.port }).catch((err: unknown) => {
        throw new AppError('HOST_UNREACHABLE', `Failed to add host "${plan.name}": ${where} cannot be reached (nothing was added)`, { cause: err, details: { host: plan.name } });
      });
      if (plan.expected && key.fingerprint !== plan.expected) {
        throw new AppError('CONFLICT', `Failed to add host "${plan.name}": ${where} presents host key ${key.type} ${key.fingerprint}, not the expected ${plan.expected} (nothing was added)`);
      }
      const row: HostRow = {
        name: plan.name, address: plan.address, port: plan.port, user: plan.user, identityFile: plan.identityFile,
        keyType: key.type, fingerprint: key.fingerprint, addedAt: new Date().toISOString(), bridge: plan.bridge,
      };
      return new Reverter().run(async (r) => {
        progress(`Connecting as ${plan.user} (host key ${key.type} ${key.fingerprint})`);
        const link = await this.d.connector.connect(row).catch((err: unknown) => {
          throw new AppError('HOST_UNREACHABLE', `Failed to add host "${plan.name}": cannot log in to ${sshUrl(plan)} (nothing was added)`, { cause: err, details: { host: plan.name } });
        });
        r.add('close the connection', () => link.close());
        progress('Opening its drivers, storage and network');
        const ctx = await this.d.open(link, row).catch((err: unknown) => {
          throw new AppError('HOST_FAILED', `Failed to add host "${plan.name}": it could not be opened (nothing was added)`, { cause: err });
        });
        this.d.db.insertHost(row);
        this.track(row, link, ctx);
        this.d.events.emit({ type: 'host-added', message: `Host "${plan.name}" added (${sshUrl(plan)}, host key ${key.type} ${key.fingerprint})`, data: { host: plan.name, keyType: key.type, fingerprint: key.fingerprint } });
        return this.record(plan.name);
      });
    });
  }

  /** Checks a trust request: a remote host the daemon knows, and the expected fingerprint's form. */
  validateTrust(name: string, req: TrustHostRequest): TrustHostPlan {
    if (name === LOCAL_HOST) throw new AppError('INVALID_ARGUMENT', 'The local host has no host key to trust: it is the daemon\'s own machine');
    this.remote(name);
    const expected = req.fingerprint !== undefined ? parseFingerprint(req.fingerprint) : undefined;
    return { name, ...(expected ? { expected } : {}) };
  }

  /**
   * Pins the key a host presents now (after a reinstall): probed, connected with, its drivers opened, then recorded,
   * and the old connection replaced. Until all of that worked nothing changes: the old key stays pinned.
   */
  async trust(plan: TrustHostPlan, progress: (m: string) => void = () => undefined): Promise<HostRecord> {
    return this.d.locks.withLock(lockKey(plan.name), async () => {
      const old = this.remote(plan.name);
      const row = old.row;
      const where = `${row.address}:${row.port}`;
      progress(`Reading the host key of ${where}`);
      const key = await this.d.connector.probeKey({ address: row.address, port: row.port }).catch((err: unknown) => {
        throw new AppError('HOST_UNREACHABLE', `Failed to trust host "${plan.name}": ${where} cannot be reached (the pinned key stays ${row.fingerprint})`, { cause: err, details: { host: plan.name } });
      });
      if (plan.expected && key.fingerprint !== plan.expected) {
        throw new AppError('CONFLICT', `Failed to trust host "${plan.name}": ${where} presents host key ${key.type} ${key.fingerprint}, not the expected ${plan.expected} (nothing was changed)`);
      }
      if (key.fingerprint === row.fingerprint && !old.problem()) return this.record(plan.name);
      const next: HostRow = { ...row, keyType: key.type, fingerprint: key.fingerprint };
      return new Reverter().run(async (r) => {
        progress(`Connecting with host key ${key.type} ${key.fingerprint}`);
        const link = await this.d.connector.connect(next).catch((err: unknown) => {
          throw new AppError('HOST_UNREACHABLE', `Failed to trust host "${plan.name}": cannot log in with its new key (the pinned key stays ${row.fingerprint})`, { cause: err, details: { host: plan.name } });
        });
        r.add('close the new connection', () => link.close());
        progress('Opening its drivers, storage and network');
        const ctx = await this.d.open(link, next).catch((err: unknown) => {
          throw new AppError('HOST_FAILED', `Failed to trust host "${plan.name}": it could not be opened (the pinned key stays ${row.fingerprint})`, { cause: err });
        });
        this.d.db.updateHostKey(plan.name, key.type, key.fingerprint);
        old.stop();
        this.remotes.delete(plan.name);
        this.track(next, link, ctx);
        this.d.events.emit({
          type: 'host-trusted', message: `Host "${plan.name}": host key ${key.type} ${key.fingerprint} pinned (was ${row.keyType} ${row.fingerprint})`,
          data: { host: plan.name, keyType: key.type, fingerprint: key.fingerprint, previous: row.fingerprint },
        });
        return this.record(plan.name);
      });
    });
  }

  /** Forgets a remote host and closes its connection; refused while instances live there. Its copies of images go when it is reachable; its network stays. */
  async remove(name: string): Promise<HostRecord> {
    if (name === LOCAL_HOST) throw new AppError('INVALID_ARGUMENT', 'The local host cannot be removed: it is the daemon\'s own machine');
    return this.d.locks.withLock(lockKey(name), async () => {
      const r = this.remote(name);
      const before = await this.record(name);
      // Counted and deleted in one transaction: no instance can be created there in between.
      if (!this.d.db.deleteHostIfEmpty(name)) {
        const on = this.d.db.listInstances().filter((i) => i.host === name).map((i) => i.name);
        throw new AppError('IN_USE', `Host "${name}" cannot be removed: ${on.length} instance${on.length === 1 ? ' lives' : 's live'} there (${on.slice(0, 10).join(', ')}${on.length > 10 ? ', ...' : ''}); delete them first`, { details: { instances: on } });
      }
      const ctx = r.problem() ? undefined : r.ctx;
      // Forgotten already: what is left there is only files, so a failure to delete them is reported, not raised.
      if (ctx && this.d.forget) await this.d.forget(ctx).catch((err: unknown) => this.d.log(`host ${name}: its files were not removed: ${err instanceof Error ? err.message : String(err)}`));
      r.stop();
      this.remotes.delete(name);
      this.d.events.emit({ type: 'host-removed', message: `Host "${name}" removed`, data: { host: name } });
      return { ...before, state: 'down', reason: 'removed', since: new Date().toISOString() };
    });
  }

  // ---- internals ----

  private remote(name: string): RemoteHost {
    const r = this.remotes.get(name);
    if (!r) throw this.notFound(name);
    return r;
  }

  private notFound(name: string): AppError {
    return new AppError('NOT_FOUND', `Host "${name}" not found`, { details: { hint: 'hangar host list' } });
  }

  /** Starts watching a remote host (up at once when its context was just opened). */
  private track(row: HostRow, link: RemoteLink, ctx?: HostContext): void {
    const remote = new RemoteHost(row, link, {
      open: (l, r) => this.d.open(l, r),
      up: async (c, first) => { for (const fn of this.upListeners) await fn(c, first); },
      changed: (name, state, reason, previous) => {
        if (state === previous) return;
        if (state === 'down') {
          this.d.log(`host ${name} is down: ${reason}`);
          this.d.events.emit({ type: 'host-unreachable', message: reason ?? `Host "${name}" is unreachable`, data: { host: name } });
        } else if (state === 'up') {
          this.d.log(`host ${name} is up`);
          if (previous === 'down') this.d.events.emit({ type: 'host-reachable', message: `Host "${name}" is reachable again`, data: { host: name } });
        }
      },
      log: (m) => this.d.log(m),
    });
    this.remotes.set(row.name, remote);
    remote.start(ctx);
  }

  /** The wire form of a host. */
  private async record(name: string): Promise<HostRecord> {
    const instances = this.d.db.listInstances().filter((i) => i.host === name).length;
    const remote = name === LOCAL_HOST ? undefined : this.remotes.get(name);
    const ctx = remote ? remote.ctx : this.d.local;
    const problem = remote?.problem();
    const row = remote?.row;
    const pool = ctx ? await ctx.pool.info().catch(() => undefined) : undefined;
    return {
      name, local: !remote,
      url: row ? sshUrl(row) : null, address: row?.address ?? null, port: row?.port ?? null, user: row?.user ?? null, identityFile: row?.identityFile ?? null,
      keyType: row?.keyType ?? null, fingerprint: row?.fingerprint ?? null, addedAt: row?.addedAt ?? null,
      state: !remote ? 'up' : problem ? (remote.state === 'up' ? 'down' : remote.state) : 'up',
      reason: problem?.reason ?? null,
      since: problem?.since ?? remote?.since ?? this.startedAt,
      instances,
      facts: ctx ? { hostname: ctx.facts.hostname, os: ctx.facts.os, kernel: ctx.facts.kernel, cpus: ctx.facts.cpus, memoryBytes: ctx.facts.memoryBytes } : null,
      storage: pool ? { driver: pool.driver, path: pool.path } : null,
      network: ctx ? { ...ctx.network.info(), problem: ctx.networkProblem, mode: row?.bridge ? 'host-bridge' : 'managed' } : null,
      drivers: ctx ? driverInfos(ctx.drivers) : [],
    };
  }

  private async checkIdentity(path: string): Promise<string> {
    if (!posix.isAbsolute(path) || path.includes('\0')) throw new AppError('INVALID_ARGUMENT', `Invalid identity file ${JSON.stringify(path)}: give an absolute path on the daemon's machine`);
    const st = await this.d.local.host.fs.stat(path);
    if (!st?.isFile) throw new AppError('NOT_FOUND', `Identity file ${path} not found on the daemon's machine${st ? ' (it is not a regular file)' : ''}`);
    return path;
  }

  private async defaultIdentity(): Promise<string> {
    for (const f of this.d.defaultIdentityFiles) if ((await this.d.local.host.fs.stat(f))?.isFile) return f;
    throw new AppError('INVALID_ARGUMENT', `No identity file given, and none of ${this.d.defaultIdentityFiles.join(', ')} exists: pass --identity FILE (a private key whose public key the host authorises)`);
  }
}
