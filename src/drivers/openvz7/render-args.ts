// Pure rendering of an instance's config into an OpenVZ 7 node's terms: the settings of its CT, `vzctl create` and `vzctl set` arguments, and the command line `vzctl exec2` runs.
import { resourcesOf, type InstanceConfig } from '../../shared/config.js';
import { weightCpuunits } from '../../shared/vz-samples.js';

/** What Hangar sets on a CT: its resources as vzctl takes them, its name service and its venet addresses. */
export interface Vz7Settings {
  hostname: string;
  ramBytes?: number;
  swapBytes?: number;
  /** --memguarantee: a percentage of the CT's RAM (VZ7 takes no size). */
  guaranteePct?: number;
  cpus?: number;
  cpuunits?: number;
  cpulimitPct?: number;
  numproc?: number;
  diskBytes?: number;
  diskInodes?: number;
  nameservers: string[];
  searchdomains: string[];
  /** venet addresses: the instance's own first, then openvz.ipadd's. */
  addresses: string[];
}

const words = (v: string | undefined): string[] => (v ?? '').split(/[\s,]+/).filter(Boolean);

/** The guarantee as vzctl's percentage of the RAM limit: rounded, at least 1% for any guarantee, at most 100%. */
export function guaranteePercent(guaranteeBytes: number, ramBytes: number): number {
  return Math.min(100, Math.max(1, Math.round((guaranteeBytes * 100) / ramBytes)));
}

/** The settings of an instance's CT from its validated config and own address; its host name defaults to the instance name. */
export function vz7Settings(config: InstanceConfig, name: string, ownAddress: string): Vz7Settings {
  const r = resourcesOf(config);
  const s: Vz7Settings = {
    hostname: config['openvz.hostname'] ?? name,
    nameservers: words(config['openvz.nameserver']),
    searchdomains: words(config['openvz.searchdomain']),
    addresses: [...new Set([ownAddress, ...words(config['openvz.ipadd'])])],
  };
  if (r.memoryMax !== undefined) s.ramBytes = r.memoryMax;
  if (r.memorySwap !== undefined) s.swapBytes = r.memorySwap;
  // validate() refuses a guarantee without a RAM limit: VZ7 has no other base for its percentage.
  if (r.memoryGuarantee !== undefined && r.memoryMax !== undefined) s.guaranteePct = guaranteePercent(r.memoryGuarantee, r.memoryMax);
  if (r.cpuCount !== undefined) s.cpus = r.cpuCount;
  if (r.cpuWeight !== undefined) s.cpuunits = weightCpuunits(r.cpuWeight);
  if (r.cpuCapPct !== undefined) s.cpulimitPct = Math.max(1, Math.round(r.cpuCapPct));
  if (r.processes !== undefined) s.numproc = r.processes;
  if (r.diskBytes !== undefined) s.diskBytes = r.diskBytes;
  if (config['limits.disk.inodes'] !== undefined) s.diskInodes = Number(config['limits.disk.inodes']);
  return s;
}

const KIB = 1024;
const UNITS = [['T', KIB ** 4], ['G', KIB ** 3], ['M', KIB ** 2], ['K', KIB]] as const;

/** Bytes as vzctl's --ram and --swap take them: the largest binary suffix that is exact, else plain bytes. */
export function vzBytes(bytes: number): string {
  if (bytes === 0) return '0';
  for (const [suffix, mult] of UNITS) if (bytes % mult === 0) return `${bytes / mult}${suffix}`;
  return String(bytes);
}

/** Bytes as --diskspace takes them: a bare number there is 1 KiB blocks, so a suffix always, rounded up to whole KiB. */
export function vzDiskspace(bytes: number): string {
  for (const [suffix, mult] of UNITS) if (bytes % mult === 0) return `${bytes / mult}${suffix}`;
  return `${Math.ceil(bytes / KIB)}K`;
}

/**
 * `vzctl create CTID --ostemplate T --name NAME --hostname H [--diskspace S] [--diskinodes N]` (the arguments after
 * "vzctl"): the ploop image is made with its size and inode count, which only a new image can be given.
 */
