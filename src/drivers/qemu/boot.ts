// How a VM boots: kernel or firmware, the accelerator chosen at start, the pinned machine type, the cloud-init seed, and QEMU's argv (render-argv.ts).
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { InstanceRecord } from '../driver.js';
import type { VmAccelerator } from './accel-check.js';
import type { Accel, AccelMode } from './accel.js';
import { buildSeedIso, renderNoCloudSeed } from './cloud-init.js';
import { prepareDisks } from './disks.js';
import { machineFamilyOf, qemuMachineType, renderQemuArgv, type QemuBoot, type QemuDisk } from './render-argv.js';
import { UEFI_VARS, readJson, readTrimmed, writeJson, type RunRecord, type Vm } from './vm.js';

/** The kernel command line of a kernel-booted VM: boot.cmdline or the image's own, plus the instance's identity and address. */
export function kernelCmdline(record: InstanceRecord): string {
  const base = (record.config['boot.kernel'] ? record.config['boot.cmdline'] : record.imageProps.cmdline) || 'console=ttyS0';
  const nic = record.nic;
  return `${base} hangar.hostname=${record.name} hangar.ip=${nic.ipv4}/${nic.prefixLength} hangar.gw=${nic.gateway}`;
}

/** Firmware of a disk-booted VM: boot.firmware, else the image's `firmware` property, else BIOS. */
export function firmwareOf(record: InstanceRecord): 'bios' | 'uefi' {
  return (record.config['boot.firmware'] ?? record.imageProps.firmware) === 'uefi' ? 'uefi' : 'bios';
}

/** The instance's own UEFI variable store (boot entries survive restarts and copies), in its volume. */
export function uefiVarsPath(record: InstanceRecord): string {
  return posix.join(record.rootPath, UEFI_VARS);
}

/**
 * How a VM boots: boot.kernel when set; else the image's kernel (the busybox image) unless boot.firmware asks for a
 * firmware boot; else the disk's own boot loader through SeaBIOS or OVMF (`uefiCode` is the host's OVMF code file).
 */
export function bootOf(record: InstanceRecord, uefiCode?: string | null): QemuBoot {
  const kernel = record.config['boot.kernel'];
  if (kernel) {
    const initrd = record.config['boot.initrd'];
    return { kind: 'kernel', kernel, ...(initrd ? { initrd } : {}), cmdline: kernelCmdline(record) };
  }
  const props = record.imageProps;
  if (props.kernel && record.imagePath && record.config['boot.firmware'] === undefined) {
    return {
      kind: 'kernel',
      kernel: posix.join(record.imagePath, props.kernel),
      ...(props.initrd ? { initrd: posix.join(record.imagePath, props.initrd) } : {}),
      cmdline: kernelCmdline(record),
    };
  }
  if (firmwareOf(record) === 'uefi') {
    if (!uefiCode) throw new AppError('UNSUPPORTED', `Instance "${record.name}" needs UEFI firmware, and OVMF is not installed on this host (install the ovmf package)`);
    return { kind: 'disk', firmware: { code: uefiCode, vars: uefiVarsPath(record) } };
  }
  return { kind: 'disk' };
}

/**
 * The accelerator of this start: boot.accel, else the daemon's mode, decided by the host's test guests. A saved state
 * resumes only on the vCPU model it was saved from, so it keeps its accelerator.
 */
export async function chooseAccel(vm: Vm, accel: VmAccelerator, resume: boolean): Promise<RunRecord['choice']> {
  const requested = vm.record.config['boot.accel'] as AccelMode | undefined;
  const name = vm.record.name;
  const saved = resume ? ((await readTrimmed(vm.host, vm.files.stateAccel)) as Accel | undefined) : undefined;
  if (saved === 'kvm' || saved === 'tcg') {
    if (saved === 'kvm' && accel.verdict().usable === false) {
      throw new AppError('UNSUPPORTED', `Failed to start instance "${name}": its saved state was made under KVM, which no longer works on this host (${accel.verdict().reason})`);
    }
    return { accel: saved, requested: requested ?? accel.mode, reason: `the accelerator its saved state was made under` };
  }
  const c = await accel.forStart(requested, name);
  return { ...c, requested: requested ?? accel.mode };
}

