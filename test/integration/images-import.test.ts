// Integration test: imports good and bad rootfs tarballs (plain, gzip, xz, zstd) through LocalHost into temporary directories.
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { importRootfsTarball } from '../../src/core/images/tar-import.js';
import { isAppError } from '../../src/shared/errors.js';
import { goodRootfsEntries, makeTar, sparseDesyncTar, type RawTarEntry } from '../fixtures/archives/make-tar.js';
import { verifyRootfsTree } from '../../src/core/images/tar-import.js';

const host = new LocalHost();
const prefix = `t${Math.random().toString(36).slice(2, 6)}`;
let dir = '';
let n = 0;

async function archive(entries: RawTarEntry[], compression: 'none' | 'gzip' | 'xz' | 'zstd'): Promise<string> {
  const file = join(dir, `a${n++}.bin`); // the name says nothing about the compression on purpose
  await writeFile(file, makeTar(entries));
  if (compression !== 'none') {
    execFileSync(compression, compression === 'zstd' ? ['-q', '--rm', file] : [file]);
    const ext = { gzip: '.gz', xz: '.xz', zstd: '.zst' }[compression];
    execFileSync('mv', [file + ext, file]);
  }
  return file;
}

async function freshDest(): Promise<string> {
  const d = join(dir, `dest${n++}`);
  await mkdir(d);
  return d;
}