export function renderCreateArgs(ctid: string, template: string, name: string, s: Vz7Settings): string[] {
  const out = ['create', ctid, '--ostemplate', template, '--name', name, '--hostname', s.hostname];
  if (s.diskBytes !== undefined) out.push('--diskspace', vzDiskspace(s.diskBytes));
  if (s.diskInodes !== undefined) out.push('--diskinodes', String(s.diskInodes));
  return out;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * `vzctl set CTID <options> --save` (after "vzctl") taking a CT from prev's settings to next's, or null when nothing
 * changes. prev null: a CT just made, which gets every setting but its host name and disk (given to create). A setting
 * that is unset returns to vzctl's default (no swap, no guarantee, all CPUs, 1000 units, no cap, no process limit); a
 * CT always has a RAM size and a disk, so unset RAM or disk size keep what the CT has (the node's sample gave it at
 * create), and resolvers or search domains set to none keep the CT's (vzctl replaces the lists it is given and has no
 * option that empties them).
 */
export function renderSetArgs(ctid: string, next: Vz7Settings, prev: Vz7Settings | null): string[] | null {
  const out: string[] = [];
  const changed = (k: keyof Vz7Settings) => (prev === null ? next[k] !== undefined : !same(next[k], prev[k]));
  if (changed('hostname') && prev !== null) out.push('--hostname', next.hostname);
  if (changed('ramBytes') && next.ramBytes !== undefined) out.push('--ram', vzBytes(next.ramBytes));
  if (changed('swapBytes')) out.push('--swap', vzBytes(next.swapBytes ?? 0));
  if (changed('guaranteePct')) out.push('--memguarantee', next.guaranteePct !== undefined ? String(next.guaranteePct) : 'auto');
  if (changed('cpus')) out.push('--cpus', String(next.cpus ?? 0));
  if (changed('cpuunits')) out.push('--cpuunits', String(next.cpuunits ?? 1000));
  if (changed('cpulimitPct')) out.push('--cpulimit', String(next.cpulimitPct ?? 0));
  if (changed('numproc')) out.push('--numproc', next.numproc !== undefined ? String(next.numproc) : 'unlimited');
  if (prev !== null && changed('diskBytes') && next.diskBytes !== undefined) out.push('--diskspace', vzDiskspace(next.diskBytes));
  if (prev !== null && changed('diskInodes') && next.diskInodes !== undefined) out.push('--diskinodes', String(next.diskInodes));
  if (changed('nameservers') && next.nameservers.length > 0) for (const n of next.nameservers) out.push('--nameserver', n);
  if (changed('searchdomains') && next.searchdomains.length > 0) for (const d of next.searchdomains) out.push('--searchdomain', d);
  // --ipadd adds to what the CT has: the addresses that went are deleted one by one, the new ones added.
  const had = prev?.addresses ?? [];
  for (const a of had.filter((x) => !next.addresses.includes(x))) out.push('--ipdel', a);
  for (const a of next.addresses.filter((x) => !had.includes(x))) out.push('--ipadd', a);
  return out.length === 0 ? null : ['set', ctid, ...out, '--save'];
}

/** One word quoted for a POSIX shell: in single quotes, each ' closed, escaped and reopened; plain words stay as they are. */
export function shellWord(word: string): string {
  if (word !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** An environment variable name a shell's export takes. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The command line `vzctl exec2` gives the CT's shell. vzctl joins its words with spaces and runs them with `bash -c`,
 * so each word of the command is quoted here, or the CT's shell would split and expand it again; a working directory
 * and environment become `cd` and `export` before an `exec` of the command (exec keeps its exit code, vzctl's exec2
 * passes that on). Names that are no shell variables are refused by the caller.
 */
export function execCommandLine(spec: { command: readonly string[]; env?: Readonly<Record<string, string>>; cwd?: string }): string {
  const command = spec.command.map(shellWord).join(' ');
  const env = Object.entries(spec.env ?? {});
  if (spec.cwd === undefined && env.length === 0) return command;
  const steps = [...(spec.cwd !== undefined ? [`cd ${shellWord(spec.cwd)}`] : []), ...env.map(([k, v]) => `export ${k}=${shellWord(v)}`)];
  return `${steps.join(' && ')} && exec ${command}`;
}
