// Host facts read from /proc and /sys through Host.fs: cgroup layout, CPUs, memory, id maps, KVM, CPU flags.
import { AppError } from '../../shared/errors.js';
import type { HostFacts } from '../../drivers/driver.js';
import type { Host } from './host.js';

/** Which cgroup hierarchies are mounted. */
export type CgroupLayout = 'v1' | 'v2' | 'hybrid';

/** Reads the cgroup layout from mountinfo: cgroup2 at /sys/fs/cgroup is v2; v1 controllers plus a cgroup2 elsewhere is hybrid. */
export function parseCgroupLayout(mountinfo: string): CgroupLayout {
  let v1 = false;
  let v2Root = false;
  let v2Elsewhere = false;
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fields = line.slice(0, sep).split(' ');
    const fstype = line.slice(sep + 3).split(' ')[0];
    const mountPoint = fields[4] ?? '';
    if (fstype === 'cgroup2') {
      if (mountPoint === '/sys/fs/cgroup') v2Root = true; else v2Elsewhere = true;
    } else if (fstype === 'cgroup') {
      v1 = true;
    }
  }
  if (v2Root && !v1) return 'v2';
  if (v1 && (v2Elsewhere || v2Root)) return 'hybrid';
  if (v1) return 'v1';
  return 'v2';
}

/** Parses /etc/subuid or /etc/subgid and returns root's first range. */
export function parseSubIdRange(text: string, user = 'root'): { start: number; count: number } | undefined {
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':');
    if (name === user && start && count && /^\d+$/.test(start) && /^\d+$/.test(count)) return { start: Number(start), count: Number(count) };
  }
  return undefined;
}

const DEFAULT_RANGE = { start: 100000, count: 65536 };

/** Makes sure root has a subordinate id range (Hangar's unprivileged containers need one) and returns the map to use. */
export async function ensureIdMap(host: Host): Promise<HostFacts['idmap']> {
  const ranges: { start: number; count: number }[] = [];
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const text = (await host.fs.readTextIfExists(file)) ?? '';
    let range = parseSubIdRange(text);
    if (!range) {
      await host.fs.writeAtomic(file, `${text}${text && !text.endsWith('\n') ? '\n' : ''}root:${DEFAULT_RANGE.start}:${DEFAULT_RANGE.count}\n`);
      range = DEFAULT_RANGE;
    }
    if (range.count < 65536) throw new AppError('HOST_FAILED', `Subordinate id range of root in ${file} has only ${range.count} ids; unprivileged containers need 65536`);
    ranges.push(range);
  }
  return { uidStart: ranges[0]!.start, gidStart: ranges[1]!.start, count: 65536 };
}

/** Total memory from /proc/meminfo, in bytes. */
export function parseMemTotal(meminfo: string): number {
  const m = /^MemTotal:\s+(\d+)\s+kB/m.exec(meminfo);
  return m ? Number(m[1]) * 1024 : 0;
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
export async function readHostFacts(host: Host, idmap: HostFacts['idmap']): Promise<HostSnapshot> {
  const [mountinfo, meminfo, cpuinfo, online, kernel, osRelease, hostname] = await Promise.all([
    host.fs.readText('/proc/self/mountinfo'),
    host.fs.readText('/proc/meminfo'),
    host.fs.readTextIfExists('/proc/cpuinfo'),
    host.fs.readTextIfExists('/sys/devices/system/cpu/online'),
    host.fs.readTextIfExists('/proc/sys/kernel/osrelease'),
    host.fs.readTextIfExists('/etc/os-release'),
    host.fs.readTextIfExists('/proc/sys/kernel/hostname'),
  ]);
  const cgroupLayout = parseCgroupLayout(mountinfo);
  const cpuList = online ? parseCpuList(online) : [0];
  const kvmStat = await host.fs.stat('/dev/kvm');
  const kvmPresent = kvmStat !== undefined;
  const memsw = cgroupLayout === 'v2'
    ? (await host.fs.stat('/sys/fs/cgroup/memory.swap.max')) !== undefined || (await host.fs.readTextIfExists('/sys/fs/cgroup/cgroup.subtree_control'))?.includes('memory') === true
    : (await host.fs.stat('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes')) !== undefined;
  return {
    cgroupLayout,
    cpus: cpuList.length,
    cpuList,
    memoryBytes: parseMemTotal(meminfo),
    idmap,
    kernel: (kernel ?? 'unknown').trim(),
    os: /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease ?? '')?.[1] ?? 'unknown',
    hostname: (hostname ?? 'localhost').trim(),
    cpuVirtFlags: parseCpuVirtFlags(cpuinfo ?? ''),
    kvm: { present: kvmPresent, usable: kvmPresent, reason: kvmPresent ? null : '/dev/kvm does not exist (no hardware virtualisation exposed to this machine); QEMU would use TCG software emulation' },
    swapAccounting: memsw,
  };
}
