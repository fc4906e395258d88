// Unit tests of the host facts: the cgroup layout and swap accounting, subordinate id ranges, the shared and the isolated blocks, a free place for a new range.
import { describe, expect, it } from 'vitest';
import { ScriptedHost } from './scripted.js';
import { ensureIdMap, freeIdStart, parseSubIdRanges, planIdRanges, readCgroupFacts } from './facts.js';

describe('subordinate id ranges', () => {
  it('reads every range of a user', () => {
    expect(parseSubIdRanges('user:100000:65536\nroot:100000:65536\nroot:1000000:1000000000\n# x\n')).toEqual([{ start: 100000, count: 65536 }, { start: 1000000, count: 1000000000 }]);
  });
  it('shares the first block of the first range and isolates from the largest room beyond it', () => {
    expect(planIdRanges([{ start: 100000, count: 65536 }, { start: 1000000, count: 1000000000 }])).toEqual({ shared: 100000, isolated: { start: 1000000, blocks: 15258 } });
    expect(planIdRanges([{ start: 1000000, count: 1000000000 }])).toEqual({ shared: 1000000, isolated: { start: 1065536, blocks: 15257 } });
    expect(planIdRanges([{ start: 100000, count: 65536 }])).toEqual({ shared: 100000, isolated: null });
    expect(planIdRanges([{ start: 100000, count: 1000 }])).toBeUndefined();
  });
  it('finds a start for a new range that overlaps nobody\'s', () => {
    expect(freeIdStart('', 1000)).toBe(1000000);
    expect(freeIdStart('alice:1000000:65536\nbob:1065536:65536\n', 1000000000)).toBe(1131072);
    expect(freeIdStart('root:100000:65536\n', 1000000000)).toBe(1000000);
  });
});

describe('ensureIdMap', () => {
  it('adds a large root range, clear of other users, when root has none with room, and answers the maps', async () => {
    const host = new ScriptedHost(() => undefined, { files: { '/etc/subuid': 'root:100000:65536\nalice:1000000:65536\n', '/etc/subgid': '' } });
    const maps = await ensureIdMap(host);
    expect(host.text('/etc/subuid')).toBe('root:100000:65536\nalice:1000000:65536\nroot:1065536:1000000000\n');
    expect(host.text('/etc/subgid')).toBe('root:1000000:1000000000\n');
    expect(maps.shared).toEqual({ uidStart: 100000, gidStart: 1000000, count: 65536 });
    expect(maps.isolated).toEqual({ uidStart: 1065536, gidStart: 1065536, blocks: 15257 });
    // A second start finds what it needs and writes nothing.
    const again = await ensureIdMap(host);
    expect(again).toEqual(maps);
    expect(host.text('/etc/subuid')).toBe('root:100000:65536\nalice:1000000:65536\nroot:1065536:1000000000\n');
  });
});

describe('readCgroupFacts', () => {
  const v1Memory = '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n';
  const v2Root = '30 23 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n';
  const unified = '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n';
  it.each([
    ['v1 with memsw', { '/proc/self/mountinfo': v1Memory, '/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes': '-1' }, { cgroupLayout: 'v1', swapAccounting: true }],
    ['v1 without memsw (no swapaccount=1)', { '/proc/self/mountinfo': v1Memory }, { cgroupLayout: 'v1', swapAccounting: false }],
    ['hybrid with memsw', { '/proc/self/mountinfo': v1Memory + unified, '/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes': '-1' }, { cgroupLayout: 'hybrid', swapAccounting: true }],
    ['v2 with the memory controller', { '/proc/self/mountinfo': v2Root, '/sys/fs/cgroup/cgroup.controllers': 'cpuset cpu io memory pids\n' }, { cgroupLayout: 'v2', swapAccounting: true }],
    ['v2 delegated root with memory.swap.max', { '/proc/self/mountinfo': v2Root, '/sys/fs/cgroup/memory.swap.max': 'max\n' }, { cgroupLayout: 'v2', swapAccounting: true }],
    ['v2 without the memory controller', { '/proc/self/mountinfo': v2Root, '/sys/fs/cgroup/cgroup.controllers': 'cpu pids\n' }, { cgroupLayout: 'v2', swapAccounting: false }],
  ] as const)('%s', async (_, files, want) => {
    expect(await readCgroupFacts(new ScriptedHost(() => undefined, { files }))).toEqual(want);
  });
});
