// Wire types of the Hangar API as zod schemas; TypeScript types are inferred from them.
import { z } from 'zod';
import { ErrorCodes } from './errors.js';
import { STREAM_SIGNALS } from './exec-frames.js';

/** Output formats every list command accepts. */
export const FormatSchema = z.enum(['table', 'json', 'yaml', 'csv']);

/** A Hangar name: 1-63 of [a-z0-9-], not starting or ending with "-", not all digits. */
export const NameSchema = z.string().min(1).max(63).regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/).refine((s) => !/^[0-9]+$/.test(s), 'must not be all digits');

/** Instance configuration map. */
export const ConfigSchema = z.record(z.string(), z.string());

/** Instance kind. */
export const InstanceTypeSchema = z.enum(['container', 'vm']);

/** Lifecycle states an instance can be in. */
export const InstanceStateSchema = z.enum(['creating', 'stopped', 'starting', 'running', 'stopping', 'frozen', 'error', 'unknown']);

/** What the technology behind an instance implies, shown per instance. */
export const TechnologySchema = z.strictObject({
  kernel: z.enum(['shared', 'own']),
  memory: z.enum(['burstable', 'dedicated']),
  isolation: z.string(),
});

/** Usage counters reported by `info`. */
export const UsageSchema = z.strictObject({
  cpuTimeNs: z.number().optional(),
  memoryBytes: z.number().optional(),
  memoryPeakBytes: z.number().optional(),
  processes: z.number().optional(),
  diskUsedBytes: z.number().optional(),
  rxBytes: z.number().optional(),
  txBytes: z.number().optional(),
});

/** What a backend can do; callers check these instead of catching "not implemented". */
export const DriverFeaturesSchema = z.strictObject({
  freeze: z.boolean(),
  snapshots: z.boolean(),
  statefulStop: z.boolean(),
  console: z.boolean(),
  execTty: z.boolean(),
  /** Copy while the instance runs. */
  liveCopy: z.boolean(),
  /** A graphical console (VNC). */
  graphicalConsole: z.boolean(),
  /** A backend monitor (QMP). */
  monitor: z.boolean(),
});

/** An instance as the API returns it. */
export const InstanceSchema = z.strictObject({
  name: NameSchema,
  /** The host it lives on: "local" (the daemon's machine) or a remote host's name. */
  host: z.string(),
  type: InstanceTypeSchema,
  driver: z.string(),
  state: InstanceStateSchema,
  image: z.string(),
  ipv4: z.string().nullable(),
  mac: z.string().nullable(),
  config: ConfigSchema,
  pendingConfig: ConfigSchema,
  pid: z.number().nullable(),
  createdAt: z.string(),
  technology: TechnologySchema,
  /** What its backend can do. */
  features: DriverFeaturesSchema,
  usage: UsageSchema.optional(),
  /** What the backend reports about this instance (`info` only), e.g. a VM's machine type, boot path and firmware. */
  details: z.record(z.string(), z.string()).optional(),
  /** With state error: why (e.g. QEMU's message after a guest fault) and since when; with state unknown: why its state cannot be known (its host is unreachable). */
  error: z.strictObject({ reason: z.string(), since: z.string() }).optional(),
});

/** Body of POST /1.0/instances (launch or create). */
export const CreateInstanceRequestSchema = z.strictObject({
  name: z.string(),
  image: z.string(),
  type: InstanceTypeSchema.optional(),
  /** The backend; default: the first driver of the type in HANGAR_DRIVERS. */
  driver: z.string().optional(),
  config: ConfigSchema.optional(),
  ipv4: z.string().optional(),
  start: z.boolean().optional(),
  /** The host to create it on (default "local"). */
  host: z.string().optional(),
});

/** Body of PUT /1.0/instances/{name}/state. */
export const StateChangeRequestSchema = z.strictObject({
  /** mount/umount: an OpenVZ CT's private area at its root on the host, the CT stopped (vzctl mount/umount). */
  action: z.enum(['start', 'stop', 'restart', 'freeze', 'unfreeze', 'mount', 'umount']),
  force: z.boolean().optional(),
  timeout: z.number().int().positive().max(86400).optional(),
  /** stop only: save the RAM to disk so the next start resumes exactly there (VMs). */
  stateful: z.boolean().optional(),
});

