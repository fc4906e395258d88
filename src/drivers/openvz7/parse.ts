// Parsers of what an OpenVZ 7 / Virtuozzo host's tools print: `prlctl list -i -j` (one object per CT), `vzlist -j` (fields as named), `vzpkg list -O`, the tools' versions and /proc/user_beancounters, into Hangar's terms; an existing CT's translation for an import.
import { validateConfig, type InstanceConfig } from '../../shared/config.js';
import { AppError } from '../../shared/errors.js';
import type { Beancounter, InstanceState, Usage } from '../../shared/schemas.js';
import { bytesSize, cpuunitsWeight, VZ_DEFAULT_CPUUNITS } from '../../shared/vz-samples.js';
import type { ForeignInstance } from '../driver.js';

/** One CT as `prlctl list -i -j` describes it, in Hangar's terms. */
export interface Vz7Ct {
  uuid: string;
  ctid: string;
  name: string;
  state: InstanceState;
  /** prlctl's own word (running, stopped, suspended, mounted, paused, ...). */
  rawState: string;
  ostemplate: string | null;
  home: string | null;
  memoryBytes: number | null;
  cpus: number | null;
  cpuunits: number | null;
  /** CPU limit in percent of one CPU (prlctl prints it in percent or in MHz; only percent is kept). */
  cpulimitPct: number | null;
  diskBytes: number | null;
  ips: string[];
  hostname: string | null;
  nameservers: string[];
  searchdomains: string[];
  autostart: boolean | null;
  uptimeS: number | null;
}

/** One row of `vzlist -j`: the fields asked for, as vzlist printed them. */
export type VzlistRow = Record<string, unknown>;

/** prlctl's states in Hangar's: a mounted or suspended CT runs nothing. */
export function vz7State(raw: string): InstanceState {
  switch (raw) {
    case 'running': return 'running';
    case 'paused': return 'frozen';
    case 'starting': case 'restoring': case 'resuming': return 'starting';
    case 'stopping': case 'suspending': return 'stopping';
    case 'stopped': case 'suspended': case 'mounted': return 'stopped';
    default: return 'unknown';
  }
}

/** A prlctl size ("1024Mb", "25390Mb", "2Gb", "512Kb") in bytes; prlctl's b is bytes of 1024 steps. */
export function prlSize(text: unknown): number | null {
  if (typeof text !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb)?\s*$/i.exec(text);
  if (!m) return null;
  const mult = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 }[(m[2] ?? 'b').toLowerCase() as 'b']!;
  return Math.round(Number(m[1]) * mult);
}

const words = (v: unknown): string[] => (typeof v === 'string' ? v.split(/[\s,]+/).filter(Boolean) : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : null);

/** A tool's JSON output that must be an array; anything else is BACKEND_FAILED naming the tool. */
function jsonArray(text: string, tool: string): unknown[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new AppError('BACKEND_FAILED', `${tool} printed no JSON`, { cause: e });
  }
  if (!Array.isArray(data)) throw new AppError('BACKEND_FAILED', `${tool} printed no array`);
  return data;
}

/** Parses `prlctl list -i -j` (an array of objects; containers only are kept); garbage is BACKEND_FAILED naming what. */
export function parsePrlctlInfo(text: string): Vz7Ct[] {
  return parsePrlctlElements(text).map((e) => e.ct);
}

/** One CT of `prlctl list -i -j` with the element it was read from: an import reads what Vz7Ct leaves out. */
export interface Vz7CtElement {
  ct: Vz7Ct;
  element: Record<string, unknown>;
}

