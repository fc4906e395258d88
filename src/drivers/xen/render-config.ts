// Pure rendering of a Xen domain into its xl.cfg text, and the builder that maps an instance record onto it (the resource model).
//
// renderXlConfig writes one key per line in a fixed order (type, identity, memory, vCPUs, scheduling, boot, disks, NICs,
// event actions, consoles), every string quoted and escaped by xlQuote, disks and NICs in the spec syntax their own
// modules parse back. xlConfigFor builds that input from what the driver passes (InstanceRecord and the Xen host's
// facts): limits.memory is maxmem, limits.memory.guarantee is memory (all of it by default), limits.cpu is vcpus and
// maxvcpus, limits.cpu.weight is cpu_weight (scaled so Hangar's default 100 is Xen's 256), limits.cpu.cap is cap (a
// percentage of one CPU), limits.disk the root disk's size; keys Xen cannot honour are refused naming xen.
import { resourcesOf, unsupportedKeys } from '../../shared/config.js';
import { AppError } from '../../shared/errors.js';
import type { InstanceRecord } from '../driver.js';
import { diskProblem, driveLetters, renderDiskSpec, vdevInfo, type XlDiskSpec } from './disk-spec.js';
import { renderVifSpec, type XlVifRate, type XlVifSpec } from './vif-spec.js';
import { xlLiteral } from './xl-cfg.js';

/** How the domain is virtualised: paravirtualized, PVH (hardware-assisted, no device model) or HVM (hardware-assisted with QEMU). */
export type XenGuestType = 'pv' | 'pvh' | 'hvm';

/** What xl does when the domain powers off, reboots or crashes (xl.cfg(5) "Event Actions"). */
export const XL_ACTIONS = ['destroy', 'restart', 'rename-restart', 'preserve', 'coredump-destroy', 'coredump-restart', 'soft-reset'] as const;
/** One event action. */
export type XlAction = (typeof XL_ACTIONS)[number];

