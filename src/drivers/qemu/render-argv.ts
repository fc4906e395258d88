// Pure rendering of a VM instance record and host facts into the qemu-system-x86_64 argv that runs it.
import { posix } from 'node:path';
import { resourcesOf, type InstanceConfig } from '../../shared/config.js';
import { AppError } from '../../shared/errors.js';
import { parseSize } from '../../shared/units.js';
import type { InstanceRecord } from '../driver.js';
import { splitQemuVersion } from './parse.js';
import { CPU_MODEL, type Accel } from './accel.js';

/** The emulator binary (argv[0]) for x86-64 guests. */
export const QEMU_BINARY = 'qemu-system-x86_64';

/** Memory of a VM without limits.memory. */
export const DEFAULT_MEMORY_BYTES = 512 * 1024 ** 2;

/** vCPUs of a VM without limits.cpu. */
export const DEFAULT_CPUS = 1;

/** Every seccomp restriction QEMU offers; usable when QEMU is started already detached (no -daemonize). */
export const SANDBOX_FULL = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';

/** The sandbox compatible with -daemonize: measured on 7.2, its fork() dies of SIGSYS under spawn=deny and its setsid() under elevateprivileges=deny. */
export const SANDBOX_DAEMONIZE = 'on,obsolete=deny,resourcecontrol=deny';

/** File names of the VM's files inside its instance directory. */
export const QEMU_FILES = {
  qmp: 'qmp.sock',
  console: 'console.sock',
  consoleLog: 'console.log',
  qga: 'qga.sock',
  vnc: 'vnc.sock',
  pid: 'qemu.pid',
  /** QEMU's own messages once it runs detached (its stderr): start-up errors, KVM internal errors. */
  log: 'qemu.log',
} as const;

/** Block node names QMP addresses: each disk's qcow2/raw node, the throttle filter above it (the root of its graph, which the device uses), and the group. */
export const QEMU_NODES = {
  root: 'root',
  extra: (index: number) => `disk${index + 1}`,
  /** The node of the extra disk devices.<name> (names are at most 20 characters: the node names stay within QEMU's 31). */
  device: (name: string) => `dev-${name}`,
  top: (node: string) => `${node}-io`,
  /** Block nodes from the bottom up: the file, the format node and the throttle filter. */
  chain: (node: string) => [`${node}-file`, node, `${node}-io`],
  /** The guest device of a disk node. */
  deviceId: (node: string) => `${node}-dev`,
  throttleGroup: 'io0',
} as const;

/** PCIe root ports a Q35 VM gets for disks plugged in while it runs (hp0, hp1, ...); i440FX VMs get none. */
export const HOTPLUG_PORTS = 4;

/** The id of hot-plug root port i. */
export const hotplugPort = (i: number) => `hp${i}`;

/** True when a machine type is a Q35 one (PCIe: hot-plug goes through root ports). */
export function isQ35(machine: string): boolean {
  return machine === 'q35' || machine.startsWith('pc-q35-');
}

/** What the renderer needs to know about the host's QEMU. */
export interface QemuHostFacts {
  /** `--version` of the binary ("7.2.22"); null when unknown (then the unversioned machine alias is used). */
  version: string | null;
  /** The accelerator chosen for this VM (QemuAccel). */
  accel: Accel;
}

/** UEFI firmware as two pflash images: shared read-only code and the instance's own copy of the variable store. */
export interface QemuFirmware {
  code: string;
  vars: string;
}

/** How the guest boots: a kernel QEMU loads directly (the busybox image), or the root disk's boot loader (Debian images). */
export type QemuBoot =
  | { kind: 'kernel'; kernel: string; initrd?: string; cmdline?: string }
  | { kind: 'disk'; /** UEFI (OVMF); absent means SeaBIOS. */ firmware?: QemuFirmware };

/** A disk beyond the root disk. */
export interface QemuDisk {
  path: string;
  format: 'qcow2' | 'raw';
  /** Guest-visible serial (/dev/disk/by-id/virtio-<serial>); at most 20 characters. */
  serial?: string;
  readOnly?: boolean;
  /** Node name (default disk<N> by position). */
  node?: string;
  /** PCIe port the device sits on (a hot-plug port it was plugged into while running, kept so saved states still match). */
  bus?: string;
}

