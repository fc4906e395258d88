// E2e: builds the Debian image (debootstrap from the mirror, cached), launches it unprivileged, systemd reaches running.
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Image } from '../../src/shared/schemas.js';
import { cli, cliAsync, cliOk, cliOkAsync, sharedDaemon, uniquePrefix } from '../helpers/daemon.js';
import { deleteAllWithPrefix, findInstance, leftovers, pollUntil, settings } from '../helpers/e2e.js';

const P = uniquePrefix('db');
const IMAGE = `${P}deb`;
const NAME = `${P}x`;

beforeAll(async () => {
  await sharedDaemon();
});

afterAll(() => {
  deleteAllWithPrefix(P);
  cli(['image', 'delete', IMAGE]);
}, 120_000);

describe('debian', () => {
  it('image build debian (debootstrap, cached under the daemon cache dir)', async () => {
    const out = await cliOkAsync(['image', 'build', 'debian', '--alias', IMAGE]);
    expect(out).toContain(`Built image ${IMAGE}`);
    const images = JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as Image[];
    const img = images.find((i) => i.alias === IMAGE);
    expect(img?.type).toBe('container');
    // The debootstrap result is kept in the daemon's cache dir, so the next build skips the mirror.
    expect(readdirSync(settings.cacheDir).filter((f) => /^debian-bookworm-.*\.tar\.zst$/.test(f))).not.toEqual([]);
  }, 1_200_000);

  it('launches unprivileged (default) and systemd reaches "running" (no failed units)', async () => {
    cliOk(['launch', IMAGE, NAME, '--memory', '256MiB']);
    expect(findInstance(NAME)?.state).toBe('running');

    // is-system-running --wait returns once boot finished; bound each attempt, and retry while systemd is still coming up.
    let last = { code: -1, stdout: '', stderr: '' };
    const done = await pollUntil(async () => {
      last = await cliAsync(['exec', NAME, '--', 'timeout', '60', 'systemctl', 'is-system-running', '--wait']);
      return ['running', 'degraded'].includes(last.stdout.trim());
    }, 20, 1000);
    if (last.stdout.trim() !== 'running') {
      const failed = cli(['exec', NAME, '--', 'systemctl', '--failed', '--no-legend', '--plain']);
      expect.soft(failed.stdout, 'failed units').toBe('');
    }
    expect(done, JSON.stringify(last)).toBe(true);
    expect(last.stdout.trim()).toBe('running');
  }, 300_000);

  it('free inside shows the container memory limit (lxcfs), not the host RAM', () => {
    const out = cliOk(['exec', NAME, '--', 'free', '-b']);
    const total = Number(/^Mem:\s+(\d+)/m.exec(out)?.[1]);
    expect(total, out).toBe(256 * 1024 ** 2);
  });

  it('has a user-namespace id map and the instance name as hostname', () => {
    expect(findInstance(NAME)?.state).toBe('running');
    const uidMap = cliOk(['exec', NAME, '--', 'cat', '/proc/self/uid_map']).trim().split(/\s+/).map(Number);
    expect(uidMap).toHaveLength(3);
    expect(uidMap[0]).toBe(0);
    expect(uidMap[1], 'root in the container is not root on the host').toBeGreaterThan(0);
    expect(uidMap[2]).toBeLessThan(4294967295);
    const gidMap = cliOk(['exec', NAME, '--', 'cat', '/proc/self/gid_map']).trim().split(/\s+/).map(Number);
    expect(gidMap[1]).toBeGreaterThan(0);

    expect(cliOk(['exec', NAME, '--', 'hostname']).trim()).toBe(NAME);
    expect(cliOk(['exec', NAME, '--', 'cat', '/etc/hostname']).trim()).toBe(NAME);
  });

  it('stops gracefully (systemd acts on its halt signal) and deletes cleanly', () => {
    const pid = findInstance(NAME)!.pid!;
    const stop = cli(['stop', NAME]);
    expect(stop.code, stop.stderr).toBe(0);
    expect(findInstance(NAME)?.state).toBe('stopped');
    expect(findInstance(NAME)?.pid).toBeNull();
    expect(pid).toBeGreaterThan(0);
    const mac = findInstance(NAME)!.mac ?? undefined;
    cliOk(['delete', NAME]);
    expect(leftovers(NAME, mac)).toEqual([]);
  }, 120_000);

  it('the image deletes once unused', () => {
    cliOk(['image', 'delete', IMAGE]);
    const images = JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as Image[];
    expect(images.map((i) => i.alias)).not.toContain(IMAGE);
  });
});
