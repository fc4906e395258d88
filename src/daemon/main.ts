// hangard: the one place where settings, host, state, storage, network, drivers, services and the API are wired together.
import { closeSync, existsSync, chmodSync, mkdirSync, openSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSettings, type Settings } from '../core/settings.js';
import { LocalHost } from '../host/local.js';
import { ensureIdMap, readHostFacts } from '../host/facts.js';
import { StateDb } from '../core/db/database.js';
import { EventBus } from '../core/events.js';
import { LockManager } from '../core/locks.js';
import { OperationManager } from '../core/operations.js';
import { BtrfsPool } from '../core/storage/btrfs-pool.js';
import { NetworkManager } from '../core/network/manager.js';
import { ImageService } from '../core/images/service.js';
import { InstanceService } from '../core/instances/service.js';
import { detectVirt } from '../core/detect/detect.js';
import { readCpuidSignature } from '../core/detect/cpuid.js';
import { DriverSet, selectDrivers } from '../drivers/registry.js';
import type { BackendEvent } from '../drivers/driver.js';
import { prepareAccelGuest } from '../core/images/accel-guest.js';
import { buildServer } from '../api/server.js';
import { causeChain } from '../shared/errors.js';
import type { HostInfo } from '../shared/schemas.js';

const VERSION = '0.1.0';

function log(msg: string): void {
  process.stderr.write(`hangard: ${msg}\n`);
}

/**
 * hangard's directories and their modes: the state tree is searchable (0711) but not listable, because dnsmasq (which
 * drops root) and the lxcfs mounts below it must be reachable; everything holding instance data or secrets is 0700.
 */
function stateDirs(s: Settings): [string, number][] {
  return [
    // LXC refuses to start an unprivileged container whose root cannot search its way to the lxc path.
    [s.dir, 0o711], [s.runDir, 0o700], [s.lxcPath, 0o711], [s.imagesDir, 0o700], [s.cacheDir, 0o700], [s.logDir, 0o700],
    [join(s.dir, 'instances'), 0o700],
  ];
}

/** True when something already answers on the socket (another hangard). */
function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    if (!existsSync(path)) { resolve(false); return; }
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