async function expectRejected(file: string, pattern: RegExp, code = 'INVALID_ARCHIVE'): Promise<void> {
  const dest = await freshDest();
  const err = await importRootfsTarball(host, file, dest).then(() => undefined, (e: unknown) => e);
  expect(isAppError(err), String(err)).toBe(true);
  expect((err as { code: string }).code).toBe(code);
  expect((err as Error).message).toMatch(pattern);
  expect(await readdir(dest)).toEqual([]);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), `${prefix}-import-`));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('importRootfsTarball', () => {
  it('decides by what is on disk: an archive on which the two tar parsers disagree cannot plant a device node', async () => {
    const file = join(dir, `a${n++}.bin`);
    await writeFile(file, sparseDesyncTar());
    // The disagreement itself: GNU tar lists a block device that npm tar never reports as an entry.
    expect(execFileSync('tar', ['-tvf', file], { encoding: 'utf8' })).toMatch(/^brw-rw-rw- .* 7,2 .* usr\/blk$/m);
    await expectRejected(file, /Archive .* entry "usr\/sparse" has unsupported type SparseFile/);
  });

  it('checks the extracted tree itself: a device node or socket on disk is refused whatever the archive said', async () => {
    const root = await freshDest();
    await mkdir(join(root, 'usr'));
    await writeFile(join(root, 'usr/ok'), 'x');
    await expect(verifyRootfsTree(host, root, 'Tree')).resolves.toBeUndefined();
    execFileSync('mknod', ['-m', '666', join(root, 'usr/blk'), 'b', '7', '2']);
    await expect(verifyRootfsTree(host, root, 'Tree')).rejects.toThrow(/^Tree put a block device at \/usr\/blk in the root file system/);
    execFileSync('rm', [join(root, 'usr/blk')]);
    execFileSync('mknod', [join(root, 'usr/c'), 'c', '1', '3']);
    await expect(verifyRootfsTree(host, root, 'Tree')).rejects.toThrow(/a character device at \/usr\/c/);
  });

  for (const c of ['none', 'gzip', 'xz', 'zstd'] as const) {
    it(`imports a good ${c} rootfs, keeping owners, modes and links`, async () => {
      const file = await archive(goodRootfsEntries(), c);
      const dest = await freshDest();
      const msgs: string[] = [];
      const out = await importRootfsTarball(host, file, dest, { onProgress: (m) => msgs.push(m) });
      expect(out.entries).toBe(goodRootfsEntries().length);
      expect(msgs[0]).toContain(c === 'none' ? 'uncompressed' : c);
      expect(await readFile(join(dest, 'bin/sh'), 'utf8')).toBe('#!/bin/true\n');
      const su = await lstat(join(dest, 'bin/su'));
      expect(su.mode & 0o7777).toBe(0o4755);
      const home = await lstat(join(dest, 'home/user'));
      expect([home.uid, home.gid, home.mode & 0o777]).toEqual([1000, 1000, 0o700]);
      expect((await lstat(join(dest, 'home/user/.profile'))).uid).toBe(1000);
      expect(await readlink(join(dest, 'etc/localtime'))).toBe('/usr/share/zoneinfo/UTC');
      expect(await readlink(join(dest, 'sbin/init'))).toBe('../bin/sh');
      expect((await lstat(join(dest, 'bin/ash'))).ino).toBe((await lstat(join(dest, 'bin/sh'))).ino);
      expect((await lstat(join(dest, 'run/initctl'))).isFIFO()).toBe(true);
    });
  }

  it('rejects unsafe archives before writing anything', async () => {
    const good = goodRootfsEntries();
    await expectRejected(await archive([...good, { path: '/etc/evil', data: 'x' }], 'gzip'), /"\/etc\/evil" is an absolute path/);
    await expectRejected(await archive([...good, { path: 'usr/../../evil', data: 'x' }], 'xz'), /contains a "\.\."/);
    await expectRejected(await archive([...good, { path: 'a', type: '2', linkpath: '/' }, { path: 'a/tmp/evil', data: 'x' }], 'zstd'), /"a\/tmp\/evil" goes through the symlink "a"/);
    await expectRejected(await archive([...good, { path: 'x', type: '2', linkpath: '../../../etc' }], 'none'), /points outside/);
    await expectRejected(await archive([...good, { path: 'h', type: '1', linkpath: '/etc/shadow' }], 'gzip'), /absolute path/);
    await expectRejected(await archive([...good, { path: 'dev/sda', type: '4' }], 'xz'), /device node/);
    await expectRejected(await archive([{ path: 'etc/', type: '5' }, { path: 'etc/passwd', data: 'x' }], 'zstd'), /does not look like a root file system/);
  });

  it('rejects files that are not (complete) tarballs', async () => {
    const notTar = join(dir, 'not-tar');
    await writeFile(notTar, 'just some text\n'.repeat(100));
    await expectRejected(notTar, /not a valid tar archive|empty or not a tar/);
    const empty = join(dir, 'empty');
    await writeFile(empty, '');
    await expectRejected(empty, /empty or not a tar/);
    await expectRejected(await archive([], 'gzip'), /empty or not a tar/);
    const bigEntries: RawTarEntry[] = [...goodRootfsEntries(), { path: 'usr/big', data: Buffer.alloc(300_000, 7) }];
    for (const c of ['gzip', 'xz', 'zstd'] as const) {
      const cut = await archive(bigEntries, c);
      const size = (await lstat(cut)).size;
      await truncate(cut, Math.floor(size / 2));
      await expectRejected(cut, /corrupt or truncated|not a valid tar/);
    }
    // 20 blocks hold the good entries: cut inside the next header, then inside the big file's data.
    const headerCut = await archive(bigEntries, 'none');
    await truncate(headerCut, 512 * 20 + 100);
    await expectRejected(headerCut, /truncated/);
    const dataCut = await archive(bigEntries, 'none');
    await truncate(dataCut, 512 * 100);
    await expectRejected(dataCut, /not a valid tar archive: .*Truncated input/);
  });

  it('refuses a destination that is not empty and leaves it alone', async () => {
    const file = await archive(goodRootfsEntries(), 'gzip');
    const dest = await freshDest();
    await writeFile(join(dest, 'keep'), 'x');
    const err = await importRootfsTarball(host, file, dest).then(() => undefined, (e: unknown) => e);
    expect(isAppError(err, 'INVALID_STATE')).toBe(true);
    expect(await readdir(dest)).toEqual(['keep']);
  });
});
