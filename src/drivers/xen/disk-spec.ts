// xl disk specs (xl-disk-configuration(5)): parsed as xl parses them, validated as libxl does, and rendered so they parse back the same.
//
// A spec is a comma-separated list of positional parameters (target, format, vdev, access, in that order), `key=value`
// parameters (format, vdev, access, devtype, backend, backendtype, script, specification, grant_usage, colo-*) and flags
// (cdrom, direct-io-safe, discard, no-discard, trusted, untrusted, colo, no-colo); `target=` swallows the rest of the
// spec, commas included, so it comes last; the deprecated prefixes (phy:, file:, tap:aio:, raw:, qcow2:, nbd:, ...) are
// understood. What xl or libxl would refuse is refused with the offending part named: unknown parameters or prefixes,
// a parameter given twice with different values, bad formats, access modes and vdevs, a missing vdev or target.
import { AppError } from '../../shared/errors.js';

/** Image formats xl knows ("empty" is an empty CD-ROM drive). */
export const XL_DISK_FORMATS = ['raw', 'qcow', 'qcow2', 'vhd', 'qed', 'empty'] as const;
/** An image format. */
export type XlDiskFormat = (typeof XL_DISK_FORMATS)[number];

/** Backend implementations (backendtype=). */
export const XL_DISK_BACKENDS = ['phy', 'qdisk', 'tap', 'standalone'] as const;
/** A backend implementation. */
export type XlDiskBackendType = (typeof XL_DISK_BACKENDS)[number];

/** A disk as xl understands it, in canonical form (what a spec means, not how it was written). */
export interface XlDiskSpec {
  /** Host path or block device ("" only for an empty CD-ROM drive). */
  target: string;
  format: XlDiskFormat;
  /** Guest device: xvd*, hd*, sd* (with a partition number or not), d<N>p<M>, or a device number. */
  vdev: string;
  /** Read-only ("ro") or read-write ("rw"); CD-ROMs are always read-only. */
  access: 'ro' | 'rw';
  devtype: 'disk' | 'cdrom';
  backendtype?: XlDiskBackendType;
  /** Backend (driver) domain name; dom0 when absent. */
  backend?: string;
  /** Block script that interprets the target (block-iscsi, block-nbd, ... or a path). */
  script?: string;
  specification?: 'xen' | 'virtio';
  directIoSafe?: true;
  discard?: boolean;
  trusted?: boolean;
  grantUsage?: boolean;
  colo?: boolean;
  coloHost?: string;
  coloPort?: number;
  coloExport?: string;
  activeDisk?: string;
  hiddenDisk?: string;
}

/** What a vdev names: its kind, disk and partition numbers and the xenstore device number the guest sees. */
export interface VdevInfo {
  kind: 'xvd' | 'hd' | 'sd' | 'd' | 'number';
  /** Disk index (xvda = 0); undefined for a raw device number. */
  disk?: number;
  /** Partition (0 = whole disk); undefined for a raw device number. */
  partition?: number;
  /** The number written to xenstore (the device id). */
  devid: number;
}

const VDEV_LIMITS = { xvd: { disks: (1 << 20) - 1, parts: 255 }, hd: { disks: 3, parts: 63 }, sd: { disks: 15, parts: 15 } } as const;

// Drive letters are a bijective base-26 number: a = 0, z = 25, aa = 26.
function letterIndex(letters: string): number {
  let n = -1;
  for (const ch of letters) n = (n + 1) * 26 + (ch.charCodeAt(0) - 97);
  return n;
}

/** The drive letters of disk index n (0 = "a", 26 = "aa"), as in xvda, xvdb, ... xvdaa. */
export function driveLetters(n: number): string {
  return n >= 26 ? driveLetters(Math.floor(n / 26) - 1) + String.fromCharCode(97 + (n % 26)) : String.fromCharCode(97 + n);
}

