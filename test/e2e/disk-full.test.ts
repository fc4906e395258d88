// E2e: a daemon whose state lives on a small file system that fills up: instances keep running and writing, errors say the disk is full, hangard starts while full, and freeing space is enough.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostInfo, Instance } from '../../src/shared/schemas.js';
import { cli, startDaemon, stopDaemon, teardownDaemon, type TestDaemon } from '../helpers/daemon.js';

// Its own daemon (prefix, subnet, socket, state), so filling its disk touches nothing else.
const ID = Math.floor(Math.random() * 1e4).toString(36);
const DIR = `/var/lib/hangar-full-${ID}`;
const ENV = {
  HANGAR_DIR: DIR,
  HANGAR_SOCKET: `/run/hangar-full-${ID}/hangar.sock`,
  HANGAR_PREFIX: `hgf${ID.slice(0, 3)}`,
  HANGAR_SUBNET: '10.199.97.0/24',
  // More than the file system can hold with headroom: the pool is made smaller, with a warning.
  HANGAR_POOL_SIZE: String(8 * 1024 ** 3),
};
const run = (args: string[]) => cli(args, { env: ENV });
const ok = (args: string[]) => {
  const r = run(args);
  if (r.code !== 0) throw new Error(`hangar ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
};
const info = () => JSON.parse(ok(['host', 'info', '--format', 'json'])) as HostInfo;
const instance = (name: string) => (JSON.parse(ok(['list', '--format', 'json'])) as Instance[]).find((i) => i.name === name);
const free = () => {
  const [avail, bsize] = spawnSync('stat', ['-f', '-c', '%a %S', DIR], { encoding: 'utf8' }).stdout.trim().split(' ').map(Number);
  return avail! * bsize!;
};
const FILLER = join(DIR, 'filler');
let daemon: TestDaemon | undefined;

beforeAll(async () => {
  mkdirSync(DIR, { recursive: true });
  // 2.2 GiB: a 1.2 GiB pool plus the 1 GiB headroom Hangar keeps free for the database and logs.
  expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2250m,mode=0711', `hangar-full-${ID}`, DIR]).status).toBe(0);
  daemon = await startDaemon(ENV);
}, 300_000);

afterAll(async () => {
  rmSync(FILLER, { force: true });
  await teardownDaemon(ENV);
  spawnSync('umount', ['-l', DIR]);
  rmSync(DIR, { recursive: true, force: true });
  rmSync(`/run/hangar-full-${ID}`, { recursive: true, force: true });
}, 180_000);

describe('a full state file system', () => {
  it('made the pool fit the disk, fully allocated, and says so', () => {
    const st = info().storage;
    expect(st.sizeBytes!).toBeLessThan(1.3 * 1024 ** 3);
    expect(st.warnings.join('\n')).toMatch(/was made .* instead of 8GiB/);
  });

  it('keeps instances running and writing to their disks, refuses new work with a clear message, starts while full, and recovers when space is freed', async () => {
    ok(['launch', 'busybox', 'full1']);
    expect(instance('full1')?.state).toBe('running');
    // Fill what is left under the pool (the state file system), as any other program on the host might.
    expect(spawnSync('fallocate', ['-l', String(free()), FILLER]).status).toBe(0);
    expect(free()).toBeLessThan(1024 ** 2);

    // The pool's space was allocated up front: the container still writes 20 MiB, and the pool stays writable.
    expect(run(['exec', 'full1', '--', 'dd', 'if=/dev/zero', 'of=/data.bin', 'bs=1M', 'count=20']).code).toBe(0);
    expect(run(['exec', 'full1', '--', 'sync']).code).toBe(0);
    const full = info();
    expect(full.storage.state).toBe('degraded');
    expect(full.storage.warnings.join('\n')).toMatch(/has only \d+ MiB free/);

    // New work needs the database: refused, saying why, leaving nothing behind.
    const r = run(['launch', 'busybox', 'full2']);
    expect(r.code).not.toBe(0);
    console.log(`launch on a full disk: ${r.stderr.trim()}`);
    expect(r.stderr).toMatch(/file system is full|No space left on device/);
    expect(instance('full2')).toBeUndefined();
    expect(existsSync(join(DIR, 'pool', 'instances', 'full2'))).toBe(false);

    // hangard killed and started again while the disk is full: it comes up, adopts the instance, reports the disk.
    await stopDaemon(daemon!, 'SIGKILL');
    daemon = await startDaemon(ENV, 60_000);
    expect(instance('full1')?.state).toBe('running');
    expect(info().storage.warnings.join('\n')).toMatch(/has only \d+ MiB free/);

    // Space freed: everything works again, without a remount or restart.
    rmSync(FILLER);
    ok(['launch', 'busybox', 'full2']);
    expect(instance('full2')?.state).toBe('running');
    expect(run(['exec', 'full2', '--', 'dd', 'if=/dev/zero', 'of=/data.bin', 'bs=1M', 'count=5']).code).toBe(0);
    expect(info().storage.state).not.toBe('read-only');
  }, 240_000);
});
