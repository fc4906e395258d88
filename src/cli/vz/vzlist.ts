// vzlist over Hangar's API: vzctl's field names, default columns, text layout (widths, '-' for unset) and JSON; -a -S -H -o -s -j -L -1 -n.
import type { Beancounter, Instance } from '../../shared/schemas.js';
import { parseSize } from '../../shared/units.js';
import { weightCpuunits } from '../../shared/vz-samples.js';
import type { Ctx } from '../context.js';
import { VzError } from './args.js';
import { ctidOf } from './vzctl.js';

/** vzlist's exit code for bad options and fields. */
const VZLIST_ERROR = 1;
/** vzctl's "unlimited" (LONG_MAX), as vzlist prints it. */
const LONG_MAX = 9223372036854775807n;

/** Beancounter names with their vzlist headers, in vzlist's order; each also has .m (maxheld) .b (barrier) .l (limit) .f (failcnt) fields. */
const UBC: ReadonlyArray<[string, string]> = [
  ['kmemsize', 'KMEMSIZE'], ['lockedpages', 'LOCKEDP'], ['privvmpages', 'PRIVVMP'], ['shmpages', 'SHMP'], ['numproc', 'NPROC'],
  ['physpages', 'PHYSP'], ['vmguarpages', 'VMGUARP'], ['oomguarpages', 'OOMGUARP'], ['numtcpsock', 'NTCPSOCK'], ['numflock', 'NFLOCK'],
  ['numpty', 'NPTY'], ['numsiginfo', 'NSIGINFO'], ['tcpsndbuf', 'TCPSNDB'], ['tcprcvbuf', 'TCPRCVB'], ['othersockbuf', 'OTHSOCKB'],
  ['dgramrcvbuf', 'DGRAMRB'], ['numothersock', 'NOTHSOCK'], ['dcachesize', 'DCACHESZ'], ['numfile', 'NFILE'], ['numiptent', 'NIPTENT'],
  ['swappages', 'SWAPP'],
];

/** What a field needs fetched beyond the list: beancounters, the instance's info (details, usage), or what runs inside. */
type Need = 'none' | 'ubc' | 'info' | 'inside';

/** One vzlist field: name, header, printf width (negative: left-aligned), what it needs, and its value per CT. */
export interface VzField {
  name: string;
  header: string;
  width: number;
  need: Need;
  /** In JSON output (suffixed fields are text only). */
  json: boolean;
  value: (ct: CtView) => VzValue;
}

/** A field's value: text or number (printed), null (printed '-'), or an object/array for JSON. */
export type VzValue = string | number | bigint | boolean | null | VzValue[] | { [k: string]: VzValue };

/** Everything known about one CT for listing. */
export interface CtView {
  instance: Instance;
  /** Its info (details, usage) when a field needed it. */
  info?: Instance;
  ubc?: Beancounter[];
  /** /proc/loadavg and /proc/uptime as seen inside. */
  inside?: { loadavg: number[]; uptime: number };
}

const cfg = (ct: CtView, key: string): string | undefined => ct.instance.config[key];
const running = (ct: CtView) => ct.instance.state === 'running' || ct.instance.state === 'frozen';
const bytes = (ct: CtView, key: string): number | null => { const v = cfg(ct, key); return v === undefined ? null : parseSize(v, key); };
/** The name vzctl knows besides the CTID: none for the ctNNN Hangar gives a CT made without --name. */
const vzName = (ct: CtView): string | null => (ct.instance.name === `ct${cfg(ct, 'openvz.ctid') ?? ''}` ? null : ct.instance.name);
const words = (ct: CtView, key: string): string[] => (cfg(ct, key) ?? '').split(' ').filter(Boolean);

/** vzlist's status of a CT. */
export function vzStatus(ct: CtView): string {
  if (ct.instance.state === 'frozen') return 'suspended';
  if (running(ct)) return 'running';
  return /\(mounted\)/.test(ct.info?.details?.root ?? '') ? 'mounted' : 'stopped';
}