/** Decodes a vdev as libxl does (xen-vbd-interface(7)); returns the reason when libxl would refuse it. */
export function vdevInfo(vdev: string): VdevInfo | { problem: string } {
  const dp = /^d([0-9]+)p([0-9]+)$/.exec(vdev);
  if (dp) {
    const disk = Number(dp[1]);
    const partition = Number(dp[2]);
    if (disk >= 1 << 20) return { problem: `disk number ${disk} is too large (at most ${(1 << 20) - 1})` };
    if (partition > 255) return { problem: `partition ${partition} is too large (at most 255)` };
    return { kind: 'd', disk, partition, devid: xvdDevid(disk, partition) };
  }
  const named = /^(xvd|hd|sd)([a-z]*)([0-9]*)$/.exec(vdev);
  if (named) {
    const kind = named[1] as 'xvd' | 'hd' | 'sd';
    const letters = named[2]!;
    const digits = named[3]!;
    const limits = VDEV_LIMITS[kind];
    const last = `${kind}${driveLetters(limits.disks)}`;
    if (!letters) return { problem: `"${kind}" needs a drive letter (${kind}a, ${kind}b, ...)` };
    const disk = letterIndex(letters);
    if (disk > limits.disks) return { problem: `${kind}${letters} is beyond the last ${kind} disk, ${last}` };
    if (digits.startsWith('0')) return { problem: `partition numbers have no leading zero (and 0, the whole disk, is written without a number)` };
    const partition = digits ? Number(digits) : 0;
    if (partition > limits.parts) return { problem: `partition ${partition} is beyond the last ${kind} partition, ${limits.parts}` };
    const devid = kind === 'xvd' ? xvdDevid(disk, partition) : kind === 'hd' ? (((disk < 2 ? 3 : 22) << 8) | ((disk & 1) << 6) | partition) : ((8 << 8) | (disk << 4) | partition);
    return { kind, disk, partition, devid };
  }
  // A bare number is written to xenstore as it is (C strtoul, base 0), for guests older than the names.
  const num = /^(0x[0-9a-f]+|0[0-7]*|[1-9][0-9]*)$/i.exec(vdev);
  if (num) {
    const n = /^0x/i.test(vdev) ? parseInt(vdev.slice(2), 16) : vdev.length > 1 && vdev.startsWith('0') ? parseInt(vdev, 8) : Number(vdev);
    if (n > 0x7fffffff) return { problem: `device number ${vdev} is too large` };
    return { kind: 'number', devid: n };
  }
  return { problem: 'expected xvd<letters>[partition], hd[a-d][partition], sd[a-p][partition], d<disk>p<partition> or a device number' };
}

const xvdDevid = (disk: number, partition: number) =>
  disk <= 15 && partition <= 15 ? (202 << 8) | (disk << 4) | partition : (1 << 28) | (disk << 8) | partition;

const DEPRECATED_PREFIX = /^(raw|qcow2|qcow|vhd|iscsi|enbd|nbd|drbd|tapdisk|tap2|tap|aio|ioemu|file|phy):/;
// Any other "word:" at the start of a parameter (not followed by a letter or digit) is an unknown prefix to xl.
const UNKNOWN_PREFIX = /^[a-z][a-z0-9]*:(?![a-z0-9])/;
const FLAGS = ['cdrom', 'direct-io-safe', 'discard', 'no-discard', 'colo', 'no-colo', 'trusted', 'untrusted'] as const;
const STRING_KEYS = { backend: 'backend', script: 'script', 'colo-host': 'coloHost', 'colo-export': 'coloExport', 'active-disk': 'activeDisk', 'hidden-disk': 'hiddenDisk' } as const;

