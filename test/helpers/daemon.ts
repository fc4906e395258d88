// Test daemon helper: runs a real hangard with its own prefix, subnet, state dir and socket beside any default one.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { HangarClient } from '../../src/client/client.js';
import { LocalHost } from '../../src/host/local.js';
import { NetworkManager } from '../../src/core/network/manager.js';
import { loadSettings } from '../../src/core/settings.js';
import { BtrfsPool } from '../../src/core/storage/btrfs-pool.js';

/** Repository root. */
export const ROOT = resolve(import.meta.dirname, '../..');

// HANGAR_TEST_ID (one digit) lets several test runs on one machine each have their own daemon.
const TEST_ID = /^[0-9]$/.test(process.env.HANGAR_TEST_ID ?? '') ? process.env.HANGAR_TEST_ID! : '';

/** Environment of the shared test daemon (its names never collide with a default hangard). */
export const TEST_ENV = {
  HANGAR_DIR: `/var/lib/hangar-test${TEST_ID}`,
  HANGAR_SOCKET: `/run/hangar-test${TEST_ID}/hangar.sock`,
  HANGAR_PREFIX: `hgt${TEST_ID}`,
  HANGAR_SUBNET: `10.199.${77 + Number(TEST_ID || 0)}.0/24`,
  // The default drivers, and the fake backend: proof that a backend is its folder plus a registry line (test/e2e/drivers.test.ts).
  HANGAR_DRIVERS: 'lxc,qemu,xen,fake,openvz',
  HANGAR_POOL_SIZE: String(12 * 1024 ** 3),
};

/** A running test daemon. */
export interface TestDaemon {
  env: Record<string, string>;
  pid: number;
  logFile: string;
  client: HangarClient;
}