/** Parses `prlctl list -i -j` keeping each CT's element beside its Vz7Ct; garbage is BACKEND_FAILED naming what. */
export function parsePrlctlElements(text: string): Vz7CtElement[] {
  const data = jsonArray(text, 'prlctl list -i -j');
  const out: Vz7CtElement[] = [];
  for (const el of data) {
    if (el === null || typeof el !== 'object') throw new AppError('BACKEND_FAILED', 'prlctl list -i -j printed an element that is no object');
    const o = el as Record<string, unknown>;
    if (o.Type !== 'CT') continue;
    const hw = (o.Hardware ?? {}) as Record<string, Record<string, unknown>>;
    const cpu = hw.cpu ?? {};
    const disk = Object.entries(hw).find(([k, v]) => /^hdd\d+$/.test(k) && v.mnt === '/')?.[1] ?? hw.hdd0;
    const venet = hw.venet0 ?? {};
    const cpulimit = typeof cpu.cpulimit === 'string' ? /^(\d+)%$/.exec(cpu.cpulimit)?.[1] : undefined;
    const rawState = typeof o.State === 'string' ? o.State : 'unknown';
    const uuid = str(o.ID);
    const ctid = str(o.EnvID);
    if (!uuid || !ctid) throw new AppError('BACKEND_FAILED', 'prlctl list -i -j printed a container without ID or EnvID');
    out.push({ element: o, ct: {
      uuid, ctid, name: str(o.Name) ?? ctid, state: vz7State(rawState), rawState,
      ostemplate: str(o.OS), home: str(o.Home),
      memoryBytes: prlSize(hw.memory?.size), cpus: num(cpu.cpus), cpuunits: num(cpu.cpuunits), cpulimitPct: cpulimit ? Number(cpulimit) : null,
      diskBytes: prlSize(disk?.size), ips: words(venet.ips).map((a) => a.replace(/\/.*$/, '')),
      hostname: str(o.Hostname), nameservers: words(o['DNS Servers']), searchdomains: words(o['Search Domains']),
      autostart: o.Autostart === 'on' ? true : o.Autostart === 'off' ? false : null, uptimeS: num(o.Uptime),
    } });
  }
  return out;
}

/** Parses `vzlist -j` (an array of objects keyed by field name); garbage is BACKEND_FAILED. */
export function parseVzlistJson(text: string): VzlistRow[] {
  const data = jsonArray(text, 'vzlist -j');
  if (data.some((r) => r === null || typeof r !== 'object' || Array.isArray(r))) throw new AppError('BACKEND_FAILED', 'vzlist -j printed no array of objects');
  return data as VzlistRow[];
}

/** The CTIDs of `vzlist -a -j -o ctid` (vzlist prints them as strings on VZ7, as numbers in vzctl 4's JSON). */
export function parseVzlistCtids(text: string): string[] {
  return parseVzlistJson(text).map((r) => r.ctid).filter((c): c is string | number => typeof c === 'string' || typeof c === 'number').map(String);
}

/** The OS templates `vzpkg list -O` names: the first word of each line (a cached one has its cache date after it). */
export function parseVzpkgList(text: string): string[] {
  return [...new Set(text.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((w) => /^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(w)))];
}

/** A tool's version from its --version output ("prlctl version 7.0.301", "vzctl v.7.0.271"), or null. */
export function parseToolVersion(text: string): string | null {
  return /\bv(?:ersion)?\.?\s*(\d+(?:\.\d+)+(?:[-.\w]*)?)/i.exec(text)?.[1] ?? null;
}

// The kernel prints an unlimited barrier or limit as LONG_MAX; a double cannot hold it exactly, so anything that large is "unlimited".
const UNLIMITED = 2 ** 63 - 2 ** 11;
const BC_BYTES = new Set(['kmemsize', 'tcpsndbuf', 'tcprcvbuf', 'othersockbuf', 'dgramrcvbuf', 'dcachesize']);

/** A beancounter's unit by its name: *pages in 4 KiB pages, the socket buffers and kernel memory in bytes, the rest items. */
export function beancounterUnit(resource: string): Beancounter['unit'] {
  return resource.endsWith('pages') ? 'pages' : BC_BYTES.has(resource) ? 'bytes' : 'items';
}

/**
 * The beancounters of one CT from /proc/user_beancounters' layout: a "Version:" line, a header, then per CT a first row
 * "CTID:  resource held maxheld barrier limit failcnt" and one row per further resource; null when the CT has no block
 * (it does not run). The "dummy" rows are left out.
 */
export function parseUserBeancounters(text: string, ctid: string): Beancounter[] | null {
  let current: string | null = null;
  let out: Beancounter[] | null = null;
  for (const line of text.split('\n')) {
    const m = /^\s*(?:(\S+):)?\s*([a-z_]+)\s+(\d+)\s+(\d+|-)\s+(\d+)\s+(\d+)\s+(\d+|-)\s*$/.exec(line);
    if (!m) continue;
    if (m[1] !== undefined) current = m[1];
    if (current !== ctid) continue;
    out ??= [];
    const resource = m[2]!;
    if (resource === 'dummy') continue;
    const n = (v: string) => (v === '-' ? null : Number(v));
    const lim = (v: string) => (Number(v) >= UNLIMITED ? null : Number(v));
    out.push({ resource, unit: beancounterUnit(resource), held: Number(m[3]), maxheld: n(m[4]!), barrier: lim(m[5]!), limit: lim(m[6]!), failcnt: n(m[7]!) });
  }
  return out;
}

