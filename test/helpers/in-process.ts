// An in-process daemon for tests: the real services (SQLite state, hosts, instances, images, imports, operations, events) over the fake driver, a directory pool and a fake network, in a temp dir; remote hosts are loopback links; no root, no LXC, no QEMU.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApiDeps } from '../../src/api/server.js';
import { StateDb } from '../../src/core/db/database.js';
import { detectVirt } from '../../src/core/detect/detect.js';
import { EventBus } from '../../src/core/events.js';
import { ImageService } from '../../src/core/images/service.js';
import { InstanceService } from '../../src/core/instances/service.js';
import type { HostContext } from '../../src/core/hosts/context.js';
import { HostService } from '../../src/core/hosts/service.js';
import { ImportService } from '../../src/core/imports/service.js';
import { LockManager } from '../../src/core/locks.js';
import { FakeNetwork } from '../../src/core/network/fake-network.js';
import { OperationManager } from '../../src/core/operations.js';
import { DirectoryPool } from '../../src/core/storage/directory-pool.js';
import type { BackendEvent } from '../../src/drivers/driver.js';
import { fakeWorld } from '../../src/drivers/fake/driver.js';
import { DriverSet, selectDrivers } from '../../src/drivers/registry.js';
import type { HostSnapshot } from '../../src/host/facts.js';
import { LocalHost } from '../../src/host/local.js';
import { LOCAL_HOST } from '../../src/shared/hosts.js';
import { LoopbackConnector } from './loopback-hosts.js';

/** Options of inProcessDaemon(). */
export interface InProcessOptions {
  /** Facts of the pretend host the service validates against (default: 4 CPUs, 8 GiB, cgroup v2, no KVM). */
  facts?: Partial<HostSnapshot>;
  /** Container images to put in the store, each a small tree the fake driver accepts (default: ["busybox"], so launches need no build). */
  images?: string[];
  /** Subnet of the fake network (default 10.250.0.0/24). */
  subnet?: string;
  /** Prefix of host-level names (default "hgp"). */
  prefix?: string;
  /** Memory kept back from guarantees (default 256 MiB). */
  memoryReserveBytes?: number;
  /** Size the pool claims for limits.disk checks (default 8 GiB; a directory pool enforces nothing). */
  poolSizeBytes?: number;
  /** HANGAR_DRIVERS of the local host (default "fake"). */
  drivers?: string;
}

/** A running in-process daemon: the fields of the API's dependencies, what tests inspect, and cleanup(). */
export type InProcessDaemon = ApiDeps & {
  /** Its temp directory (state database, pool, instance directories). */
  dir: string;
  db: StateDb;
  pool: DirectoryPool;
  network: FakeNetwork;
  drivers: DriverSet;
  /** Makes the links of remote hosts: add pretend machines to connector.machines, take links down with connector.links. */
  connector: LoopbackConnector;
  /** Waits for running operations, forgets its fake instances, closes the database and removes the temp directory. */
  cleanup(): Promise<void>;
};

const VERSION = '0.1.0-in-process';
const GiB = 1024 ** 3;

/** The pretend host: fixed facts, so validation does not depend on the machine that runs the tests. */
function pretendFacts(over: Partial<HostSnapshot> = {}): HostSnapshot {
  return {
    cgroupLayout: 'v2', cpus: 4, cpuList: [0, 1, 2, 3], memoryBytes: 8 * GiB,
    idmap: { uidStart: 100_000, gidStart: 100_000, count: 65_536 }, idmapIsolated: null, swapAccounting: false,
    kernel: 'in-process', os: 'in-process test host', hostname: 'in-process',
    cpuVirtFlags: [], kvm: { present: false, usable: false, reason: 'in-process test host' },
    ...over,
  };
}

/** Puts a container image into the pool and the database without building one: a tiny tree (the fake driver runs nothing from it). */
async function seedImage(host: LocalHost, pool: DirectoryPool, db: StateDb, alias: string): Promise<void> {
  const fingerprint = createHash('sha256').update(`${alias}\0in-process\0${randomBytes(8).toString('hex')}`).digest('hex');
  const dir = await pool.createImageVolume(fingerprint);
  for (const d of ['etc', 'sbin', 'tmp']) await host.fs.mkdir(join(dir, d), { recursive: true });
  await host.fs.writeAtomic(join(dir, 'etc', 'hostname'), `${alias}\n`);
  await host.fs.writeAtomic(join(dir, 'etc', 'os-release'), `PRETTY_NAME="fake ${alias} (in-process test image)"\n`);
  await host.fs.writeAtomic(join(dir, 'sbin', 'init'), '#!/bin/sh\nexit 0\n', 0o755);
  await pool.sealImageVolume(fingerprint);
  db.insertImage({
    alias, type: 'container', fingerprint, description: `Fake ${alias} image for the in-process daemon (not a real ${alias})`,
    sizeBytes: 64, createdAt: new Date().toISOString(), source: 'test/helpers/in-process.ts', props: { init: '/sbin/init' },
  });
}

