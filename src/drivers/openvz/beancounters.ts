// OpenVZ's beancounters from a container's cgroups (v1 controllers or cgroup2): held, maxheld, barrier, limit, failcnt.
import { posix } from 'node:path';
import type { Beancounter } from '../../shared/schemas.js';
import type { Host } from '../../host/host.js';
import type { CgroupMounts } from '../../host/mounts.js';
import { parseFlatKeyed } from '../lxc/parse.js';

const PAGE = 4096;
// cgroup v1 says "no limit" with the largest page-aligned number; v2 with "max".
const UNLIMITED_V1 = 2 ** 62;

/** A number from a cgroup file, null for "max", missing files or v1's no-limit value. */
function num(text: string | undefined): number | null {
  if (text === undefined) return null;
  const t = text.trim();
  if (t === '' || t === 'max') return null;
  const n = Number(t);
  return Number.isFinite(n) && n < UNLIMITED_V1 ? n : null;
}

const pages = (bytes: number | null) => (bytes === null ? null : Math.floor(bytes / PAGE));

/** The files a beancounter reading needs, relative to each hierarchy, for one layout. */
function files(mounts: CgroupMounts, dir: string, v2: boolean): Record<string, string | null> {
  const v1 = (ctrl: string, f: string) => (mounts.v1[ctrl] ? posix.join(mounts.v1[ctrl]!, dir, f) : null);
  const u = (f: string) => (mounts.v2 ? posix.join(mounts.v2, dir, f) : null);
  if (v2) {
    return {
      memCur: u('memory.current'), memPeak: u('memory.peak'), memMax: u('memory.max'), memEvents: u('memory.events'),
      swapCur: u('memory.swap.current'), swapPeak: u('memory.swap.peak'), swapMax: u('memory.swap.max'), swapEvents: u('memory.swap.events'),
      pidsCur: u('pids.current'), pidsPeak: u('pids.peak'), pidsMax: u('pids.max'), pidsEvents: u('pids.events'), procs: u('cgroup.procs'),
    };
  }
  return {
    memCur: v1('memory', 'memory.usage_in_bytes'), memPeak: v1('memory', 'memory.max_usage_in_bytes'), memMax: v1('memory', 'memory.limit_in_bytes'), memFail: v1('memory', 'memory.failcnt'), oomControl: v1('memory', 'memory.oom_control'),
    mswCur: v1('memory', 'memory.memsw.usage_in_bytes'), mswPeak: v1('memory', 'memory.memsw.max_usage_in_bytes'), mswMax: v1('memory', 'memory.memsw.limit_in_bytes'), mswFail: v1('memory', 'memory.memsw.failcnt'),
    kmemCur: v1('memory', 'memory.kmem.usage_in_bytes'), kmemPeak: v1('memory', 'memory.kmem.max_usage_in_bytes'), kmemMax: v1('memory', 'memory.kmem.limit_in_bytes'), kmemFail: v1('memory', 'memory.kmem.failcnt'),
    pidsCur: v1('pids', 'pids.current'), pidsPeak: v1('pids', 'pids.peak'), pidsMax: v1('pids', 'pids.max'), pidsEvents: v1('pids', 'pids.events'), procs: v1('pids', 'cgroup.procs') ?? v1('memory', 'cgroup.procs'),
  };
}

/** Reads a container's beancounters from its cgroup directory (`dir`, relative to each hierarchy) in one batch, and its open files from /proc. */
export async function readBeancounters(host: Host, mounts: CgroupMounts, dir: string, v2: boolean): Promise<Beancounter[]> {
  const f = files(mounts, dir, v2);
  const keys = Object.keys(f).filter((k) => f[k] !== null);
  const texts = await host.fs.readMany(keys.map((k) => f[k]!));
  const t: Record<string, string | undefined> = {};
  keys.forEach((k, i) => { t[k] = texts[i]; });
  const events = (k: string) => (t[k] === undefined ? null : parseFlatKeyed(t[k]!).max ?? 0);
  const out: Beancounter[] = [];
  const heldMem = num(t.memCur);
  if (heldMem !== null) {
    const limit = num(t.memMax);
        // Kernels whose v1 memory controller keeps no failcnt (6.18 leaves it 0) still count the OOM kills the limit caused.
    const v1Fail = Math.max(num(t.memFail) ?? 0, num(t.mswFail) ?? 0, t.oomControl === undefined ? 0 : parseFlatKeyed(t.oomControl).oom_kill ?? 0);
    out.push({ resource: 'physpages', unit: 'pages', held: pages(heldMem)!, maxheld: pages(num(t.memPeak)), barrier: 0, limit: pages(limit), failcnt: v2 ? events('memEvents') : v1Fail });
    if (v2 && num(t.swapCur) !== null) {
      out.push({ resource: 'swappages', unit: 'pages', held: pages(num(t.swapCur))!, maxheld: pages(num(t.swapPeak)), barrier: 0, limit: pages(num(t.swapMax)), failcnt: events('swapEvents') });
    } else if (!v2 && num(t.mswCur) !== null) {
      // memsw counts memory plus swap: swap is the difference, its limit the difference of the limits.
      const mswMax = num(t.mswMax);
      out.push({
        resource: 'swappages', unit: 'pages', held: pages(Math.max(0, num(t.mswCur)! - heldMem))!, maxheld: null, barrier: 0,
        limit: mswMax === null || limit === null ? null : pages(Math.max(0, mswMax - limit)), failcnt: num(t.mswFail),
      });
    }
    if (!v2 && num(t.kmemCur) !== null) {
      out.push({ resource: 'kmemsize', unit: 'bytes', held: num(t.kmemCur)!, maxheld: num(t.kmemPeak), barrier: num(t.kmemMax), limit: num(t.kmemMax), failcnt: num(t.kmemFail) });
    }
  }
  const procs = num(t.pidsCur);
  if (procs !== null) {
    const max = num(t.pidsMax);
    out.push({ resource: 'numproc', unit: 'items', held: procs, maxheld: num(t.pidsPeak), barrier: max, limit: max, failcnt: events('pidsEvents') });
  }
  // Open files: the file descriptors of the container's processes (no cgroup counts them).
  if (t.procs !== undefined) {
    let open = 0;
    for (const pid of t.procs.split('\n').map((l) => l.trim()).filter((l) => /^\d+$/.test(l))) {
      open += (await host.fs.readdir(`/proc/${pid}/fd`).catch(() => [])).length;
    }
    out.push({ resource: 'numfile', unit: 'items', held: open, maxheld: null, barrier: null, limit: null, failcnt: null });
  }
  return out;
}
