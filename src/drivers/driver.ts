// The driver contract every backend (lxc, qemu, xen, openvz, fake) implements.
import type { Duplex } from 'node:stream';
import type { Host, HostProcess } from '../core/host/host.js';
import type { InstanceConfig } from '../shared/config.js';
import type { AcceleratorInfo, InstanceState, InstanceType, Technology, Usage } from '../shared/schemas.js';
import type { Accel, AccelChoice, AccelMode } from './qemu/accel.js';

/** Optional capabilities; callers check these instead of catching "not implemented". */
export interface DriverFeatures {
  freeze: boolean;
  snapshots: boolean;
  statefulStop: boolean;
  console: boolean;
  execTty: boolean;
}

/** What probe() reports; never throws for "not installed". */
export interface DriverProbe {
  available: boolean;
  version: string | null;
  reason: string | null;
}

/** Facts about the host a driver needs to validate and render. */
export interface HostFacts {
  cgroupLayout: 'v1' | 'v2' | 'hybrid';
  cpus: number;
  memoryBytes: number;
  /** The shared id map of unprivileged containers (security.idmap.isolated=false): host ids that container id 0 maps to. */
  idmap: { uidStart: number; gidStart: number; count: number };
  /** Where isolated id maps come from: block k is uidStart + k * 65536; null or absent when the host has no such range. */
  idmapIsolated?: { uidStart: number; gidStart: number; blocks: number } | null;
  /** QEMU on this host: its version, the accelerator state (KVM where guests really run under it, else TCG) and OVMF. */
  qemu?: { version: string | null; accel: VmAccelerator; /** OVMF (UEFI) files; null or absent when not installed. */ uefi?: { code: string; vars: string } | null };
  /** Swap is accounted per cgroup (v1: memory.memsw.* files exist; v2: memory.swap.max exists); undefined means unknown, treated as no. */
  swapAccounting?: boolean;
}

/** The accelerator state of a host's VMs: the KVM verdict from real test guests, and the choice per VM. */
export interface VmAccelerator {
  /** The daemon's default (HANGAR_ACCEL). */
  readonly mode: AccelMode;
  /** usable: true/false, or null while the Linux boot check is pending; with the reason in a user's words. */
  verdict(): { usable: boolean | null; reason: string };
  /** What host info shows. */
  info(): AcceleratorInfo;
  /** The choice for a VM asking for `requested` (undefined: the daemon's mode) as it stands; null while pending. */
  choose(requested: AccelMode | undefined): AccelChoice | null;
  /** The choice for a VM about to start (waits for a pending check); throws UNSUPPORTED when refused. */
  forStart(requested: AccelMode | undefined, instance: string): Promise<{ accel: Accel; reason: string }>;
  /** Runs a pending check. */
  confirm(): Promise<void>;
  /** Records that a VM faulted under KVM before its guest did anything. */
  markBroken(fault: { instance: string; reason: string; at: string }): Promise<void>;
}

/** Network attachment of an instance. */
export interface NicSpec {
  bridge: string;
  hostIfName: string;
  mac: string;
  ipv4: string;
  prefixLength: number;
  gateway: string;
}

/** Everything a driver knows about one instance. */
export interface InstanceRecord {
  name: string;
  type: InstanceType;
  driver: string;
  image: string;
  /** Validated config (limits.*, security.*, ...). */
  config: InstanceConfig;
  /** Root file system directory (containers) or disk file (VMs), owned by the storage pool. */
  rootPath: string;
  /** Per-instance directory for driver files (config, logs, sockets). */
  instanceDir: string;
  nic: NicSpec;
  /** Image properties that matter at run time (e.g. halt signal, init path). */
  imageProps: Record<string, string>;
  /** CPUs to pin to ("0,1"), chosen by the service at start to spread load; undefined = all. */
  cpuset?: string | undefined;
  /** Directory of the (read-only) image the instance was made from: VM kernels, initrds and backing disks live there. */
  imagePath?: string | undefined;
  /** An unprivileged container's own id map (isolated); undefined: the host's shared map (facts.idmap). */
  idmap?: { uidStart: number; gidStart: number; count: number } | undefined;
}

