// One Xen domain as the driver's modules see it: its name and UUID, its files on the Xen host, its guest type, and how xl's view of it maps to Hangar's states.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import type { InstanceConfig } from '../../shared/config.js';
import type { InstanceState } from '../../shared/schemas.js';
import type { DriverEnv, DriverProbe, InstanceRecord, ObservedState } from '../driver.js';
import type { ConsoleTracker } from './console.js';
import type { XlDiskSpec } from './disk-spec.js';
import type { XenImageSource } from './images.js';
import type { XlListEntry } from './parse.js';
import type { XenFacts } from './probe.js';
import type { XenGuestType } from './render-config.js';
import type { Xl } from './xl.js';

/** What the Xen driver keeps per host: the daemon's environment there, what its probe found, xl, the image source, domain start times. */
export interface XenHost {
  env: DriverEnv;
  probe: DriverProbe;
  /** Null when the host is no usable Dom0. */
  facts: XenFacts | null;
  xl: Xl;
  /** Where record.imagePath lives when it is not the Xen host (the daemon's machine, the Xen host over SSH); undefined: on the Xen host. */
  imageSource?: XenImageSource | undefined;
  /** Start time of each domain seen, by domid (read once from xenstore, then answered from here). */
  startTimes: Map<number, number>;
  /** The consoles attached through this driver, so that the next one waits for xenconsole's lock. */
  consoles: ConsoleTracker;
}

/** xenconsoled's log of a guest's console (`xenconsoled --log=guest`, its default log directory). */
export const XEN_CONSOLE_LOG_DIR = '/var/log/xen/console';
/** Where xl writes its per-domain logs. */
export const XEN_LOG_DIR = '/var/log/xen';

/** The files of a domain on the Xen host: its disks in its volume, the rest in its instance directory. */
export interface XenFiles {
  /** The rendered xl.cfg `xl create` read. */
  cfg: string;
  /** The root disk (a raw copy of the image's disk), in the instance's volume, so that the pool copies it with the instance. */
  rootDisk: string;
  /** RAM and config saved by stop --stateful; the next start restores it. */
  save: string;
  /** What the running domain was created with (XenRun). */
  run: string;
  consoleLog: string;
  /** Logs xl and QEMU write for the domain, the current one first, with their rotated copies (removed with it). */
  logs: string[];
}

/** What a domain was created with: the ceilings live changes must stay within. */
export interface XenRun {
  domid: number;
  type: XenGuestType;
  maxmemMiB: number;
  maxvcpus: number;
  startedAt: string;
}

/** The domain's name on the Xen host: the instance name itself (Hangar names are unique across a daemon's hosts), so `xl list` and `xl console` by hand show it. */
export function domainName(record: InstanceRecord): string {
  return record.name;
}

/** The domain's UUID, derived from the daemon's prefix, host and instance name: the same at every start, so a domain of that name Hangar did not create is told apart. */
export function domainUuid(prefix: string, record: InstanceRecord): string {
  const h = createHash('sha256').update(`hangar-xen\0${prefix}\0${record.host}\0${record.name}`).digest('hex');
  // RFC 4122 layout: version 5 (name-based), variant 10xx.
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Where the files of the domain of record live. */
export function xenFiles(record: InstanceRecord): XenFiles {
  const dir = (f: string) => posix.join(record.instanceDir, f);
  const name = domainName(record);
  return {
    cfg: dir('domain.cfg'),
    rootDisk: posix.join(record.rootPath, 'root.raw'),
    save: dir('state.save'),
    run: dir('run.json'),
    consoleLog: posix.join(XEN_CONSOLE_LOG_DIR, `guest-${name}.log`),
    // libxl rotates both at each create, keeping .1 to .10 (libxl_create_logfile).
    logs: [`xl-${name}.log`, `qemu-dm-${name}.log`].flatMap((f) => [f, ...Array.from({ length: 10 }, (_, i) => `${f}.${i + 1}`)]).map((f) => posix.join(XEN_LOG_DIR, f)),
  };
}

/** The raw file of the extra disk devices.<name>, beside the root disk. */
export function extraDiskPath(record: InstanceRecord, name: string): string {
  return posix.join(record.rootPath, `disk-${name}.raw`);
}

/** The guest type of a config on a host: boot.virt, else PVH where virt_caps have hvm and hap (or shadow), else PV. */
export function guestTypeOf(config: InstanceConfig, facts: XenFacts | null): XenGuestType {
  const asked = config['boot.virt'];
  if (asked === 'pv' || asked === 'pvh' || asked === 'hvm') return asked;
  const caps = facts?.info.virtCaps ?? [];
  return caps.includes('hvm') && (caps.includes('hap') || caps.includes('shadow')) ? 'pvh' : 'pv';
}

/** What an imported domain keeps of its own: its UUID (null when its xl.cfg named none) and the disks it uses, as xl specs. */
export interface XenImported {
  uuid: string | null;
  disks: XlDiskSpec[];
}

/** The imported identity and disks of a record adopted by `hangar import xen`, or null for a domain Hangar made. */
export function importedOf(record: InstanceRecord): XenImported | null {
  const o = record.origin;
  if (!o || o.kind !== 'xen-import') return null;
  const disks = Array.isArray(o.disks) ? (o.disks as Array<{ use?: unknown; disk?: unknown }>) : [];
  return {
    uuid: typeof o.uuid === 'string' ? o.uuid : null,
    // Ignored disks (a CD-ROM without media, ...) were listed as such by the import.
    disks: disks.filter((d) => (d.use === 'root' || d.use === 'extra') && typeof d.disk === 'object' && d.disk !== null).map((d) => d.disk as XlDiskSpec),
  };
}

/** How one row of `xl list` maps to an instance state (pid: the domid; startTime: given by the caller); a null uuid accepts the domain's own (an import whose xl.cfg named none). */
export function xenState(entry: XlListEntry | null, uuid: string | null, host: string, startTime: number | null, now: () => string = () => new Date().toISOString()): ObservedState {
  if (!entry) return { state: 'stopped', pid: null, startTime: null };
  const pid = entry.domid;
  if (uuid !== null && entry.uuid !== undefined && entry.uuid !== uuid) {
    return { state: 'error', pid, startTime, error: { reason: `a domain named "${entry.name}" that Hangar did not create runs on host ${host} (uuid ${entry.uuid}, not ${uuid})`, since: now() } };
  }
  const f = entry.state;
  let state: InstanceState;
  if (f.shutdown && f.reason === 'crash') {
    // on_crash=destroy removes a crashed domain at once; one still listed was preserved for a look at it.
    return { state: 'error', pid, startTime, error: { reason: 'the guest crashed (xl list shows it shut down with reason crash)', since: now() } };
  }
  // Shut down (powering off, rebooting, suspended by a save) or dying: on its way out, xl's daemon or a save ends it.
  if (f.dying || f.shutdown) state = 'stopping';
  else if (f.paused) state = 'frozen';
  else state = 'running';
  return { state, pid, startTime };
}
