// What a running VM holds on the host besides its process: its tap on the bridge and its cpu cgroup.
import { cpuControllerRoot, placeVm, removeVmCgroup, vmCgroupDir } from './cgroup.js';
import { livePid } from './process.js';
import type { Vm } from './vm.js';

/** Creates the VM's tap device (not yet on the bridge). */
export async function addTap(vm: Vm): Promise<void> {
  await vm.host.exec(['ip', 'tuntap', 'add', 'dev', vm.record.nic.hostIfName, 'mode', 'tap']);
}

/** Puts the VM's tap on its bridge and up. */
export async function attachTap(vm: Vm): Promise<void> {
  await vm.host.exec(['ip', 'link', 'set', 'dev', vm.record.nic.hostIfName, 'master', vm.record.nic.bridge, 'up']);
}

/** The VM's cpu cgroup (weight and cap apply to every QEMU thread), or null when the controller is not mounted. */
export async function cgroupDir(vm: Vm): Promise<string | null> {
  const root = await cpuControllerRoot(vm.host, vm.q.env.facts.cgroupLayout);
  return root ? vmCgroupDir(root, vm.q.env.prefix, vm.record.name) : null;
}

/** Moves QEMU (pid) into the VM's cpu cgroup with the config's limits. */
export async function placeInCgroup(vm: Vm, pid: number): Promise<void> {
  const dir = await cgroupDir(vm);
  if (dir) await placeVm(vm.host, vm.q.env.facts.cgroupLayout, dir, vm.record.config, pid);
}

/** Removes what a running VM holds on the host: its tap and (once QEMU is gone) its cgroup. */
export async function releaseHostResources(vm: Vm): Promise<void> {
  const tap = vm.record.nic.hostIfName;
  const dir = await cgroupDir(vm);
  if (dir && (await livePid(vm)) === null) await removeVmCgroup(vm.host, dir);
  if (await vm.host.fs.stat(`/sys/class/net/${tap}`)) await vm.host.exec(['ip', 'link', 'del', 'dev', tap], { allowFailure: true });
}