/** Disk usage and limits in KiB or inodes from the info's details ("N of M bytes used", "N of M used"). */
function quota(ct: CtView, which: 'space' | 'inodes'): { usage: number; softlimit: number; hardlimit: number } | null {
  const hard = which === 'space' ? bytes(ct, 'limits.disk') : cfg(ct, 'limits.disk.inodes') === undefined ? null : Number(cfg(ct, 'limits.disk.inodes'));
  const d = ct.info?.details?.[which === 'space' ? 'disk space' : 'disk inodes'];
  const m = d === undefined ? null : /^(\d+) of (\d+)/.exec(d);
  const usage = m ? Number(m[1]) : 0;
  const total = m ? Number(m[2]) : hard;
  const scale = which === 'space' ? 1024 : 1;
  if (total === null) return null;
  const h = Math.floor((hard ?? total) / scale);
  return { usage: Math.ceil(usage / scale), softlimit: h, hardlimit: h };
}

function ubcOf(ct: CtView, name: string): { held: bigint; maxheld: bigint; barrier: bigint; limit: bigint; failcnt: bigint } | null {
  const b = ct.ubc?.find((x) => x.resource === name);
  const lim = (v: number | null | undefined) => (v === null || v === undefined ? LONG_MAX : BigInt(v));
  if (b) return { held: BigInt(b.held), maxheld: BigInt(b.maxheld ?? b.held), barrier: lim(b.barrier), limit: lim(b.limit), failcnt: BigInt(b.failcnt ?? 0) };
  // A stopped CT holds nothing; its barrier and limit are its config's.
  if (running(ct)) return null;
  const fromConfig: Record<string, bigint | null> = {
    physpages: bytes(ct, 'limits.memory') === null ? null : BigInt(Math.floor(bytes(ct, 'limits.memory')! / 4096)),
    swappages: bytes(ct, 'limits.memory.swap') === null ? null : BigInt(Math.floor(bytes(ct, 'limits.memory.swap')! / 4096)),
    numproc: cfg(ct, 'limits.processes') === undefined ? null : BigInt(cfg(ct, 'limits.processes')!),
  };
  if (!(name in fromConfig)) return null;
  const l = fromConfig[name] ?? LONG_MAX;
  return { held: 0n, maxheld: 0n, barrier: name === 'numproc' ? l : 0n, limit: l, failcnt: 0n };
}