/** Paths and names that are the same for every instance of one daemon. */
export interface DriverContext {
  host: Host;
  facts: HostFacts;
  /** Prefix for host-level names, e.g. "hgr". */
  prefix: string;
  /** lxc-* -P path. */
  lxcPath: string;
  /** lxcfs mount point, or null when lxcfs is not running. */
  lxcfsDir: string | null;
  /** Receives what a backend observes by itself (e.g. QMP SHUTDOWN when a guest powers off), as it happens. */
  onBackendEvent?: (instance: string, event: BackendEvent) => void;
}

/** Something a backend saw happen to an instance without being asked (guest power-off, panic, pause...). */
export interface BackendEvent {
  /** Hangar event type, e.g. "instance-shutdown", "instance-panicked". */
  type: string;
  data?: Record<string, unknown>;
  /** One line for people (the event's message). */
  message?: string;
  /** What the backend asks the service to do next: restart the instance (e.g. a VM that must move from KVM to TCG). */
  action?: 'restart';
}

/** Observed state of an instance. */
export interface ObservedState {
  state: InstanceState;
  pid: number | null;
  /** Start time of the init process (clock ticks since boot, from /proc/PID/stat) to tell a restarted process from the same one. */
  startTime: number | null;
  /** With state error: why, in the backend's words (e.g. QEMU's internal-error message), and since when. */
  error?: { reason: string; since: string };
}

/** A command to run inside an instance. */
export interface ExecSpec {
  command: string[];
  env?: Record<string, string>;
  cwd?: string;
  tty?: { cols: number; rows: number };
}

/** Options for stop. */
export interface StopOptions {
  force: boolean;
  timeoutMs: number;
  /** Save the running state (RAM) so the next start resumes it; only where features.statefulStop. */
  stateful?: boolean;
}

/** What applyConfig did. */
export interface ConfigApplyResult {
  live: string[];
  pending: string[];
}

/** One instance bound to its driver. */
export interface InstanceHandle {
  /** Writes or rewrites the backend's own files (config); idempotent; the root volume already exists. */
  create(): Promise<void>;
  start(): Promise<void>;
  stop(opts: StopOptions): Promise<void>;
  freeze(): Promise<void>;
  unfreeze(): Promise<void>;
  /** Removes the backend's own files; the instance must be stopped. */
  delete(): Promise<void>;
  state(): Promise<ObservedState>;
  /** Applies a changed config to a running instance where possible. */
  applyConfig(next: InstanceConfig, prev: InstanceConfig): Promise<ConfigApplyResult>;
  exec(spec: ExecSpec): HostProcess;
  /** Attaches to the console (a pty process whose stdin/stdout is the console). */
  attachConsole(size: { cols: number; rows: number }): HostProcess;
  /** Opens the graphical console (VNC/RFB byte stream), where the backend has one. */
  openGraphicalConsole?(): Promise<Duplex>;
  /** Runs one command on the backend's own monitor (QMP for QEMU) and answers its result; for diagnosis and what Hangar does not model. */
  monitor?(command: string, args?: Record<string, unknown>): Promise<unknown>;
  /** Backend facts of this instance for `info` (label → value), e.g. a VM's machine type and boot path. */
  details?(): Promise<Record<string, string>>;
  /** Path of the persistent console log. */
  consoleLogPath(): string;
  usage(): Promise<Usage>;
  /** Backend snapshots (when features.snapshots): e.g. qcow2 internal snapshots, with RAM when stateful. */
  snapshots?: {
    /** Takes a snapshot; stateful also saves RAM and device state (the instance must be running). */
    create(name: string, opts: { stateful: boolean }): Promise<void>;
    /** Restores one: a stateful snapshot needs (and leaves) the instance running; a disk snapshot needs it stopped. */
    restore(name: string, opts: { stateful: boolean }): Promise<void>;
    delete(name: string): Promise<void>;
  };
}

/** A backend. */
export interface Driver {
  readonly name: string;
  readonly type: InstanceType;
  readonly features: DriverFeatures;
  /** What running an instance on this backend implies. */
  readonly technology: Technology;
  probe(host: Host): Promise<DriverProbe>;
  /** Pure check of a config for this backend: returns problems (keys it cannot honour, values out of range). */
  validate(config: InstanceConfig, facts: HostFacts): string[];
  load(record: InstanceRecord, ctx: DriverContext): InstanceHandle;
}
