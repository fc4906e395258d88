// Integration test: shifts the ids of a small tree in a temporary directory (setuid bits, symlinks, hardlinks, capabilities, limits).
import { execFileSync } from 'node:child_process';
import { chmod, chown, lchown, link, lstat, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { shiftIds } from '../../src/drivers/lxc/shift.js';
import { isAppError } from '../../src/shared/errors.js';

const host = new LocalHost();
let root = '';
let outside = '';

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), `t${Math.random().toString(36).slice(2, 6)}-shift-`));
  outside = join(root, 'outside-target');
  await writeFile(outside, 'not part of the tree');
  const t = join(root, 'tree');
  await mkdir(join(t, 'bin'), { recursive: true });
  await mkdir(join(t, 'home/user'), { recursive: true });
  await writeFile(join(t, 'bin/su'), 'su');
  await chmod(join(t, 'bin/su'), 0o4755);
  await writeFile(join(t, 'bin/wall'), 'wall');
  await chown(join(t, 'bin/wall'), 0, 5);
  await chmod(join(t, 'bin/wall'), 0o2755);
  await link(join(t, 'bin/su'), join(t, 'bin/su2'));
  await writeFile(join(t, 'bin/ping'), 'ping');
  execFileSync('setfattr', ['-n', 'security.capability', '-v', '0x0100000200200000000000000000000000000000', join(t, 'bin/ping')]);
  await writeFile(join(t, 'home/user/file'), 'x');
  await chown(join(t, 'home/user'), 1000, 1000);
  await chown(join(t, 'home/user/file'), 1000, 1000);
  await symlink(outside, join(t, 'escape'));
  await lchown(join(t, 'escape'), 1000, 1000);
});

afterEach(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('shiftIds', () => {
  it('shifts owners, keeps setuid/setgid, changes symlinks but not their targets', async () => {
    const t = join(root, 'tree');
    const out = await shiftIds(host, t, 100000);
    expect(out.entries).toBe(10);
    const st = async (p: string) => lstat(join(t, p));
    expect([(await st('.')).uid, (await st('.')).gid]).toEqual([100000, 100000]);
    expect([(await st('home/user/file')).uid, (await st('home/user/file')).gid]).toEqual([101000, 101000]);
    expect((await st('bin/su')).mode & 0o7777).toBe(0o4755);
    expect((await st('bin/su')).uid).toBe(100000);
    expect((await st('bin/wall')).mode & 0o7777).toBe(0o2755);
    expect((await st('bin/wall')).gid).toBe(100005);
    expect([(await st('escape')).uid, (await st('escape')).gid]).toEqual([101000, 101000]);
    const target = await lstat(outside);
    expect([target.uid, target.gid]).toEqual([0, 0]);
    const cap = execFileSync('getfattr', ['-n', 'security.capability', '-e', 'hex', '--absolute-names', join(t, 'bin/ping')]).toString();
    expect(cap).toContain('security.capability=0x0100000300200000000000000000000000000000a0860100');
  });

  it('refuses ids beyond the limit and changes nothing', async () => {
    const t = join(root, 'tree');
    await writeFile(join(t, 'big'), 'x');
    await chown(join(t, 'big'), 70000, 0);
    const err = await shiftIds(host, t, 100000).then(() => undefined, (e: unknown) => e);
    expect(isAppError(err, 'INVALID_ARCHIVE')).toBe(true);
    expect((err as Error).message).toContain(`${t}/big is owned by 70000:0`);
    expect((await lstat(join(t, 'home/user/file'))).uid).toBe(1000);
    expect((await lstat(join(t, 'bin/su'))).mode & 0o7777).toBe(0o4755);
  });

  it('does not enter other mounted file systems', async () => {
    const t = join(root, 'tree');
    const mnt = join(t, 'mnt');
    await mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', `${root.split('/').pop()}-tmpfs`, mnt]);
    try {
      await writeFile(join(mnt, 'inside'), 'x');
      await shiftIds(host, t, 100000);
      expect((await lstat(join(mnt, 'inside'))).uid).toBe(0);
      expect((await lstat(join(t, 'bin/su'))).uid).toBe(100000);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
