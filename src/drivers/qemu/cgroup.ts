// The cgroup of a QEMU process: limits.cpu.weight and limits.cpu.cap applied to the whole VM (v1 cpu controller or v2 cpu.*).
import { posix } from 'node:path';
import { resourcesOf, type InstanceConfig } from '../../shared/config.js';
import type { CgroupLayout } from '../../host/facts.js';
import type { Host } from '../../host/host.js';
import { readCgroupMounts } from '../../host/mounts.js';
import { cpuCgroupFiles, usesV1, type CgroupSetting } from '../common/cgroup-math.js';

/** One file of the VM's cgroup and the value it should hold. */
export type CgroupWrite = Pick<CgroupSetting, 'file' | 'value'>;

/** The cpu files for a config, for cgroup v1 (cpu.shares, cfs quota) or v2 (cpu.weight, cpu.max); unset keys get the kernel defaults. */
export function vmCpuCgroupWrites(config: InstanceConfig, layout: CgroupLayout): CgroupWrite[] {
  return cpuCgroupFiles(resourcesOf(config), layout).map(({ file, value }) => ({ file, value }));
}

/** Where the cpu controller is mounted (v1 and hybrid) or the unified root (v2), from the host's mount table. */
export async function cpuControllerRoot(host: Host, layout: CgroupLayout): Promise<string | null> {
  const mounts = await readCgroupMounts(host);
  return (usesV1(layout) ? mounts.v1.cpu : mounts.v2) ?? null;
}

/** The VM's cgroup directory: <root>/<prefix>.vm/<name>. */
export function vmCgroupDir(root: string, prefix: string, name: string): string {
  return posix.join(root, `${prefix}.vm`, name);
}

/** Creates the VM's cgroup, writes its cpu limits and moves the QEMU process (all its threads) into it. */
export async function placeVm(host: Host, layout: CgroupLayout, dir: string, config: InstanceConfig, pid: number): Promise<void> {
  keepVmCgroup(dir);
  if (layout === 'v2') {
    // The cpu controller must be enabled for the children of every level above the VM's cgroup.
    const root = posix.dirname(posix.dirname(dir));
    await host.fs.mkdir(posix.dirname(dir), { recursive: true });
    for (const parent of [root, posix.dirname(dir)]) await host.fs.appendFile(posix.join(parent, 'cgroup.subtree_control'), '+cpu').catch(() => undefined);
  }
  await host.fs.mkdir(dir, { recursive: true });
  await writeLimits(host, dir, vmCpuCgroupWrites(config, layout));
  await host.fs.appendFile(posix.join(dir, 'cgroup.procs'), String(pid));
}

/** Rewrites the cpu limits of a running VM. */
export async function writeLimits(host: Host, dir: string, writes: CgroupWrite[]): Promise<void> {
  for (const w of writes) await host.fs.appendFile(posix.join(dir, w.file), w.value);
}

/** The names of the VM cgroups under <root>/<prefix>.vm. */
export async function vmCgroupNames(host: Host, layout: CgroupLayout, prefix: string): Promise<string[]> {
  const root = await cpuControllerRoot(host, layout);
  const parent = root ? posix.join(root, `${prefix}.vm`) : null;
  if (!parent || !(await host.fs.stat(parent))) return [];
  const out: string[] = [];
  for (const name of await host.fs.readdir(parent)) if ((await host.fs.stat(posix.join(parent, name)))?.isDirectory) out.push(name);
  return out;
}

/**
 * Removes the cgroup of a VM that does not run (what an interrupted start, stop or delete left), ending a QEMU still
 * in it first: a process in Hangar's own VM cgroup was started by Hangar. Answers what went.
 */
export async function clearVmCgroup(host: Host, layout: CgroupLayout, prefix: string, name: string): Promise<string[]> {
  const root = await cpuControllerRoot(host, layout);
  if (!root) return [];
  const dir = vmCgroupDir(root, prefix, name);
  if (!(await host.fs.stat(dir))) return [];
  const pids = async () => ((await host.fs.readTextIfExists(posix.join(dir, 'cgroup.procs'))) ?? '').split('\n').filter(Boolean).map(Number);
  const ended: number[] = [];
  for (const pid of await pids()) {
    const argv0 = ((await host.fs.readTextIfExists(`/proc/${pid}/cmdline`)) ?? '').split('\0')[0] ?? '';
    if (posix.basename(argv0).startsWith('qemu-system') && (await host.kill(pid, 'SIGKILL'))) ended.push(pid);
  }
  // An ended process leaves the cgroup once the kernel has reaped it.
  for (let i = 0; i < 50 && (await pids()).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  await host.fs.rmdir(dir).catch(() => undefined);
  if (await host.fs.stat(dir)) return [];
  return [`VM cgroup ${dir}${ended.length ? ` and the QEMU in it (pid ${ended.join(', ')})` : ''}`];
}

// Removals waiting for a reaper, by cgroup directory: a start of the same VM cancels its own before it uses the directory.
const pendingRemovals = new Map<string, { cancelled: boolean }>();

/** Removes the VM's cgroup once QEMU has gone (an empty cgroup is removed with rmdir). */
export async function removeVmCgroup(host: Host, dir: string): Promise<void> {
  const tryRemove = async () => !(await host.fs.stat(dir)) || (await host.fs.rmdir(dir).then(() => true, () => false));
  if (await tryRemove()) return;
  // A killed QEMU stays in its cgroup until its reaper (pid 1: QEMU daemonizes) collects it, which can take seconds:
  // the stop does not wait for that; the removal is tried again meanwhile, for up to 10 s, then left to reconciliation.
  keepVmCgroup(dir);
  const job = { cancelled: false };
  pendingRemovals.set(dir, job);
  void (async () => {
    for (let i = 0; i < 100 && !job.cancelled; i++) {
      await new Promise((r) => setTimeout(r, 100).unref());
      if (job.cancelled || (await tryRemove().catch(() => false))) break;
    }
    if (pendingRemovals.get(dir) === job) pendingRemovals.delete(dir);
  })();
}

/** Cancels a pending removal of a VM's cgroup directory (its VM starts again). */
export function keepVmCgroup(dir: string): void {
  const job = pendingRemovals.get(dir);
  if (job) job.cancelled = true;
  pendingRemovals.delete(dir);
}