async function main(settings: Settings): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('hangard must run as root');
  if (await socketAlive(settings.socket)) throw new Error(`another hangard is already listening on ${settings.socket}`);
  // A known umask, whatever hangard was started under (a umask 000 must not make state world-writable); what must be
  // private is also created with its mode explicitly.
  process.umask(0o022);
  for (const [d, mode] of stateDirs(settings)) {
    mkdirSync(d, { recursive: true, mode });
    chmodSync(d, mode);
  }
  // The database holds every user.* value: created 0600 before SQLite opens it (its -wal and -shm files take its mode).
  closeSync(openSync(settings.dbFile, 'a', 0o600));
  for (const f of [settings.dbFile, `${settings.dbFile}-wal`, `${settings.dbFile}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
  const host = new LocalHost();
  const idmap = await ensureIdMap(host);
  const facts = await readHostFacts(host, idmap);
  // Each driver opens on the host: it probes, keeps its own facts (QEMU's accelerator, LXC's lxcfs) and reports them.
  let backendSink: ((instance: string, event: BackendEvent) => void) | undefined;
  const drivers = await DriverSet.open(selectDrivers(process.env.HANGAR_DRIVERS), () => ({
    host, facts, prefix: settings.prefix, dataDir: settings.dir, cacheDir: settings.cacheDir, runDir: settings.runDir, settings: process.env,
    services: { linuxTestGuest: () => prepareAccelGuest(host, settings.cacheDir) }, log,
    onBackendEvent: (instance, event) => backendSink?.(instance, event),
  }));
  const db = new StateDb(settings.dbFile);
  const events = new EventBus();
  events.subscribe((e) => { if (e.type === 'instance-drift') log(`drift: ${e.message ?? e.instance}`); });
  const pool = new BtrfsPool(host, { poolDir: settings.poolDir, poolImage: settings.poolImage, sizeBytes: settings.poolSizeBytes, rootsDir: settings.rootsDir });
  log(`storage pool: btrfs on ${settings.poolImage}`);
  await pool.ensure();
  const network = new NetworkManager(host, { bridge: settings.bridge, subnet: settings.subnet, nftTable: settings.nftTable, dnsmasqDir: settings.dnsmasqDir, ifPrefix: settings.prefix });
  log(`network: bridge ${settings.bridge} ${settings.subnet}`);
  await network.ensure();
  const locks = new LockManager();
  const ops = new OperationManager(events);
  const images = new ImageService({ host, db, events, pool, mirror: settings.mirror, cacheDir: settings.cacheDir });
  const instances = new InstanceService({
    host, db, events, locks, drivers, images, pool, network, facts, instancesDir: join(settings.dir, 'instances'),
    prefix: settings.prefix, poolSizeBytes: await pool.sizeBytes(), memoryReserveBytes: settings.memoryReserveBytes,
  });
  backendSink = instances.onBackendEvent;

  const probePath = join(dirname(fileURLToPath(import.meta.url)), 'native', 'hangar-cpuid');
  const liveCpuid = () => readCpuidSignature(host, probePath).catch(() => undefined);
  const detect = async (root: string, cpuid: string | null | undefined) => {
    // The CPUID probe describes this machine: use it for "/" and for live container roots under /proc, not for other trees.
    const sig = cpuid !== undefined ? (cpuid === '' ? null : cpuid) : root === '/' || root.startsWith('/proc/') ? await liveCpuid() : undefined;
    return detectVirt(host, { root, ...(sig !== undefined ? { cpuid: sig } : {}) });
  };
  const hostInfo = async (): Promise<HostInfo> => {
    const [poolInfo, runsIn] = await Promise.all([pool.info(), detect('/', undefined)]);
    const accel = drivers.all().map((d) => d.accelerator?.()).find((a) => a !== undefined);
    const net = network.info();
    return {
      hostname: facts.hostname, kernel: facts.kernel, os: facts.os, cpus: facts.cpus, memoryBytes: facts.memoryBytes, cgroupLayout: facts.cgroupLayout,
      storage: { driver: poolInfo.driver, path: poolInfo.path, sizeBytes: poolInfo.sizeBytes, usedBytes: poolInfo.usedBytes, state: poolInfo.state, warnings: poolInfo.warnings },
      network: { bridge: net.bridge, subnet: net.subnet, gateway: net.gateway },
      drivers: drivers.all().map((d) => {
        const a = d.accelerator?.();
        return {
          name: d.driver.name, type: d.driver.type, available: d.probe.available, version: d.probe.version, reason: d.probe.reason,
          default: drivers.isDefault(d), features: d.driver.features, details: d.details(), ...(a ? { accelerator: a } : {}),
        };
      }),
      cpuVirtFlags: facts.cpuVirtFlags,
      kvm: accel ? { present: facts.kvm.present, usable: accel.kvmUsable === true, reason: accel.reason } : facts.kvm,
      runsIn,
    };
  };

  // The pool's health, reported at start and whenever it changes (a read-only or nearly full pool is an event).
  let poolState = '';
  const watchPool = async () => {
    const h = await pool.health().catch(() => undefined);
    if (!h) return;
    const now = `${h.state}\n${h.warnings.join('\n')}`;
    // At start only trouble is news; later every change is.
    if (now === poolState || (poolState === '' && h.state === 'ok')) { poolState = now; return; }
    poolState = now;
    if (h.warnings.length) log(`storage pool ${h.state}: ${h.warnings.join('; ')}`);
    events.emit({ type: 'pool-state-changed', message: h.warnings.length ? `Storage pool ${h.state}: ${h.warnings.join('; ')}` : 'Storage pool ok', data: { state: h.state, warnings: h.warnings } });
  };
  await watchPool();
  setInterval(() => void watchPool(), 30_000).unref();

  await instances.reconcile();
  const server = await buildServer({ version: VERSION, instances, images, ops, events, hostInfo, detect });
  if (existsSync(settings.socket)) unlinkSync(settings.socket);
  // The socket is born 0600 (bind() applies the umask): there is no moment in which another user could connect.
  const umask = process.umask(0o177);
  try {
    await server.listen({ path: settings.socket });
  } finally {
    process.umask(umask);
  }
  chmodSync(settings.socket, 0o600);
  log(`API listening on ${settings.socket} (pid ${process.pid})`);

  // Drivers' work for after start-up (QEMU's Linux accelerator check) runs in the background; what needs it waits for it.
  for (const d of drivers.all()) void d.background?.().catch((e: unknown) => log(`${d.driver.name}: background work failed: ${e instanceof Error ? e.message : String(e)}`));
  if (!db.getImage('busybox', 'container')) {
    log('building the busybox image (local, no network)...');
    await images.build('busybox', {}, (m) => log(`  ${m}`));
  }
  await instances.autostart((name, err) => log(`autostart of "${name}" failed: ${err instanceof Error ? err.message : String(err)}`));

  const cli = `node ${join(dirname(fileURLToPath(import.meta.url)), 'hangar.mjs')}`;
  const envPrefix = process.env.HANGAR_SOCKET ? `HANGAR_SOCKET=${settings.socket} ` : '';
  process.stdout.write([
    '',
    `Hangar ${VERSION} is running (state in ${settings.dir}, API on ${settings.socket}).`,
    'In another terminal, as root, try:',
    `  ${envPrefix}${cli} launch busybox web1`,
    `  ${envPrefix}${cli} list`,
    `  ${envPrefix}${cli} exec web1 -- uname -a`,
    `(or put ${join(dirname(fileURLToPath(import.meta.url)), '..', 'bin')} on PATH and type "hangar ...").`,
    'Ctrl-C stops hangard; instances keep running.',
    '',
  ].join('\n'));

  const shutdown = (sig: string) => {
    log(`${sig}: shutting down (instances keep running)`);
    void server.close();
    setTimeout(() => { db.close(); process.exit(0); }, 200).unref();
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}

main(loadSettings(process.env)).catch((err: unknown) => {
  log(`failed to start: ${err instanceof Error ? err.message : String(err)}`);
  for (const c of causeChain(err)) log(`  caused by: ${c}`);
  process.exit(1);
});