/** Records how this run was started (read back by info and by the fault handler). */
async function writeRun(vm: Vm, choice: RunRecord['choice']): Promise<void> {
  const fallback = await readJson<RunRecord['fallback']>(vm.host, vm.files.fallback);
  const consoleBytes = (await vm.host.fs.stat(vm.files.consoleLog))?.size ?? 0;
  const run: RunRecord = { choice, startedAt: new Date().toISOString(), consoleBytes, ...(fallback ? { fallback } : {}) };
  await writeJson(vm.host, vm.files.run, run);
  if (fallback) await vm.host.fs.rm(vm.files.fallback, { force: true });
}

/** The machine type pinned at first start, or undefined before it. */
export async function pinnedMachine(vm: Vm): Promise<string | undefined> {
  return readTrimmed(vm.host, vm.files.machine);
}

/** The pinned machine type; the first start pins the versioned type of the image's family on this QEMU. */
async function machineType(vm: Vm, version: string | null): Promise<string> {
  const pinned = await pinnedMachine(vm);
  if (pinned) return pinned;
  const machine = qemuMachineType(version, machineFamilyOf(vm.record.imageProps));
  await vm.host.fs.writeAtomic(vm.files.machine, `${machine}\n`);
  return machine;
}

/** For images that run cloud-init: a NoCloud seed (identity, address, user-data, SSH keys), rebuilt at every start. */
async function cloudInitSeed(vm: Vm): Promise<QemuDisk | undefined> {
  const { record, host } = vm;
  if (record.imageProps.cloudInit !== 'nocloud') {
    if (record.config['cloud-init.user-data'] || record.config['cloud-init.ssh-keys']) {
      throw new AppError('UNSUPPORTED', `Image "${record.image}" of instance "${record.name}" does not run cloud-init`);
    }
    return undefined;
  }
  const nic = record.nic;
  const keys = (record.config['cloud-init.ssh-keys'] ?? '').split('\n').map((k) => k.trim()).filter(Boolean);
  const files = renderNoCloudSeed({
    // The MAC is new for every instance created, so a re-created one runs its first-boot steps again.
    instanceId: `${record.name}-${nic.mac.replaceAll(':', '')}`,
    hostname: record.name,
    ipv4: nic.ipv4,
    prefixLength: nic.prefixLength,
    gateway: nic.gateway,
    dns: [nic.gateway],
    mac: nic.mac,
    ...(record.config['cloud-init.user-data'] ? { userData: record.config['cloud-init.user-data'] } : {}),
    ...(keys.length ? { sshKeys: keys } : {}),
  });
  const dir = posix.join(record.instanceDir, 'cloud-init');
  await host.fs.rm(dir, { recursive: true, force: true });
  await host.fs.mkdir(dir, { recursive: true });
  return { path: await buildSeedIso(host, dir, files), format: 'raw', readOnly: true, serial: 'cidata' };
}

/**
 * Prepares one start and answers QEMU's argv: records the run, pins the machine type, makes the extra disks and the
 * cloud-init seed, gives a first UEFI boot its variable store, and renders the command line (-incoming to resume a saved state).
 */
export async function prepareBoot(vm: Vm, choice: RunRecord['choice'], resume: boolean): Promise<string[]> {
  const facts = vm.q;
  await writeRun(vm, choice);
  const machine = await machineType(vm, facts.version);
  const extraDisks = await prepareDisks(vm, machine);
  const seed = await cloudInitSeed(vm);
  if (seed) extraDisks.push({ ...seed, node: 'seed' });
  const boot = bootOf(vm.record, facts.uefi?.code);
  // The first UEFI start gets a fresh variable store from OVMF's template; later starts keep the guest's boot entries.
  if (boot.kind === 'disk' && boot.firmware && facts.uefi && !(await vm.host.fs.stat(boot.firmware.vars))) {
    await vm.host.exec(['cp', facts.uefi.vars, boot.firmware.vars]);
  }
  return renderQemuArgv({
    record: vm.record, facts: { version: facts.version, accel: choice.accel }, boot, rootDisk: vm.files.rootDisk, extraDisks, machine,
    ...(resume ? { incoming: true } : {}),
  });
}
