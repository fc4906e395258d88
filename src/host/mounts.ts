// The mount table: /proc/self/mountinfo parsed in one place for everyone (the pool, image builds, lxcfs, cgroups, detection), pure or read through Host.
import type { Host } from './host.js';

/** Where the kernel shows this process's mount table. */
export const MOUNTINFO_PATH = '/proc/self/mountinfo';

/** One line of /proc/PID/mountinfo, octal escapes decoded in the path fields. */
export interface MountEntry {
  /** The directory of the file system that is mounted: "/" for a whole file system, a subdirectory for a bind mount. */
  root: string;
  mountPoint: string;
  fsType: string;
  source: string;
  /** Per-mount options (rw, nosuid, nodev, ...). */
  options: string;
  /** File system options; "ro" here means the file system itself went read-only (btrfs after an aborted transaction). */
  superOptions: string;
  /** The line as the kernel wrote it (for evidence shown to users). */
  line: string;
}

/** Decodes the octal escapes (\040 for a space, \011, \012, \134) the kernel writes in mount tables; getfattr uses the same form. */
export function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses /proc/PID/mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPEROPTIONS". */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    // The separator follows at least six fields; optional fields ("shared:1") come before it and are never "-".
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 3) continue;
    out.push({
      root: unescapeOctal(f[3]!), mountPoint: unescapeOctal(f[4]!), options: f[5]!,
      fsType: f[sep + 1]!, source: unescapeOctal(f[sep + 2]!), superOptions: f[sep + 3] ?? '', line,
    });
  }
  return out;
}

/** The mount whose mount point is exactly path (the last one wins, as it hides the others), or undefined. */
export function findMount(mountinfo: string | readonly MountEntry[], path: string): MountEntry | undefined {
  const mounts = typeof mountinfo === 'string' ? parseMountInfo(mountinfo) : mountinfo;
  return mounts.filter((m) => m.mountPoint === path).pop();
}

/** The host's mount table, read now (an absent table means no mounts). */
export async function readMounts(host: Host): Promise<MountEntry[]> {
  return parseMountInfo((await host.fs.readTextIfExists(MOUNTINFO_PATH)) ?? '');
}

/** The mount at exactly path on the host now, or undefined. */
export async function readMountAt(host: Host, path: string): Promise<MountEntry | undefined> {
  return findMount(await readMounts(host), path);
}

/** Mount points strictly below dir. */
export async function mountPointsUnder(host: Host, dir: string): Promise<string[]> {
  const root = dir.replace(/\/+$/, '');
  return (await readMounts(host)).map((m) => m.mountPoint).filter((mp) => mp.startsWith(`${root}/`));
}

/** Where the cgroup hierarchies are mounted: v1 controller (or name=...) -> mount point, and the cgroup2 mount point. */
export interface CgroupMounts {
  v1: Record<string, string>;
  v2: string | null;
}

const V1_CONTROLLERS = new Set([
  'cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'net_prio', 'blkio', 'perf_event', 'hugetlb', 'pids', 'rdma', 'misc',
]);

/** The cgroup (v1) and cgroup2 mounts of a mount table; the first mount of each wins. */
export function cgroupMountsOf(mounts: readonly MountEntry[]): CgroupMounts {
  const out: CgroupMounts = { v1: {}, v2: null };
  for (const m of mounts) {
    if (m.fsType === 'cgroup2') { out.v2 ??= m.mountPoint; continue; }
    if (m.fsType !== 'cgroup') continue;
    // mountinfo names the controllers among the file system options.
    for (const opt of `${m.options},${m.superOptions}`.split(',')) {
      if ((V1_CONTROLLERS.has(opt) || opt.startsWith('name=')) && out.v1[opt] === undefined) out.v1[opt] = m.mountPoint;
    }
  }
  return out;
}

/** The cgroup layout the mounts imply: v2 without v1 controllers (a named v1 hierarchy alone does not count), v1, or both (hybrid). */
export function cgroupLayoutOf(mounts: CgroupMounts): 'v1' | 'v2' | 'hybrid' {
  const hasV1 = Object.keys(mounts.v1).some((c) => !c.startsWith('name='));
  if (!hasV1) return 'v2';
  return mounts.v2 ? 'hybrid' : 'v1';
}

const cgroupMountsCache = new WeakMap<Host, Promise<CgroupMounts>>();

/** The cgroup mounts of a host, read once per Host (they do not move while it runs); a failed read is retried next time. */
export function readCgroupMounts(host: Host): Promise<CgroupMounts> {
  let p = cgroupMountsCache.get(host);
  if (!p) {
    p = readMounts(host).then(cgroupMountsOf);
    p.catch(() => cgroupMountsCache.delete(host));
    cgroupMountsCache.set(host, p);
  }
  return p;
}
