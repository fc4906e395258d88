// The driver contract every backend (lxc, qemu, xen, openvz, fake) implements: a description, opened once per host.
import type { Duplex } from 'node:stream';
import type { Host, HostProcess } from '../host/host.js';
import type { InstanceConfig } from '../shared/config.js';
import type { HostFacts } from '../host/facts.js';
import type { AcceleratorInfo, Beancounter, DriverFeatures, EventType, InstanceState, InstanceType, Technology, Usage } from '../shared/schemas.js';

/** Optional capabilities (on the wire, so clients can grey out what a backend cannot do). */
export type { DriverFeatures } from '../shared/schemas.js';

/** What probing a driver on a host found; never throws for "not installed". */
export interface DriverProbe {
  available: boolean;
  version: string | null;
  reason: string | null;
}

export type { HostFacts } from '../host/facts.js';

/** What the daemon provides to drivers that need it (drivers cannot reach core themselves). */
export interface DriverServices {
  /** A Linux kernel and an initramfs whose init prints `marker` and powers off: a test guest (QEMU's accelerator check). */
  linuxTestGuest?: () => Promise<{ kernel: string; initrd: string; cmdline: string; marker: string }>;
}

/** Where and how a driver runs on one host. */
export interface DriverEnv {
  host: Host;
  facts: HostFacts;
  /** Prefix for host-level names, e.g. "hgr". */
  prefix: string;
  /** The daemon's state directory on that host; a driver keeps its own files in a directory named after it there. */
  dataDir: string;
  cacheDir: string;
  runDir: string;
  /** The daemon's environment: HANGAR_* settings a driver reads for itself (QEMU: HANGAR_ACCEL). */
  settings: Readonly<Record<string, string | undefined>>;
  services: DriverServices;
  /** Receives what a backend observes by itself (a guest powering off, a fault), as it happens. */
  onBackendEvent?: (instance: string, event: BackendEvent) => void;
  log: (msg: string) => void;
}

/** A backend as registered: what it is, which config keys it honours, and how it opens on a host. */
export interface Driver {
  readonly name: string;
  readonly type: InstanceType;
  readonly features: DriverFeatures;
  /** What running an instance on this backend implies (before any host facts). */
  readonly technology: Technology;
  /** Config keys it honours besides user.*: exact keys or "prefix.*"; every other key is refused for it. */
  readonly keys: readonly string[];
  /**
   * How the instance's root volume is used: a file tree (the pool limits it with a quota and snapshots it; container
   * runtimes mount it through the set-uid-capable roots mount) or disk images the driver sizes and snapshots itself;
   * 'backend': the backend keeps the instance's disk itself (an OpenVZ 7 node's ploop), so Hangar makes no root volume
   * and copies no image to the host, and a launch's image names the backend's own template, which the driver checks.
   */
  readonly storage: 'tree' | 'image' | 'backend';
  /** True when state().pid is a process of the host whose end is the instance's end (a container's init, a VM's QEMU): the core then watches it. */
  readonly pidIsInit?: boolean;
  /** Opens it on a host: probes, and keeps what it learns there (its facts). Never throws for "not installed". */
  open(env: DriverEnv): Promise<HostDriver>;
}

/** A driver opened on one host: its facts, and the instances it runs there. */
export interface HostDriver {
  readonly driver: Driver;
  readonly probe: DriverProbe;
  /** What host info shows about it on this host, label → value (QEMU: the accelerator, OVMF). */
  details(): Record<string, string>;
  /** Which accelerator VMs get here and why (VM drivers). */
  accelerator?(): AcceleratorInfo;
  /** What running an instance with this config implies here (QEMU: KVM or software emulation). */
  technology(config: InstanceConfig): Technology;
  /** Pure check of a config for this backend on this host: the problems (values out of range, host limits). */
  validate(config: InstanceConfig): string[];
  /** Whether an instance with this config runs in an id map of its own (isolated), the host's shared one, or none. */
  idmap?(config: InstanceConfig): 'isolated' | 'shared' | 'none';
  load(record: InstanceRecord): InstanceHandle;
  /** Work for after the daemon is up (QEMU: the Linux accelerator check). */
  background?(): Promise<void>;
  /**
   * Calls onEnd once the instance whose state().pid is id ends, seen by the backend's own event rather than a host
   * process (Xen: xenstore's @releaseDomain for a domid); answers the cancel, or undefined where it cannot watch.
   */
  watchEnd?(id: number, onEnd: () => void): (() => void) | undefined;
  /** The instance names the backend holds host resources for outside an instance's own files (a VM's cgroup): what reconciliation checks. */
  leftovers?(): Promise<string[]>;
  /** Removes those of one name (the core calls it under the name's lock, for a name it has no running instance of); answers what went, one line each. */
  clearLeftovers?(name: string): Promise<string[]>;
  /** Reads a domain of this backend that Hangar did not make, by the backend's id or name, in Hangar's terms (an import's source); NOT_FOUND when there is none. */
  inspectForeign?(ref: string): Promise<ForeignInstance>;
  /**
   * Where its instances' memory guarantees come from when that is not the host's own RAM (Xen: the hypervisor's memory
   * outside Dom0): the bytes they may guarantee together. The host's reserve for its own processes does not apply.
   */
  memoryCapacityBytes?(): number | undefined;
}