/** One beancounter of a container, as /proc/user_beancounters shows it: what it holds now and at most, its barrier and limit (null: unlimited), and how often the limit refused. */
export const BeancounterSchema = z.strictObject({
  resource: z.string(),
  /** The unit of held/maxheld/barrier/limit: pages (4 KiB), bytes or items. */
  unit: z.enum(['pages', 'bytes', 'items']),
  held: z.number(),
  maxheld: z.number().nullable(),
  barrier: z.number().nullable(),
  limit: z.number().nullable(),
  failcnt: z.number().nullable(),
});

/** Body of PATCH /1.0/instances/{name}/config. */
export const ConfigPatchRequestSchema = z.strictObject({ set: ConfigSchema.optional(), unset: z.array(z.string()).optional() });

/** Result of a config change: what applied live and what waits for a restart. */
export const ConfigChangeResultSchema = z.strictObject({ live: z.array(z.string()), pending: z.array(z.string()) });

/** Body of POST /1.0/instances/{name}/copy. */
export const CopyRequestSchema = z.strictObject({ name: z.string(), ipv4: z.string().optional() });

/** Body of POST /1.0/instances/{name}/move: the host to move it to (offline: a running one is stopped there and started here). */
export const MoveRequestSchema = z.strictObject({ host: z.string() });

/** Body of POST /1.0/instances/{name}/snapshots. */
export const SnapshotRequestSchema = z.strictObject({ name: z.string(), /** Also save RAM and device state (VMs). */ stateful: z.boolean().optional() });

/** A snapshot of an instance. */
export const SnapshotSchema = z.strictObject({ name: z.string(), createdAt: z.string(), stateful: z.boolean() });

// A NUL byte can reach no command line, environment or path: refused here instead of failing deep in exec.
const noNul = (what: string) => z.string().refine((s) => !s.includes('\0'), `${what} must not contain a NUL byte`);
const termSize = z.number().int().min(1).max(10_000);

/** The signals a client may send to a running exec, by name. */
export const ExecSignalSchema = z.enum(Object.keys(STREAM_SIGNALS) as [keyof typeof STREAM_SIGNALS, ...Array<keyof typeof STREAM_SIGNALS>]);

/** Body of POST /1.0/instances/{name}/exec: starts a command; its streams flow over the returned websocket. */
export const ExecRequestSchema = z.strictObject({
  command: z.array(noNul('a command argument')).min(1),
  env: z.record(noNul('an environment variable name').refine((k) => k !== '' && !k.includes('='), 'an environment variable name must be non-empty and without "="'), noNul('an environment value')).optional(),
  cwd: noNul('the working directory').optional(),
  tty: z.boolean().optional(),
  cols: termSize.optional(),
  rows: termSize.optional(),
  /** Sent to the command's process group when the client's connection ends (default SIGKILL; another is followed by SIGKILL after a grace). */
  disconnectSignal: ExecSignalSchema.optional(),
});

/** A command running in an instance through exec, as GET /1.0/instances/{name}/execs lists it. */
export const ExecInfoSchema = z.strictObject({
  id: z.string(),
  command: z.array(z.string()),
  tty: z.boolean(),
  startedAt: z.string(),
  disconnectSignal: ExecSignalSchema,
});

/** Body of POST /1.0/instances/{name}/execs/{id}/signal. */
export const ExecSignalRequestSchema = z.strictObject({ signal: ExecSignalSchema });

/** First frame of the console websocket: the terminal size. */
export const ConsoleSizeSchema = z.strictObject({ cols: termSize.optional(), rows: termSize.optional() });

/** Body of POST /1.0/instances/{name}/exec: a non-interactive command with its whole stdin (base64); output comes back as a framed stream. */
export const ExecRunRequestSchema = ExecRequestSchema.omit({ tty: true, cols: true, rows: true }).extend({ stdin: z.string().optional() });

