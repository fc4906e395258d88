// Parsers of what an OpenVZ 7 / Virtuozzo host's tools print: `prlctl list -i -j` (one object per CT), `vzlist -j` (fields as named), `vzpkg list -O`, the tools' versions and /proc/user_beancounters, into Hangar's terms.
import { AppError } from '../../shared/errors.js';
import type { Beancounter, InstanceState, Usage } from '../../shared/schemas.js';

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
  const data = jsonArray(text, 'prlctl list -i -j');
  const out: Vz7Ct[] = [];
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
    out.push({
      uuid, ctid, name: str(o.Name) ?? ctid, state: vz7State(rawState), rawState,
      ostemplate: str(o.OS), home: str(o.Home),
      memoryBytes: prlSize(hw.memory?.size), cpus: num(cpu.cpus), cpuunits: num(cpu.cpuunits), cpulimitPct: cpulimit ? Number(cpulimit) : null,
      diskBytes: prlSize(disk?.size), ips: words(venet.ips).map((a) => a.replace(/\/.*$/, '')),
      hostname: str(o.Hostname), nameservers: words(o['DNS Servers']), searchdomains: words(o['Search Domains']),
      autostart: o.Autostart === 'on' ? true : o.Autostart === 'off' ? false : null, uptimeS: num(o.Uptime),
    });
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
