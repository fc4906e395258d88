// Daemon settings from the environment, and every host-level name derived from them (so a test daemon never touches the default one).
import { join } from 'node:path';
import { AppError } from '../shared/errors.js';

/** Resolved daemon settings. */
export interface Settings {
  /** State directory (HANGAR_DIR, default /var/lib/hangar). */
  dir: string;
  /** API unix socket (HANGAR_SOCKET, default /run/hangar/hangar.sock). */
  socket: string;
  /** Runtime directory for pidfiles and sockets (HANGAR_RUN_DIR, default dirname of the socket). */
  runDir: string;
  /** Short prefix for host-level names (HANGAR_PREFIX, default "hgr"): bridge, nft table, cgroup parent, veths. */
  prefix: string;
  /** IPv4 subnet of the managed bridge in CIDR form (HANGAR_SUBNET, default 10.123.0.0/24). */
  subnet: string;
  /** Bridge interface name. */
  bridge: string;
  /** nftables table name (family inet). */
  nftTable: string;
  /** Path given to lxc-* as -P. */
  lxcPath: string;
  /** Storage pool directory (the btrfs mount point). */
  poolDir: string;
  /** Backing file of the storage pool. */
  poolImage: string;
  /** The pool mounted a second time (set-uid allowed, nodev) for container root file systems. */
  rootsDir: string;
  /** Size of the pool backing file in bytes (HANGAR_POOL_SIZE, default 20GiB, sparse). */
  poolSizeBytes: number;
  /** Image store metadata and caches. */
  imagesDir: string;
  /** Cache for debootstrap and other downloads from the Debian mirror. */
  cacheDir: string;
  /** dnsmasq state (pidfile, leases, hosts). */
  dnsmasqDir: string;
  /** lxcfs mount point for this daemon. */
  lxcfsDir: string;
  /** SQLite database file. */
  dbFile: string;
  /** Logs (console logs live per instance). */
  logDir: string;
  /** Debian mirror for debootstrap (HANGAR_MIRROR). */
  mirror: string;
  /** Memory held back from admission control for the host itself, in bytes (HANGAR_RESERVE, default 1GiB). */
  memoryReserveBytes: number;
}

/** Reads settings from an environment map (process.env in the daemon). */
export function loadSettings(env: Record<string, string | undefined>): Settings {
  const dir = env.HANGAR_DIR ?? '/var/lib/hangar';
  const socket = env.HANGAR_SOCKET ?? '/run/hangar/hangar.sock';
  const runDir = env.HANGAR_RUN_DIR ?? join(socket, '..');
  const prefix = env.HANGAR_PREFIX ?? 'hgr';
  if (!/^[a-z][a-z0-9]{0,5}$/.test(prefix)) {
    throw new AppError('INVALID_CONFIG', `Invalid HANGAR_PREFIX ${JSON.stringify(prefix)}: 1-6 lower-case letters or digits, starting with a letter (it must fit in interface names)`);
  }
  const subnet = env.HANGAR_SUBNET ?? '10.123.0.0/24';
  const poolSize = Number(env.HANGAR_POOL_SIZE ?? 20 * 1024 ** 3);
  return {
    dir,
    socket,
    runDir,
    prefix,
    subnet,
    bridge: `${prefix}br0`,
    nftTable: `${prefix}_nat`,
    lxcPath: join(dir, 'lxc'),
    poolDir: join(dir, 'pool'),
    poolImage: join(dir, 'pool.img'),
    rootsDir: join(dir, 'roots'),
    poolSizeBytes: poolSize,
    imagesDir: join(dir, 'images'),
    cacheDir: join(dir, 'cache'),
    dnsmasqDir: join(dir, 'dnsmasq'),
    lxcfsDir: join(dir, 'lxcfs'),
    dbFile: join(dir, 'hangar.db'),
    logDir: join(dir, 'logs'),
    mirror: env.HANGAR_MIRROR ?? 'http://deb.debian.org/debian',
    memoryReserveBytes: Number(env.HANGAR_RESERVE ?? 1024 ** 3),
  };
}
