// Instance configuration keys (the resource model shared by every backend), their parsing and validation.
import { AppError } from './errors.js';
import { parseCpuCap, parsePositiveInt, parseSize } from './units.js';

/** A flat instance configuration: key -> string value, as `-c key=value` gives it. */
export type InstanceConfig = Record<string, string>;

/** The resource model every backend maps onto its own knobs. */
export interface Resources {
  memoryMax?: number;
  memoryGuarantee?: number;
  memorySwap?: number;
  cpuCount?: number;
  cpuWeight?: number;
  cpuCapPct?: number;
  processes?: number;
  diskBytes?: number;
}

interface KeySpec {
  description: string;
  /** Throws on a bad value; returns the normalised string. */
  check: (value: string, key: string) => string;
}

const bool = (v: string, key: string): string => {
  if (v === 'true' || v === 'false') return v;
  throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: expected true or false`);
};
const size = (v: string, key: string): string => (parseSize(v, key), v);
const sizeOrZero = (v: string, key: string): string => (v.trim() === '0' ? '0' : size(v, key));
const int = (v: string, key: string): string => String(parsePositiveInt(v, key));
const ioLimit = (v: string, key: string): string => {
  const m = /^\s*(\d+)\s*iops\s*$/i.exec(v);
  if (m) return String(parsePositiveInt(m[1]!, key)) + 'iops';
  return (parseSize(v.replace(/\/s$/, ''), key), v);
};

const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** A space-separated list of distinct IPv4 addresses (venet addresses), normalised to single spaces. */
const ipv4List = (v: string, key: string): string => {
  const list = v.split(/[\s,]+/).filter(Boolean);
  for (const a of list) if (!ipv4.test(a)) throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: ${JSON.stringify(a)} is not an IPv4 address`);
  const dup = list.find((a, i) => list.indexOf(a) !== i);
  if (dup) throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: ${dup} is named twice`);
  return list.join(' ');
};
/** A host name (RFC 1123 labels, dots allowed) as vzctl --hostname takes it. */
const hostName = (v: string, key: string): string => {
  if (v.length > 253 || !/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(v)) {
    throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: expected a host name (letters, digits, - and dots)`);
  }
  return v;
};
const domainList = (v: string, key: string): string => v.split(/[\s,]+/).filter(Boolean).map((d) => hostName(d, key)).join(' ');
const ctid = (v: string, key: string): string => {
  if (!/^\d{1,10}$/.test(v) || Number(v) < 1 || Number(v) > 2147483647) throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: a CTID is a number from 1 to 2147483647`);
  return String(Number(v));
};
// A network interface name inside a container: what Linux takes (at most 15 characters, no / or blanks), not venet0 or lo.
const ifName = (v: string, key: string): string => {
  if (!/^[A-Za-z][A-Za-z0-9_.-]{0,14}$/.test(v) || v === 'venet0' || v === 'lo') {
    throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: expected an interface name such as eth0 (a letter, then up to 14 letters, digits, _ . -; not venet0 or lo)`);
  }
  return v;
};
const plainText = (v: string, key: string): string => {
  if (/[\x00-\x1f\x7f]/.test(v)) throw new AppError('INVALID_CONFIG', `Invalid value for ${key}: control characters are not allowed`);
  return v;
};