/** Body of POST /1.0/instances/{name}/monitor: one command for the backend's own monitor (QMP for QEMU VMs), as virsh qemu-monitor-command or qm monitor. */
export const MonitorRequestSchema = z.strictObject({
  command: z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/, 'a monitor command name such as "query-status"'),
  arguments: z.record(z.string(), z.unknown()).optional(),
});

/** Reply of the monitor: what the backend returned. */
export const MonitorResponseSchema = z.strictObject({ return: z.unknown() });

/** An image in the local store. */
export const ImageSchema = z.strictObject({
  alias: z.string(),
  type: InstanceTypeSchema,
  fingerprint: z.string(),
  description: z.string(),
  sizeBytes: z.number(),
  createdAt: z.string(),
  source: z.string(),
  usedBy: z.array(z.string()),
});

/** Body of POST /1.0/images (build a built-in image). */
export const ImageBuildRequestSchema = z.strictObject({
  kind: z.enum(['busybox', 'debian']),
  release: z.string().optional(),
  alias: z.string().optional(),
  vm: z.boolean().optional(),
});

/** Body of POST /1.0/images/import (a file already on the daemon's host): a rootfs tarball, or with vm a qcow2/raw disk. */
export const ImageImportRequestSchema = z.strictObject({ path: z.string(), alias: z.string(), vm: z.boolean().optional() });

/** Operation status. */
export const OperationStatusSchema = z.enum(['pending', 'running', 'success', 'failure']);

/** A long-running action. */
export const OperationSchema = z.strictObject({
  id: z.string(),
  description: z.string(),
  status: OperationStatusSchema,
  resources: z.array(z.string()),
  progress: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  error: z
    .strictObject({ code: z.enum(ErrorCodes), message: z.string(), causes: z.array(z.string()), details: z.record(z.string(), z.unknown()).optional() })
    .nullable(),
  result: z.unknown().optional(),
});

/** Every event type the daemon emits: lifecycle, snapshots, images, operations, the storage pool, and what VM monitors report. */
export const EventTypeSchema = z.enum([
  'instance-created', 'instance-deleted', 'instance-starting', 'instance-started', 'instance-stopping', 'instance-stopped',
  'instance-restarted', 'instance-restart-failed', 'instance-frozen', 'instance-unfrozen', 'instance-config-changed',
  'instance-mounted', 'instance-unmounted', 'instance-moved',
  'instance-drift', 'instance-error', 'instance-accel-fallback',
  'instance-snapshot-created', 'instance-snapshot-deleted', 'instance-snapshot-restored',
  'instance-shutdown', 'instance-reset', 'instance-paused', 'instance-resumed', 'instance-panicked', 'instance-balloon-changed',
  'image-created', 'image-deleted',
  'operation-created', 'operation-progress', 'operation-completed',
  'pool-state-changed',
  'host-added', 'host-removed', 'host-trusted', 'host-unreachable', 'host-reachable',
]);

/** What GET /1.0 answers. */
export const ServerInfoSchema = z.strictObject({ apiVersion: z.string(), serverVersion: z.string(), pid: z.number().int() });

/** An event on the websocket. */
export const EventSchema = z.strictObject({
  type: EventTypeSchema,
  time: z.string(),
  instance: z.string().optional(),
  operation: z.string().optional(),
  message: z.string().optional(),
  data: z.record(z.string(), z.unknown()).optional(),
});

/** Errors on the wire. */
export const ErrorResponseSchema = z.strictObject({
  error: z.strictObject({ code: z.enum(ErrorCodes), message: z.string(), causes: z.array(z.string()), details: z.record(z.string(), z.unknown()).optional() }),
});

/** One detected virtualization layer, named as virt-what names it. */
export const VirtFactSchema = z.strictObject({ fact: z.string(), evidence: z.array(z.string()) });