/** Parses one disk spec string; throws INVALID_CONFIG naming the spec and the offending part. */
export function parseDiskSpec(spec: string): XlDiskSpec {
  const fail = (problem: string, part?: string): never => {
    throw new AppError('INVALID_CONFIG', `Invalid disk spec ${JSON.stringify(spec)}: ${problem}${part !== undefined ? ` (at ${JSON.stringify(part)})` : ''}`, {
      details: { spec, ...(part !== undefined ? { part } : {}) },
    });
  };
  // xl's scanner stops "target=" at a line break and then misreads the rest: no line breaks, no control characters.
  const ctl = /[\x00-\x08\x0a-\x1f\x7f]/.exec(spec);
  if (ctl) fail(`control character U+${ctl[0].charCodeAt(0).toString(16).padStart(4, '0')} (line breaks are not allowed in a disk spec)`);

  let target: string | undefined;
  let format: XlDiskFormat | undefined;
  let vdev: string | undefined;
  let readOnly = false;
  let positionalAccess = false;
  let cdrom = false;
  let hadPrefix = false;
  const extra: Omit<XlDiskSpec, 'target' | 'format' | 'vdev' | 'access' | 'devtype'> = {};

  const setFormat = (value: string, part: string) => {
    const f = value === '' ? 'raw' : value;
    if (!(XL_DISK_FORMATS as readonly string[]).includes(f)) {
      fail(`unknown format ${JSON.stringify(value)} (raw, qcow, qcow2, vhd, qed or empty; positional parameters are target, format, vdev, access)`, part);
    }
    if (format !== undefined && format !== f) fail(`format given twice (${format}, then ${f})`, part);
    format = f as XlDiskFormat;
  };
  const setAccess = (value: string, part: string) => {
    if (value === 'r' || value === 'ro') readOnly = true;
    else if (value === 'w' || value === 'rw' || value === '') readOnly = false;
    else fail(`unknown access mode ${JSON.stringify(value)} (r or ro for read-only, w or rw for read-write)`, part);
  };
  // A string may be given again only where it was empty before (xl lets target= follow an empty positional target).
  const setString = <K extends 'target' | 'vdev'>(what: K, value: string, part: string) => {
    const prev = what === 'target' ? target : vdev;
    if (prev) fail(`${what} given twice (${JSON.stringify(prev)}, then ${JSON.stringify(value)})`, part);
    if (what === 'target') target = value;
    else vdev = value;
  };
  const setExtra = <K extends keyof typeof extra>(key: K, value: NonNullable<(typeof extra)[K]>, name: string, part: string, enumLike = false) => {
    const prev = extra[key];
    if (prev !== undefined && (enumLike ? prev !== value : true)) fail(`${name} given twice (${JSON.stringify(prev)}, then ${JSON.stringify(value)})`, part);
    extra[key] = value;
  };
  // The old "vdev:devtype" form ("hdc:cdrom").
  const vdevWithType = (text: string, part: string): boolean => {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return false;
    setString('vdev', text.slice(0, colon), part);
    const type = text.slice(colon + 1);
    if (type === 'cdrom') cdrom = true;
    else if (type === 'disk') cdrom = false;
    else fail(`unknown device type ${JSON.stringify(type)} after ":" (cdrom or disk)`, part);
    return true;
  };
  const positional = (text: string, part: string) => {
    if (target === undefined) {
      target = text;
    } else if (!hadPrefix && format === undefined) {
      // After an empty target, "hdc:cdrom" in the format's place is the vdev of an empty drive (the xm form ",hdc:cdrom,r").
      if (target === '' && vdevWithType(text, part)) format = 'empty';
      else setFormat(text, part);
    } else if (vdev === undefined) {
      if (!vdevWithType(text, part)) setString('vdev', text, part);
    } else if (!positionalAccess) {
      positionalAccess = true;
      setAccess(text, part);
    } else {
      fail('too many positional parameters (target, format, vdev, access)', part);
    }
  };

  let i = 0;
  while (i < spec.length) {
    while (i < spec.length && (spec[i] === ' ' || spec[i] === '\t')) i++;
    if (i >= spec.length) break;
    const rest = spec.slice(i);
    if (rest.startsWith('target=')) {
      // target= takes everything after it, commas and spaces included; only one final comma is dropped.
      const value = rest.slice(7);
      setString('target', value.endsWith(',') ? value.slice(0, -1) : value, rest);
      break;
    }
    const prefix = DEPRECATED_PREFIX.exec(rest);
    if (prefix) {
      const p = prefix[1]!;
      hadPrefix = true;
      if (p === 'raw' || p === 'qcow' || p === 'qcow2' || p === 'vhd') setFormat(p, prefix[0]);
      else if (p === 'iscsi' || p === 'nbd' || p === 'enbd' || p === 'drbd') setExtra('script', `block-${p}`, 'script', prefix[0]);
      i += prefix[0].length;
      continue;
    }
    const unknown = UNKNOWN_PREFIX.exec(rest);
    if (unknown) fail(`unknown deprecated prefix ${JSON.stringify(unknown[0])} (xl knows phy: file: tap: tap2: tapdisk: aio: ioemu: raw: qcow: qcow2: vhd: iscsi: nbd: enbd: drbd:)`, unknown[0]);
    const comma = rest.indexOf(',');
    const part = comma < 0 ? rest : rest.slice(0, comma);
    i += part.length + 1;
    const eq = part.indexOf('=');
    if (eq < 0) {
      const flag = (FLAGS as readonly string[]).includes(part) ? (part as (typeof FLAGS)[number]) : undefined;
      if (flag === undefined) positional(part, part);
      else if (flag === 'cdrom') cdrom = true;
      else if (flag === 'direct-io-safe') extra.directIoSafe = true;
      else if (flag === 'discard' || flag === 'no-discard') extra.discard = flag === 'discard';
      else if (flag === 'colo' || flag === 'no-colo') extra.colo = flag === 'colo';
      else extra.trusted = flag === 'trusted';
      continue;
    }
    const name = part.slice(0, eq);
    const value = part.slice(eq + 1);
    if (name === 'format') setFormat(value, part);
    else if (name === 'vdev') setString('vdev', value, part);
    else if (name === 'access') setAccess(value, part);
    else if (name === 'devtype') {
      if (value === 'cdrom') cdrom = true;
      else if (value === 'disk') cdrom = false;
      else fail(`unknown devtype ${JSON.stringify(value)} (cdrom or disk)`, part);
    } else if (name === 'backendtype') {
      if (!(XL_DISK_BACKENDS as readonly string[]).includes(value)) fail(`unknown backendtype ${JSON.stringify(value)} (phy, qdisk, tap or standalone)`, part);
      setExtra('backendtype', value as XlDiskBackendType, 'backendtype', part, true);
    } else if (name === 'specification') {
      if (value !== 'xen' && value !== 'virtio') fail(`unknown specification ${JSON.stringify(value)} (xen or virtio)`, part);
      setExtra('specification', value as 'xen' | 'virtio', 'specification', part, true);
    } else if (name === 'grant_usage') {
      if (value !== '0' && value !== '1') fail(`grant_usage must be 0 or 1, not ${JSON.stringify(value)}`, part);
      extra.grantUsage = value === '1';
    } else if (name === 'colo-port') {
      const port = /^[0-9]+$/.test(value) ? Number(value) : NaN;
      if (!(port >= 1 && port <= 65535)) fail(`colo-port must be a port number (1-65535), not ${JSON.stringify(value)}`, part);
      setExtra('coloPort', port, 'colo-port', part);
    } else if (Object.hasOwn(STRING_KEYS, name)) {
      if (value === '') fail(`${name}= needs a value`, part);
      setExtra(STRING_KEYS[name as keyof typeof STRING_KEYS], value, name, part);
    } else if (/^[a-z][-a-z0-9_]*$/.test(name)) {
      fail(`unknown parameter "${name}" (xl knows target, format, vdev, access, devtype, backend, backendtype, script, specification, grant_usage, colo-host, colo-port, colo-export, active-disk, hidden-disk and the flags ${FLAGS.join(', ')})`, part);
    } else {
      fail('"=" in a positional parameter (a target containing "=" or "," must be given last, as target=...)', part);
    }
  }

  if (cdrom) {
    readOnly = true;
    if (!target) { target = ''; format = 'empty'; }
  }
  if (vdev === undefined) return fail('no vdev (the guest device, e.g. xvda) specified');
  if (target === undefined) return fail('no target specified (and the device is not a removable cdrom)');
  const disk: XlDiskSpec = { target, format: format ?? 'raw', vdev, access: readOnly ? 'ro' : 'rw', devtype: cdrom ? 'cdrom' : 'disk', ...extra };
  const problem = diskProblem(disk);
  if (problem) fail(problem);
  return disk;
}

