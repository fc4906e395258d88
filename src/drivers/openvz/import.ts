// Translates an OpenVZ container's CTID.conf into Hangar's terms: vSwap memory, CPU, disk quota, venet addresses; every beancounter read is listed, nothing is dropped silently.
import { AppError } from '../../shared/errors.js';
import { validateConfig } from '../../shared/config.js';
import { bytesSize, cpuunitsWeight, VZ_DEFAULT_CPUUNITS } from '../../shared/vz-samples.js';
import type { OpenvzImportTranslation } from '../../shared/schemas.js';
import { parseVzPair, VZ_PARAM_UNITS, vzBytes, VzConf, type VzPair, type VzUnit } from './conf.js';

/** vzctl's CTID range (0 is the host, 1 is reserved for the host's own use in OpenVZ 7; vzctl 4 refuses 0 only). */
export const VZ_CTID_MIN = 1;
/** vzctl's largest CTID: INT_MAX. */
export const VZ_CTID_MAX = 2147483647;


/** A CTID: a decimal number in vzctl's range. */
export function parseCtid(text: string): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) < VZ_CTID_MIN || Number(text) > VZ_CTID_MAX) {
    throw new AppError('INVALID_NAME', `Invalid CTID ${JSON.stringify(text)}: a CTID is a number from ${VZ_CTID_MIN} to ${VZ_CTID_MAX}`);
  }
  return Number(text);
}

/** The CTID of a config file named CTID.conf, or undefined. */
export function ctidOfFile(path: string): number | undefined {
  const m = /(?:^|\/)(\d+)\.conf$/.exec(path);
  return m ? parseCtid(m[1]!) : undefined;
}

/** A byte count as the exact Hangar size (GiB, MiB, KiB or bytes, whichever divides it). */
export const exactSize = bytesSize;

// What each parameter Hangar does not map means, for the reason it gives.
const UNMAPPED_UBC = 'a beancounter of OpenVZ kernels with no cgroup counterpart on a mainline kernel (listed with the pairs read)';
// Keys that only say where things are or how vzctl behaves; read, and not needed by Hangar's own machinery.
const VZCTL_ONLY: Readonly<Record<string, string>> = {
  VERSION: 'the config format version (vzctl 4 writes none, OpenVZ 7 writes 2)',
  QUOTATIME: 'the grace period of the soft disk limit; the image-backed root has one hard size',
  QUOTAUGIDLIMIT: 'per-user quotas inside the container are not kept',
  NETFILTER: 'the container has its own network namespace with its own netfilter on a mainline kernel',
  VE_LAYOUT: 'the private area layout (simfs or ploop); Hangar makes an image-backed root of its own',
  VEFSTYPE: 'the private area file system; Hangar makes an ext4 image of its own',
  ORIGIN_SAMPLE: 'the sample the config was made from (informational)',
  DISK_QUOTA: 'the disk limit is the size of the image-backed root, always on',
};

