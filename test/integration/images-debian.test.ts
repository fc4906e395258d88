// Integration test: builds a Debian bookworm rootfs with debootstrap (cached in /var/lib/hangar-test-cache so reruns take seconds).
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { buildDebianRootfs } from '../../src/core/images/debian.js';
import { shiftIds } from '../../src/drivers/lxc/shift.js';
import { importRootfsTarball } from '../../src/core/images/tar-import.js';

const CACHE = '/var/lib/hangar-test-cache/debootstrap';
const host = new LocalHost();

describe('buildDebianRootfs (debootstrap, ~4 min on the first run)', () => {
  let dir = '';
  let dest = '';
  const messages: string[] = [];
  let result: Awaited<ReturnType<typeof buildDebianRootfs>>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `t${Math.random().toString(36).slice(2, 6)}-deb-`));
    dest = join(dir, 'rootfs');
    await host.fs.mkdir(dest);
    result = await buildDebianRootfs(host, dest, { release: 'bookworm', mirror: process.env.HANGAR_MIRROR ?? 'http://deb.debian.org/debian', cacheDir: CACHE, onProgress: (m) => messages.push(m) });
  }, 900_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('returns the image properties', () => {
    expect(result.props).toMatchObject({ haltSignal: 'SIGRTMIN+3', init: '/sbin/init', os: 'debian', release: 'bookworm' });
    expect(result.description).toContain('bookworm');
    expect(messages.length).toBeGreaterThan(0);
  });

  it('has systemd as /sbin/init and is bookworm', async () => {
    expect(await readlink(join(dest, 'sbin/init'))).toMatch(/systemd$/);
    expect(await readFile(join(dest, 'etc/os-release'), 'utf8')).toContain('VERSION_CODENAME=bookworm');
    expect((await stat(join(dest, 'usr/bin/ip'))).isFile()).toBe(true);
  });

  it('is container-ready', async () => {
    expect((await stat(join(dest, 'etc/machine-id'))).size).toBe(0);
    expect(await readFile(join(dest, 'etc/hostname'), 'utf8')).toBe('localhost\n');
    expect(await readFile(join(dest, 'etc/apt/sources.list'), 'utf8')).toMatch(/^deb \S+ bookworm main$/m);
    expect(await readlink(join(dest, 'etc/systemd/system/systemd-udevd.service'))).toBe('/dev/null');
    expect((await stat(join(dest, 'root'))).uid).toBe(0);
  });

  it('round-trips through a tarball import and id shifting', async () => {
    const tarball = join(dir, 'rootfs.tar.zst');
    execFileSync('tar', ['-c', '--zstd', '--numeric-owner', '-C', dest, '-f', tarball, '.']);
    const copy = join(dir, 'copy');
    await host.fs.mkdir(copy);
    const imported = await importRootfsTarball(host, tarball, copy);
    expect(imported.entries).toBeGreaterThan(5000);
    const shifted = await shiftIds(host, copy, 100000);
    expect(shifted.entries).toBe(imported.entries);
    expect((await stat(join(copy, 'etc/passwd'))).uid).toBe(100000);
    expect((await stat(join(copy, 'usr/bin/passwd'))).mode & 0o7777).toBe(0o4755);
  });

  it('leaves no mounts inside the rootfs', async () => {
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    expect(mounts.includes(` ${dest}/`)).toBe(false);
  });
});
