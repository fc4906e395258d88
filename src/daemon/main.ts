// hangard: the one place where settings, hosts, state, storage, network, drivers, services and the API are wired together.
import { closeSync, existsSync, chmodSync, mkdirSync, openSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { homedir } from 'node:os';
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
import { HostService } from '../core/hosts/service.js';
import { sshConnector } from '../core/hosts/link.js';
import { openRemoteContext } from '../core/hosts/remote-context.js';
import type { HostContext } from '../core/hosts/context.js';
import { ImportService } from '../core/imports/service.js';
import { detectVirt } from '../core/detect/detect.js';
import { readCpuidSignature } from '../core/detect/cpuid.js';
import { DriverSet, selectDrivers } from '../drivers/registry.js';
import type { BackendEvent } from '../drivers/driver.js';
import { prepareAccelGuest } from '../core/images/accel-guest.js';
import { buildServer } from '../api/server.js';
import { causeChain } from '../shared/errors.js';
import { LOCAL_HOST } from '../shared/hosts.js';

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
  const onBackendEvent = (instance: string, event: BackendEvent) => backendSink?.(instance, event);
  const enabled = selectDrivers(process.env.HANGAR_DRIVERS);
  const drivers = await DriverSet.open(enabled, () => ({
    host, facts, prefix: settings.prefix, dataDir: settings.dir, cacheDir: settings.cacheDir, runDir: settings.runDir, settings: process.env,
    services: { linuxTestGuest: () => prepareAccelGuest(host, settings.cacheDir) }, log, onBackendEvent,
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
  const ops = new OperationManager(events, db);
  for (const op of ops.recoverInterrupted()) log(`operation ${op.id} (${op.description}) was interrupted by the previous daemon's end`);
  const images = new ImageService({ host, db, events, pool, mirror: settings.mirror, cacheDir: settings.cacheDir });
  const local: HostContext = {
    name: LOCAL_HOST, local: true, host, facts, drivers, pool, network, networkProblem: null,
    instancesDir: join(settings.dir, 'instances'), poolSizeBytes: await pool.sizeBytes(),
  };

  const probePath = join(dirname(fileURLToPath(import.meta.url)), 'native', 'hangar-cpuid');
  const liveCpuid = () => readCpuidSignature(host, probePath).catch(() => undefined);
  const detect = async (root: string, cpuid: string | null | undefined) => {
    // The CPUID probe describes this machine: use it for "/" and for live container roots under /proc, not for other trees.
    const sig = cpuid !== undefined ? (cpuid === '' ? null : cpuid) : root === '/' || root.startsWith('/proc/') ? await liveCpuid() : undefined;
    return detectVirt(host, { root, ...(sig !== undefined ? { cpuid: sig } : {}) });
  };
  // Remote hosts: reached over SSH, their state kept under the same HANGAR_DIR path there, the managed network replicated.
  const hosts = new HostService({
    db, events, locks, local, connector: sshConnector, log,
    open: (link, row) => openRemoteContext(link, row.name, {
      dir: settings.dir, runDir: settings.runDir, prefix: settings.prefix, drivers: enabled, settings: process.env, onBackendEvent, log,
      network: { bridge: settings.bridge, subnet: settings.subnet, nftTable: settings.nftTable, ifPrefix: settings.prefix },
    }, row.bridge),
    // The CPUID probe is a binary of this machine: remote hosts are told from their files alone.
    detect: (ctx) => (ctx.local ? detect('/', undefined) : detectVirt(ctx.host, { root: '/' })),
    // The host's pool (copies of images) is the daemon's alone; its network is the same bridge as ours when it is this machine.
    forget: (ctx) => ctx.host.fs.rm(join(settings.dir, 'hosts', ctx.name), { recursive: true, force: true }),
    defaultIdentityFiles: ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((f) => join(homedir(), '.ssh', f)),
  });
  const instances = new InstanceService({ db, events, locks, images, hosts, prefix: settings.prefix, memoryReserveBytes: settings.memoryReserveBytes, log });
  const imports = new ImportService({ instances, hosts });
  backendSink = instances.onBackendEvent;
  // Each remote host, once up, is reconciled (drift as events) and, the first time, autostarted.
  hosts.onHostUp(instances.hostUp);

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
  const server = await buildServer({ version: VERSION, instances, images, hosts, imports, ops, events, hostInfo: (name) => hosts.hostInfo(name), detect });
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
  // Remote hosts connect in the background: one that is down leaves its instances unknown, not the daemon waiting.
  hosts.start();

  // Drivers' work for after start-up (QEMU's Linux accelerator check) runs in the background; what needs it waits for it.
  for (const d of drivers.all()) void d.background?.().catch((e: unknown) => log(`${d.driver.name}: background work failed: ${e instanceof Error ? e.message : String(e)}`));
  if (!db.getImage('busybox', 'container')) {
    log('building the busybox image (local, no network)...');
    await images.build('busybox', {}, (m) => log(`  ${m}`));
  }
  await instances.autostart((name, err) => log(`autostart of "${name}" failed: ${err instanceof Error ? err.message : String(err)}`));

  const cli = `node ${join(dirname(fileURLToPath(import.meta.url)), 'hangar.cjs')}`;
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
    instances.close();
    hosts.close();
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