/** Everything renderQemuArgv needs. */
export interface QemuRenderInput {
  record: InstanceRecord;
  facts: QemuHostFacts;
  boot: QemuBoot;
  /** Root disk (qcow2 overlay): undefined means record.rootPath, null means none (an initramfs-only guest). */
  rootDisk?: string | null;
  extraDisks?: readonly QemuDisk[];
  /** Machine type; defaults to the versioned type of the image's family (qemuMachineType). */
  machine?: string;
  uuid?: string;
  /** Start waiting for a migration stream (stateful restore): `-incoming defer`, then QMP migrate-incoming. */
  incoming?: boolean;
  /** QEMU detaches itself once initialised (default true); false when the caller starts it detached and wants SANDBOX_FULL. */
  daemonize?: boolean;
  binary?: string;
}

/** Disk I/O limits from limits.disk.read / limits.disk.write, per second. */
export interface QemuIoLimits {
  bpsRead?: number;
  bpsWrite?: number;
  iopsRead?: number;
  iopsWrite?: number;
}

/** Paths of the VM's files inside instanceDir. */
export function qemuPaths(instanceDir: string): Record<keyof typeof QEMU_FILES, string> {
  const out = {} as Record<keyof typeof QEMU_FILES, string>;
  for (const [k, f] of Object.entries(QEMU_FILES)) out[k as keyof typeof QEMU_FILES] = posix.join(instanceDir, f);
  return out;
}

/** Escapes a value for a comma-separated QEMU option string (a comma is written twice); refuses control characters. */
export function qemuOptEscape(value: string, what: string): string {
  return plain(value, what).replaceAll(',', ',,');
}

// A value passed as its own argument: no escaping, but a line break or NUL is never legitimate there either.
function plain(value: string, what: string): string {
  if (/[\x00-\x1f\x7f]/.test(value)) throw new AppError('INVALID_CONFIG', `Invalid ${what} ${JSON.stringify(value)}: control characters (line breaks) are not allowed in a QEMU argument`);
  return value;
}

/** Machine families an image may ask for (its `machine` property): i440FX + PIIX ("pc") or Q35 + ICH9 ("q35"). */
export type MachineFamily = 'pc' | 'q35';

/** The image's machine family: i440FX when its `machine` property asks for it ("pc"/"i440fx", for old guests), else Q35 (PCIe, disk hot-plug). */
export function machineFamilyOf(props: Record<string, string>): MachineFamily {
  return props.machine === 'pc' || props.machine === 'i440fx' ? 'pc' : 'q35';
}

/** The versioned machine type for a QEMU version ("pc-q35-7.2" for "7.2.22"), so a saved state restores into the same ABI; the alias when the version is unknown. */
export function qemuMachineType(version: string | null, family: MachineFamily = 'pc'): string {
  const v = splitQemuVersion(version);
  if (!v) return family;
  return `${family === 'q35' ? 'pc-q35' : 'pc-i440fx'}-${v.major}.${v.minor}`;
}

/** The throttle-group limits object for QMP/-object: every field present, 0 meaning unlimited, so a live change also clears. */
export function throttleLimits(io: QemuIoLimits): Record<string, number> {
  return { 'bps-read': io.bpsRead ?? 0, 'bps-write': io.bpsWrite ?? 0, 'iops-read': io.iopsRead ?? 0, 'iops-write': io.iopsWrite ?? 0 };
}

/** Parses one disk limit: "100iops" (operations per second) or a size per second ("50MiB", "50MiB/s"). */
export function parseIoLimit(value: string, key: string): { bps: number } | { iops: number } {
  const iops = /^\s*(\d+)\s*iops\s*$/i.exec(value);
  if (iops) {
    const n = Number(iops[1]);
    if (!Number.isSafeInteger(n) || n <= 0) throw new AppError('INVALID_CONFIG', `Invalid ${key} ${JSON.stringify(value)}: must be greater than zero`);
    return { iops: n };
  }
  try {
    return { bps: parseSize(value.replace(/\/s\s*$/i, ''), key) };
  } catch (e) {
    throw new AppError('INVALID_CONFIG', `Invalid ${key} ${JSON.stringify(value)}: expected a rate such as "50MiB" (bytes per second) or "100iops"`, { cause: e });
  }
}

