// Where Hangar's Xen create goes: the daemon's create-and-start path replayed in-process over a Host that counts and times every remote call.
import { posix } from 'node:path';
import type { Duplex } from 'node:stream';
import Database from 'better-sqlite3';
import type { ExecOptions, ExecResult, Host, HostFs, HostProcess, SpawnOptions } from '../src/host/host.js';
import { argvForDisplay } from '../src/host/local.js';
import type { SshHost } from '../src/host/ssh.js';
import type { InstanceRecord } from '../src/drivers/driver.js';
import { xenOnHost } from '../src/drivers/xen/driver.js';
import { probeXen } from '../src/drivers/xen/probe.js';
import { Xl } from '../src/drivers/xen/xl.js';
import { DirectoryPool } from '../src/core/storage/directory-pool.js';
import { driverEnv } from '../test/helpers/driver-env.js';
import { msSince } from './util.js';

/** One call a traced Host made: what, and how long it took (ms). */
export interface TraceCall {
  kind: string;
  what: string;
  ms: number;
}

/** A step of the replay: its wall time, its calls, and the SSH channels and SFTP requests it cost. */
export interface TraceStep {
  step: string;
  ms: number;
  calls: TraceCall[];
  sessions: number;
  sftpRequests: number;
}

/** A Host passing everything to an SshHost, recording each exec, spawn and file-system call with its duration. */
export class TracingHost implements Host {
  readonly name: string;
  readonly fs: HostFs;
  calls: TraceCall[] = [];

  constructor(private readonly inner: SshHost) {
    this.name = inner.name;
    const fs = inner.fs;
    this.fs = new Proxy(fs, {
      get: (target, prop) => {
        const v = Reflect.get(target, prop, target) as unknown;
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => this.track(`fs.${String(prop)}`, Array.isArray(args[0]) ? (args[0] as string[]).join(' ') : String(args[0]), () => (v as (...a: unknown[]) => Promise<unknown>).apply(target, args));
      },
    });
  }

  private async track<T>(kind: string, what: string, fn: () => Promise<T>): Promise<T> {
    const t0 = process.hrtime.bigint();
    try {
      return await fn();
    } finally {
      this.calls.push({ kind, what, ms: msSince(t0) });
    }
  }

  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return this.track('exec', argvForDisplay(argv), () => this.inner.exec(argv, opts));
  }

  spawn(argv: readonly string[], opts?: SpawnOptions): HostProcess {
    this.calls.push({ kind: 'spawn', what: argvForDisplay(argv), ms: 0 });
    return this.inner.spawn(argv, opts);
  }

  connectUnix(path: string): Promise<Duplex> {
    return this.track('connectUnix', path, () => this.inner.connectUnix(path));
  }

  kill(pid: number, signal?: NodeJS.Signals | 0): Promise<boolean> {
    return this.track('kill', `${pid} ${signal ?? ''}`, () => this.inner.kill(pid, signal));
  }
}

/** What the replay needs to know about the daemon and its Dom0 host. */
export interface ReplayOptions {
  /** The daemon's state directory, the same path on the Dom0. */
  dir: string;
  prefix: string;
  hostName: string;
  imageFingerprint: string;
  /** The daemon's database (read-only here), for the image's properties. */
  dbFile: string;
  bridge: string;
  /** First three octets of the bridge's subnet. */
  subnet: string;
  name: string;
}

/** The image's properties as the daemon stored them (kernel, initrd, disk, cmdline, ...). */
export function imagePropsOf(dbFile: string, fingerprint: string): Record<string, string> {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare("SELECT props FROM images WHERE fingerprint = ? AND type = 'vm'").get(fingerprint) as { props: string } | undefined;
    if (!row) throw new Error(`image ${fingerprint.slice(0, 12)} is not in ${dbFile}`);
    return JSON.parse(row.props) as Record<string, string>;
  } finally {
    db.close();
  }
}

/**
 * Replays what InstanceService.create (with start) does on a remote Xen host, step by step, over a traced connection
 * of its own: the image check of ensureImageOn, the pool's instance volume, the instance directory, the driver's
 * create, then startLocked's create and the driver's start (given the state of the instance just made, it answers the
 * state it read, so startLocked and toWire read none). The domain boots; it is destroyed and
 * its files removed afterwards (untimed). Network leases are a no-op on a host bridge and the database is local: left out.
 */
export async function replayCreate(ssh: SshHost, o: ReplayOptions): Promise<TraceStep[]> {
  const host = new TracingHost(ssh);
  const xl = new Xl(host);
  const env = driverEnv(host, { prefix: o.prefix, dataDir: o.dir, cacheDir: posix.join(o.dir, 'cache'), runDir: posix.join(o.dir, 'run'), log: () => undefined });
  const driver = xenOnHost(env, await probeXen(host, xl), xl);
  const pool = new DirectoryPool(host, { dir: posix.join(o.dir, 'hosts', o.hostName, 'pool') });
  const record: InstanceRecord = {
    name: o.name, host: o.hostName, type: 'vm', driver: 'xen', image: 'busybox', config: { 'limits.memory': '256MiB' },
    rootPath: pool.instancePath(o.name), instanceDir: posix.join(o.dir, 'instances', o.name),
    nic: { bridge: o.bridge, hostIfName: `${o.prefix}trace0`, mac: '02:00:00:fb:02:01', ipv4: `${o.subnet}.199`, prefixLength: 24, gateway: `${o.subnet}.1` },
    imageProps: imagePropsOf(o.dbFile, o.imageFingerprint), imagePath: pool.imagePath(o.imageFingerprint),
  };
  const steps: TraceStep[] = [];
  const step = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
    host.calls = [];
    const before = { ...ssh.stats };
    const t0 = process.hrtime.bigint();
    await fn();
    steps.push({ step: name, ms: msSince(t0), calls: host.calls, sessions: ssh.stats.sessions - before.sessions, sftpRequests: ssh.stats.sftpRequests - before.sftpRequests });
  };
  const load = () => driver.load(record);
  try {
    await step('image on the host? (ensureImageOn: stat)', () => host.fs.stat(pool.imagePath(o.imageFingerprint)));
    await step('root volume (pool.createInstanceVolume: an empty directory for the driver\'s disks)', () => pool.createInstanceVolume(o.name, o.imageFingerprint, undefined, { empty: true }));
    await step('instance directory (mkdir)', () => host.fs.mkdir(record.instanceDir, { recursive: true }));
    await step('driver create (image placed, root disk copied)', () => load().create());
    await step('start: driver create again', () => load().create());
    await step('start: driver start (checks, image, xl.cfg, xl create, xl domid beside xenstore-read, run.json)', () => load().start({ state: 'stopped', pid: null, startTime: null }));
  } finally {
    host.calls = [];
    const h = load();
    await h.stop({ force: true, timeoutMs: 10_000 }).catch(() => undefined);
    await h.delete().catch(() => undefined);
    await pool.deleteInstanceVolume(o.name).catch(() => undefined);
    await host.fs.rm(record.instanceDir, { recursive: true, force: true }).catch(() => undefined);
  }
  return steps;
}