/** A domain a backend has that Hangar did not make (what an import adopts), in Hangar's terms. */
export interface ForeignInstance {
  /** The backend's own id of it (an OpenVZ CTID). */
  id: string;
  /** Its UUID on the backend, where it has one: an import checks that the domain it adopts is still the one read. */
  uuid: string | null;
  /** Its name on the backend (not necessarily a valid instance name). */
  name: string;
  state: InstanceState;
  /** Its settings as Hangar config keys (its id among them where the backend has a key for it). */
  config: InstanceConfig;
  /** Its IPv4 addresses in order: the first is the instance's own, the others are in config too (openvz.ipadd). */
  addresses: string[];
  /** The settings read that became keys or fields (to: which; empty when nothing is needed). */
  translated: { key: string; value: string; to: string[]; note?: string }[];
  /** The settings Hangar does not keep, each with why (they stay as they are on the backend). */
  untranslated: { key: string; value: string; reason: string }[];
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
  /** The host it runs on ("local": the daemon's own machine). */
  host: string;
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
  /** Where an adopted instance came from (an import's record: its own disks and identity); null or undefined for one Hangar made. */
  origin?: Record<string, unknown> | null | undefined;
}

/** Something a backend saw happen to an instance without being asked (guest power-off, panic, pause...). */
export interface BackendEvent {
  /** Hangar event type, e.g. "instance-shutdown", "instance-panicked" (the closed enum of src/shared). */
  type: EventType;
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
  /** Once, for a root volume just made (a launch or a copy): gives the tree its identity (hostname, machine-id). */
  initRoot?(): Promise<void>;
  /**
   * Starts it; `known` is its state as the caller read it just before, under the instance's lock (a driver may skip its
   * own read). A driver that reads the state of what it started may answer it, so the caller need not read it again.
   */
  start(known?: ObservedState): Promise<ObservedState | void>;
  stop(opts: StopOptions): Promise<void>;
  freeze(): Promise<void>;
  unfreeze(): Promise<void>;
  /** Removes the backend's own files; the instance must be stopped. */
  delete(): Promise<void>;
  /** Drops only what Hangar keeps of an adopted domain, leaving the domain itself as it was (an import's undo); without it the undo is delete(). */
  forget?(): Promise<void>;
  state(): Promise<ObservedState>;
  /** Applies a changed config to a running instance where possible. */
  applyConfig(next: InstanceConfig, prev: InstanceConfig): Promise<ConfigApplyResult>;
  exec(spec: ExecSpec): HostProcess;
  /** Ends a command its guest agent still runs for an exec whose daemon ended (the agent's own record says it has not exited); true when it did. */
  endGuestProcess?(pid: number): Promise<boolean>;
  /** Attaches to the console (a pty process whose stdin/stdout is the console). */
  attachConsole(size: { cols: number; rows: number }): HostProcess;
  /** Opens the graphical console (VNC/RFB byte stream), where the backend has one. */
  openGraphicalConsole?(): Promise<Duplex>;
  /** Runs one command on the backend's own monitor (QMP for QEMU) and answers its result; for diagnosis and what Hangar does not model. */
  monitor?(command: string, args?: Record<string, unknown>): Promise<unknown>;
  /** Mounts a stopped container's private area at its root on the host (OpenVZ's vzctl mount); umount undoes it. */
  mount?(): Promise<void>;
  umount?(): Promise<void>;
  /** The container's beancounters (OpenVZ's /proc/user_beancounters), from its cgroups. */
  beancounters?(): Promise<Beancounter[]>;
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
    /** The snapshots the backend holds now (reconciliation compares them with Hangar's rows). */
    list(): Promise<{ name: string; stateful: boolean }[]>;
  };
}