/** What libxl would refuse in an (already parsed or hand-made) disk, or undefined when it is fine. */
export function diskProblem(d: XlDiskSpec): string | undefined {
  const v = vdevInfo(d.vdev);
  if ('problem' in v) return `invalid vdev ${JSON.stringify(d.vdev)}: ${v.problem}`;
  if (d.devtype === 'cdrom') {
    if (d.access !== 'ro') return 'a cdrom is read-only (access=ro)';
    if ((d.target === '') !== (d.format === 'empty')) return 'an empty cdrom drive has an empty target and format "empty", and only it';
  } else {
    if (d.target === '') return 'an empty target is only allowed for a cdrom drive';
    if (d.format === 'empty') return 'format "empty" is only for an empty cdrom drive';
  }
  if ((d.backendtype === 'phy' || d.backendtype === 'standalone') && d.format !== 'raw' && d.format !== 'empty') {
    return `backendtype=${d.backendtype} only serves raw disks, not ${d.format}`;
  }
  if (d.backendtype === 'standalone' && d.specification !== 'virtio') return 'backendtype=standalone needs specification=virtio';
  if (d.colo) {
    const missing = (['coloHost', 'coloPort', 'coloExport', 'activeDisk', 'hiddenDisk'] as const).filter((k) => d[k] === undefined);
    if (missing.length) return `colo needs ${missing.map((k) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)).join(', ')}`;
  }
  return undefined;
}

