// Unit tests of the storage pool parsers, on output captured from this machine's stat and btrfs-progs 6.2 (the mount table is tested in src/host).
import { describe, expect, it } from 'vitest';
import { parseFileAllocation, parseFilesystemUsage, parseQgroupShow, parseStatfs, parseSubvolumeList } from './parse.js';

describe('stat', () => {
  it('reads free space and a file\'s allocation from stat', () => {
    expect(parseStatfs('1000 5000 4096\n')).toEqual({ availBytes: 4096000, totalBytes: 20480000 });
    expect(parseFileAllocation('8 512 4096\n')).toEqual({ allocatedBytes: 4096, sizeBytes: 4096 });
    expect(() => parseStatfs('garbage')).toThrow(/unexpected/);
  });
});

describe('btrfs output', () => {
  it('parses qgroup show -re --raw, with none limits and special paths', () => {
    const text = [
      'Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path ',
      '--------    ----------    ---------  --------------  -------------   ---- ',
      '0/5              16384        16384            none           none   <toplevel>',
      '0/268         10502144     10502144        67108864           none   instances/web1',
      '0/270         10502144     10502144            none           none   <stale>',
    ].join('\n');
    const rows = parseQgroupShow(text);
    expect(rows).toHaveLength(3);
    expect(rows[1]).toEqual({ qgroupId: '0/268', level: 0, id: 268, referencedBytes: 10502144, exclusiveBytes: 10502144, maxReferencedBytes: 67108864, maxExclusiveBytes: null, path: 'instances/web1' });
    expect(rows[2]!.path).toBe('<stale>');
  });

  it('parses subvolume list with and without otime', () => {
    const withTime = parseSubvolumeList('ID 271 gen 49 cgen 49 top level 5 otime 2026-11-26 22:45:07 path snapshots/a/s1\n');
    expect(withTime).toEqual([{ id: 271, createdAt: '2026-11-26T22:45:07Z', path: 'snapshots/a/s1' }]);
    const plain = parseSubvolumeList('ID 258 gen 12 top level 5 path instances/b\nID 259 gen 13 top level 258 path instances/b/var/lib/machines\n');
    expect(plain.map((r) => r.path)).toEqual(['instances/b', 'instances/b/var/lib/machines']);
    expect(plain[0]!.createdAt).toBeNull();
  });

  it('parses filesystem usage -b', () => {
    const text = 'Overall:\n    Device size:\t\t        2147483648\n    Device allocated:\t\t        1103888384\n    Used:\t\t\t         289951744\n    Free (estimated):\t\t        1279930368\t(min: 758132736)\n';
    expect(parseFilesystemUsage(text)).toEqual({ sizeBytes: 2147483648, usedBytes: 289951744 });
    expect(parseFilesystemUsage('garbage')).toEqual({ sizeBytes: null, usedBytes: null });
  });
});
