// Config changes applied to a running VM: cpu weight and cap, disks plugged, unplugged and grown, I/O limits, and guest RAM through the balloon.
import { AppError, isAppError } from '../../shared/errors.js';
import { devicesOf, resourcesOf, type DiskDevice, type InstanceConfig } from '../../shared/config.js';
import { Reverter } from '../../host/reverter.js';
import { vmCpuCgroupWrites, writeLimits } from './cgroup.js';
import { checkNoShrink, ensureDiskFile, freePort, readPorts, writePorts } from './disks.js';
import { pinnedMachine } from './boot.js';
import { bootMemory } from './process.js';
import { DEFAULT_MEMORY_BYTES, QEMU_NODES, ioLimitsOf, isQ35, throttleLimits } from './render-argv.js';
import { cgroupDir } from './resources.js';
import type { Vm } from './vm.js';

// A guest releases a PCIe disk after the attention button's 5 s grace period; software emulation adds to that.
const UNPLUG_WAIT_MS = 30_000;

/** Plugs a new disk into a free hot-plug port: file, format and throttle nodes, then the device; undone step by step on failure. */
async function plugDisk(vm: Vm, dev: DiskDevice): Promise<boolean> {
  const ports = await readPorts(vm);
  const port = freePort(ports);
  if (!port) return false;
  const qmp = (await vm.mon()).qmp;
  const node = QEMU_NODES.device(dev.name);
  const [fileNode, fmtNode, topNode] = QEMU_NODES.chain(node) as [string, string, string];
  await new Reverter().run(async (r) => {
    const { path, created } = await ensureDiskFile(vm, dev);
    if (created) r.add(`remove ${path}`, () => vm.host.fs.rm(path, { force: true }));
    await qmp.execute('blockdev-add', { driver: 'file', 'node-name': fileNode, filename: path, discard: 'unmap' });
    r.add(`blockdev-del ${fileNode}`, () => qmp.execute('blockdev-del', { 'node-name': fileNode }));
    await qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': fmtNode, file: fileNode, discard: 'unmap' });
    r.add(`blockdev-del ${fmtNode}`, () => qmp.execute('blockdev-del', { 'node-name': fmtNode }));
    await qmp.execute('blockdev-add', { driver: 'throttle', 'node-name': topNode, 'throttle-group': QEMU_NODES.throttleGroup, file: fmtNode });
    r.add(`blockdev-del ${topNode}`, () => qmp.execute('blockdev-del', { 'node-name': topNode }));
    await qmp.execute('device_add', { driver: 'virtio-blk-pci', id: QEMU_NODES.deviceId(node), drive: topNode, serial: dev.name, bus: port });
    r.add(`device_del ${QEMU_NODES.deviceId(node)}`, () => qmp.execute('device_del', { id: QEMU_NODES.deviceId(node) }));
    await writePorts(vm, { ...ports, [dev.name]: port });
  }).catch((err: unknown) => {
    throw new AppError('BACKEND_FAILED', `Failed to plug disk "${dev.name}" into instance "${vm.record.name}"`, { cause: err });
  });
  return true;
}

/** Asks the guest to release a disk (PCIe attention button) and removes its nodes once it did; false when it did not in time. */
async function unplugDisk(vm: Vm, name: string): Promise<boolean> {
  const ports = await readPorts(vm);
  if (!ports[name]) return false;
  const qmp = (await vm.mon()).qmp;
  const node = QEMU_NODES.device(name);
  const id = QEMU_NODES.deviceId(node);
  try {
    await qmp.executeAndWaitEvent('device_del', { id }, 'DEVICE_DELETED', (ev) => ev.data?.device === id, { timeoutMs: UNPLUG_WAIT_MS });
  } catch (err) {
    // The guest may still release it later (QEMU keeps the request); until then the key stays pending.
    if (isAppError(err) && err.code === 'TIMEOUT') return false;
    throw new AppError('BACKEND_FAILED', `Failed to unplug disk "${name}" from instance "${vm.record.name}"`, { cause: err });
  }
  for (const n of [...QEMU_NODES.chain(node)].reverse()) await qmp.execute('blockdev-del', { 'node-name': n });
  const rest = { ...ports };
  delete rest[name];
  await writePorts(vm, rest);
  return true;
}