/** Which accelerator VMs get on this host and why (KVM only where real test guests ran under it). */
export const AcceleratorInfoSchema = z.strictObject({
  /** HANGAR_ACCEL: auto, kvm or tcg. */
  mode: z.enum(['auto', 'kvm', 'tcg']),
  /** What a VM without boot.accel gets: kvm or tcg; null while the check runs or when HANGAR_ACCEL=kvm cannot be honoured. */
  default: z.enum(['kvm', 'tcg']).nullable(),
  reason: z.string(),
  /** KVM runs guests here: true or false, null while the check runs. */
  kvmUsable: z.boolean().nullable(),
  checking: z.boolean(),
  checkedAt: z.string(),
});

/** A driver on this host: available or why not, what it can do, and its own facts. */
export const DriverInfoSchema = z.strictObject({
  name: z.string(),
  type: InstanceTypeSchema,
  available: z.boolean(),
  version: z.string().nullable(),
  reason: z.string().nullable(),
  /** The default driver of its type. */
  default: z.boolean(),
  features: DriverFeaturesSchema,
  /** Its facts on this host, label → value. */
  details: z.record(z.string(), z.string()),
  /** VM drivers: which accelerator VMs get here and why. */
  accelerator: AcceleratorInfoSchema.optional(),
});

/** What `host info` returns. */
export const HostInfoSchema = z.strictObject({
  hostname: z.string(),
  kernel: z.string(),
  os: z.string(),
  cpus: z.number(),
  memoryBytes: z.number(),
  cgroupLayout: z.enum(['v1', 'v2', 'hybrid']),
  storage: z.strictObject({
    driver: z.string(), path: z.string(), sizeBytes: z.number().nullable(), usedBytes: z.number().nullable(),
    /** ok; degraded (see warnings); read-only (the pool stopped taking writes); unmounted. */
    state: z.enum(['ok', 'degraded', 'read-only', 'unmounted']),
    warnings: z.array(z.string()),
  }),
  network: z.strictObject({ bridge: z.string(), subnet: z.string(), gateway: z.string() }),
  drivers: z.array(DriverInfoSchema),
  cpuVirtFlags: z.array(z.string()),
  kvm: z.strictObject({ present: z.boolean(), usable: z.boolean(), reason: z.string().nullable() }),
  runsIn: z.array(VirtFactSchema),
});

/** Whether a host can be used: up, connecting (first contact, a reconnection or its drivers opening), or down (why in reason). */
export const HostStateSchema = z.enum(['up', 'connecting', 'down']);

/** A host instances run on: the daemon's own machine ("local") or a remote one reached over SSH, with its pinned key and state. */
export const HostSchema = z.strictObject({
  name: z.string(),
  /** True for the daemon's own machine. */
  local: z.boolean(),
  /** ssh://USER@ADDRESS[:PORT]; null for the local host (so are address, port, user, identityFile, keyType, fingerprint and addedAt). */
  url: z.string().nullable(),
  address: z.string().nullable(),
  port: z.number().int().nullable(),
  user: z.string().nullable(),
  /** The private key Hangar logs in with (a file on the daemon's machine). */
  identityFile: z.string().nullable(),
  /** The pinned host key: its type and SHA256 fingerprint, as ssh-keygen -l prints it. */
  keyType: z.string().nullable(),
  fingerprint: z.string().nullable(),
  addedAt: z.string().nullable(),
  state: HostStateSchema,
  /** Why it is not up (connecting or down), else null. */
  reason: z.string().nullable(),
  /** Since when it is in this state. */
  since: z.string(),
  /** How many instances live there. */
  instances: z.number().int(),
  /** Its facts once reached: hostname, OS, kernel, CPUs, memory; null before the first contact. */
  facts: z.strictObject({ hostname: z.string(), os: z.string(), kernel: z.string(), cpus: z.number(), memoryBytes: z.number() }).nullable(),
  /** Where instance volumes live there; null before the first contact. */
  storage: z.strictObject({ driver: z.string(), path: z.string() }).nullable(),
  /** The network instances get there, or why there is none (launches there are then refused). */
  network: z.strictObject({
    bridge: z.string(), subnet: z.string(), gateway: z.string(), problem: z.string().nullable(),
    /** managed: Hangar's bridge with DHCP and NAT, replicated on the host; host-bridge: the host's own bridge, static addresses. */
    mode: z.enum(['managed', 'host-bridge']),
  }).nullable(),
  /** Its drivers as opened there: available or why not, their facts (empty before the first contact). */
  drivers: z.array(DriverInfoSchema),
});

