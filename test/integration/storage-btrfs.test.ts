// Integration tests of the btrfs storage pool on a small loop-mounted pool in a fresh temporary directory.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BtrfsPool } from '../../src/core/storage/btrfs-pool.js';
import { LocalHost } from '../../src/host/local.js';
import { findMount } from '../../src/host/mounts.js';
import { parseQgroupShow } from '../../src/core/storage/parse.js';
import { isAppError, type ErrorCode } from '../../src/shared/errors.js';

const host = new LocalHost();
const prefix = `t${randomBytes(2).toString('hex')}`;
const dir = `/tmp/hgr-${prefix}`;
const poolDir = join(dir, 'pool');
const poolImage = join(dir, 'pool.img');
const MiB = 1024 ** 2;
const rootsDir = join(dir, 'roots');
const pool = new BtrfsPool(host, { poolDir, poolImage, sizeBytes: 1024 * MiB, rootsDir });
const tiny = `${prefix}-tiny`;
const big = `${prefix}-big`;

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(isAppError(err) ? err.code : err).toBe(code);
}

async function dd(path: string, mib: number) {
  return host.exec(['dd', 'if=/dev/zero', `of=${path}`, 'bs=1M', `count=${mib}`, 'conv=fsync'], { allowFailure: true });
}

async function subvolId(path: string): Promise<number> {
  return Number((await host.exec(['btrfs', 'inspect-internal', 'rootid', path])).stdout.trim());
}

async function qgroupIds(): Promise<Set<number>> {
  const res = await host.exec(['btrfs', 'qgroup', 'show', '-re', '--raw', poolDir]);
  return new Set(parseQgroupShow(res.stdout).filter((q) => q.level === 0).map((q) => q.id));
}

beforeAll(async () => {
  await host.fs.mkdir(dir, { recursive: true });
  await pool.ensure();
  // Two images: a tiny one and one of ~200 MiB; instance creation must cost the same for both.
  const t = await pool.createImageVolume(tiny);
  await host.fs.mkdir(join(t, 'etc'));
  await host.fs.writeAtomic(join(t, 'etc', 'hostname'), 'tiny\n');
  await pool.sealImageVolume(tiny);
  const b = await pool.createImageVolume(big);
  await host.fs.mkdir(join(b, 'etc'));
  await host.fs.writeAtomic(join(b, 'etc', 'hostname'), 'big\n');
  expect((await dd(join(b, 'blob'), 200)).code).toBe(0);
  await pool.sealImageVolume(big);
});

afterAll(async () => {
  try {
    await pool.unmount();
  } finally {
    // Only if the pool's own unmount failed: never leave a mount behind in /tmp.
    for (const m of [rootsDir, poolDir]) if (findMount(await host.fs.readText('/proc/self/mountinfo'), m)) await host.exec(['umount', '-l', m], { allowFailure: true });
    await host.fs.rm(dir, { recursive: true, force: true });
  }
});

