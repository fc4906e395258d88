// Unit tests of the mount table: mountinfo fields, octal escapes, exact lookups, cgroup v1/v2/hybrid mounts, reads through Host.
import { describe, expect, it } from 'vitest';
import { ScriptedHost } from './scripted.js';
import {
  cgroupLayoutOf, cgroupMountsOf, findMount, mountPointsUnder, parseMountInfo, readCgroupMounts, readMountAt, unescapeOctal,
} from './mounts.js';

const MOUNTINFO = [
  '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard',
  '43 27 0:39 / /tmp/hgr-exp1/pool rw,relatime - btrfs /dev/loop0 rw,discard=async,space_cache=v2,subvolid=5,subvol=/',
  '44 27 0:40 / /tmp/with\\040space rw - tmpfs tmpfs rw',
  '45 27 0:41 /sub\\011dir /mnt/tab\\134slash rw master:2 shared:3 - btrfs /dev/my\\040disk rw',
  '',
].join('\n');

// The cgroup lines of a systemd hybrid host, with the tmpfs that holds the v1 hierarchies.
const HYBRID = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory',
  '39 31 0:36 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids',
  '40 31 0:37 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate',
  '',
].join('\n');
const V2 = '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n';
const V1 = '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n';

describe('parseMountInfo', () => {
  it('parses root, mount point, type, source and both option sets, with optional fields', () => {
    const m = parseMountInfo(MOUNTINFO);
    expect(m).toHaveLength(4);
    expect(m[0]).toEqual({ root: '/', mountPoint: '/', options: 'rw,relatime', fsType: 'ext4', source: '/dev/vda', superOptions: 'rw,discard', line: '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard' });
    expect(m[1]).toMatchObject({ mountPoint: '/tmp/hgr-exp1/pool', fsType: 'btrfs', source: '/dev/loop0' });
    expect(m[3]).toMatchObject({ fsType: 'btrfs', options: 'rw', superOptions: 'rw' });
  });

  it('decodes octal escapes in root, mount point and source, and keeps the raw line', () => {
    const m = parseMountInfo(MOUNTINFO);
    expect(m[2]!.mountPoint).toBe('/tmp/with space');
    expect(m[3]).toMatchObject({ root: '/sub\tdir', mountPoint: '/mnt/tab\\slash', source: '/dev/my disk' });
    expect(m[3]!.line).toContain('/mnt/tab\\134slash');
  });

  it('skips lines without a separator or type and source, and takes a missing super-options field as empty', () => {
    expect(parseMountInfo('garbage\n1 2 3:4 / /x rw\n1 2 3:4 / /x rw - ext4\n')).toEqual([]);
    expect(parseMountInfo('1 2 3:4 / /x rw - ext4 /dev/x')[0]).toMatchObject({ mountPoint: '/x', superOptions: '' });
  });

  it('keeps per-mount and file system options apart (a btrfs that went read-only shows "ro" in the latter)', () => {
    const ro = findMount('50 27 0:41 / /p rw,nosuid,nodev,noatime - btrfs /dev/loop3 ro,discard=async,space_cache=v2\n', '/p');
    expect(ro).toMatchObject({ options: 'rw,nosuid,nodev,noatime', superOptions: 'ro,discard=async,space_cache=v2' });
  });
});

describe('findMount', () => {
  it('finds exact (decoded) mount points only, the last one winning', () => {
    expect(findMount(MOUNTINFO, '/tmp/with space')?.fsType).toBe('tmpfs');
    expect(findMount(MOUNTINFO, '/tmp/with\\040space')).toBeUndefined();
    expect(findMount(MOUNTINFO, '/tmp/hgr-exp1')).toBeUndefined();
    expect(findMount(MOUNTINFO, '/tmp/hgr-exp1/pool')?.source).toBe('/dev/loop0');
    const stacked = `${MOUNTINFO}60 43 0:50 / /tmp/hgr-exp1/pool rw - tmpfs over rw\n`;
    expect(findMount(stacked, '/tmp/hgr-exp1/pool')?.source).toBe('over');
    expect(findMount(parseMountInfo(stacked), '/tmp/hgr-exp1/pool')?.source).toBe('over');
  });
});

describe('unescapeOctal', () => {
  it.each([
    ['/a\\040b', '/a b'],
    ['/t\\011ab', '/t\tab'],
    ['/n\\012l', '/n\nl'],
    ['/back\\134slash', '/back\\slash'],
    ['/plain', '/plain'],
    ['/not\\08', '/not\\08'],
  ])('%s -> %j', (raw, decoded) => {
    expect(unescapeOctal(raw)).toBe(decoded);
  });
});

describe('cgroup mounts', () => {
  it.each([
    ['hybrid', HYBRID, { v1: { cpu: '/sys/fs/cgroup/cpu,cpuacct', cpuacct: '/sys/fs/cgroup/cpu,cpuacct', memory: '/sys/fs/cgroup/memory', pids: '/sys/fs/cgroup/pids', 'name=systemd': '/sys/fs/cgroup/systemd' }, v2: '/sys/fs/cgroup/unified' }],
    ['v2', V2, { v1: {}, v2: '/sys/fs/cgroup' }],
    ['v1', V1, { v1: { memory: '/sys/fs/cgroup/memory', cpu: '/sys/fs/cgroup/cpu' }, v2: null }],
  ] as const)('reads the %s layout', (layout, text, want) => {
    const m = cgroupMountsOf(parseMountInfo(text));
    expect(m).toEqual(want);
    expect(cgroupLayoutOf(m)).toBe(layout);
  });

  it('ignores options that are not controllers, and a named v1 hierarchy alone does not make v1', () => {
    const m = cgroupMountsOf(parseMountInfo(HYBRID));
    expect(m.v1.relatime).toBeUndefined();
    expect(m.v1.xattr).toBeUndefined();
    const named = `${V2}40 31 0:37 / /run/systemd-v1 rw - cgroup cgroup rw,name=systemd\n`;
    expect(cgroupLayoutOf(cgroupMountsOf(parseMountInfo(named)))).toBe('v2');
  });

  it('takes the first mount of each controller', () => {
    const twice = `${V1}90 31 0:32 / /elsewhere/memory rw - cgroup cgroup rw,memory\n`;
    expect(cgroupMountsOf(parseMountInfo(twice)).v1.memory).toBe('/sys/fs/cgroup/memory');
  });
});

describe('reads through Host', () => {
  it('finds a mount, lists mount points below a directory and reads cgroup mounts once', async () => {
    const host = new ScriptedHost(() => undefined, { files: { '/proc/self/mountinfo': `${MOUNTINFO}${HYBRID}` } });
    expect((await readMountAt(host, '/tmp/hgr-exp1/pool'))?.fsType).toBe('btrfs');
    expect(await readMountAt(host, '/nowhere')).toBeUndefined();
    expect(await mountPointsUnder(host, '/tmp/')).toEqual(['/tmp/hgr-exp1/pool', '/tmp/with space']);
    const first = await readCgroupMounts(host);
    expect(first.v2).toBe('/sys/fs/cgroup/unified');
    host.put('/proc/self/mountinfo', V2);
    expect(await readCgroupMounts(host)).toBe(first);
  });

  it('takes an absent mount table as no mounts', async () => {
    const host = new ScriptedHost();
    expect(await mountPointsUnder(host, '/tmp')).toEqual([]);
    expect(await readCgroupMounts(host)).toEqual({ v1: {}, v2: null });
  });
});