/** Starts hangard with env and waits until its API answers and the busybox image exists. */
export async function startDaemon(env: Record<string, string> = TEST_ENV, timeoutMs = 300_000, opts: { umask?: string } = {}): Promise<TestDaemon> {
  mkdirSync(env.HANGAR_DIR!, { recursive: true });
  const logFile = join(env.HANGAR_DIR!, 'hangard-test.log');
  const fd = openSync(logFile, 'a');
  // Own session: a test killing the daemon never signals the test runner's group, and vice versa.
  // With a umask, through sh (which sets it and execs hangard, so the pid stays the daemon's).
  const argv = opts.umask === undefined ? [process.execPath, join(ROOT, 'dist/hangard.mjs')] : ['/bin/sh', '-c', `umask ${opts.umask} && exec "$0" "$1"`, process.execPath, join(ROOT, 'dist/hangard.mjs')];
  const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  const client = new HangarClient({ socketPath: env.HANGAR_SOCKET! });
  const deadline = Date.now() + timeoutMs;
  let exited: number | null = null;
  child.once('exit', (code) => { exited = code ?? -1; });
  for (;;) {
    if (exited !== null) throw new Error(`hangard exited with ${exited} during start; log:\n${tail(logFile)}`);
    try {
      const info = await client.serverInfo();
      const images = await client.listImages();
      if (info.pid === child.pid && images.some((i) => i.alias === 'busybox')) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`hangard did not come up; log:\n${tail(logFile)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { env, pid: child.pid!, logFile, client };
}

/** Stops a test daemon gracefully (instances keep running). */
export async function stopDaemon(d: TestDaemon, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  d.client.close();
  try { process.kill(d.pid, signal); } catch { return; }
  for (let i = 0; i < 100; i++) {
    try { process.kill(d.pid, 0); } catch { return; }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Last lines of a log file. */
export function tail(file: string, lines = 40): string {
  if (!existsSync(file)) return '(no log)';
  return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
}

/** Runs the bundled CLI against the test daemon. */
export function cli(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): { code: number; stdout: string; stderr: string } {
  const res = spawnSync(process.execPath, [join(ROOT, 'dist/hangar.cjs'), ...args], {
    env: { ...process.env, ...TEST_ENV, ...opts.env },
    input: opts.input ?? '',
    encoding: 'utf8',
    timeout: 600_000,
  });
  return { code: res.status ?? -1, stdout: res.stdout, stderr: res.stderr };
}

/**
 * Runs the CLI without blocking the test worker (for minutes-long commands such as image builds: a worker blocked in
 * spawnSync cannot answer vitest's RPC, which then reports a timeout).
 */
export function cliAsync(args: string[], opts: { env?: Record<string, string> } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'dist/hangar.cjs'), ...args], { env: { ...process.env, ...TEST_ENV, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString('utf8'); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString('utf8'); });
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Like cliAsync, throwing with the output unless the CLI exits 0. */
export async function cliOkAsync(args: string[]): Promise<string> {
  const r = await cliAsync(args);
  if (r.code !== 0) throw new Error(`hangar ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** Runs the CLI and throws with its output unless it exits 0. */
export function cliOk(args: string[], opts: { input?: string } = {}): string {
  const r = cli(args, opts);
  if (r.code !== 0) throw new Error(`hangar ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** A unique instance name prefix per test file. */
export function uniquePrefix(tag: string): string {
  return `t${tag}${Math.random().toString(16).slice(2, 6)}`;
}

let shared: TestDaemon | undefined;

/** Marker telling the vitest run (the workers' parent) that it used the shared daemon, so only that run tears it down. */
export function usageMarker(runPid: number): string {
  return join(TEST_ENV.HANGAR_DIR, `.used-by-vitest-${runPid}`);
}

/** The shared test daemon, started on first use; later test files reuse it. */
export async function sharedDaemon(): Promise<TestDaemon> {
  mkdirSync(TEST_ENV.HANGAR_DIR, { recursive: true });
  writeFileSync(usageMarker(process.ppid), '');
  if (shared) return shared;
  const client = new HangarClient({ socketPath: TEST_ENV.HANGAR_SOCKET });
  try {
    const info = await client.serverInfo();
    const images = await client.listImages();
    if (images.some((i) => i.alias === 'busybox')) {
      shared = { env: TEST_ENV, pid: info.pid, logFile: join(TEST_ENV.HANGAR_DIR, 'hangard-test.log'), client };
      return shared;
    }
  } catch { /* not running */ }
  client.close();
  shared = await startDaemon(TEST_ENV);
  return shared;
}

/** Forgets the cached shared daemon (after a test restarted it). */
export function setSharedDaemon(d: TestDaemon): void {
  shared = d;
}

/**
 * Deletes a test daemon's instances, stops it, then removes what it set up on the host: network (bridge, nft table,
 * dnsmasq), lxcfs and the pool with its container-roots mount. Safe to call when the daemon is already gone.
 */
export async function teardownDaemon(env: Record<string, string>): Promise<void> {
  const client = new HangarClient({ socketPath: env.HANGAR_SOCKET! });
  let pid: number | undefined;
  try {
    pid = (await client.serverInfo()).pid;
    for (const i of await client.listInstances()) {
      await client.waitOperation(await client.deleteInstance(i.name, { force: true })).catch(() => undefined);
    }
  } catch { /* daemon not running */ }
  client.close();
  if (pid) {
    try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
    for (let i = 0; i < 100; i++) {
      try { process.kill(pid, 0); } catch { break; }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const settings = loadSettings(env);
  const host = new LocalHost();
  await new NetworkManager(host, { bridge: settings.bridge, subnet: settings.subnet, nftTable: settings.nftTable, dnsmasqDir: settings.dnsmasqDir, ifPrefix: settings.prefix }).teardown().catch(() => undefined);
  // lxcfs of the test daemon: unmounting its FUSE mount makes it exit.
  spawnSync('umount', ['-l', settings.lxcfsDir]);
  await new BtrfsPool(host, { poolDir: settings.poolDir, poolImage: settings.poolImage, sizeBytes: settings.poolSizeBytes, rootsDir: settings.rootsDir }).unmount().catch(() => undefined);
}

