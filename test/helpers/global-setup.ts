// Vitest global setup: after all tests, stops the shared test daemon and removes what it set up on the host.
import { spawnSync } from 'node:child_process';
import { HangarClient } from '../../src/client/client.js';
import { LocalHost } from '../../src/core/host/local.js';
import { loadSettings } from '../../src/core/settings.js';
import { NetworkManager } from '../../src/core/network/manager.js';
import { BtrfsPool } from '../../src/core/storage/btrfs-pool.js';
import { existsSync, rmSync } from 'node:fs';
import { TEST_ENV, usageMarker } from './daemon.js';

/** Nothing to do up front: the daemon starts lazily in the tests that need it. */
export function setup(): void {}

/** Deletes leftover test instances, stops the test daemon, then its network, lxcfs and pool — only when this run used it. */
export async function teardown(): Promise<void> {
  // Another vitest run (say, unit tests only) must not stop a daemon that a concurrent run is using.
  if (!existsSync(usageMarker(process.pid))) return;
  rmSync(usageMarker(process.pid), { force: true });
  const client = new HangarClient({ socketPath: TEST_ENV.HANGAR_SOCKET });
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
  const settings = loadSettings(TEST_ENV);
  const host = new LocalHost();
  await new NetworkManager(host, { bridge: settings.bridge, subnet: settings.subnet, nftTable: settings.nftTable, dnsmasqDir: settings.dnsmasqDir, ifPrefix: settings.prefix }).teardown().catch(() => undefined);
  // lxcfs of the test daemon: unmounting its FUSE mount makes it exit.
  spawnSync('umount', ['-l', settings.lxcfsDir]);
  await new BtrfsPool(host, { poolDir: settings.poolDir, poolImage: settings.poolImage, sizeBytes: settings.poolSizeBytes, rootsDir: settings.rootsDir }).unmount().catch(() => undefined);
}
