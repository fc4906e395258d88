// Host facts read from /proc and /sys through Host.fs: cgroup layout, CPUs, memory, subordinate id maps, KVM, CPU flags.
import { posix } from 'node:path';
import { AppError } from '../shared/errors.js';
import type { Host } from './host.js';
import { cgroupLayoutOf, readCgroupMounts } from './mounts.js';
import { procKbField } from './procfs.js';

/** Facts about a host that drivers validate and render with. */
export interface HostFacts {
  cgroupLayout: CgroupLayout;
  cpus: number;
  memoryBytes: number;
  /** The shared id map of unprivileged containers (security.idmap.isolated=false): host ids that container id 0 maps to. */
  idmap: { uidStart: number; gidStart: number; count: number };
  /** Where isolated id maps come from: block k is uidStart + k * 65536; null or absent when the host has no such range. */
  idmapIsolated?: { uidStart: number; gidStart: number; blocks: number } | null;
  /** Swap is accounted per cgroup (v1: memory.memsw.* files exist; v2: memory.swap.max exists); undefined means unknown, treated as no. */
  swapAccounting?: boolean;
}

/** Which cgroup hierarchies are mounted. */
export type CgroupLayout = 'v1' | 'v2' | 'hybrid';

/** The cgroup layout and swap accounting of a host (v1: memory.memsw.* files exist; v2: memory.swap.max or the memory controller), from its mounts. */
export async function readCgroupFacts(host: Host): Promise<Pick<HostFacts, 'cgroupLayout'> & { swapAccounting: boolean }> {
  const mounts = await readCgroupMounts(host);
  const cgroupLayout = cgroupLayoutOf(mounts);
  if (cgroupLayout !== 'v2') {
    const mem = mounts.v1.memory;
    return { cgroupLayout, swapAccounting: mem !== undefined && (await host.fs.stat(posix.join(mem, 'memory.memsw.limit_in_bytes'))) !== undefined };
  }
  if (!mounts.v2) return { cgroupLayout, swapAccounting: false };
  // The root cgroup has no memory.swap.max; a delegated (namespace) root does.
  const [swapMax, controllers] = await host.fs.readMany([posix.join(mounts.v2, 'memory.swap.max'), posix.join(mounts.v2, 'cgroup.controllers')]);
  return { cgroupLayout, swapAccounting: swapMax !== undefined || (controllers ?? '').split(/\s+/).includes('memory') };
}

/** Every subordinate id range of a user in /etc/subuid or /etc/subgid text, in file order. */
export function parseSubIdRanges(text: string, user = 'root'): { start: number; count: number }[] {
  const out: { start: number; count: number }[] = [];
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':');
    if (name === user && start && count && /^\d+$/.test(start) && /^\d+$/.test(count)) out.push({ start: Number(start), count: Number(count) });
  }
  return out;
}

/** Ids per container: the POSIX range a container's users and groups need (0 to 65535). */
export const IDS_PER_CONTAINER = 65536;

/** The range Hangar adds for root when it has none (or none with room for isolated maps), as Incus does. */
export const ISOLATED_RANGE = { start: 1_000_000, count: 1_000_000_000 } as const;

// Isolated maps need room for many containers; fewer blocks than this and a larger range is added.
const MIN_ISOLATED_BLOCKS = 64;

/** The id maps unprivileged containers get: one shared block, and blocks of an isolated range (one per container). */
export interface IdMaps {
  shared: HostFacts['idmap'];
  /** Block k of this range is container k's own map (uidStart + k * 65536); null when the host has no room. */
  isolated: { uidStart: number; gidStart: number; blocks: number } | null;
}

/**
 * Picks the maps from one id file's root ranges: the first range's first block is shared; the largest range beyond
 * that block gives the isolated blocks. Pure, for both files.
 */
export function planIdRanges(ranges: { start: number; count: number }[]): { shared: number; isolated: { start: number; blocks: number } | null } | undefined {
  const first = ranges[0];
  if (!first || first.count < IDS_PER_CONTAINER) return undefined;
  let best: { start: number; blocks: number } | null = null;
  for (const r of ranges) {
    // The shared block is not handed out again.
    const start = r === first ? r.start + IDS_PER_CONTAINER : r.start;
    const blocks = Math.floor((r.start + r.count - start) / IDS_PER_CONTAINER);
    if (blocks > 0 && (!best || blocks > best.blocks)) best = { start, blocks };
  }
  return { shared: first.start, isolated: best && best.blocks >= MIN_ISOLATED_BLOCKS ? best : null };
}