/** The disk limits of a config (limits.disk.read, limits.disk.write). */
export function ioLimitsOf(config: InstanceConfig): QemuIoLimits {
  const out: QemuIoLimits = {};
  const read = config['limits.disk.read'];
  const write = config['limits.disk.write'];
  if (read) {
    const l = parseIoLimit(read, 'limits.disk.read');
    if ('bps' in l) out.bpsRead = l.bps;
    else out.iopsRead = l.iops;
  }
  if (write) {
    const l = parseIoLimit(write, 'limits.disk.write');
    if ('bps' in l) out.bpsWrite = l.bps;
    else out.iopsWrite = l.iops;
  }
  return out;
}

// -m without a unit means MiB, and the RAM backend must match it exactly: both are written in whole MiB, rounded up.
const mib = (bytes: number) => `${Math.ceil(bytes / 1024 ** 2)}M`;

/** Renders the full argv (argv[0] is the binary), one option value per element, in a stable order. */
export function renderQemuArgv(input: QemuRenderInput): string[] {
  const { record, facts, boot } = input;
  const esc = qemuOptEscape;
  const paths = qemuPaths(plain(record.instanceDir, 'instance directory'));
  const daemonize = input.daemonize ?? true;
  const argv: string[] = [input.binary ?? QEMU_BINARY];
  const opt = (flag: string, value?: string) => (value === undefined ? argv.push(flag) : argv.push(flag, value));

  const r = resourcesOf(record.config);
  const memory = r.memoryMax ?? DEFAULT_MEMORY_BYTES;
  const cpus = r.cpuCount ?? DEFAULT_CPUS;
  // A guarantee of all the memory means the host must never take any back: allocate it up front instead of ballooning.
  const prealloc = r.memoryGuarantee !== undefined && r.memoryGuarantee >= memory;

  opt('-name', `guest=${esc(record.name, 'instance name')},debug-threads=on`);
  if (input.uuid) opt('-uuid', plain(input.uuid, 'uuid'));
  opt('-msg', 'timestamp=on');
  opt('-nodefaults');
  opt('-no-user-config');
  opt('-sandbox', daemonize ? SANDBOX_DAEMONIZE : SANDBOX_FULL);

  const machineType = input.machine ?? qemuMachineType(facts.version, machineFamilyOf(record.imageProps));
  const machine = [esc(machineType, 'machine type'), 'vmport=off', 'dump-guest-core=off'];
  if (prealloc) machine.push('memory-backend=ram0');
  if (boot.kind === 'disk' && boot.firmware) machine.push('pflash0=fw-code', 'pflash1=fw-vars');
  opt('-machine', machine.join(','));
  opt('-accel', facts.accel);
  // -cpu max costs ~0.3 s more boot under TCG than qemu64; under KVM the host model is both fastest and most capable.
  opt('-cpu', CPU_MODEL[facts.accel]);
  opt('-smp', `cpus=${cpus},sockets=1,cores=${cpus},threads=1`);
  opt('-m', mib(memory));
  if (prealloc) opt('-object', `memory-backend-ram,id=ram0,size=${mib(memory)},prealloc=on`);

  if (boot.kind === 'disk' && boot.firmware) {
    opt('-blockdev', `driver=file,node-name=fw-code-file,filename=${esc(boot.firmware.code, 'firmware path')},read-only=on`);
    opt('-blockdev', 'driver=raw,node-name=fw-code,file=fw-code-file,read-only=on');
    opt('-blockdev', `driver=file,node-name=fw-vars-file,filename=${esc(boot.firmware.vars, 'firmware variables path')}`);
    opt('-blockdev', 'driver=raw,node-name=fw-vars,file=fw-vars-file');
  }
  if (boot.kind === 'kernel') {
    // -kernel/-initrd/-append are taken verbatim (no option-string parsing), so they need no comma escaping.
    opt('-kernel', plain(boot.kernel, 'kernel path'));
    if (boot.initrd) opt('-initrd', plain(boot.initrd, 'initrd path'));
    if (boot.cmdline) opt('-append', plain(boot.cmdline, 'kernel command line'));
  }
  opt('-rtc', 'base=utc');

  // The framebuffer is only reachable through the VNC socket; no window, whatever the host has installed.
  opt('-display', 'none');
  opt('-vnc', `unix:${esc(paths.vnc, 'VNC socket path')}`);
  opt('-device', 'VGA');

  opt('-chardev', `socket,id=qmp,path=${esc(paths.qmp, 'QMP socket path')},server=on,wait=off`);
  opt('-mon', 'chardev=qmp,mode=control');
  // The serial console is a socket for `hangar console` whose chardev also appends everything to the log, so the two never compete.
  opt('-chardev', `socket,id=serial0,path=${esc(paths.console, 'console socket path')},server=on,wait=off,logfile=${esc(paths.consoleLog, 'console log path')},logappend=on`);
  opt('-serial', 'chardev:serial0');
  opt('-device', 'virtio-serial-pci,id=vser0');
  opt('-chardev', `socket,id=qga0,path=${esc(paths.qga, 'guest agent socket path')},server=on,wait=off`);
  opt('-device', 'virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0');
  opt('-device', 'pvpanic');

  // Every disk sits below one throttle filter of one group (the limits are the instance's, not each disk's), present even
  // without limits so limits.disk.read/write can change live (qom-set) on any running VM. The JSON form avoids x-* properties.
  opt('-object', JSON.stringify({ 'qom-type': 'throttle-group', id: QEMU_NODES.throttleGroup, limits: throttleLimits(ioLimitsOf(record.config)) }));
  // Empty PCIe root ports to plug disks into while the VM runs (Q35 has no hot-plug on its root bus).
  if (isQ35(machineType)) {
    for (let i = 0; i < HOTPLUG_PORTS; i++) opt('-device', `pcie-root-port,id=${hotplugPort(i)},chassis=${i + 1}`);
  }
  const disk = (node: string, path: string, format: 'qcow2' | 'raw', extra: { serial?: string | undefined; readOnly?: boolean | undefined; bootindex?: number; bus?: string | undefined }) => {
    const ro = extra.readOnly ? ',read-only=on' : '';
    opt('-blockdev', `driver=file,node-name=${node}-file,filename=${esc(path, 'disk path')},discard=unmap${ro}`);
    opt('-blockdev', `driver=${format},node-name=${node},file=${node}-file,discard=unmap${ro}`);
    const top = QEMU_NODES.top(node);
    opt('-blockdev', `driver=throttle,node-name=${top},throttle-group=${QEMU_NODES.throttleGroup},file=${node}${ro}`);
    const dev = [`virtio-blk-pci,id=${QEMU_NODES.deviceId(node)},drive=${top}`];
    if (extra.bus) dev.push(`bus=${esc(extra.bus, 'PCI bus')}`);
    if (extra.serial) dev.push(`serial=${esc(extra.serial, 'disk serial')}`);
    if (extra.bootindex !== undefined) dev.push(`bootindex=${extra.bootindex}`);
    opt('-device', dev.join(','));
  };
  const rootDisk = input.rootDisk === undefined ? record.rootPath : input.rootDisk;
  if (rootDisk !== null) disk(QEMU_NODES.root, rootDisk, 'qcow2', boot.kind === 'disk' ? { bootindex: 1 } : {});
  (input.extraDisks ?? []).forEach((d, i) => disk(d.node ?? QEMU_NODES.extra(i), d.path, d.format, { serial: d.serial, readOnly: d.readOnly, bus: d.bus }));

  // The tap device exists already (created and bridged by the driver): QEMU runs no scripts, which spawn=deny would forbid anyway.
  opt('-netdev', `tap,id=net0,ifname=${esc(record.nic.hostIfName, 'tap interface name')},script=no,downscript=no`);
  opt('-device', `virtio-net-pci,id=net0-dev,netdev=net0,mac=${esc(record.nic.mac, 'MAC address')}`);
  // Early-boot entropy: without it a Debian guest can stall waiting for the CRNG.
  opt('-object', 'rng-random,id=rng0,filename=/dev/urandom');
  opt('-device', 'virtio-rng-pci,rng=rng0');
  if (!prealloc) opt('-device', 'virtio-balloon-pci,id=balloon0,deflate-on-oom=on,free-page-reporting=on');

  opt('-pidfile', paths.pid);
  // With -D a daemonized QEMU sends its stderr to this file instead of /dev/null: what it says after detaching is kept.
  opt('-D', paths.log);
  if (input.incoming) opt('-incoming', 'defer');
  if (daemonize) opt('-daemonize');
  return argv;
}