const ubc = (v: unknown): Record<string, unknown> | null => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null);
const held = (v: unknown, key = 'held'): number | undefined => {
  const x = ubc(v)?.[key];
  return typeof x === 'number' ? x : undefined;
};

/** Usage from a `vzlist -j` row: RAM held (physpages, 4 KiB pages) and its peak, processes, and disk used (diskspace, KiB); a CT that does not run holds nothing but its disk. */
export function usageOfVzlist(row: VzlistRow): Usage {
  const out: Usage = {};
  const used = held(row.diskspace, 'usage');
  if (used !== undefined) out.diskUsedBytes = used * 1024;
  if (row.status !== 'running') return out;
  const ram = held(row.physpages);
  const peak = held(row.physpages, 'maxheld');
  const procs = held(row.numproc);
  if (ram !== undefined) out.memoryBytes = ram * 4096;
  if (peak !== undefined) out.memoryPeakBytes = peak * 4096;
  if (procs !== undefined) out.processes = procs;
  return out;
}

/** The vzlist fields an import reads besides prlctl's element: the template, the swap and process limits, the disk's size and inodes. */
export const IMPORT_FIELDS = ['ctid', 'ostemplate', 'swappages', 'numproc', 'diskspace', 'diskinodes'] as const;

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const PAGE = 4096;
// prlctl's default I/O priority of a CT (vzctl --ioprio 4).
const DEFAULT_IOPRIO = 4;

const exact = (bytes: number): string => bytesSize(BigInt(Math.round(bytes)));
const obj = (v: unknown): Record<string, unknown> => ubc(v) ?? {};
const shown = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v) ?? '');

/** A beancounter's limit in a vzlist -j row: a number, null when unlimited, undefined when vzlist printed none. */
function ubcLimit(v: unknown): number | null | undefined {
  const limit = ubc(v)?.limit;
  if (typeof limit !== 'number') return undefined;
  return limit >= UNLIMITED ? null : limit;
}

/**
 * One existing CT in Hangar's terms, from its `prlctl list -i -j` element and its `vzlist -j` row (IMPORT_FIELDS; null
 * when vzlist gave none): each setting becomes a config key when Hangar's own check takes its value, else it is listed
 * as not kept with why; a setting that is the default of an unset key is listed as needing nothing. The venet IPv4
 * addresses are the instance's own (the first) and openvz.ipadd (the others).
 */