describe('btrfs pool', () => {
  it('ensure() is idempotent and reports the pool size', async () => {
    await new BtrfsPool(host, { poolDir, poolImage, sizeBytes: 1024 * MiB, rootsDir }).ensure();
    const mounts = (await host.fs.readText('/proc/self/mountinfo')).split('\n').filter((l) => l.split(' ')[4] === poolDir);
    expect(mounts).toHaveLength(1);
    const info = await pool.info();
    expect(info.sizeBytes).toBe(1024 * MiB);
    expect(info.usedBytes).toBeGreaterThan(200 * MiB);
    expect(info).toMatchObject({ state: 'ok', warnings: [] });
  });

  it('is fully allocated, mounted nosuid,nodev and root-only; container roots see it again through a nodev mount that allows set-uid', async () => {
    const alloc = (await host.exec(['stat', '-c', '%b %B %s', poolImage])).stdout.trim().split(' ').map(Number);
    expect(alloc[0]! * alloc[1]!).toBeGreaterThanOrEqual(alloc[2]!);
    const info = await host.fs.readText('/proc/self/mountinfo');
    expect(findMount(info, poolDir)?.options.split(',')).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
    const roots = findMount(info, rootsDir);
    expect(roots?.options.split(',')).toContain('nodev');
    expect(roots?.options.split(',')).not.toContain('nosuid');
    expect(roots?.source).toBe(findMount(info, poolDir)?.source);
    for (const d of [poolDir, join(poolDir, 'images'), join(poolDir, 'instances'), join(poolDir, 'snapshots'), rootsDir]) expect(((await host.fs.stat(d))!.mode & 0o777).toString(8), d).toBe('700');
    expect(pool.containerRootPath('c1')).toBe(join(rootsDir, 'instances', 'c1'));
  });

  it('refuses a pool the file system under it cannot hold, and makes a smaller one (with a warning) when it can', async () => {
    const free = Number((await host.exec(['stat', '-f', '-c', '%a', dir])).stdout) * Number((await host.exec(['stat', '-f', '-c', '%S', dir])).stdout);
    const d2 = join(dir, 'big');
    const huge = new BtrfsPool(host, { poolDir: join(d2, 'pool'), poolImage: join(d2, 'pool.img'), sizeBytes: free * 10, rootsDir: join(d2, 'roots') });
    try {
      // A tmpfs of 1.5 GiB under the pool file: the 10x request is cut to what fits beside the headroom.
      await host.fs.mkdir(d2, { recursive: true });
      await host.exec(['mount', '-t', 'tmpfs', '-o', 'size=1600m', 'hgtpool', d2]);
      const small = new BtrfsPool(host, { poolDir: join(d2, 'pool'), poolImage: join(d2, 'pool.img'), sizeBytes: 100 * 1024 * MiB, rootsDir: join(d2, 'roots') });
      await small.ensure();
      const info = await small.info();
      expect(info.sizeBytes!).toBeLessThanOrEqual(600 * MiB);
      expect(info.warnings.join('\n')).toMatch(/was made .* instead of 100GiB/);
      await small.unmount();
      await host.fs.rm(join(d2, 'pool.img'), { force: true });
      await host.exec(['fallocate', '-l', String(900 * MiB), join(d2, 'filler')]);
      const err = await huge.ensure().then(() => undefined, (e: unknown) => e);
      expect(isAppError(err, 'INSUFFICIENT_RESOURCES') && err.message).toMatch(/Cannot create the storage pool in .*: it has .* free, and a pool needs 512MiB plus 1GiB left free/);
      expect(await host.fs.stat(join(d2, 'pool.img'))).toBeUndefined();
    } finally {
      await huge.unmount().catch(() => undefined);
      await host.exec(['umount', '-l', d2], { allowFailure: true });
    }
  });

  it('refuses a pool directory mounted from another file', async () => {
    await expectCode(new BtrfsPool(host, { poolDir, poolImage: join(dir, 'other.img'), sizeBytes: 1024 * MiB, rootsDir }).ensure(), 'INVALID_STATE');
  });

  it('makes instance volumes that own under 1 MiB, for a tiny and a 200 MiB image alike', async () => {
    for (const img of [tiny, big]) {
      const name = `${img}-i1`;
      const path = await pool.createInstanceVolume(name, img);
      expect(path).toBe(join(poolDir, 'instances', name));
      expect(await host.fs.readText(join(path, 'etc', 'hostname'))).toBe(img === tiny ? 'tiny\n' : 'big\n');
      const usage = await pool.instanceUsage(name);
      expect(usage.exclusiveBytes).toBeLessThan(MiB);
      if (img === big) expect(usage.referencedBytes).toBeGreaterThanOrEqual(200 * MiB);
      expect(await pool.instanceExists(name)).toBe(true);
      await pool.deleteInstanceVolume(name);
      expect(await pool.instanceExists(name)).toBe(false);
    }
  });

  it('makes an empty instance volume (a subvolume of its own, snapshotted and deleted like the others) for a VM driver\'s disks', async () => {
    const name = `${prefix}-empty`;
    const path = await pool.createInstanceVolume(name, big, undefined, { empty: true });
    expect(await host.fs.readdir(path)).toEqual([]);
    expect((await host.exec(['btrfs', 'subvolume', 'show', path], { allowFailure: true })).code).toBe(0);
    expect((await pool.instanceUsage(name)).exclusiveBytes).toBeLessThan(MiB);
    await host.fs.writeAtomic(join(path, 'root.raw'), 'disk\n');
    await pool.createSnapshot(name, 's1');
    await pool.deleteInstanceVolume(name);
    expect(await pool.instanceExists(name)).toBe(false);
    await expectCode(pool.createInstanceVolume(`${prefix}-x`, `${prefix}-missing`, undefined, { empty: true }), 'NOT_FOUND');
  });

  it('enforces the root disk limit with a quota error', async () => {
    const name = `${prefix}-lim`;
    const path = await pool.createInstanceVolume(name, tiny, 64 * MiB);
    try {
      expect((await dd(join(path, 'small'), 16)).code).toBe(0);
      const res = await dd(join(path, 'large'), 100);
      expect(res.code).not.toBe(0);
      expect(res.stderr).toMatch(/Disk quota exceeded|No space left on device/);
      const usage = await pool.instanceUsage(name);
      expect(usage.limitBytes).toBe(64 * MiB);
      expect(usage.referencedBytes).toBeLessThanOrEqual(64 * MiB);
      await expectCode(pool.setInstanceSize(name, 8 * MiB), 'INVALID_SIZE');
      await pool.setInstanceSize(name, undefined);
      expect((await pool.instanceUsage(name)).limitBytes).toBeNull();
      expect((await dd(join(path, 'large'), 100)).code).toBe(0);
      await pool.setInstanceSize(name, 256 * MiB);
      expect((await pool.instanceUsage(name)).limitBytes).toBe(256 * MiB);
    } finally {
      await pool.deleteInstanceVolume(name);
    }
  });

  it('refuses a limit smaller than the image', async () => {
    await expectCode(pool.createInstanceVolume(`${prefix}-small`, big, 64 * MiB), 'INVALID_SIZE');
    expect(await pool.instanceExists(`${prefix}-small`)).toBe(false);
  });

  it('snapshots, lists, restores (keeping the limit) and deletes snapshots', async () => {
    const name = `${prefix}-snap`;
    const path = await pool.createInstanceVolume(name, tiny, 64 * MiB);
    try {
      const file = join(path, 'etc', 'hostname');
      await host.fs.writeAtomic(file, 'before\n');
      await pool.createSnapshot(name, 's1');
      await expectCode(pool.createSnapshot(name, 's1'), 'ALREADY_EXISTS');
      await host.fs.writeAtomic(file, 'after\n');
      await pool.createSnapshot(name, 's2');
      const snaps = await pool.listSnapshots(name);
      expect(snaps.map((s) => s.name)).toEqual(['s1', 's2']);
      expect(Number.isNaN(Date.parse(snaps[0]!.createdAt))).toBe(false);
      await pool.restoreSnapshot(name, 's1');
      expect(await host.fs.readText(file)).toBe('before\n');
      expect((await pool.instanceUsage(name)).limitBytes).toBe(64 * MiB);
      // The restored volume is writable and the snapshot itself is untouched by writes to it.
      await host.fs.writeAtomic(file, 'changed\n');
      await pool.restoreSnapshot(name, 's1');
      expect(await host.fs.readText(file)).toBe('before\n');
      await expectCode(pool.restoreSnapshot(name, 'nope'), 'NOT_FOUND');
      await pool.deleteSnapshot(name, 's2');
      expect((await pool.listSnapshots(name)).map((s) => s.name)).toEqual(['s1']);
      await expectCode(pool.deleteSnapshot(name, 's2'), 'NOT_FOUND');
      expect((await host.fs.readdir(join(poolDir, 'instances'))).filter((e) => e.startsWith('.'))).toEqual([]);
    } finally {
      await pool.deleteInstanceVolume(name);
    }
  });

  it('copies are independent of their source', async () => {
    const a = `${prefix}-ca`;
    const b = `${prefix}-cb`;
    try {
      const pa = await pool.createInstanceVolume(a, tiny, 64 * MiB);
      await host.fs.writeAtomic(join(pa, 'data'), 'a1\n');
      const pb = await pool.copyInstance(a, b, 128 * MiB);
      expect(await host.fs.readText(join(pb, 'data'))).toBe('a1\n');
      await host.fs.writeAtomic(join(pb, 'data'), 'b2\n');
      await host.fs.writeAtomic(join(pa, 'only-a'), 'x');
      expect(await host.fs.readText(join(pa, 'data'))).toBe('a1\n');
      expect(await host.fs.stat(join(pb, 'only-a'))).toBeUndefined();
      expect((await pool.instanceUsage(b)).limitBytes).toBe(128 * MiB);
      await expectCode(pool.copyInstance(a, b), 'ALREADY_EXISTS');
      await pool.deleteInstanceVolume(a);
      expect(await host.fs.readText(join(pb, 'data'))).toBe('b2\n');
    } finally {
      await pool.deleteInstanceVolume(a);
      await pool.deleteInstanceVolume(b);
    }
  });

  it('deletes volumes, snapshots, nested subvolumes and their qgroups', async () => {
    const name = `${prefix}-del`;
    const path = await pool.createInstanceVolume(name, big, 512 * MiB);
    await pool.createSnapshot(name, 's1');
    // Like /var/lib/machines made by systemd-tmpfiles inside a container.
    await host.exec(['btrfs', 'subvolume', 'create', join(path, 'nested')]);
    const ids = [await subvolId(path), await subvolId(join(poolDir, 'snapshots', name, 's1')), await subvolId(join(path, 'nested'))];
    const before = await qgroupIds();
    expect(ids.filter((id) => before.has(id))).toEqual(ids);
    await pool.deleteInstanceVolume(name);
    expect(await host.fs.stat(path)).toBeUndefined();
    expect(await host.fs.stat(join(poolDir, 'snapshots', name))).toBeUndefined();
    await pool.deleteInstanceVolume(name);
    // The kernel drops the qgroups once the cleaner has freed the subvolumes; wait for that (bounded), then assert.
    let left = ids;
    for (let i = 0; i < 120 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 500));
      // A commit wakes the cleaner, which otherwise may wait for the next periodic commit (30 s).
      await host.exec(['btrfs', 'filesystem', 'sync', poolDir]);
      await pool.clearStaleQgroups();
      const present = await qgroupIds();
      left = ids.filter((id) => present.has(id));
    }
    expect(left).toEqual([]);
  });

  it('rejects bad inputs with the right codes', async () => {
    await expectCode(pool.createInstanceVolume(`${prefix}-x`, `${prefix}-missing`), 'NOT_FOUND');
    await expectCode(pool.createImageVolume(tiny), 'ALREADY_EXISTS');
    await expectCode(pool.createSnapshot(`${prefix}-missing`, 's1'), 'NOT_FOUND');
    await expectCode(pool.createInstanceVolume('../etc', tiny), 'INVALID_NAME');
    await expectCode(pool.createInstanceVolume(`${prefix}-x`, tiny, 0), 'INVALID_SIZE');
    await expectCode(pool.instanceUsage(`${prefix}-missing`), 'NOT_FOUND');
    const name = `${prefix}-dup`;
    await pool.createInstanceVolume(name, tiny);
    try {
      await expectCode(pool.createInstanceVolume(name, tiny), 'ALREADY_EXISTS');
    } finally {
      await pool.deleteInstanceVolume(name);
    }
  });

  it('deletes image volumes idempotently while instances made from them survive', async () => {
    const img = `${prefix}-img2`;
    const p = await pool.createImageVolume(img);
    await host.fs.writeAtomic(join(p, 'f'), 'img\n');
    await pool.sealImageVolume(img);
    const name = `${prefix}-fromimg2`;
    await pool.createInstanceVolume(name, img);
    try {
      await pool.deleteImageVolume(img);
      await pool.deleteImageVolume(img);
      expect(await host.fs.stat(p)).toBeUndefined();
      expect(await host.fs.readText(join(pool.instancePath(name), 'f'))).toBe('img\n');
    } finally {
      await pool.deleteInstanceVolume(name);
    }
  });
});