/** Applies added, removed and grown disk devices to the running VM; answers the keys it applied (the rest waits for a restart). */
async function applyDevices(vm: Vm, prev: InstanceConfig, next: InstanceConfig): Promise<string[]> {
  const machine = (await pinnedMachine(vm)) ?? '';
  // i440FX has no hot-plug ports here, and a VM started by an older Hangar has its disks on the root bus.
  if (!isQ35(machine)) return [];
  const before = new Map(devicesOf(prev).map((d) => [d.name, d]));
  const after = new Map(devicesOf(next).map((d) => [d.name, d]));
  const keysOf = (n: string) => [`devices.${n}.type`, `devices.${n}.size`];
  const live: string[] = [];
  for (const [n, dev] of after) {
    const was = before.get(n);
    if (!was) {
      if (await plugDisk(vm, dev)) live.push(...keysOf(n));
    } else if (dev.sizeBytes > was.sizeBytes) {
      // The guest sees the new capacity at once (virtio config change); growing its file system is the guest's call.
      // Resized through the filter on top: only the device's own root node tells the device (and the guest) its new size.
      await (await vm.mon()).qmp.execute('block_resize', { 'node-name': QEMU_NODES.top(QEMU_NODES.device(n)), size: dev.sizeBytes });
      live.push(`devices.${n}.size`);
    }
  }
  for (const n of before.keys()) {
    if (!after.has(n) && (await unplugDisk(vm, n))) live.push(...keysOf(n));
  }
  return live;
}

/** Applies the changed keys to the VM whose QEMU runs as pid; answers the keys applied live (the rest waits for a restart). */
export async function applyLiveConfig(vm: Vm, next: InstanceConfig, prev: InstanceConfig, keys: readonly string[], pid: number | null): Promise<string[]> {
  const was = resourcesOf(prev);
  const now = resourcesOf(next);
  const live: string[] = [];
  // Refused before anything changes, so a rejected config leaves the running VM as it was.
  const rootSize = await checkNoShrink(vm, next, keys);
  const cpuKeys = keys.filter((k) => k === 'limits.cpu.weight' || k === 'limits.cpu.cap');
  const dir = cpuKeys.length ? await cgroupDir(vm) : null;
  if (dir && (await vm.host.fs.stat(dir))) {
    await writeLimits(vm.host, dir, vmCpuCgroupWrites(next, vm.q.env.facts.cgroupLayout));
    live.push(...cpuKeys);
  }
  if (keys.some((k) => k.startsWith('devices.'))) live.push(...(await applyDevices(vm, prev, next)));
  if (keys.includes('limits.disk') && now.diskBytes !== undefined) {
    if (rootSize !== undefined && now.diskBytes > rootSize) await (await vm.mon()).qmp.execute('block_resize', { 'node-name': QEMU_NODES.top(QEMU_NODES.root), size: now.diskBytes });
    live.push('limits.disk');
  }
  // Disk limits live in the VM's one throttle group, changed in place for the next request; a VM started by an older
  // Hangar has no group, and then the change waits for its restart.
  if (keys.includes('limits.disk.read') || keys.includes('limits.disk.write')) {
    const applied = await (await vm.mon()).qmp.qomSet(QEMU_NODES.throttleGroup, 'limits', throttleLimits(ioLimitsOf(next))).then(() => true, () => false);
    if (applied) live.push(...keys.filter((k) => k === 'limits.disk.read' || k === 'limits.disk.write'));
  }
  // The balloon moves guest RAM inside [guarantee, RAM at boot]; anything beyond waits for a restart.
  const bootRam = (await bootMemory(vm, pid)) ?? was.memoryMax ?? DEFAULT_MEMORY_BYTES;
  const target = now.memoryMax ?? DEFAULT_MEMORY_BYTES;
  const ballooned = was.memoryGuarantee === undefined || was.memoryGuarantee < (was.memoryMax ?? DEFAULT_MEMORY_BYTES);
  if (keys.includes('limits.memory') && ballooned && target <= bootRam && now.memoryGuarantee !== now.memoryMax) {
    await (await vm.mon()).qmp.balloon(Math.max(now.memoryGuarantee ?? 0, target));
    live.push('limits.memory');
  }
  return live;
}