export function translateCt(found: Vz7CtElement, row: VzlistRow | null): ForeignInstance {
  const { ct, element: o } = found;
  const hw = obj(o.Hardware);
  const cpu = obj(hw.cpu);
  const config: InstanceConfig = {};
  const translated: ForeignInstance['translated'] = [];
  const untranslated: ForeignInstance['untranslated'] = [];
  const kept = (key: string, value: string, to: string[], note?: string) => translated.push({ key, value, to, ...(note ? { note } : {}) });
  const dropped = (key: string, value: string, reason: string) => untranslated.push({ key, value, reason });
  // A value Hangar's check refuses (a host name with "_", an IPv6 resolver) is not kept: the CT keeps it as it is.
  const put = (from: string, raw: string, key: string, value: string, note?: string) => {
    try {
      validateConfig({ [key]: value });
    } catch (e) {
      dropped(from, raw, `not a value ${key} takes (${e instanceof Error ? e.message : String(e)}); the CT keeps it as it is`);
      return;
    }
    config[key] = value;
    kept(from, raw, [key], note);
  };

  put('EnvID', ct.ctid, 'openvz.ctid', ct.ctid);
  kept('ID', ct.uuid, ['origin'], 'the import checks that the CT it adopts is still this one');
  kept('Name', ct.name, ['name']);
  kept('State', ct.rawState, [], `Hangar reads it from the node each time (${ct.state})`);
  if (ct.home) kept('Home', ct.home, [], 'the private area stays where it is: Hangar makes no volume of its own');

  // Memory: RAM and swap, and the guarantee as a size of what is a percentage of the RAM on VZ7.
  const mem = obj(hw.memory).size;
  if (ct.memoryBytes !== null && ct.memoryBytes > 0) put('Hardware.memory.size', shown(mem), 'limits.memory', exact(ct.memoryBytes));
  else if (mem !== undefined) dropped('Hardware.memory.size', shown(mem), 'not a size: the CT keeps its RAM as it is');
  const swap = ubcLimit(row?.swappages);
  if (swap === undefined) dropped('vzlist.swappages', 'unknown', 'vzlist printed no swap limit for the CT: it keeps its swap until limits.memory.swap is set');
  else if (swap === null) dropped('vzlist.swappages', 'unlimited', 'unlimited swap: limits.memory.swap is a size; the CT keeps it until one is set');
  else if (swap === 0) kept('vzlist.swappages', '0', [], 'no swap, which is also what an unset limits.memory.swap gives');
  else put('vzlist.swappages', `${swap} (4 KiB pages)`, 'limits.memory.swap', exact(swap * PAGE));
  const guarantee = ubc(hw.memory_guarantee);
  if (guarantee) {
    const raw = guarantee.auto === true ? 'auto' : shown(guarantee.value ?? '');
    const pct = /^(\d{1,3})%?$/.exec(raw);
    if (raw === 'auto') kept('Hardware.memory_guarantee', raw, [], 'auto guarantees nothing, which is also what an unset limits.memory.guarantee gives');
    else if (!pct || Number(pct[1]) > 100) dropped('Hardware.memory_guarantee', raw, 'not auto or a percentage: the CT keeps its guarantee as it is');
    else if (Number(pct[1]) === 0) dropped('Hardware.memory_guarantee', raw, 'a 0% guarantee: Hangar\'s smallest is 1% of the RAM; the CT keeps 0% until limits.memory.guarantee is set');
    else if (ct.memoryBytes === null || config['limits.memory'] === undefined) dropped('Hardware.memory_guarantee', raw, 'a percentage of a RAM size the CT has none of');
    else put('Hardware.memory_guarantee', raw, 'limits.memory.guarantee', exact(Math.floor((ct.memoryBytes * Number(pct[1])) / 100)), 'a percentage of the RAM on VZ7, as a size');
  }

  // CPU: a count (0: every CPU), units as a weight, a cap in percent of one CPU.
  if (cpu.cpus !== undefined) {
    if (ct.cpus !== null && ct.cpus > 0) put('Hardware.cpu.cpus', shown(cpu.cpus), 'limits.cpu', String(ct.cpus));
    else kept('Hardware.cpu.cpus', shown(cpu.cpus), [], 'every CPU of the node, which is also what an unset limits.cpu gives');
  }
  if (ct.cpuunits !== null) {
    const weight = cpuunitsWeight(ct.cpuunits);
    const back = weight * (VZ_DEFAULT_CPUUNITS / 100);
    if (ct.cpuunits === VZ_DEFAULT_CPUUNITS) kept('Hardware.cpu.cpuunits', String(ct.cpuunits), [], `vzctl's default, which is also what an unset limits.cpu.weight gives`);
    else put('Hardware.cpu.cpuunits', String(ct.cpuunits), 'limits.cpu.weight', String(weight), back === ct.cpuunits ? `${VZ_DEFAULT_CPUUNITS} units are weight 100` : `rounded: weight ${weight} is ${back} units, which the CT gets at the first change of limits.cpu.weight`);
  }
  if (cpu.cpulimit !== undefined) {
    if (ct.cpulimitPct === null) dropped('Hardware.cpu.cpulimit', shown(cpu.cpulimit), 'not a percentage of one CPU (a limit in MHz): the CT keeps it until limits.cpu.cap is set');
    else if (ct.cpulimitPct === 0) kept('Hardware.cpu.cpulimit', shown(cpu.cpulimit), [], 'no cap, which is also what an unset limits.cpu.cap gives');
    else put('Hardware.cpu.cpulimit', shown(cpu.cpulimit), 'limits.cpu.cap', `${ct.cpulimitPct}%`);
  }
  if (cpu.ioprio !== undefined && cpu.ioprio !== DEFAULT_IOPRIO) dropped('Hardware.cpu.ioprio', shown(cpu.ioprio), 'the CT\'s disk I/O priority: Hangar has no key for it; it stays as it is');
  const procs = ubcLimit(row?.numproc);
  if (procs === undefined) dropped('vzlist.numproc', 'unknown', 'vzlist printed no process limit for the CT: it keeps its limit until limits.processes is set');
  else if (procs === null) kept('vzlist.numproc', 'unlimited', [], 'no limit, which is also what an unset limits.processes gives');
  else put('vzlist.numproc', String(procs), 'limits.processes', String(procs));

  // Disk: the root ploop disk's size (vzlist's hard limit in KiB, else prlctl's size in MiB); the inode count is fixed.
  const hdds = Object.entries(hw).filter(([k]) => /^hdd\d+$/.test(k));
  const rootHdd = hdds.find(([, v]) => obj(v).mnt === '/')?.[0] ?? (hw.hdd0 !== undefined ? 'hdd0' : undefined);
  const diskKiB = obj(row?.diskspace).hardlimit;
  if (typeof diskKiB === 'number' && diskKiB > 0 && diskKiB < UNLIMITED) put('vzlist.diskspace', `${diskKiB} (1 KiB blocks)`, 'limits.disk', exact(diskKiB * 1024));
  else if (ct.diskBytes !== null && rootHdd !== undefined) put(`Hardware.${rootHdd}.size`, shown(obj(hw[rootHdd]).size), 'limits.disk', exact(ct.diskBytes));
  for (const [k, v] of hdds.filter(([k]) => k !== rootHdd)) dropped(`Hardware.${k}`, shown(obj(v).image ?? obj(v).size ?? ''), 'a further disk of the CT: Hangar sizes the root disk only (limits.disk); it stays as it is');
  const inodes = obj(row?.diskinodes).hardlimit;
  if (typeof inodes === 'number') dropped('vzlist.diskinodes', String(inodes), 'the inode count of the CT\'s ploop file system, fixed when it was made: it stays as it is, and limits.disk.inodes cannot change it');

  // Network: venet IPv4 addresses (the first is the instance's own); veth NICs and IPv6 addresses stay as they are.
  const addresses = [...new Set(ct.ips.filter((a) => IPV4.test(a)))];
  const ips = shown(obj(hw.venet0).ips ?? '').trim();
  if (addresses.length > 0) kept('Hardware.venet0.ips', ips, addresses.length > 1 ? ['ipv4', 'openvz.ipadd'] : ['ipv4'], addresses.length > 1 ? 'the first is the instance\'s own address, the others openvz.ipadd' : undefined);
  if (addresses.length > 1) config['openvz.ipadd'] = addresses.slice(1).join(' ');
  for (const a of ct.ips.filter((x) => !IPV4.test(x))) dropped('Hardware.venet0.ips', a, 'not an IPv4 address: Hangar\'s addresses are IPv4; it stays on the CT as it is');
  for (const [k, v] of Object.entries(hw).filter(([k]) => /^net\d+$/.test(k))) dropped(`Hardware.${k}`, shown(obj(v).iface ?? obj(v).mac ?? ''), 'a veth NIC of the CT: the openvz7 driver manages venet addresses only; it stays as it is');

  // Identity and name service.
  if (ct.hostname) put('Hostname', ct.hostname, 'openvz.hostname', ct.hostname);
  else if (o.Hostname !== undefined) kept('Hostname', '', [], 'none set: the CT keeps none until openvz.hostname is set');
  const v4 = ct.nameservers.filter((a) => IPV4.test(a));
  if (v4.length) put('DNS Servers', ct.nameservers.join(' '), 'openvz.nameserver', v4.join(' '), v4.length < ct.nameservers.length ? 'the IPv4 resolvers' : undefined);
  for (const a of ct.nameservers.filter((x) => !IPV4.test(x))) dropped('DNS Servers', a, 'not an IPv4 address: openvz.nameserver takes IPv4 resolvers; the CT keeps it until openvz.nameserver is set');
  if (ct.searchdomains.length) put('Search Domains', ct.searchdomains.join(' '), 'openvz.searchdomain', ct.searchdomains.join(' '));
  const template = typeof row?.ostemplate === 'string' && row.ostemplate !== '' ? row.ostemplate.replace(/^\./, '') : undefined;
  if (template !== undefined) put('vzlist.ostemplate', shown(row?.ostemplate), 'openvz.ostemplate', template, 'informational: the CT is not made again from it');
  const description = str(o.Description);
  if (description) put('Description', description, 'user.description', description);
  if (ct.autostart !== null) put('Autostart', shown(o.Autostart), 'boot.autostart', String(ct.autostart), 'Hangar starts it when its host comes up; the node\'s own autostart stays as it is');
  const autostop = str(o.Autostop);
  if (autostop) dropped('Autostop', autostop, 'what the node does with the CT when it shuts down (prlctl set --autostop): Hangar has no key for it; it stays as it is');
  const features = str(o.Features);
  if (features) dropped('Features', features, 'the CT\'s features (prlctl set --features): Hangar has no key for them; they stay as they are');
  if (o['Nested virtualization'] === 'on') dropped('Nested virtualization', 'on', 'Hangar has no key for it; it stays as it is');
  if (obj(o['Offline management']).enabled === true) dropped('Offline management', 'enabled', 'Hangar has no key for it; it stays as it is');

  return { id: ct.ctid, uuid: ct.uuid, name: ct.name, state: ct.state, config, addresses, translated, untranslated };
}
