// E2E test: a container cannot escape limits.disk through a nested btrfs subvolume or snapshot (seccomp denies the create ioctls).
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, copyFileSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BTRFS_CREATE_IOCTLS, renderSeccompProfile } from '../../src/drivers/lxc/render-seccomp.js';
import { cli, cliOk, sharedDaemon, uniquePrefix } from '../helpers/daemon.js';
import { deleteAllWithPrefix, findInstance, settings } from '../helpers/e2e.js';

const P = uniquePrefix('de');
const c = `${P}-c`;
const root = join(settings.poolDir, 'instances', c);
let tmp = '';

// One ioctl per run on DIR; prints "ok" or "errno=N ...". Static, because busybox has no libc to link against.
// subvol-hi sets bits above the 32 the kernel reads (cmd is an unsigned int): a filter comparing all 64 would miss it.
const PROBE_C = String.raw`
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/btrfs.h>
_Static_assert(BTRFS_IOC_SNAP_CREATE == EXPECT_SNAP_CREATE, "BTRFS_IOC_SNAP_CREATE");
_Static_assert(BTRFS_IOC_SUBVOL_CREATE == EXPECT_SUBVOL_CREATE, "BTRFS_IOC_SUBVOL_CREATE");
_Static_assert(BTRFS_IOC_SNAP_CREATE_V2 == EXPECT_SNAP_CREATE_V2, "BTRFS_IOC_SNAP_CREATE_V2");
_Static_assert(BTRFS_IOC_SUBVOL_CREATE_V2 == EXPECT_SUBVOL_CREATE_V2, "BTRFS_IOC_SUBVOL_CREATE_V2");
int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: probe subvol|subvol-hi|subvol2|snap|snap2 DIR NAME\n"); return 2; }
  const char *m = argv[1];
  int dir = open(argv[2], O_RDONLY | O_DIRECTORY), src = open("/", O_RDONLY | O_DIRECTORY);
  if (dir < 0 || src < 0) { printf("open errno=%d\n", errno); return 3; }
  long r;
  if (!strcmp(m, "subvol") || !strcmp(m, "subvol-hi") || !strcmp(m, "snap")) {
    struct btrfs_ioctl_vol_args a;
    memset(&a, 0, sizeof a);
    strncpy(a.name, argv[3], BTRFS_PATH_NAME_MAX);
    unsigned long cmd = BTRFS_IOC_SUBVOL_CREATE;
    if (!strcmp(m, "snap")) { cmd = BTRFS_IOC_SNAP_CREATE; a.fd = src; }
    if (!strcmp(m, "subvol-hi")) cmd |= 0x100000000UL;
    r = syscall(SYS_ioctl, dir, cmd, &a);
  } else {
    struct btrfs_ioctl_vol_args_v2 a;
    memset(&a, 0, sizeof a);
    strncpy(a.name, argv[3], BTRFS_SUBVOL_NAME_MAX);
    unsigned long cmd = BTRFS_IOC_SUBVOL_CREATE_V2;
    if (!strcmp(m, "snap2")) { cmd = BTRFS_IOC_SNAP_CREATE_V2; a.fd = src; }
    r = syscall(SYS_ioctl, dir, cmd, &a);
  }
  if (r == 0) { printf("ok\n"); return 0; }
  printf("errno=%d %s\n", errno, strerror(errno));
  return 1;
}
`;

/** Subvolumes below the instance's root, as btrfs lists them. */
function nestedSubvolumes(): string[] {
  const out = execFileSync('btrfs', ['subvolume', 'list', '-o', root], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim() !== '');
}

beforeAll(async () => {
  await sharedDaemon();
  tmp = await mkdtemp(join(tmpdir(), 'hangar-disk-escape-'));
  await writeFile(join(tmp, 'probe.c'), PROBE_C);
  const expect = BTRFS_CREATE_IOCTLS.map((i) => `-DEXPECT_${i.name.replace('BTRFS_IOC_', '')}=0x${i.cmd.toString(16)}`);
  execFileSync('gcc', ['-static', '-O2', '-Wall', ...expect, '-o', join(tmp, 'probe'), join(tmp, 'probe.c')], { stdio: 'pipe' });
  cliOk(['launch', 'busybox', c, '--disk', '64MiB']);
  // Owned like the rest of the root (uid 100000 in an unprivileged container), so that its root may run it.
  const owner = statSync(root);
  copyFileSync(join(tmp, 'probe'), join(root, 'probe'));
  chownSync(join(root, 'probe'), owner.uid, owner.gid);
}, 600_000);

afterAll(async () => {
  deleteAllWithPrefix(P);
  if (tmp) await rm(tmp, { recursive: true, force: true });
}, 120_000);

describe('nested btrfs subvolumes (limits.disk escape)', () => {
  it('the container runs under Hangar\'s rendered seccomp profile', () => {
    const profile = join(settings.lxcPath, c, 'seccomp');
    expect(readFileSync(join(settings.lxcPath, c, 'config'), 'utf8')).toContain(`\nlxc.seccomp.profile = ${profile}\n`);
    expect(readFileSync(profile, 'utf8')).toBe(renderSeccompProfile());
    const pid = findInstance(c)!.pid!;
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Seccomp:\s+2$/m);
  });

  it('creating a subvolume or a snapshot inside the container fails with EPERM, and creates nothing', () => {
    for (const mode of ['subvol', 'subvol-hi', 'subvol2', 'snap', 'snap2']) {
      const r = cli(['exec', c, '--', '/probe', mode, '/tmp', `esc-${mode}`]);
      expect({ mode, code: r.code, out: r.stdout.trim() }).toEqual({ mode, code: 1, out: 'errno=1 Operation not permitted' });
    }
    expect(nestedSubvolumes()).toEqual([]);
  });

  it('control: with the same privileges but without the filter, the probe does create a subvolume', () => {
    // nsenter joins the container's user and mount namespaces as its root, but not its seccomp filter.
    const pid = String(findInstance(c)!.pid!);
    const r = spawnSync('nsenter', ['-t', pid, '-U', '-m', '--', '/probe', 'subvol', '/tmp', 'control'], { encoding: 'utf8' });
    expect(r.stdout.trim()).toBe('ok');
    expect(nestedSubvolumes().join('\n')).toMatch(/tmp\/control$/);
    execFileSync('btrfs', ['subvolume', 'delete', join(root, 'tmp', 'control')], { stdio: 'pipe' });
    expect(nestedSubvolumes()).toEqual([]);
  });

  it('normal work goes on: exec runs, and writing past limits.disk still fails with EDQUOT', () => {
    expect(cliOk(['exec', c, '--', 'sh', '-c', 'echo hi > /tmp/f && cat /tmp/f'])).toBe('hi\n');
    const big = cli(['exec', c, '--', 'dd', 'if=/dev/zero', 'of=/big', 'bs=1M', 'count=100']);
    expect(big.code).not.toBe(0);
    expect(big.stderr).toMatch(/Disk quota exceeded/);
  });
});
