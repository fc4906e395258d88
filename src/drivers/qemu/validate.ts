// Validation for the QEMU driver: instance configs against this host's QEMU, and the daemon's HANGAR_ACCEL setting.
import { AppError } from '../../shared/errors.js';
import { devicesOf, resourcesOf, type InstanceConfig } from '../../shared/config.js';
import type { HostFacts } from '../../host/facts.js';
import { hostFitProblems } from '../host-fit.js';
import { ACCEL_MODES, type AccelMode } from './accel.js';
import { HOTPLUG_PORTS } from './render-argv.js';
import type { QemuHost } from './vm.js';

/** The least limits.memory a VM gets: a Linux guest kernel and its initramfs must fit. */
export const QEMU_MIN_MEMORY = 64 * 1024 ** 2;

/** Problems with a config for QEMU VMs on this host: values out of range, and what this host's QEMU cannot do. */
export function validateQemu(config: InstanceConfig, q: QemuHost, facts: HostFacts): string[] {
  const problems: string[] = [];
  for (const key of ['boot.initrd', 'boot.cmdline']) {
    if (config[key] !== undefined && config['boot.kernel'] === undefined) problems.push(`${key} needs boot.kernel (it applies to a directly booted kernel)`);
  }
  if (devicesOf(config).length > HOTPLUG_PORTS) problems.push(`a VM has at most ${HOTPLUG_PORTS} extra disks (devices.*)`);
  // Refused before anything is created; while the host's check still runs, the start decides (and undoes the launch).
  const accel = q.accel?.choose(config['boot.accel'] as AccelMode | undefined);
  if (accel && 'refused' in accel) problems.push(accel.refused);
  if (config['boot.firmware'] === 'uefi') {
    if (config['boot.kernel'] !== undefined) problems.push('boot.firmware=uefi applies to booting from the disk; boot.kernel boots its kernel directly, without firmware');
    if (q.accel && !q.uefi) problems.push('boot.firmware=uefi needs UEFI firmware (OVMF), which is not installed on this host (install the ovmf package)');
  }
  let r: ReturnType<typeof resourcesOf>;
  try {
    r = resourcesOf(config);
  } catch (e) {
    return [...problems, e instanceof Error ? e.message : String(e)];
  }
  problems.push(...hostFitProblems(config, r, facts, { name: 'qemu', minMemoryBytes: QEMU_MIN_MEMORY, why: 'a guest kernel and its initramfs must fit' }));
  return problems;
}

/** HANGAR_ACCEL of the daemon's environment: auto (default), kvm or tcg. */
export function accelModeOf(settings: Readonly<Record<string, string | undefined>>): AccelMode {
  const v = settings.HANGAR_ACCEL ?? 'auto';
  if (!(ACCEL_MODES as readonly string[]).includes(v)) throw new AppError('INVALID_CONFIG', `Invalid HANGAR_ACCEL ${JSON.stringify(v)}: expected auto, kvm or tcg`);
  return v as AccelMode;
}