/**
 * Builds the daemon's services in this process, as src/daemon/main.ts wires them, but with HANGAR_DRIVERS=fake, a
 * DirectoryPool and a FakeNetwork in a fresh temp dir: nothing needs root, nothing touches LXC, QEMU, btrfs or the network.
 */
export async function inProcessDaemon(opts: InProcessOptions = {}): Promise<InProcessDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-in-process-'));
  const host = new LocalHost();
  const prefix = opts.prefix ?? 'hgp';
  const facts = pretendFacts(opts.facts);
  let db: StateDb | undefined;
  try {
    for (const d of ['instances', 'cache', 'run', 'drivers']) await host.fs.mkdir(join(dir, d), { recursive: true, mode: 0o700 });
    let backendSink: ((instance: string, event: BackendEvent) => void) | undefined;
    const drivers = await DriverSet.open(selectDrivers(opts.drivers ?? 'fake'), () => ({
      host, facts, prefix, dataDir: join(dir, 'drivers'), cacheDir: join(dir, 'cache'), runDir: join(dir, 'run'), settings: {},
      services: {}, log: () => undefined, onBackendEvent: (instance, event) => backendSink?.(instance, event),
    }));
    db = new StateDb(join(dir, 'state.db'));
    const events = new EventBus();
    const pool = new DirectoryPool(host, { dir: join(dir, 'pool') });
    await pool.ensure();
    const network = new FakeNetwork({ ...(opts.subnet ? { subnet: opts.subnet } : {}), ifPrefix: prefix });
    const locks = new LockManager();
    const ops = new OperationManager(events, db);
    const images = new ImageService({ host, db, events, pool, mirror: 'http://deb.debian.org/debian', cacheDir: join(dir, 'cache') });
    for (const alias of opts.images ?? ['busybox']) await seedImage(host, pool, db, alias);
    const local: HostContext = {
      name: LOCAL_HOST, local: true, host, facts, drivers, pool, network, networkProblem: null, instancesDir: join(dir, 'instances'),
      poolSizeBytes: opts.poolSizeBytes ?? 8 * GiB,
    };
    const connector = new LoopbackConnector();
    const onBackendEvent = (instance: string, event: BackendEvent) => backendSink?.(instance, event);
    const detect = (root: string, cpuid: string | null | undefined) => detectVirt(host, { root, ...(cpuid !== undefined ? { cpuid: cpuid === '' ? null : cpuid } : {}) });
    const hosts = new HostService({
      db, events, locks, local, connector, log: () => undefined,
      // A pretend remote host keeps its state under <dir>/hosts/<name>, runs its machine's drivers, and has a network of its own on the same subnet.
      open: async (link, row) => {
        const base = join(dir, 'hosts', row.name);
        for (const d of ['instances', 'cache', 'run', 'drivers']) await link.fs.mkdir(join(base, d), { recursive: true, mode: 0o700 });
        const remoteDrivers = await DriverSet.open(selectDrivers(connector.machineOf(row)?.drivers ?? 'fake'), () => ({
          host: link, facts, prefix, dataDir: join(base, 'drivers'), cacheDir: join(base, 'cache'), runDir: join(base, 'run'), settings: {},
          services: {}, log: () => undefined, onBackendEvent,
        }));
        const remotePool = new DirectoryPool(link, { dir: join(base, 'pool') });
        await remotePool.ensure();
        const remoteNetwork = new FakeNetwork({ ...(opts.subnet ? { subnet: opts.subnet } : {}), ifPrefix: prefix });
        return { name: row.name, local: false, host: link, facts, drivers: remoteDrivers, pool: remotePool, network: remoteNetwork, networkProblem: null, instancesDir: join(base, 'instances'), poolSizeBytes: null };
      },
      detect: (ctx) => detectVirt(ctx.host, { root: '/' }),
      forget: (ctx) => ctx.host.fs.rm(join(dir, 'hosts', ctx.name), { recursive: true, force: true }),
      defaultIdentityFiles: [join(dir, 'no-such-key')],
    });
    const instances = new InstanceService({ db, events, locks, images, hosts, prefix, memoryReserveBytes: opts.memoryReserveBytes ?? 256 * 1024 ** 2 });
    const imports = new ImportService({ instances, hosts });
    backendSink = instances.onBackendEvent;
    hosts.onHostUp(instances.hostUp);
    await instances.reconcile();
    hosts.start();

    const hostInfo = (name?: string) => hosts.hostInfo(name);
    const openDb = db;
    const cleanup = async (): Promise<void> => {
      await ops.drain();
      instances.close();
      hosts.close();
      // The fake driver's world is per process: instances of this daemon that were not deleted leave it here.
      for (const row of openDb.listInstances()) fakeWorld.delete(row.name);
      openDb.close();
      rmSync(dir, { recursive: true, force: true });
    };
    return { version: VERSION, instances, images, hosts, imports, ops, events, hostInfo, detect, dir, db: openDb, pool, network, drivers, connector, cleanup };
  } catch (err) {
    db?.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