function fieldTable(): VzField[] {
  const f = (name: string, header: string, width: number, value: VzField['value'], need: Need = 'none', json = true): VzField => ({ name, header, width, need, json, value });
  const ctid = (ct: CtView) => (/^\d+$/.test(ctidOf(ct.instance)) ? Number(ctidOf(ct.instance)) : ctidOf(ct.instance));
  const out: VzField[] = [
    f('ctid', 'CTID', 10, ctid), f('veid', 'CTID', 10, ctid), f('vpsid', 'CTID', 10, ctid),
    f('private', 'PRIVATE', -32, (ct) => ct.info?.details?.['private area']?.replace(/ \(.*$/, '') ?? null, 'info'),
    f('root', 'ROOT', -32, (ct) => ct.info?.details?.root?.replace(/ \(.*$/, '') ?? null, 'info'),
    f('mount_opts', 'MOUNT_OPTS', -16, () => null),
    f('origin_sample', 'ORIGIN_SAMPLE', 32, () => null),
    f('hostname', 'HOSTNAME', -32, (ct) => cfg(ct, 'openvz.hostname') ?? ct.instance.name),
    f('name', 'NAME', -32, (ct) => vzName(ct)),
    f('smart_name', 'SMARTNAME', 10, (ct) => vzName(ct) ?? ctid(ct)),
    f('description', 'DESCRIPTION', -32, (ct) => cfg(ct, 'user.description') ?? null),
    f('ostemplate', 'OSTEMPLATE', -32, (ct) => cfg(ct, 'openvz.ostemplate') ?? null),
    f('ip', 'IP_ADDR', -15, (ct) => [ct.instance.ipv4, ...words(ct, 'openvz.ipadd')].filter((a): a is string => Boolean(a))),
    f('nameserver', 'NAMESERVER', -15, (ct) => words(ct, 'openvz.nameserver')),
    f('searchdomain', 'SEARCHDOMAIN', -15, (ct) => words(ct, 'openvz.searchdomain')),
    f('status', 'STATUS', -9, vzStatus, 'info'),
  ];
  for (const [name, header] of UBC) {
    out.push(f(name, header, 10, (ct) => { const u = ubcOf(ct, name); return u && { held: u.held, maxheld: u.maxheld, barrier: u.barrier, limit: u.limit, failcnt: u.failcnt }; }, 'ubc'));
    for (const [s, key] of [['m', 'maxheld'], ['b', 'barrier'], ['l', 'limit'], ['f', 'failcnt']] as const) {
      out.push(f(`${name}.${s}`, `${header}.${s.toUpperCase()}`, 10, (ct) => ubcOf(ct, name)?.[key] ?? null, 'ubc', false));
    }
  }
  out.push(
    f('diskspace', 'DSPACE', 10, (ct) => quota(ct, 'space'), 'info'),
    f('diskspace.s', 'DSPACE.S', 10, (ct) => quota(ct, 'space')?.softlimit ?? null, 'info', false),
    f('diskspace.h', 'DSPACE.H', 10, (ct) => quota(ct, 'space')?.hardlimit ?? null, 'info', false),
    f('diskinodes', 'DINODES', 10, (ct) => quota(ct, 'inodes'), 'info'),
    f('diskinodes.s', 'DINODES.S', 10, (ct) => quota(ct, 'inodes')?.softlimit ?? null, 'info', false),
    f('diskinodes.h', 'DINODES.H', 10, (ct) => quota(ct, 'inodes')?.hardlimit ?? null, 'info', false),
    f('laverage', 'LAVERAGE', 14, (ct) => ct.inside?.loadavg ?? null, 'inside'),
    f('uptime', 'UPTIME', 15, (ct) => (ct.inside ? Math.round(ct.inside.uptime * 1000) / 1000 : null), 'inside'),
    f('cpulimit', 'CPULIM', 7, (ct) => (cfg(ct, 'limits.cpu.cap') ? Number.parseFloat(cfg(ct, 'limits.cpu.cap')!) : null)),
    f('cpuunits', 'CPUUNI', 7, (ct) => weightCpuunits(Number(cfg(ct, 'limits.cpu.weight') ?? '100'))),
    f('cpus', 'CPUS', 5, (ct) => Number(cfg(ct, 'limits.cpu') ?? '0')),
    f('ioprio', 'IOP', 3, () => 0), f('iolimit', 'IOLIMIT', 10, () => 0), f('iopslimit', 'IOPS', 4, () => 0),
    f('onboot', 'ONBOOT', 6, (ct) => (cfg(ct, 'boot.autostart') === undefined ? null : cfg(ct, 'boot.autostart') === 'true')),
    f('bootorder', 'BOOTORDER', 10, () => null),
    f('layout', 'LAYOUT', 6, () => 'ext4'),
    f('features', 'FEATURES', -15, () => null),
    f('vswap', 'VSWAP', 5, (ct) => cfg(ct, 'limits.memory') !== undefined),
    f('disabled', 'DISABL', 6, () => false),
    f('vm_overcommit', 'VM_OVC', 6, () => null),
    f('netfilter', 'NETFILTER', -9, () => null),
    f('capability', 'CAPABILITY', -15, () => null),
  );
  return out;
}

/** Every field, in vzlist's order. */
export const VZLIST_FIELDS: readonly VzField[] = fieldTable();

/** The columns without -o (and with -n). */
export const VZLIST_DEFAULT = ['ctid', 'numproc', 'status', 'ip', 'hostname'];
export const VZLIST_DEFAULT_NAMES = ['smart_name', 'numproc', 'status', 'ip', 'hostname'];

/** A value as vzlist prints it in a column: '-' for unset, yes/no, UBC objects by their held value, lists space-separated. */
function text(v: VzValue): string {
  if (v === null) return '-';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (Array.isArray(v)) return v.length ? v.map((x) => (typeof x === 'number' ? x.toFixed(2) : text(x))).join(v.every((x) => typeof x === 'number') ? '/' : ' ') : '-';
  if (typeof v === 'object') return text((v.held ?? v.usage ?? null) as VzValue);
  return String(v);
}

const pad = (s: string, width: number) => (width < 0 ? s.padEnd(-width) : s.padStart(width));

/** The text table: each field in its width, one space between, trailing blanks trimmed; a header row unless noHeader. */
export function formatVzText(fields: readonly VzField[], rows: readonly CtView[], noHeader: boolean): string {
  const lines: string[] = [];
  if (!noHeader) lines.push(fields.map((f) => pad(f.header, f.width)).join(' ').trimEnd());
  // A stopped CT holds nothing: its beancounter columns are '-' (JSON still has its barrier and limit).
  for (const r of rows) lines.push(fields.map((f) => pad(f.need === 'ubc' && !running(r) ? '-' : text(f.value(r)), f.width)).join(' ').trimEnd());
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** JSON as vzlist prints it (2-space nesting, LONG_MAX written exactly). */
export function formatVzJson(fields: readonly VzField[], rows: readonly CtView[]): string {
  const emit = (v: VzValue, indent: string): string => {
    if (v === null) return 'null';
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    if (typeof v === 'string') return JSON.stringify(v);
    const inner = `${indent}  `;
    if (Array.isArray(v)) return v.length ? `[\n${v.map((x) => inner + emit(x, inner)).join(',\n')}\n${indent}]` : '[]';
    const ks = Object.keys(v);
    return ks.length ? `{\n${ks.map((k) => `${inner}${JSON.stringify(k)}: ${emit(v[k]!, inner)}`).join(',\n')}\n${indent}}` : '{}';
  };
  return `${emit(rows.map((r) => Object.fromEntries(fields.map((f) => [f.name, f.value(r)]))) as VzValue, '')}\n`;
}

/** Orders rows by a field (numbers numerically, else as text); "-field" reverses. */
export function sortVz(rows: CtView[], spec: string): CtView[] {
  const desc = spec.startsWith('-');
  const field = VZLIST_FIELDS.find((f) => f.name === (desc ? spec.slice(1) : spec));
  if (!field) throw new VzError(VZLIST_ERROR, `Invalid sort field: ${spec}`);
  const key = (r: CtView): number | string => {
    const v = field.value(r);
    const x = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v.held ?? v.usage ?? null) : v;
    return typeof x === 'number' || typeof x === 'bigint' ? Number(x) : text(x as VzValue);
  };
  return [...rows].sort((a, b) => {
    const ka = key(a); const kb = key(b);
    const c = typeof ka === 'number' && typeof kb === 'number' ? ka - kb : String(ka).localeCompare(String(kb));
    return desc ? -c : c;
  });
}

/** Parsed vzlist options. */
export interface VzListOptions {
  all: boolean; stopped: boolean; noHeader: boolean; json: boolean; listFields: boolean; onlyIds: boolean; names: boolean;
  fields?: string[]; sort?: string; ids: string[];
}

/** Parses vzlist's options (short flags may be grouped: -aH). */
export function parseVzListArgs(argv: readonly string[]): VzListOptions {
  const o: VzListOptions = { all: false, stopped: false, noHeader: false, json: false, listFields: false, onlyIds: false, names: false, ids: [] };
  const long: Record<string, keyof VzListOptions> = { '--all': 'all', '--stopped': 'stopped', '--no-header': 'noHeader', '--json': 'json', '--list': 'listFields', '--name': 'names' };
  const short: Record<string, keyof VzListOptions> = { a: 'all', S: 'stopped', H: 'noHeader', j: 'json', L: 'listFields', '1': 'onlyIds', n: 'names' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (what: string) => {
      const v = argv[++i];
      if (v === undefined) throw new VzError(VZLIST_ERROR, `Option ${what} requires an argument`);
      return v;
    };
    if (a === '-o' || a === '--output') o.fields = value(a).split(',').filter(Boolean);
    else if (a.startsWith('--output=')) o.fields = a.slice(9).split(',').filter(Boolean);
    else if (a === '-s' || a === '--sort') o.sort = value(a);
    else if (a.startsWith('--sort=')) o.sort = a.slice(7);
    else if (long[a]) (o as unknown as Record<string, boolean>)[long[a]] = true;
    else if (/^-[A-Za-z1]+$/.test(a)) {
      for (const c of a.slice(1)) {
        const k = short[c];
        if (!k) throw new VzError(VZLIST_ERROR, `Invalid option -- '${c}'`);
        (o as unknown as Record<string, boolean>)[k] = true;
      }
    } else if (a.startsWith('-')) throw new VzError(VZLIST_ERROR, `Invalid option: ${a}`);
    else o.ids.push(a);
  }
  return o;
}

/** Runs vzlist; answers its exit code. */
export async function vzlist(ctx: Ctx, argv: readonly string[]): Promise<number> {
  try {
    const o = parseVzListArgs(argv);
    if (o.listFields) {
      ctx.out(VZLIST_FIELDS.map((f) => `${f.name.padEnd(15)} ${f.header}`.trimEnd()).join('\n'));
      return 0;
    }
    const names = o.onlyIds ? ['ctid'] : o.fields ?? (o.json ? VZLIST_FIELDS.filter((f) => f.json).map((f) => f.name) : o.names ? VZLIST_DEFAULT_NAMES : VZLIST_DEFAULT);
    const fields = names.map((n) => {
      const f = VZLIST_FIELDS.find((x) => x.name === n);
      if (!f) throw new VzError(VZLIST_ERROR, `Unknown field: ${n}`);
      if (o.json && !f.json) throw new VzError(VZLIST_ERROR, `Field \`${n}' is not available in JSON output`);
      return f;
    });
    if (o.sort !== undefined && !VZLIST_FIELDS.some((f) => f.name === o.sort!.replace(/^-/, ''))) throw new VzError(VZLIST_ERROR, `Invalid sort field: ${o.sort}`);
    let cts = (await ctx.client.listInstances()).filter((i) => i.driver === 'openvz');
    if (o.ids.length) cts = cts.filter((i) => o.ids.some((id) => id === i.name || id === i.config['openvz.ctid']));
    else if (o.stopped) cts = cts.filter((i) => i.state !== 'running' && i.state !== 'frozen');
    else if (!o.all) cts = cts.filter((i) => i.state === 'running' || i.state === 'frozen');
    const needs = new Set<Need>([...fields, ...(o.sort ? [VZLIST_FIELDS.find((f) => f.name === o.sort!.replace(/^-/, ''))!] : [])].map((f) => f.need));
    const rows: CtView[] = [];
    for (const instance of cts) {
      const view: CtView = { instance };
      const up = instance.state === 'running' || instance.state === 'frozen';
      // Status of a stopped CT (mounted or not) is in its info; a running one's is its state.
      if (needs.has('info') && (!up || fields.some((f) => f.need === 'info' && f.name !== 'status'))) view.info = await ctx.client.getInstance(instance.name).catch(() => undefined);
      if (needs.has('ubc') && up) view.ubc = await ctx.client.beancounters(instance.name).catch(() => undefined);
      if (needs.has('inside') && up) view.inside = await insideStats(ctx, instance.name);
      rows.push(view);
    }
    ctx.io.stdout.write(o.json ? formatVzJson(fields, o.sort ? sortVz(rows, o.sort) : rows) : formatVzText(fields, sortVz(rows, o.sort ?? (fields[0]!.name === 'smart_name' ? 'smart_name' : 'ctid')), o.noHeader || o.onlyIds));
    return 0;
  } catch (err) {
    ctx.err(err instanceof Error ? err.message : String(err));
    return err instanceof VzError ? err.exitCode : VZLIST_ERROR;
  }
}

/** A CT's load average and uptime as it sees them (lxcfs gives it its own). */
async function insideStats(ctx: Ctx, name: string): Promise<CtView['inside']> {
  const chunks: Buffer[] = [];
  const sink = new (await import('node:stream')).Writable({ write(c: Buffer, _e, cb) { chunks.push(Buffer.from(c)); cb(); } });
  const code = await ctx.client.exec(name, { command: ['cat', '/proc/loadavg', '/proc/uptime'] }, { stdin: '', stdout: sink, stderr: sink }).catch(() => 1);
  const lines = Buffer.concat(chunks).toString('utf8').trim().split('\n');
  if (code !== 0 || lines.length < 2) return undefined;
  return { loadavg: lines[0]!.split(/\s+/).slice(0, 3).map(Number), uptime: Number(lines[1]!.split(/\s+/)[0]) };
}