/** Body of POST /1.0/hosts: a remote host to add; its key is pinned on first contact (or must be fingerprint when given). */
export const AddHostRequestSchema = z.strictObject({
  name: z.string(),
  /** ssh://USER@ADDRESS[:PORT]. */
  url: z.string(),
  /** Private key to log in with, a file on the daemon's machine (default: root's ~/.ssh/id_ed25519, else id_rsa). */
  identityFile: z.string().min(1).max(4096).optional(),
  /** The host key fingerprint expected (SHA256:...): the host is refused when it presents another. */
  fingerprint: z.string().optional(),
  /** A bridge the host already has (a Dom0's xenbr0): instances attach to it with static addresses from its subnet, instead of the managed network replicated there. */
  bridge: z.string().optional(),
});

/** Body of POST /1.0/hosts/{host}/trust: pins the key the host presents now (only when it is fingerprint, if given). */
export const TrustHostRequestSchema = z.strictObject({ fingerprint: z.string().optional() });

/** A disk of an xl.cfg as xl reads its disk spec (canonical form). */
export const XlDiskSpecSchema = z.strictObject({
  target: z.string(),
  format: z.string(),
  vdev: z.string(),
  access: z.enum(['ro', 'rw']),
  devtype: z.enum(['disk', 'cdrom']),
  backendtype: z.string().optional(),
  backend: z.string().optional(),
  script: z.string().optional(),
  specification: z.enum(['xen', 'virtio']).optional(),
  directIoSafe: z.literal(true).optional(),
  discard: z.boolean().optional(),
  trusted: z.boolean().optional(),
  grantUsage: z.boolean().optional(),
  colo: z.boolean().optional(),
  coloHost: z.string().optional(),
  coloPort: z.number().optional(),
  coloExport: z.string().optional(),
  activeDisk: z.string().optional(),
  hiddenDisk: z.string().optional(),
});

/** A NIC of an xl.cfg as xl reads its vif spec (canonical form). */
export const XlVifSpecSchema = z.strictObject({
  mac: z.string().optional(),
  ip: z.array(z.string()).optional(),
  bridge: z.string().optional(),
  type: z.enum(['ioemu', 'vif']).optional(),
  model: z.string().optional(),
  vifname: z.string().optional(),
  script: z.string().optional(),
  backend: z.string().optional(),
  rate: z.strictObject({ bytesPerSecond: z.number(), intervalUs: z.number() }).optional(),
  gatewaydev: z.string().optional(),
  forwarddev: z.string().optional(),
  mtu: z.number().optional(),
  devid: z.number().optional(),
  vlan: z.string().optional(),
  accel: z.string().optional(),
  trusted: z.boolean().optional(),
  colo: z.record(z.string(), z.string()).optional(),
});

/** What Hangar makes of an existing Xen domain's xl.cfg: its keys, disks and NICs, and every setting it does not keep, with why. */
export const XenImportSchema = z.strictObject({
  name: z.string(),
  type: z.literal('vm'),
  driver: z.literal('xen'),
  guestType: z.enum(['pv', 'pvh', 'hvm']),
  uuid: z.string().optional(),
  config: ConfigSchema,
  disks: z.array(z.strictObject({ index: z.number().int(), spec: z.string(), disk: XlDiskSpecSchema, use: z.enum(['root', 'extra', 'ignored']), note: z.string() })),
  nics: z.array(z.strictObject({
    index: z.number().int(), spec: z.string(), vif: XlVifSpecSchema, use: z.enum(['primary', 'ignored']), mac: z.string().optional(), ipv4: z.string().optional(), note: z.string(),
  })),
  /** Settings that became Hangar keys or fields (to: which; empty when nothing is needed). */
  translated: z.array(z.strictObject({ key: z.string(), value: z.string(), to: z.array(z.string()), note: z.string().optional() })),
  /** Settings Hangar does not keep, each with the reason. */
  untranslated: z.array(z.strictObject({ key: z.string(), value: z.string(), reason: z.string() })),
});

