// Pure parsers for the storage pool: the text output of btrfs-progs 6.2 (its JSON output aborts) and of stat.

/** One row of `btrfs qgroup show -re --raw`. */
export interface QgroupRow {
  /** "0/268" */
  qgroupId: string;
  level: number;
  /** Subvolume id for level-0 qgroups. */
  id: number;
  referencedBytes: number;
  exclusiveBytes: number;
  maxReferencedBytes: number | null;
  maxExclusiveBytes: number | null;
  /** Path relative to the file system root, or "<stale>", "<toplevel>". */
  path: string;
}

/** One row of `btrfs subvolume list [-s]`. */
export interface SubvolumeRow {
  id: number;
  /** Creation time as ISO 8601 (only with -s and TZ=UTC), else null. */
  createdAt: string | null;
  /** Path relative to the file system root. */
  path: string;
}

function maxValue(s: string): number | null {
  return s === 'none' ? null : Number(s);
}

/** Parses `btrfs qgroup show -re --raw [-f] PATH`: columns qgroupid, rfer, excl, max_rfer, max_excl, path. */
export function parseQgroupShow(text: string): QgroupRow[] {
  const out: QgroupRow[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+)\/(\d+)\s+(\d+)\s+(\d+)\s+(\d+|none)\s+(\d+|none)\s*(.*)$/.exec(line.trim());
    if (!m) continue;
    out.push({
      qgroupId: `${m[1]}/${m[2]}`,
      level: Number(m[1]),
      id: Number(m[2]),
      referencedBytes: Number(m[3]),
      exclusiveBytes: Number(m[4]),
      maxReferencedBytes: maxValue(m[5]!),
      maxExclusiveBytes: maxValue(m[6]!),
      path: m[7]!,
    });
  }
  return out;
}

/** Parses `btrfs subvolume list [-s] PATH` (run with TZ=UTC so otime is UTC). */
export function parseSubvolumeList(text: string): SubvolumeRow[] {
  const out: SubvolumeRow[] = [];
  for (const line of text.split('\n')) {
    const m = /^ID (\d+) .*?(?:otime (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) )?path (.+)$/.exec(line.trim());
    if (!m) continue;
    out.push({ id: Number(m[1]), createdAt: m[2] ? `${m[2]}T${m[3]}Z` : null, path: m[4]! });
  }
  return out;
}

/** Parses `btrfs filesystem usage -b PATH` into the device size and the bytes used. */
export function parseFilesystemUsage(text: string): { sizeBytes: number | null; usedBytes: number | null } {
  const size = /^\s*Device size:\s+(\d+)/m.exec(text);
  const used = /^\s*Used:\s+(\d+)/m.exec(text);
  return { sizeBytes: size ? Number(size[1]) : null, usedBytes: used ? Number(used[1]) : null };
}

/** Free and total bytes of a file system from `stat -f -c '%a %b %S' PATH` (available blocks, total blocks, block size). */
export function parseStatfs(text: string): { availBytes: number; totalBytes: number } {
  const m = /^(\d+) (\d+) (\d+)\s*$/.exec(text.trim());
  if (!m) throw new Error(`unexpected stat -f output ${JSON.stringify(text.slice(0, 100))}`);
  const bs = Number(m[3]);
  return { availBytes: Number(m[1]) * bs, totalBytes: Number(m[2]) * bs };
}

/** Allocated and apparent bytes of a file from `stat -c '%b %B %s' PATH` (blocks, block unit, size). */
export function parseFileAllocation(text: string): { allocatedBytes: number; sizeBytes: number } {
  const m = /^(\d+) (\d+) (\d+)\s*$/.exec(text.trim());
  if (!m) throw new Error(`unexpected stat output ${JSON.stringify(text.slice(0, 100))}`);
  return { allocatedBytes: Number(m[1]) * Number(m[2]), sizeBytes: Number(m[3]) };
}