const hostPath = (v: string, key: string): string => {
  if (!v.startsWith('/') || v.split('/').includes('..') || /[\x00-\x1f\x7f]/.test(v)) {
    throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: expected an absolute path on the host, without ".." or control characters`);
  }
  return v;
};
const cmdline = (v: string, key: string): string => {
  if (/[\x00-\x1f\x7f]/.test(v)) throw new AppError('INVALID_CONFIG', `Invalid value for ${key}: control characters (line breaks) are not allowed in a kernel command line`);
  return v.trim();
};

/** Every known configuration key and what it means. */
export const CONFIG_KEYS: Record<string, KeySpec> = {
  'limits.memory': { description: 'hard memory maximum', check: size },
  'limits.memory.guarantee': { description: 'reserved memory minimum; may burst above it up to limits.memory', check: size },
  'limits.memory.swap': { description: 'swap the instance may use on top of limits.memory (0 for none)', check: sizeOrZero },
  'limits.cpu': { description: 'number of CPUs the instance may use', check: int },
  'limits.cpu.weight': {
    description: 'relative CPU share (1-10000, default 100)',
    check: (v, key) => {
      const n = parsePositiveInt(v, key);
      if (n > 10000) throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: must be between 1 and 10000`);
      return String(n);
    },
  },
  'limits.cpu.cap': { description: 'CPU time cap as a percentage of one CPU, e.g. 150%', check: (v) => (parseCpuCap(v), v) },
  'limits.processes': { description: 'maximum number of processes', check: int },
  'limits.disk': { description: 'root disk size', check: size },
  'limits.disk.inodes': { description: 'OpenVZ: inodes of the image-backed root file system (vzctl --diskinodes)', check: int },
  'limits.disk.read': { description: 'VM disk read limit per second: a size ("50MiB") or operations ("200iops")', check: ioLimit },
  'limits.disk.write': { description: 'VM disk write limit per second: a size ("50MiB") or operations ("200iops")', check: ioLimit },
  'cloud-init.user-data': { description: 'cloud-init user-data for VMs whose image runs cloud-init (#cloud-config, a script, ...)', check: (v) => v },
  'cloud-init.ssh-keys': { description: 'SSH public keys for the default user of a cloud-init VM, one per line', check: (v) => v },
  'boot.firmware': {
    description: 'VM firmware that boots the disk: bios (SeaBIOS) or uefi (OVMF, with a variable store per instance); set, it also replaces an image\'s direct kernel boot',
    check: (v, key) => {
      if (v === 'bios' || v === 'uefi') return v;
      throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: expected bios or uefi`);
    },
  },
  'boot.accel': {
    description: 'VM accelerator: auto (KVM where real guests run under it, else software emulation), kvm (refused where KVM does not work) or tcg (software emulation, always works)',
    check: (v, key) => {
      if (v === 'auto' || v === 'kvm' || v === 'tcg') return v;
      throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: expected auto, kvm or tcg`);
    },
  },
  'boot.kernel': { description: 'VM: boot this kernel file of the host directly (libvirt-style direct kernel boot) instead of the image\'s boot', check: hostPath },
  'boot.initrd': { description: 'VM: initrd for boot.kernel (none when unset)', check: hostPath },
  'boot.cmdline': { description: 'VM: kernel command line for boot.kernel (default "console=ttyS0"); Hangar appends the hangar.* identity parameters', check: cmdline },
  'boot.virt': {
    description: 'Xen domain type: pv (paravirtualized), pvh (hardware-assisted, no device model) or hvm (hardware-assisted with an emulated platform); default pvh where the host\'s virt_caps allow it, else pv',
    check: (v, key) => {
      if (v === 'pv' || v === 'pvh' || v === 'hvm') return v;
      throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: expected pv, pvh or hvm`);
    },
  },
  'limits.network.egress': { description: 'outgoing bandwidth of the instance\'s NIC per second, e.g. 10MiB or 100MB/s (Xen: the vif rate)', check: (v, key) => (parseSize(v.replace(/\/s\s*$/, ''), key), v) },
  'security.privileged': { description: 'run the container without a user namespace', check: bool },
  'security.devices.fuse': { description: 'container: allow /dev/fuse (FUSE file systems inside)', check: bool },
  'security.devices.tun': { description: 'container: allow /dev/net/tun (VPNs and tap/tun devices inside)', check: bool },
  'security.idmap.isolated': { description: 'give the unprivileged container an id map of its own (default true); false shares one map with every such container', check: bool },
  'boot.autostart': { description: 'start the instance when hangard starts', check: bool },
  'boot.autorestart': {
    description: 'on-failure: start a container again when it stops outside Hangar (its init ended), after 1, 2, 4, 8, 16 s; at most 5 times in 10 minutes; no (default): record it stopped',
    check: (v, key) => {
      if (v === 'no' || v === 'on-failure') return v;
      throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(v)} for ${key}: expected no or on-failure`);
    },
  },
  'openvz.ctid': { description: 'OpenVZ: the container\'s number (CTID), unique on the daemon; vzctl and vzlist address it by this', check: ctid },
  'openvz.ipadd': { description: 'OpenVZ: more venet addresses besides the instance\'s own, space-separated, each routed to it as a /32', check: ipv4List },
  'openvz.netif': { description: 'OpenVZ: a veth on Hangar\'s bridge, named so inside (vzctl --netif_add eth0), like an LXC container\'s NIC: it carries the instance\'s own address, and venet0 keeps openvz.ipadd\'s', check: ifName },
  'openvz.hostname': { description: 'OpenVZ: the container\'s host name (default: the instance name)', check: hostName },
  'openvz.nameserver': { description: 'OpenVZ: resolvers written to the container\'s /etc/resolv.conf at start, space-separated', check: ipv4List },
  'openvz.searchdomain': { description: 'OpenVZ: search domains written to the container\'s /etc/resolv.conf at start', check: domainList },
  'openvz.ostemplate': { description: 'OpenVZ: the OS template the container was made from (informational, as OSTEMPLATE)', check: plainText },
};

/** Keys every backend takes: they belong to the daemon, not to a technology. */
export const DAEMON_KEYS: readonly string[] = ['boot.autostart', 'boot.autorestart'];

/** True when key is in a backend's key list: an exact key, or "prefix.*" for the keys below prefix. */
export function keyAllowed(key: string, keys: readonly string[]): boolean {
  return keys.some((k) => (k.endsWith('.*') ? key.startsWith(k.slice(0, -1)) : k === key));
}

