// Vitest global setup: after all tests, stops the shared test daemon and removes what it set up on the host.
import { existsSync, rmSync } from 'node:fs';
import { teardownDaemon, TEST_ENV, usageMarker } from './daemon.js';

/** Nothing to do up front: the daemon starts lazily in the tests that need it. */
export function setup(): void {}

/** Deletes leftover test instances, stops the test daemon, then its network, lxcfs and pool — only when this run used it. */
export async function teardown(): Promise<void> {
  // Another vitest run (say, unit tests only) must not stop a daemon that a concurrent run is using.
  if (!existsSync(usageMarker(process.pid))) return;
  rmSync(usageMarker(process.pid), { force: true });
  await teardownDaemon(TEST_ENV);
}
