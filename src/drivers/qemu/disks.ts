// The disk images of a VM: the root overlay on its image's disk, extra disks (devices.*), growing them (never shrinking), their hot-plug ports, removal.
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import { devicesOf, resourcesOf, type DiskDevice, type InstanceConfig } from '../../shared/config.js';
import * as qemuImg from '../common/qemu-img.js';
import { HOTPLUG_PORTS, QEMU_NODES, hotplugPort, isQ35, type QemuDisk } from './render-argv.js';
import { ROOT_DISK, UEFI_VARS, readJson, writeJson, type Vm } from './vm.js';

/** The qcow2 file of the extra disk devices.<name>, in the instance volume. */
export function diskPath(vm: Vm, name: string): string {
  return posix.join(vm.record.rootPath, `disk-${name}.qcow2`);
}

function shrinkError(vm: Vm, what: string, current: number, bytes: number): AppError {
  return new AppError('INVALID_SIZE', `${what} of instance "${vm.record.name}" cannot shrink from ${current} to ${bytes} bytes; disks only grow`);
}

/**
 * Creates the root disk: a qcow2 overlay on the image's disk (instant whatever the image size), sized by limits.disk.
 * Called again for a config change of the stopped VM, it grows the existing disk to a larger limits.disk (no disk may shrink).
 */
export async function createRootDisk(vm: Vm): Promise<void> {
  const { record, host } = vm;
  const rootDisk = vm.files.rootDisk;
  await host.fs.mkdir(record.instanceDir, { recursive: true });
  const size = resourcesOf(record.config).diskBytes;
  if (await host.fs.stat(rootDisk)) {
    const current = await checkNoShrink(vm, record.config);
    if (size !== undefined && current !== undefined && size > current) await qemuImg.resize(host, rootDisk, size);
    return;
  }
  const base = record.imageProps.disk && record.imagePath ? posix.join(record.imagePath, record.imageProps.disk) : undefined;
  if (!base) throw new AppError('INVALID_CONFIG', `Image "${record.image}" of instance "${record.name}" has no disk`);
  if (size !== undefined) {
    const virtual = await qemuImg.virtualSize(host, base);
    if (size < virtual) throw new AppError('INVALID_SIZE', `limits.disk of instance "${record.name}" (${size} bytes) is smaller than its image's disk (${virtual} bytes); disks only grow`);
  }
  await qemuImg.create(host, rootDisk, { format: 'qcow2', backing: { path: base, format: 'qcow2' }, ...(size !== undefined ? { sizeBytes: size } : {}) });
}

/** Creates or grows the qcow2 file of one disk device (devices.<name>.*); answers its path and whether it was created. */
export async function ensureDiskFile(vm: Vm, dev: DiskDevice): Promise<{ path: string; created: boolean }> {
  const path = diskPath(vm, dev.name);
  if (!(await vm.host.fs.stat(path))) {
    await qemuImg.create(vm.host, path, { format: 'qcow2', sizeBytes: dev.sizeBytes });
    return { path, created: true };
  }
  const current = await qemuImg.virtualSize(vm.host, path);
  if (dev.sizeBytes < current) throw shrinkError(vm, `Disk "${dev.name}"`, current, dev.sizeBytes);
  if (dev.sizeBytes > current) await qemuImg.resize(vm.host, path, dev.sizeBytes);
  return { path, created: false };
}

/**
 * Refuses a config whose root disk or extra disks would be smaller than their files (disks only grow); answers the
 * root disk's current virtual size when it was read. `changed` limits the check (one qemu-img fork per disk) to the
 * size keys a change touches.
 */
export async function checkNoShrink(vm: Vm, config: InstanceConfig, changed?: readonly string[]): Promise<number | undefined> {
  const rootDisk = vm.files.rootDisk;
  const disks: [string, number | undefined, string, string][] = [[rootDisk, resourcesOf(config).diskBytes, 'The root disk', 'limits.disk']];
  for (const d of devicesOf(config)) disks.push([diskPath(vm, d.name), d.sizeBytes, `Disk "${d.name}"`, `devices.${d.name}.size`]);
  let root: number | undefined;
  for (const [path, bytes, what, key] of disks) {
    if (bytes === undefined || (changed && !changed.includes(key)) || !(await vm.host.fs.stat(path))) continue;
    const current = await qemuImg.virtualSize(vm.host, path);
    if (path === rootDisk) root = current;
    if (bytes < current) throw shrinkError(vm, what, current, bytes);
  }
  return root;
}

/** The lowest hot-plug port no disk uses, or undefined when all are taken. */
export function freePort(ports: Record<string, string>): string | undefined {
  const used = new Set(Object.values(ports));
  for (let i = 0; i < HOTPLUG_PORTS; i++) if (!used.has(hotplugPort(i))) return hotplugPort(i);
  return undefined;
}

/** The port map (device name → hot-plug port); empty when none was written or it is unreadable. */
export async function readPorts(vm: Vm): Promise<Record<string, string>> {
  return (await readJson<Record<string, string>>(vm.host, vm.files.ports)) ?? {};
}

/** Records the port map. */
export async function writePorts(vm: Vm, ports: Record<string, string>): Promise<void> {
  await writeJson(vm.host, vm.files.ports, ports);
}

/** The port map without devices that are gone, plus a free port for each new one. */
async function assignPorts(vm: Vm, names: string[]): Promise<Record<string, string>> {
  const old = await readPorts(vm);
  const ports: Record<string, string> = {};
  for (const n of names) if (old[n]) ports[n] = old[n]!;
  for (const n of names) {
    if (ports[n]) continue;
    const free = freePort(ports);
    if (!free) throw new AppError('INVALID_CONFIG', `Instance "${vm.record.name}" has more than ${HOTPLUG_PORTS} extra disks`);
    ports[n] = free;
  }
  await writePorts(vm, ports);
  return ports;
}

/**
 * Every disk device's qcow2 (the guest sees each with its name as serial). On Q35 each sits on its own PCIe root port,
 * kept across starts, so it can be unplugged live and a saved state always finds it where it was.
 */
export async function prepareDisks(vm: Vm, machine: string): Promise<QemuDisk[]> {
  const devs = devicesOf(vm.record.config);
  const ports = isQ35(machine) ? await assignPorts(vm, devs.map((d) => d.name)) : {};
  const out: QemuDisk[] = [];
  for (const dev of devs) {
    const { path } = await ensureDiskFile(vm, dev);
    out.push({ path, format: 'qcow2', serial: dev.name, node: QEMU_NODES.device(dev.name), ...(ports[dev.name] ? { bus: ports[dev.name] } : {}) });
  }
  return out;
}

/** Removes the disks create() and start() made in the volume (the volume itself belongs to the storage pool). */
export async function removeDiskFiles(vm: Vm): Promise<void> {
  const root = vm.record.rootPath;
  for (const f of await vm.host.fs.readdir(root).catch(() => [] as string[])) {
    if (f === ROOT_DISK || f === UEFI_VARS || /^disk-.+\.qcow2$/.test(f)) await vm.host.fs.rm(posix.join(root, f), { force: true });
  }
}