/** The keys of a config a backend with this key list does not honour (user.* and the daemon's keys are always fine). */
export function unsupportedKeys(config: InstanceConfig, keys: readonly string[]): string[] {
  return Object.keys(config).filter((k) => !isUserKey(k) && !DAEMON_KEYS.includes(k) && !keyAllowed(k, keys)).sort();
}

/** True for keys users may set freely (user.*). */
function isUserKey(key: string): boolean {
  return /^user\.[a-z0-9][a-z0-9._-]*$/.test(key);
}

/** Parses ["k=v", ...] into a config map, rejecting malformed pairs. */
export function parseConfigPairs(pairs: readonly string[]): InstanceConfig {
  const out: InstanceConfig = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new AppError('INVALID_CONFIG', `Invalid config ${JSON.stringify(pair)}: expected key=value`);
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return out;
}

const DEVICE_KEY = /^devices\.([a-z0-9][a-z0-9-]{0,19})\.(type|size)$/;

/** One extra disk of an instance. */
export interface DiskDevice { name: string; type: 'disk'; sizeBytes: number }

/** Extra devices declared in a config (devices.<name>.type=disk, devices.<name>.size=10GiB). */
export function devicesOf(config: InstanceConfig): DiskDevice[] {
  const names = new Set<string>();
  for (const key of Object.keys(config)) {
    const m = DEVICE_KEY.exec(key);
    if (m) names.add(m[1]!);
  }
  return [...names].sort().map((name) => {
    const type = config[`devices.${name}.type`];
    const size = config[`devices.${name}.size`];
    if (type !== 'disk') throw new AppError('INVALID_CONFIG', `Device "${name}": devices.${name}.type must be "disk"`);
    if (!size) throw new AppError('INVALID_CONFIG', `Device "${name}": devices.${name}.size is required`);
    return { name, type: 'disk' as const, sizeBytes: parseSize(size, `devices.${name}.size`) };
  });
}

/** Validates and normalises a config map: unknown keys and bad values are refused; cross-key rules are checked. */
export function validateConfig(config: InstanceConfig): InstanceConfig {
  const out = validateConfigValues(config);
  devicesOf(out);
  const r = resourcesOf(out);
  if (r.memoryGuarantee !== undefined && r.memoryMax !== undefined && r.memoryGuarantee > r.memoryMax) {
    throw new AppError('INVALID_CONFIG', `limits.memory.guarantee (${out['limits.memory.guarantee']}) must not exceed limits.memory (${out['limits.memory']})`);
  }
  return out;
}

/** Checks each key and value on its own (for a partial change, whose cross-key rules only the merged config can answer). */
export function validateConfigValues(config: InstanceConfig): InstanceConfig {
  const out: InstanceConfig = {};
  for (const [key, value] of Object.entries(config)) {
    if (isUserKey(key)) { out[key] = value; continue; }
    const dev = DEVICE_KEY.exec(key);
    if (dev) {
      if (dev[2] === 'type' && value !== 'disk') throw new AppError('INVALID_CONFIG', `Invalid value ${JSON.stringify(value)} for ${key}: the only device type is "disk"`);
      if (dev[2] === 'size') parseSize(value, key);
      out[key] = value;
      continue;
    }
    // Own keys only: "constructor" or "toString" must be unknown keys, not Object.prototype members.
    const spec = Object.hasOwn(CONFIG_KEYS, key) ? CONFIG_KEYS[key] : undefined;
    if (!spec) throw new AppError('INVALID_CONFIG', `Unknown config key "${key}"`, { details: { known: Object.keys(CONFIG_KEYS) } });
    out[key] = spec.check(String(value), key);
  }
  return out;
}

/** Extracts the resource model from a validated config. */
export function resourcesOf(config: InstanceConfig): Resources {
  const r: Resources = {};
  const get = (k: string) => config[k];
  if (get('limits.memory')) r.memoryMax = parseSize(get('limits.memory')!, 'limits.memory');
  if (get('limits.memory.guarantee')) r.memoryGuarantee = parseSize(get('limits.memory.guarantee')!, 'limits.memory.guarantee');
  if (get('limits.memory.swap') !== undefined) r.memorySwap = get('limits.memory.swap') === '0' ? 0 : parseSize(get('limits.memory.swap')!, 'limits.memory.swap');
  if (get('limits.cpu')) r.cpuCount = parsePositiveInt(get('limits.cpu')!, 'limits.cpu');
  if (get('limits.cpu.weight')) r.cpuWeight = parsePositiveInt(get('limits.cpu.weight')!, 'limits.cpu.weight');
  if (get('limits.cpu.cap')) r.cpuCapPct = parseCpuCap(get('limits.cpu.cap')!);
  if (get('limits.processes')) r.processes = parsePositiveInt(get('limits.processes')!, 'limits.processes');
  if (get('limits.disk')) r.diskBytes = parseSize(get('limits.disk')!, 'limits.disk');
  return r;
}