/** Translates the text of a CTID.conf (ctid from its file name, or given); bad lines and values are INVALID_CONFIG/INVALID_SIZE naming file and line or parameter. */
export function importVzConfText(text: string, opts: { source: string; ctid?: number; name?: string }): OpenvzImportTranslation {
  const conf = VzConf.parse(text, opts.source);
  const ctid = opts.ctid ?? ctidOfFile(opts.source);
  if (ctid === undefined) throw new AppError('INVALID_ARGUMENT', `Cannot tell the CTID of ${opts.source}: name the file CTID.conf or give the CTID`);
  const out: OpenvzImportTranslation = { ctid, name: '', type: 'container', driver: 'openvz', config: {}, addresses: [], ubc: [], translated: [], untranslated: [] };
  const done = new Set<string>();
  const value = (key: string): string | undefined => {
    const v = conf.get(key);
    if (v !== undefined) done.add(key);
    return v;
  };
  const kept = (key: string, v: string, to: string[], note?: string) => out.translated.push({ key, value: v, to, ...(note ? { note } : {}) });
  const dropped = (key: string, v: string, reason: string) => out.untranslated.push({ key, value: v, reason });
  const pairs = new Map<string, VzPair>();
  const pair = (key: string): VzPair | undefined => {
    const v = value(key);
    if (v === undefined) return undefined;
    const p = parseVzPair(v, VZ_PARAM_UNITS[key]!, `${opts.source}: ${key}`);
    pairs.set(key, p);
    return p;
  };
  const sizeOf = (n: bigint | null, unit: Exclude<VzUnit, 'items'>) => (n === null ? null : exactSize(vzBytes(n, unit)!));

  // Identity: NAME when it is a valid Hangar name, else ctCTID (a Hangar name starts with a letter).
  const vzName = value('NAME');
  out.name = opts.name ?? (vzName !== undefined && /^[a-z][a-z0-9-]{0,62}$/.test(vzName) ? vzName : `ct${ctid}`);
  if (vzName !== undefined) kept('NAME', vzName, ['name'], out.name === vzName ? undefined : `not a Hangar instance name (lower case letters, digits and -, starting with a letter): the instance is ${out.name}, and vzctl still finds it by this name`);

  // vSwap memory: PHYSPAGES's limit is the RAM, SWAPPAGES's the swap on top of it.
  const ram = pair('PHYSPAGES');
  if (ram) {
    const s = sizeOf(ram.limit, 'pages');
    if (s) { out.config['limits.memory'] = s; kept('PHYSPAGES', conf.get('PHYSPAGES')!, ['limits.memory'], ram.barrier ? 'the barrier is unused on vSwap kernels too' : undefined); }
    else dropped('PHYSPAGES', conf.get('PHYSPAGES')!, 'unlimited RAM: the container may use all of the host\'s memory (no limits.memory)');
  }
  const swap = pair('SWAPPAGES');
  if (swap) {
    const s = swap.limit === 0n ? '0' : sizeOf(swap.limit, 'pages');
    if (s && ram?.limit !== null && ram !== undefined) { out.config['limits.memory.swap'] = s; kept('SWAPPAGES', conf.get('SWAPPAGES')!, ['limits.memory.swap']); }
    else dropped('SWAPPAGES', conf.get('SWAPPAGES')!, s ? 'swap is on top of a RAM limit, and PHYSPAGES sets none' : 'unlimited swap: Hangar\'s swap limit is a size');
  }
  // The guarantee: OpenVZ 7's MEMGUARANTEE (percent of RAM, or auto = none), else VMGUARPAGES's barrier.
  const memGuarantee = value('MEMGUARANTEE');
  const vmguar = pair('VMGUARPAGES');
  if (memGuarantee !== undefined) {
    const pct = /^(\d{1,3})%?$/.exec(memGuarantee);
    if (memGuarantee === 'auto') kept('MEMGUARANTEE', memGuarantee, [], 'auto guarantees nothing');
    else if (pct && Number(pct[1]) <= 100 && ram?.limit) {
      out.config['limits.memory.guarantee'] = exactSize((vzBytes(ram.limit, 'pages')! * BigInt(pct[1]!)) / 100n);
      kept('MEMGUARANTEE', memGuarantee, ['limits.memory.guarantee'], 'a percentage of PHYSPAGES\'s limit');
    } else dropped('MEMGUARANTEE', memGuarantee, pct ? 'a percentage needs a RAM limit (PHYSPAGES) and must be at most 100' : 'not auto or a percentage');
  }
  if (vmguar) {
    const raw = conf.get('VMGUARPAGES')!;
    const bytes = vmguar.barrier === null ? null : vzBytes(vmguar.barrier, 'pages')!;
    const ramBytes = ram?.limit ? vzBytes(ram.limit, 'pages')! : null;
    if (memGuarantee !== undefined) dropped('VMGUARPAGES', raw, 'MEMGUARANTEE sets the guarantee');
    else if (bytes === null || bytes === 0n) dropped('VMGUARPAGES', raw, 'no guarantee to keep (the barrier is 0 or unlimited)');
    else if (ramBytes !== null && bytes > ramBytes) dropped('VMGUARPAGES', raw, `the barrier (${exactSize(bytes)}) is above the RAM limit (${exactSize(ramBytes)}): a guarantee must fit in it`);
    else { out.config['limits.memory.guarantee'] = exactSize(bytes); kept('VMGUARPAGES', raw, ['limits.memory.guarantee'], 'the barrier is the guaranteed memory; the limit is not kept'); }
  }

  // CPU: units are a weight (OpenVZ's 1000 is Hangar's 100), the limit a percentage of one CPU, CPUS a count.
  const units = value('CPUUNITS');
  if (units !== undefined) {
    const n = Number(units);
    if (!/^\d+$/.test(units) || n < 8 || n > 500000) throw new AppError('INVALID_CONFIG', `${opts.source}: CPUUNITS ${JSON.stringify(units)} is not a number from 8 to 500000`);
    out.config['limits.cpu.weight'] = String(cpuunitsWeight(n));
    kept('CPUUNITS', units, ['limits.cpu.weight'], `${VZ_DEFAULT_CPUUNITS} units are weight 100`);
  }
  const cpulimit = value('CPULIMIT');
  if (cpulimit !== undefined) {
    const m = /^(\d+)%?$/.exec(cpulimit);
    if (!m) throw new AppError('INVALID_CONFIG', `${opts.source}: CPULIMIT ${JSON.stringify(cpulimit)} is not a percentage of one CPU`);
    if (Number(m[1]) === 0) kept('CPULIMIT', cpulimit, [], '0 is no limit');
    else { out.config['limits.cpu.cap'] = `${Number(m[1])}%`; kept('CPULIMIT', cpulimit, ['limits.cpu.cap']); }
  }
  const cpus = value('CPUS');
  if (cpus !== undefined) {
    if (!/^\d+$/.test(cpus)) throw new AppError('INVALID_CONFIG', `${opts.source}: CPUS ${JSON.stringify(cpus)} is not a number`);
    if (Number(cpus) === 0) kept('CPUS', cpus, [], '0 is every CPU');
    else { out.config['limits.cpu'] = String(Number(cpus)); kept('CPUS', cpus, ['limits.cpu']); }
  }

  // Disk: the hard limit is the size of the image-backed root.
  const disk = pair('DISKSPACE');
  if (disk) {
    const s = sizeOf(disk.limit, 'kib');
    if (s) { out.config['limits.disk'] = s; kept('DISKSPACE', conf.get('DISKSPACE')!, ['limits.disk'], disk.barrier !== disk.limit ? 'the hard limit; the soft one has no counterpart on an image-backed root' : undefined); }
    else dropped('DISKSPACE', conf.get('DISKSPACE')!, 'unlimited: the root still needs a size (the template\'s plus room), chosen at import');
  }
  const diskinodes = pair('DISKINODES');
  if (diskinodes) {
    if (diskinodes.limit !== null && diskinodes.limit >= 64n) { out.config['limits.disk.inodes'] = String(diskinodes.limit); kept('DISKINODES', conf.get('DISKINODES')!, ['limits.disk.inodes'], diskinodes.barrier !== diskinodes.limit ? 'the hard limit: the ext4 private area has that many inodes' : undefined); }
    else dropped('DISKINODES', conf.get('DISKINODES')!, diskinodes.limit === null ? 'unlimited: the private area gets ext4\'s own inode count for its size' : 'fewer than the 64 inodes a root file system needs');
  }
  const numproc = pair('NUMPROC');
  if (numproc) {
    if (numproc.limit !== null) { out.config['limits.processes'] = String(numproc.limit); kept('NUMPROC', conf.get('NUMPROC')!, ['limits.processes'], numproc.barrier !== numproc.limit ? 'the limit; pids.max has no barrier' : undefined); }
    else dropped('NUMPROC', conf.get('NUMPROC')!, 'unlimited');
  }

  // Network and identity.
  const ips = value('IP_ADDRESS');
  if (ips !== undefined) {
    for (const a of ips.split(/\s+/).filter(Boolean)) {
      const addr = a.replace(/\/\d+$/, '');
      if (addr === '0.0.0.0') continue;
      if (!/^(\d{1,3})(\.\d{1,3}){3}$/.test(addr) || addr.split('.').some((o) => Number(o) > 255)) {
        throw new AppError('INVALID_CONFIG', `${opts.source}: IP_ADDRESS holds ${JSON.stringify(a)}, not an IPv4 address`);
      }
      out.addresses.push(addr);
    }
    kept('IP_ADDRESS', ips, out.addresses.length ? ['addresses'] : [], out.addresses.length > 1 ? 'venet addresses, each routed to the container as a /32' : undefined);
  }
  const hostname = value('HOSTNAME');
  if (hostname !== undefined) { out.hostname = hostname; kept('HOSTNAME', hostname, ['hostname']); }
  const template = value('OSTEMPLATE');
  if (template !== undefined) { out.ostemplate = template; kept('OSTEMPLATE', template, ['ostemplate']); }
  const onboot = value('ONBOOT');
  if (onboot !== undefined) {
    if (onboot !== 'yes' && onboot !== 'no') throw new AppError('INVALID_CONFIG', `${opts.source}: ONBOOT ${JSON.stringify(onboot)} is not yes or no`);
    out.config['boot.autostart'] = String(onboot === 'yes');
    kept('ONBOOT', onboot, ['boot.autostart']);
  }
  const description = value('DESCRIPTION');
  if (description !== undefined) { out.config['user.description'] = description; kept('DESCRIPTION', description, ['user.description']); }
  const veid = (p: string) => p.replace(/\$VEID\b|\$\{VEID\}/g, String(ctid));
  const priv = value('VE_PRIVATE');
  if (priv !== undefined) { out.private = veid(priv); kept('VE_PRIVATE', priv, ['private'], 'where the private area is read from (--private overrides)'); }
  const root = value('VE_ROOT');
  if (root !== undefined) { out.root = veid(root); kept('VE_ROOT', root, ['root'], 'where vzctl mount puts the root'); }
  // Resolvers: written into the CT's /etc/resolv.conf at each start, as vzctl does.
  for (const [key, to] of [['NAMESERVER', 'openvz.nameserver'], ['SEARCHDOMAIN', 'openvz.searchdomain']] as const) {
    const v = value(key);
    if (v === undefined) continue;
    const words = v.split(/\s+/).filter(Boolean);
    if (words.length === 0) { kept(key, v, [], 'empty: nothing to write'); continue; }
    out.config[to] = words.join(' ');
    kept(key, v, [to]);
  }

  // Every other beancounter: read (a bad pair is refused like any value), listed, not applied.
  for (const key of conf.keys()) {
    if (done.has(key)) continue;
    const v = conf.get(key)!;
    done.add(key);
    if (VZ_PARAM_UNITS[key]) {
      pair(key);
      dropped(key, v, UNMAPPED_UBC);
    } else if (VZCTL_ONLY[key]) dropped(key, v, VZCTL_ONLY[key]);
    else dropped(key, v, 'not an OpenVZ setting Hangar knows');
  }
  const n = (x: bigint | null) => (x === null ? 'unlimited' : String(x));
  for (const [param, p] of pairs) out.ubc.push({ param, unit: VZ_PARAM_UNITS[param]!, barrier: n(p.barrier), limit: n(p.limit) });
  // Hangar's own checks (guarantee within the limit, key forms) on what the translation made.
  try {
    validateConfig(out.config);
  } catch (e) {
    throw new AppError('INVALID_CONFIG', `${opts.source}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return out;
}