/** What Hangar makes of an OpenVZ container's CTID.conf: its keys and addresses, every beancounter pair read, and every setting it does not keep, with why. */
export const OpenvzImportSchema = z.strictObject({
  ctid: z.number().int(),
  name: z.string(),
  type: z.literal('container'),
  driver: z.literal('openvz'),
  config: ConfigSchema,
  /** The venet addresses (IP_ADDRESS), in order; the first is the instance's address. */
  addresses: z.array(z.string()),
  hostname: z.string().optional(),
  ostemplate: z.string().optional(),
  /** VE_PRIVATE and VE_ROOT with $VEID put in. */
  private: z.string().optional(),
  root: z.string().optional(),
  /** Every resource pair the file sets, as read (barrier and limit in the parameter's unit; "unlimited" as such). */
  ubc: z.array(z.strictObject({ param: z.string(), unit: z.enum(['pages', 'bytes', 'kib', 'items']), barrier: z.string(), limit: z.string() })),
  translated: z.array(z.strictObject({ key: z.string(), value: z.string(), to: z.array(z.string()), note: z.string().optional() })),
  untranslated: z.array(z.strictObject({ key: z.string(), value: z.string(), reason: z.string() })),
});

/** What Hangar makes of a CT already on an OpenVZ 7 node (read there with prlctl and vzlist): its keys and addresses, and every setting it does not keep, with why. */
export const Openvz7ImportSchema = z.strictObject({
  /** The CT's CTID and UUID on the node, and its name there. */
  ctid: z.string(),
  uuid: z.string().nullable(),
  ctName: z.string(),
  /** The instance name: the one asked for, else the CT's name when it is a valid one, else ctCTID. */
  name: z.string(),
  /** The node it is on. */
  host: z.string(),
  type: z.literal('container'),
  driver: z.literal('openvz7'),
  /** Its state now, as prlctl tells it. */
  state: InstanceStateSchema,
  config: ConfigSchema,
  /** Its venet IPv4 addresses, in order; the first is the instance's address, the others are openvz.ipadd. */
  addresses: z.array(z.string()),
  translated: z.array(z.strictObject({ key: z.string(), value: z.string(), to: z.array(z.string()), note: z.string().optional() })),
  untranslated: z.array(z.strictObject({ key: z.string(), value: z.string(), reason: z.string() })),
});

/** What POST /1.0/imports/translate answers: the translation of the kind asked for (driver tells which). */
export const ImportTranslationSchema = z.union([XenImportSchema, OpenvzImportSchema, Openvz7ImportSchema]);

/** An import from a foreign config file's text: an xl.cfg of a Xen domain, or an OpenVZ container's CTID.conf. */
const FileImportTranslateSchema = z.strictObject({
  /** What the text is: an xl.cfg of a Xen domain, or an OpenVZ container's CTID.conf. */
  kind: z.enum(['xen', 'openvz']),
  /** The file's content (the CLI reads the file where it runs). */
  text: z.string().max(512 * 1024),
  /** The file's name, for error positions ("web.cfg:3:7: ..."). */
  source: z.string().min(1).max(4096).optional(),
  /** The instance name to use instead of the one derived from the domain's name. */
  name: z.string().optional(),
  /** openvz: the CTID, when the file's name is not CTID.conf. */
  ctid: z.number().int().optional(),
});

/** An import of a CT already on an OpenVZ 7 node: read there (no file text), so even a translation needs the node. */
const Openvz7ImportRequestSchema = z.strictObject({
  kind: z.literal('openvz7'),
  /** The node (a Hangar host whose openvz7 driver is available). */
  host: z.string().min(1),
  /** The CT: its CTID, or its name (or UUID) on that node. */
  ctid: z.string().min(1).max(255),
  /** The instance name to use instead of the one derived from the CT's name. */
  name: z.string().optional(),
});

