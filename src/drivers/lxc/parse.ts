// Parsers for lxc-info output, /proc/PID/stat, /proc/PID/cgroup, /proc/self/mounts and cgroup counter files.
import { procStatField } from '../../host/procfs.js';
import type { InstanceState } from '../../shared/schemas.js';

/** State and init pid as lxc-info reports them. */
export interface LxcInfo {
  state: string | null;
  pid: number | null;
}

/** Parses `lxc-info -s -p` output ("State: RUNNING", "PID: 123"). */
export function parseLxcInfo(text: string): LxcInfo {
  let state: string | null = null;
  let pid: number | null = null;
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z ]+?):\s*(\S.*?)\s*$/.exec(line);
    if (!m) continue;
    const key = m[1]!.toLowerCase();
    if (key === 'state') state = m[2]!.toUpperCase();
    else if (key === 'pid' && /^\d+$/.test(m[2]!)) pid = Number(m[2]);
  }
  return { state, pid };
}

/** Maps an LXC state name onto Hangar's instance states. */
export function lxcStateToInstanceState(state: string | null): InstanceState {
  switch (state) {
    case 'RUNNING':
    case 'THAWED':
      return 'running';
    case 'STOPPED':
      return 'stopped';
    case 'STARTING':
      return 'starting';
    case 'STOPPING':
    case 'ABORTING':
      return 'stopping';
    case 'FROZEN':
    case 'FREEZING':
      return 'frozen';
    default:
      return 'unknown';
  }
}

/** Field 22 (starttime, clock ticks since boot) of /proc/PID/stat; null when malformed. */
export function parseProcStatStartTime(text: string): number | null {
  return procStatField(text, 22);
}

/** Cgroup membership of a process: v1 controller -> path, and the v2 path. */
export interface ProcCgroups {
  v1: Record<string, string>;
  v2: string | null;
}

/** Parses /proc/PID/cgroup ("4:memory:/hgr/web", "0::/hgr/web"). */
export function parseProcCgroup(text: string): ProcCgroups {
  const out: ProcCgroups = { v1: {}, v2: null };
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') { out.v2 = m[3]!; continue; }
    for (const ctrl of m[2]!.split(',')) if (ctrl) out.v1[ctrl] = m[3]!;
  }
  return out;
}

/** Where the cgroup hierarchies are mounted: v1 controller -> mount point, and the cgroup2 mount point. */
export interface CgroupMounts {
  v1: Record<string, string>;
  v2: string | null;
}

const V1_CONTROLLERS = new Set([
  'cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'net_prio', 'blkio', 'perf_event', 'hugetlb', 'pids', 'rdma', 'misc',
]);

const unescapeMount = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Parses /proc/self/mounts for cgroup (v1) and cgroup2 mounts; the first mount of each wins. */
export function parseCgroupMounts(text: string): CgroupMounts {
  const out: CgroupMounts = { v1: {}, v2: null };
  for (const line of text.split('\n')) {
    const [, mountPoint, fsType, options] = line.split(' ');
    if (!mountPoint || !fsType || options === undefined) continue;
    if (fsType === 'cgroup2') { out.v2 ??= unescapeMount(mountPoint); continue; }
    if (fsType !== 'cgroup') continue;
    for (const opt of options.split(',')) {
      if ((V1_CONTROLLERS.has(opt) || opt.startsWith('name=')) && out.v1[opt] === undefined) out.v1[opt] = unescapeMount(mountPoint);
    }
  }
  return out;
}

/** The cgroup layout implied by the mounts: pure v2, pure v1, or both (hybrid). */
export function cgroupLayoutOf(mounts: CgroupMounts): 'v1' | 'v2' | 'hybrid' {
  const hasV1 = Object.keys(mounts.v1).some((c) => !c.startsWith('name='));
  if (!hasV1) return 'v2';
  return mounts.v2 ? 'hybrid' : 'v1';
}

/** Parses "key value" lines (memory.oom_control, memory.events, cpu.stat, pids.events) into numbers. */
export function parseFlatKeyed(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*(\S+)\s+(-?\d+)\s*$/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** Parses a single-number cgroup file ("12345\n"); "max" and malformed values give null. */
export function parseCgroupNumber(text: string | undefined): number | null {
  const t = text?.trim();
  return t !== undefined && /^\d+$/.test(t) ? Number(t) : null;
}

/** The last n non-empty lines of text. */
export function tailLines(text: string, n: number): string[] {
  return text.split('\n').map((l) => l.trimEnd()).filter((l) => l !== '').slice(-n);
}