/** A start for a new range of `count` ids that overlaps no range of any user in the file text, at or after `from`. */
export function freeIdStart(text: string, count: number, from: number = ISOLATED_RANGE.start): number {
  let start = from;
  const used = text.split('\n').map((l) => l.trim().split(':')).filter((f) => f.length === 3 && /^\d+$/.test(f[1]!) && /^\d+$/.test(f[2]!)).map((f) => ({ start: Number(f[1]), end: Number(f[1]) + Number(f[2]) }));
  for (let moved = true; moved;) {
    moved = false;
    for (const u of used) {
      if (start < u.end && u.start < start + count) {
        start = u.end;
        moved = true;
      }
    }
  }
  return start;
}

/**
 * Makes sure root has subordinate ids for unprivileged containers: a shared block and a large range for isolated maps
 * (root:1000000:1000000000 is added, where it overlaps nothing, when root has less); returns the maps.
 */
export async function ensureIdMap(host: Host): Promise<IdMaps> {
  const plans: { shared: number; isolated: { start: number; blocks: number } | null }[] = [];
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    let text = (await host.fs.readTextIfExists(file)) ?? '';
    let plan = planIdRanges(parseSubIdRanges(text));
    if (!plan?.isolated) {
      const start = freeIdStart(text, ISOLATED_RANGE.count);
      text = `${text}${text && !text.endsWith('\n') ? '\n' : ''}root:${start}:${ISOLATED_RANGE.count}\n`;
      await host.fs.writeAtomic(file, text, 0o644);
      plan = planIdRanges(parseSubIdRanges(text));
    }
    if (!plan) throw new AppError('HOST_FAILED', `Subordinate id ranges of root in ${file} have fewer than ${IDS_PER_CONTAINER} ids; unprivileged containers need that many`);
    plans.push(plan);
  }
  const [u, g] = plans as [typeof plans[0], typeof plans[0]];
  const blocks = Math.min(u.isolated?.blocks ?? 0, g.isolated?.blocks ?? 0);
  return {
    shared: { uidStart: u.shared, gidStart: g.shared, count: IDS_PER_CONTAINER },
    isolated: u.isolated && g.isolated && blocks > 0 ? { uidStart: u.isolated.start, gidStart: g.isolated.start, blocks } : null,
  };
}

/** Virtualisation-related CPU flags (vmx, svm, hypervisor) from /proc/cpuinfo. */
export function parseCpuVirtFlags(cpuinfo: string): string[] {
  const m = /^flags\s*:\s*(.*)$/m.exec(cpuinfo);
  const flags = new Set((m?.[1] ?? '').split(/\s+/));
  return ['vmx', 'svm', 'hypervisor'].filter((f) => flags.has(f));
}

/** Counts online CPUs from /sys/devices/system/cpu/online ("0-1,3"). */
export function parseCpuList(list: string): number[] {
  const out: number[] = [];
  for (const part of list.trim().split(',')) {
    if (!part) continue;
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || Number.isNaN(a)) continue;
    for (let i = a; i <= (b ?? a); i++) out.push(i);
  }
  return out;
}

/** Everything the daemon learns about its host at start. */
export interface HostSnapshot extends HostFacts {
  kernel: string;
  os: string;
  hostname: string;
  cpuList: number[];
  cpuVirtFlags: string[];
  kvm: { present: boolean; usable: boolean; reason: string | null };
  swapAccounting: boolean;
}

/** Reads host facts (no forks). */
export async function readHostFacts(host: Host, maps: IdMaps): Promise<HostSnapshot> {
  const [cgroups, meminfo, cpuinfo, online, kernel, osRelease, hostname] = await Promise.all([
    readCgroupFacts(host),
    host.fs.readText('/proc/meminfo'),
    host.fs.readTextIfExists('/proc/cpuinfo'),
    host.fs.readTextIfExists('/sys/devices/system/cpu/online'),
    host.fs.readTextIfExists('/proc/sys/kernel/osrelease'),
    host.fs.readTextIfExists('/etc/os-release'),
    host.fs.readTextIfExists('/proc/sys/kernel/hostname'),
  ]);
  const cpuList = online ? parseCpuList(online) : [0];
  const kvmStat = await host.fs.stat('/dev/kvm');
  const kvmPresent = kvmStat !== undefined;
  return {
    cgroupLayout: cgroups.cgroupLayout,
    cpus: cpuList.length,
    cpuList,
    memoryBytes: procKbField(meminfo, 'MemTotal') ?? 0,
    idmap: maps.shared,
    idmapIsolated: maps.isolated,
    kernel: (kernel ?? 'unknown').trim(),
    os: /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease ?? '')?.[1] ?? 'unknown',
    hostname: (hostname ?? 'localhost').trim(),
    cpuVirtFlags: parseCpuVirtFlags(cpuinfo ?? ''),
    kvm: { present: kvmPresent, usable: kvmPresent, reason: kvmPresent ? null : '/dev/kvm does not exist (no hardware virtualisation exposed to this machine); QEMU would use TCG software emulation' },
    swapAccounting: cgroups.swapAccounting,
  };
}