/** Renders a disk in canonical key=value form (target last, so it may contain commas); parseDiskSpec(renderDiskSpec(d)) equals d. */
export function renderDiskSpec(d: XlDiskSpec): string {
  const fail = (problem: string): never => {
    throw new AppError('INVALID_CONFIG', `Cannot render disk ${JSON.stringify(d.target)} (vdev ${d.vdev}): ${problem}`);
  };
  const problem = diskProblem(d);
  if (problem) fail(problem);
  const value = (name: string, v: string) => {
    // Only target= may hold commas; every other value ends at the next one, and none may hold a line break.
    if (/[,\x00-\x1f\x7f]/.test(v)) fail(`${name} ${JSON.stringify(v)} contains a comma or a control character`);
    if (/^[ \t]/.test(v) && name !== 'target') fail(`${name} ${JSON.stringify(v)} starts with white space`);
    return `${name}=${v}`;
  };
  const parts = [value('format', d.format), value('vdev', d.vdev), value('access', d.access)];
  if (d.devtype === 'cdrom') parts.push('devtype=cdrom');
  if (d.backendtype) parts.push(value('backendtype', d.backendtype));
  if (d.backend !== undefined) parts.push(value('backend', d.backend));
  if (d.script !== undefined) parts.push(value('script', d.script));
  if (d.specification) parts.push(value('specification', d.specification));
  if (d.grantUsage !== undefined) parts.push(`grant_usage=${d.grantUsage ? 1 : 0}`);
  if (d.directIoSafe) parts.push('direct-io-safe');
  if (d.discard !== undefined) parts.push(d.discard ? 'discard' : 'no-discard');
  if (d.trusted !== undefined) parts.push(d.trusted ? 'trusted' : 'untrusted');
  if (d.colo !== undefined) parts.push(d.colo ? 'colo' : 'no-colo');
  if (d.coloHost !== undefined) parts.push(value('colo-host', d.coloHost));
  if (d.coloPort !== undefined) parts.push(`colo-port=${d.coloPort}`);
  if (d.coloExport !== undefined) parts.push(value('colo-export', d.coloExport));
  if (d.activeDisk !== undefined) parts.push(value('active-disk', d.activeDisk));
  if (d.hiddenDisk !== undefined) parts.push(value('hidden-disk', d.hiddenDisk));
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(d.target)) fail('the target contains a line break or a control character');
  // xl drops one final comma of target=, so a target that ends in one gets another.
  parts.push(`target=${d.target}${d.target.endsWith(',') ? ',' : ''}`);
  return parts.join(',');
}
