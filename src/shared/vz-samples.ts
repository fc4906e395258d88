// Hangar's OpenVZ config samples (vzctl create --config NAME) and OS template names, in Hangar's config keys.
import { AppError } from './errors.js';
import { parseVzPair, vzBytes } from './vz-values.js';

/** One sample: what vzctl's ve-NAME.conf-sample of the same name sets, as CTID.conf values. */
export interface VzSample {
  description: string;
  /** CTID.conf parameters, vzctl's value forms. */
  params: Readonly<Record<string, string>>;
}

const DISK = { DISKSPACE: '2G:2.2G', DISKINODES: '131072:144179', CPUUNITS: '1000' };

/** The samples `--config` takes (vzctl 4's set: basic, light and the vSwap sizes; RAM limit, swap twice the RAM). */
export const VZ_SAMPLES: Readonly<Record<string, VzSample>> = {
  basic: { description: 'no RAM limit, 240 processes, 2 GiB disk', params: { NUMPROC: '240:240', PHYSPAGES: '0:unlimited', ...DISK } },
  light: { description: 'a small CT: no RAM limit, 40 processes, 1 GiB disk, a quarter of the CPU weight', params: { NUMPROC: '40:40', PHYSPAGES: '0:unlimited', DISKSPACE: '1G:1.1G', DISKINODES: '65536:72090', CPUUNITS: '250' } },
  'vswap-256m': { description: '256 MiB RAM, 512 MiB swap, 2 GiB disk', params: { PHYSPAGES: '0:256M', SWAPPAGES: '0:512M', ...DISK } },
  'vswap-512m': { description: '512 MiB RAM, 1 GiB swap, 2 GiB disk', params: { PHYSPAGES: '0:512M', SWAPPAGES: '0:1G', ...DISK } },
  'vswap-1024m': { description: '1 GiB RAM, 2 GiB swap, 2 GiB disk', params: { PHYSPAGES: '0:1G', SWAPPAGES: '0:2G', ...DISK } },
  'vswap-2g': { description: '2 GiB RAM, 4 GiB swap, 2 GiB disk', params: { PHYSPAGES: '0:2G', SWAPPAGES: '0:4G', ...DISK } },
  'vswap-4g': { description: '4 GiB RAM, 8 GiB swap, 2 GiB disk', params: { PHYSPAGES: '0:4G', SWAPPAGES: '0:8G', ...DISK } },
};

/** vz.conf's CONFIGFILE default. */
export const VZ_DEFAULT_SAMPLE = 'vswap-256m';

/** vz.conf's DEF_OSTEMPLATE default. */
export const VZ_DEFAULT_OSTEMPLATE = 'debian-12-x86_64';

/** OS template names of the images Hangar builds itself. */
export const VZ_BUILTIN_TEMPLATES: Readonly<Record<string, string>> = { 'debian-12-x86_64': 'debian', 'busybox-x86_64': 'busybox' };

/** The image a template name means: a built-in one, else the image alias of that name (lower case, "_" and "." as "-": centos-7-x86_64 is centos-7-x86-64). */
export function templateImage(template: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,61}$/.test(template)) throw new AppError('INVALID_ARGUMENT', `Invalid OS template name ${JSON.stringify(template)}`);
  return VZ_BUILTIN_TEMPLATES[template] ?? template.toLowerCase().replace(/[._]/g, '-').replace(/-+$/, '');
}

/** A size in bytes as a Hangar size (exact: GiB, MiB or KiB when one divides it, else bytes). */
export function bytesSize(bytes: bigint): string {
  for (const [unit, n] of [['GiB', 1024n ** 3n], ['MiB', 1024n ** 2n], ['KiB', 1024n]] as const) if (bytes >= n && bytes % n === 0n) return `${bytes / n}${unit}`;
  return String(bytes);
}

/** The Hangar config of a sample's parameters (RAM, swap, disk hard limits, inodes, processes, CPU weight). */
export function sampleConfig(name: string): Record<string, string> {
  const s = Object.hasOwn(VZ_SAMPLES, name) ? VZ_SAMPLES[name] : undefined;
  if (!s) throw new AppError('NOT_FOUND', `Config sample "${name}" not found (there are: ${Object.keys(VZ_SAMPLES).join(', ')})`);
  const out: Record<string, string> = {};
  const p = s.params;
  const ram = p.PHYSPAGES ? parseVzPair(p.PHYSPAGES, 'pages', 'PHYSPAGES').limit : null;
  if (ram !== null) out['limits.memory'] = bytesSize(vzBytes(ram, 'pages')!);
  const swap = p.SWAPPAGES ? parseVzPair(p.SWAPPAGES, 'pages', 'SWAPPAGES').limit : null;
  if (swap !== null && ram !== null) out['limits.memory.swap'] = bytesSize(vzBytes(swap, 'pages')!);
  const disk = p.DISKSPACE ? parseVzPair(p.DISKSPACE, 'kib', 'DISKSPACE').limit : null;
  if (disk !== null) out['limits.disk'] = bytesSize(vzBytes(disk, 'kib')!);
  const inodes = p.DISKINODES ? parseVzPair(p.DISKINODES, 'items', 'DISKINODES').limit : null;
  if (inodes !== null) out['limits.disk.inodes'] = String(inodes);
  const numproc = p.NUMPROC ? parseVzPair(p.NUMPROC, 'items', 'NUMPROC').limit : null;
  if (numproc !== null) out['limits.processes'] = String(numproc);
  if (p.CPUUNITS) out['limits.cpu.weight'] = String(cpuunitsWeight(Number(p.CPUUNITS)));
  return out;
}

/** OpenVZ's default CPUUNITS: Hangar's default weight (100) is the same share. */
export const VZ_DEFAULT_CPUUNITS = 1000;

/** A CPUUNITS value (8-500000) as limits.cpu.weight (1-10000): 1000 units are weight 100. */
export function cpuunitsWeight(units: number): number {
  return Math.min(10000, Math.max(1, Math.round((units * 100) / VZ_DEFAULT_CPUUNITS)));
}

/** limits.cpu.weight as CPUUNITS. */
export function weightCpuunits(weight: number): number {
  return weight * (VZ_DEFAULT_CPUUNITS / 100);
}