/** The event actions Hangar's domains get (xl's own defaults): a power-off ends the domain, a reboot restarts it, a crash ends it. */
export const XEN_DEFAULT_ACTIONS = { onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy' } as const satisfies Record<string, XlAction>;

/** How the domain boots: a kernel from Dom0's files, a boot loader run in Dom0 (pygrub), or firmware. */
export type XlBoot =
  | { kind: 'kernel'; kernel: string; ramdisk?: string; cmdline?: string }
  | { kind: 'bootloader'; bootloader: string; args?: string[] }
  /** HVM: bios, uefi, seabios, rombios, ovmf or a path; PV: pvgrub32 or pvgrub64. */
  | { kind: 'firmware'; firmware: string };

/** A VNC display: top-level vnc keys for HVM, a vfb device for PV and PVH. */
export interface XlVnc {
  listen: string;
  display?: number;
  /** Pick the first free display (vncunused=1). */
  unused?: boolean;
  password?: string;
}

/** Everything renderXlConfig writes. */
export interface XlDomainConfig {
  type: XenGuestType;
  name: string;
  uuid?: string;
  /** Memory at start, MiB (xl's memory=). */
  memoryMiB: number;
  /** Memory ceiling, MiB (xl's maxmem=): the domain may balloon up to it. */
  maxmemMiB: number;
  vcpus: number;
  maxvcpus: number;
  /** Credit scheduler weight, 1-65535 (Xen's default 256). */
  cpuWeight?: number;
  /** CPU cap as a percentage of one physical CPU (0 = none). */
  cap?: number;
  boot: XlBoot;
  disks: readonly XlDiskSpec[];
  vifs: readonly XlVifSpec[];
  onPoweroff: XlAction;
  onReboot: XlAction;
  onCrash: XlAction;
  /** HVM only: the emulated serial port ("pty" gives `xl console` a serial console). */
  serial?: string;
  vnc?: XlVnc;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Linux interface names hold 15 characters; for HVM, libxl names the emulated NIC's tap "<vifname>-emu".
const IFNAMSIZ = 15;
const HVM_FIRMWARE = ['bios', 'uefi', 'seabios', 'rombios', 'ovmf'];

const invalid = (name: string, problem: string) => new AppError('INVALID_CONFIG', `Invalid Xen domain "${name}": ${problem}`);

const wholeNumber = (name: string, what: string, n: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER) => {
  if (n === undefined) return;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw invalid(name, `${what} must be a whole number from ${min} to ${max}, not ${n}`);
};

// Cross-field rules xl and libxl enforce, checked before anything is written.
function checkDomain(c: XlDomainConfig): void {
  const name = c.name;
  if (name === '') throw invalid(name, 'the name is empty');
  if (c.type !== 'pv' && c.type !== 'pvh' && c.type !== 'hvm') throw invalid(name, `unknown type ${JSON.stringify(c.type)} (pv, pvh or hvm)`);
  if (c.uuid !== undefined && !UUID.test(c.uuid)) throw invalid(name, `uuid ${JSON.stringify(c.uuid)} is not a UUID (8-4-4-4-12 hex digits)`);
  wholeNumber(name, 'memory (MiB)', c.memoryMiB, 1);
  wholeNumber(name, 'maxmem (MiB)', c.maxmemMiB, 1);
  if (c.maxmemMiB < c.memoryMiB) throw invalid(name, `maxmem (${c.maxmemMiB} MiB) must not be below memory (${c.memoryMiB} MiB): xl refuses such a domain`);
  wholeNumber(name, 'vcpus', c.vcpus, 1);
  wholeNumber(name, 'maxvcpus', c.maxvcpus, 1);
  if (c.maxvcpus < c.vcpus) throw invalid(name, `maxvcpus (${c.maxvcpus}) must not be below vcpus (${c.vcpus})`);
  wholeNumber(name, 'cpu_weight', c.cpuWeight, 1, 65535);
  wholeNumber(name, 'cap', c.cap, 0);
  for (const [key, action] of [['on_poweroff', c.onPoweroff], ['on_reboot', c.onReboot], ['on_crash', c.onCrash]] as const) {
    if (!(XL_ACTIONS as readonly string[]).includes(action)) throw invalid(name, `${key} ${JSON.stringify(action)} is not one of ${XL_ACTIONS.join(', ')}`);
  }
  const boot = c.boot;
  if (boot.kind === 'bootloader' && c.type === 'hvm') throw invalid(name, 'an HVM domain boots from firmware, not a boot loader');
  if (boot.kind === 'firmware') {
    if (c.type === 'pvh') throw invalid(name, 'a PVH domain has no firmware: boot it from a kernel or a boot loader');
    if (c.type === 'pv' && boot.firmware !== 'pvgrub32' && boot.firmware !== 'pvgrub64') throw invalid(name, `PV firmware is pvgrub32 or pvgrub64, not ${JSON.stringify(boot.firmware)}`);
    if (c.type === 'hvm' && !HVM_FIRMWARE.includes(boot.firmware) && !boot.firmware.startsWith('/')) {
      throw invalid(name, `HVM firmware is ${HVM_FIRMWARE.join(', ')} or an absolute path, not ${JSON.stringify(boot.firmware)}`);
    }
  }
  if (c.serial !== undefined && c.type !== 'hvm') throw invalid(name, 'serial= is for HVM domains (PV and PVH domains have the PV console)');
  const vdevs = new Map<number, string>();
  for (const d of c.disks) {
    const problem = diskProblem(d);
    if (problem) throw invalid(name, `disk ${JSON.stringify(d.target)}: ${problem}`);
    const info = vdevInfo(d.vdev);
    const devid = 'devid' in info ? info.devid : -1;
    const other = vdevs.get(devid);
    if (other !== undefined) throw invalid(name, `disks ${other} and ${d.vdev} are the same guest device`);
    vdevs.set(devid, d.vdev);
  }
  const ifnames = new Set<string>();
  for (const v of c.vifs) {
    if (c.type !== 'hvm' && (v.model !== undefined || v.type !== undefined)) throw invalid(name, `vif${v.vifname ? ` ${v.vifname}` : ''}: type= and model= are for HVM domains`);
    if (v.vifname === undefined) continue;
    const emulated = c.type === 'hvm' && v.type !== 'vif';
    const max = emulated ? IFNAMSIZ - '-emu'.length : IFNAMSIZ;
    if (v.vifname.length > max) {
      throw invalid(name, `vifname ${JSON.stringify(v.vifname)} is longer than ${max} characters${emulated ? ' (an HVM NIC also gets a "<vifname>-emu" tap, and interface names hold 15)' : ''}`);
    }
    if (ifnames.has(v.vifname)) throw invalid(name, `two NICs are named ${v.vifname}`);
    ifnames.add(v.vifname);
  }
}

/** Renders the xl.cfg text: one key per line, in a fixed order, every string quoted and escaped. */
export function renderXlConfig(c: XlDomainConfig): string {
  checkDomain(c);
  const lines: string[] = [];
  const set = (key: string, value: string | number | readonly (string | number)[]) => lines.push(`${key} = ${xlLiteral(value, key)}`);
  set('type', c.type);
  set('name', c.name);
  if (c.uuid !== undefined) set('uuid', c.uuid.toLowerCase());
  set('memory', c.memoryMiB);
  set('maxmem', c.maxmemMiB);
  set('vcpus', c.vcpus);
  set('maxvcpus', c.maxvcpus);
  if (c.cpuWeight !== undefined) set('cpu_weight', c.cpuWeight);
  if (c.cap !== undefined) set('cap', c.cap);
  const boot = c.boot;
  if (boot.kind === 'kernel') {
    set('kernel', boot.kernel);
    if (boot.ramdisk !== undefined) set('ramdisk', boot.ramdisk);
    if (boot.cmdline !== undefined) set('cmdline', boot.cmdline);
  } else if (boot.kind === 'bootloader') {
    set('bootloader', boot.bootloader);
    if (boot.args?.length) set('bootloader_args', boot.args);
  } else {
    set('firmware', boot.firmware);
  }
  set('disk', c.disks.map(renderDiskSpec));
  set('vif', c.vifs.map(renderVifSpec));
  set('on_poweroff', c.onPoweroff);
  set('on_reboot', c.onReboot);
  set('on_crash', c.onCrash);
  if (c.serial !== undefined) set('serial', c.serial);
  if (c.vnc) {
    const vnc = c.vnc;
    if (/[,=\x00-\x1f]/.test(vnc.listen) || /[,\x00-\x1f]/.test(vnc.password ?? '')) throw invalid(c.name, 'the VNC address and password may not contain commas or control characters');
    wholeNumber(c.name, 'the VNC display', vnc.display, 0, 65535 - 5900);
    if (c.type === 'hvm') {
      set('vnc', 1);
      set('vnclisten', vnc.listen);
      if (vnc.display !== undefined) set('vncdisplay', vnc.display);
      if (vnc.unused !== undefined) set('vncunused', vnc.unused ? 1 : 0);
      if (vnc.password !== undefined) set('vncpasswd', vnc.password);
    } else {
      const spec = [`vnc=1`, `vnclisten=${vnc.listen}`];
      if (vnc.display !== undefined) spec.push(`vncdisplay=${vnc.display}`);
      if (vnc.unused !== undefined) spec.push(`vncunused=${vnc.unused ? 1 : 0}`);
      if (vnc.password !== undefined) spec.push(`vncpasswd=${vnc.password}`);
      set('vfb', [spec.join(',')]);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** What the builder needs to know about the Xen host (from `xl info`); unknown facts are not checked. */
export interface XenHostFacts {
  /** virt_caps words, e.g. ["pv", "hvm", "hap", "shadow"]. */
  virtCaps?: readonly string[];
  /** Whether an HVM device model (qemu-system-i386 for Xen) is installed in Dom0. */
  hvmDeviceModel?: boolean;
}

/** A disk besides the root disk, made by the driver; the builder gives it the next vdev. */
export interface XenExtraDisk {
  path: string;
  format: 'raw' | 'qcow2';
  readOnly?: boolean;
}

/** The driver's choices that are not in the record. */
export interface XenBuildOptions {
  type: XenGuestType;
  uuid?: string;
  /** Overrides the boot derived from the config and image (boot.kernel, the image's kernel, boot.firmware, pygrub). */
  boot?: XlBoot;
  /** The root disk: a qcow2 or raw file, or a block device (raw, phy backend); default record.rootPath (qcow2, or raw when under /dev/); null for none. */
  rootDisk?: { path: string; format: 'raw' | 'qcow2' } | null;
  extraDisks?: readonly XenExtraDisk[];
  /** Disks kept as their xl specs say (an imported domain's own), after the root and extra disks. */
  keptDisks?: readonly XlDiskSpec[];
  /** Outgoing rate of the NIC (limits.network.egress). */
  vifRate?: XlVifRate;
  /** vCPUs the domain may be given live (xl vcpu-set) without a restart; at least limits.cpu. */
  maxVcpus?: number;
  actions?: Partial<Pick<XlDomainConfig, 'onPoweroff' | 'onReboot' | 'onCrash'>>;
  /** VNC display; default for HVM: on localhost, first free display; null for none. */
  vnc?: XlVnc | null;
}

/** The domain to create and what the driver must prepare for it. */
export interface XenDomainPlan {
  xl: XlDomainConfig;
  /** Size the root disk must have (limits.disk); undefined keeps the image's size. */
  rootDiskBytes?: number;
}

/** The config keys xlConfigFor takes (the Xen backend's key list, besides user.* and the daemon's keys); devices.* disks come in as extraDisks, boot.virt as type and limits.network.egress as vifRate, from the driver. */
export const XEN_CONFIG_KEYS: readonly string[] = [
  'limits.memory', 'limits.memory.guarantee', 'limits.cpu', 'limits.cpu.weight', 'limits.cpu.cap', 'limits.disk',
  'boot.kernel', 'boot.initrd', 'boot.cmdline', 'boot.firmware', 'boot.virt', 'limits.network.egress', 'devices.*',
];

/** Memory of a domain without limits.memory, MiB. */
export const XEN_DEFAULT_MEMORY_MIB = 512;

/** Xen's credit-scheduler weight for a Hangar weight: 100 (Hangar's default) is 256 (Xen's), kept within Xen's 1-65535. */
export function xenWeight(hangarWeight: number): number {
  return Math.min(65535, Math.max(1, Math.round((hangarWeight * 256) / 100)));
}

/** Hangar's weight for a Xen weight (the inverse of xenWeight, within Hangar's 1-10000). */
export function hangarWeight(xenCpuWeight: number): number {
  return Math.min(10000, Math.max(1, Math.round((xenCpuWeight * 100) / 256)));
}

/** The vdev of disk n of a domain: xvda, xvdb, ...; an HVM root disk is hda, which its firmware can boot (xvd* disks are PV only). */
export function xenVdev(index: number, type: XenGuestType): string {
  return index === 0 && type === 'hvm' ? 'hda' : `xvd${driveLetters(index)}`;
}

/** The kernel command line of a kernel-booted domain: boot.cmdline or the image's own, the domain's console, and Hangar's identity parameters. */
export function xenKernelCmdline(record: InstanceRecord, type: XenGuestType): string {
  const console = type === 'hvm' ? 'console=ttyS0' : 'console=hvc0';
  const own = (record.config['boot.kernel'] ? record.config['boot.cmdline'] : record.imageProps.cmdline) || console;
  // PV and PVH guests have no serial port: the last console= wins in Linux, so hvc0 is appended when the base names another.
  const base = type !== 'hvm' && !own.split(/\s+/).includes(console) ? `${own} ${console}` : own;
  const nic = record.nic;
  return `${base} hangar.hostname=${record.name} hangar.ip=${nic.ipv4}/${nic.prefixLength} hangar.gw=${nic.gateway}`;
}

// boot.kernel, else the image's kernel unless boot.firmware is set, else firmware (HVM) or the disk's own grub through pygrub.
function bootFor(record: InstanceRecord, type: XenGuestType): XlBoot {
  const config = record.config;
  const kernel = config['boot.kernel'];
  const props = record.imageProps;
  const imageKernel = props.kernel && record.imagePath && config['boot.firmware'] === undefined ? `${record.imagePath.replace(/\/$/, '')}/${props.kernel}` : undefined;
  if (kernel || imageKernel) {
    const ramdisk = kernel ? config['boot.initrd'] : props.initrd ? `${record.imagePath!.replace(/\/$/, '')}/${props.initrd}` : undefined;
    return { kind: 'kernel', kernel: (kernel || imageKernel)!, ...(ramdisk ? { ramdisk } : {}), cmdline: xenKernelCmdline(record, type) };
  }
  if (type === 'hvm') return { kind: 'firmware', firmware: (config['boot.firmware'] ?? props.firmware) === 'uefi' ? 'uefi' : 'bios' };
  if (config['boot.firmware'] !== undefined) {
    throw new AppError('UNSUPPORTED', `Instance "${record.name}": boot.firmware is for HVM domains; a ${type.toUpperCase()} domain boots a kernel (boot.kernel) or the disk's grub through pygrub`);
  }
  return { kind: 'bootloader', bootloader: 'pygrub' };
}

// Refuses a guest type the host cannot run, naming what is missing.
function checkHost(name: string, type: XenGuestType, facts: XenHostFacts): void {
  const caps = facts.virtCaps;
  if (caps && type === 'pv' && !caps.includes('pv')) {
    throw new AppError('UNSUPPORTED', `Instance "${name}" needs a PV domain, and this Xen host's virt_caps (${caps.join(' ')}) lack "pv"`);
  }
  if (caps && type !== 'pv' && !caps.includes('hvm')) {
    throw new AppError('UNSUPPORTED', `Instance "${name}" needs a ${type.toUpperCase()} domain, and this Xen host's virt_caps (${caps.join(' ') || 'none'}) lack "hvm" (no VT-x/AMD-V, or it is disabled)`);
  }
  // Xen 4.15 and later name the paging modes in virt_caps; Debian's Xen has no shadow paging, so HAP is what HVM and PVH need there.
  if (caps && type !== 'pv' && !caps.includes('hap') && !caps.includes('shadow')) {
    throw new AppError('UNSUPPORTED', `Instance "${name}" needs a ${type.toUpperCase()} domain, and this Xen host's virt_caps (${caps.join(' ')}) have neither "hap" (EPT/NPT) nor "shadow" paging`);
  }
  if (type === 'hvm' && facts.hvmDeviceModel === false) {
    throw new AppError('UNSUPPORTED', `Instance "${name}" needs an HVM domain, and this Xen host has no device model (qemu-system-i386 for Xen is not installed in Dom0)`);
  }
}

const mib = (bytes: number) => Math.ceil(bytes / 1024 ** 2);

/** Builds the domain for an instance: the resource model mapped onto xl keys, its boot, disks and NIC; throws on what Xen cannot do. */
export function xlConfigFor(record: InstanceRecord, facts: XenHostFacts, opts: XenBuildOptions): XenDomainPlan {
  const name = record.name;
  const refused = unsupportedKeys(record.config, XEN_CONFIG_KEYS);
  if (refused.length) throw new AppError('INVALID_CONFIG', `Instance "${name}": the xen driver does not honour ${refused.join(', ')}`, { details: { keys: refused, driver: 'xen' } });
  checkHost(name, opts.type, facts);
  const r = resourcesOf(record.config);
  if (r.memoryMax !== undefined && r.memoryGuarantee !== undefined && r.memoryGuarantee > r.memoryMax) {
    throw new AppError('INVALID_CONFIG', `Instance "${name}": limits.memory (${record.config['limits.memory']}, xl maxmem) must not be below limits.memory.guarantee (${record.config['limits.memory.guarantee']}, xl memory)`);
  }
  const maxmemMiB = r.memoryMax !== undefined ? mib(r.memoryMax) : Math.max(XEN_DEFAULT_MEMORY_MIB, r.memoryGuarantee !== undefined ? mib(r.memoryGuarantee) : 0);
  // Without a guarantee the domain gets all its memory at start: Xen memory is dedicated, not overcommitted.
  const memoryMiB = r.memoryGuarantee !== undefined ? mib(r.memoryGuarantee) : maxmemMiB;
  const vcpus = r.cpuCount ?? 1;

  const disks: XlDiskSpec[] = [];
  const root = opts.rootDisk === undefined ? { path: record.rootPath, format: record.rootPath.startsWith('/dev/') ? ('raw' as const) : ('qcow2' as const) } : opts.rootDisk;
  const disk = (path: string, format: 'raw' | 'qcow2', readOnly: boolean): XlDiskSpec => ({
    target: path,
    format,
    vdev: xenVdev(disks.length, opts.type),
    access: readOnly ? 'ro' : 'rw',
    devtype: 'disk',
    // Raw disks (block devices, or files through a loop device) go to the kernel's blkback, which needs no QEMU in Dom0;
    // only qcow2 needs QEMU's qdisk.
    backendtype: format === 'raw' ? 'phy' : 'qdisk',
  });
  if (root) disks.push(disk(root.path, root.format, false));
  for (const d of opts.extraDisks ?? []) disks.push(disk(d.path, d.format, d.readOnly ?? false));
  disks.push(...(opts.keptDisks ?? []));

  const nic = record.nic;
  const vif: XlVifSpec = { mac: nic.mac.toLowerCase(), bridge: nic.bridge, ip: [nic.ipv4], vifname: nic.hostIfName, ...(opts.vifRate ? { rate: opts.vifRate } : {}) };
  const vnc = opts.vnc === undefined ? (opts.type === 'hvm' ? { listen: '127.0.0.1', unused: true } : undefined) : opts.vnc ?? undefined;
  const xl: XlDomainConfig = {
    type: opts.type,
    name,
    ...(opts.uuid !== undefined ? { uuid: opts.uuid } : {}),
    memoryMiB,
    maxmemMiB,
    vcpus,
    maxvcpus: Math.max(vcpus, opts.maxVcpus ?? vcpus),
    ...(r.cpuWeight !== undefined ? { cpuWeight: xenWeight(r.cpuWeight) } : {}),
    ...(r.cpuCapPct !== undefined ? { cap: Math.max(1, Math.round(r.cpuCapPct)) } : {}),
    boot: opts.boot ?? bootFor(record, opts.type),
    disks,
    vifs: [vif],
    ...XEN_DEFAULT_ACTIONS,
    ...opts.actions,
    ...(opts.type === 'hvm' ? { serial: 'pty' } : {}),
    ...(vnc ? { vnc } : {}),
  };
  checkDomain(xl);
  return { xl, ...(r.diskBytes !== undefined ? { rootDiskBytes: r.diskBytes } : {}) };
}