/** Body of POST /1.0/imports/translate: a foreign domain to translate (nothing is created): a config file's text, or a CT of an OpenVZ 7 node. */
export const ImportTranslateRequestSchema = z.discriminatedUnion('kind', [FileImportTranslateSchema, Openvz7ImportRequestSchema]);

/** Body of POST /1.0/instances/import: translate a foreign domain and create the instance from it on a host. */
export const ImportInstanceRequestSchema = z.discriminatedUnion('kind', [
  FileImportTranslateSchema.extend({
    /** The host the domain lives on (default "local"); its xen driver must be enabled and available. */
    host: z.string().optional(),
    /** openvz: the CT's private area (a simfs directory) on that host; default the conf's VE_PRIVATE. */
    private: z.string().min(1).max(4096).optional(),
  }),
  Openvz7ImportRequestSchema,
]);

export type Format = z.infer<typeof FormatSchema>;
export type InstanceType = z.infer<typeof InstanceTypeSchema>;
export type InstanceState = z.infer<typeof InstanceStateSchema>;
export type Technology = z.infer<typeof TechnologySchema>;
export type Usage = z.infer<typeof UsageSchema>;
export type Instance = z.infer<typeof InstanceSchema>;
export type CreateInstanceRequest = z.infer<typeof CreateInstanceRequestSchema>;
export type StateChangeRequest = z.infer<typeof StateChangeRequestSchema>;
export type ConfigPatchRequest = z.infer<typeof ConfigPatchRequestSchema>;
export type ConfigChangeResult = z.infer<typeof ConfigChangeResultSchema>;
export type Beancounter = z.infer<typeof BeancounterSchema>;
export type CopyRequest = z.infer<typeof CopyRequestSchema>;
export type MoveRequest = z.infer<typeof MoveRequestSchema>;
export type Snapshot = z.infer<typeof SnapshotSchema>;
export type ExecRequest = z.infer<typeof ExecRequestSchema>;
export type MonitorRequest = z.infer<typeof MonitorRequestSchema>;
export type MonitorResponse = z.infer<typeof MonitorResponseSchema>;
export type ExecRunRequest = z.infer<typeof ExecRunRequestSchema>;
export type ExecSignal = z.infer<typeof ExecSignalSchema>;
export type ExecInfo = z.infer<typeof ExecInfoSchema>;
export type Image = z.infer<typeof ImageSchema>;
export type ImageBuildRequest = z.infer<typeof ImageBuildRequestSchema>;
export type ImageImportRequest = z.infer<typeof ImageImportRequestSchema>;
export type Operation = z.infer<typeof OperationSchema>;
export type HangarEvent = z.infer<typeof EventSchema>;
export type EventType = z.infer<typeof EventTypeSchema>;
export type ServerInfo = z.infer<typeof ServerInfoSchema>;
export type DriverInfo = z.infer<typeof DriverInfoSchema>;
export type DriverFeatures = z.infer<typeof DriverFeaturesSchema>;
export type VirtFact = z.infer<typeof VirtFactSchema>;
export type HostInfo = z.infer<typeof HostInfoSchema>;
export type AcceleratorInfo = z.infer<typeof AcceleratorInfoSchema>;
export type HostState = z.infer<typeof HostStateSchema>;
export type HostRecord = z.infer<typeof HostSchema>;
export type AddHostRequest = z.infer<typeof AddHostRequestSchema>;
export type TrustHostRequest = z.infer<typeof TrustHostRequestSchema>;
export type XenImportTranslation = z.infer<typeof XenImportSchema>;
export type OpenvzImportTranslation = z.infer<typeof OpenvzImportSchema>;
export type Openvz7ImportTranslation = z.infer<typeof Openvz7ImportSchema>;
export type ImportTranslation = z.infer<typeof ImportTranslationSchema>;
export type ImportTranslateRequest = z.infer<typeof ImportTranslateRequestSchema>;
export type ImportInstanceRequest = z.infer<typeof ImportInstanceRequestSchema>;
