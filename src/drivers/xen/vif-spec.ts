// xl vif specs (xl-network-configuration(5)): parsed and validated as xl reads them, and rendered so they parse back the same.
//
// A spec is a comma-separated list of `key=value` settings (mac, ip, bridge, type, model, vifname, script, backend, rate,
// gatewaydev or its old name netdev, forwarddev, mtu, devid, vlan, accel, the colo_* settings) and the flags trusted and
// untrusted; empty parts are skipped and an empty spec is a NIC with every default. A setting given twice keeps the last
// value, as in xl. Unknown settings, malformed MAC addresses, IP addresses, rates (`10Mb/s`, `250KB/s`, `1MB/s@20ms`),
// MTUs, device ids and VLAN lists are refused with the offending part named. Rates are kept as bytes per second and a
// credit interval, exactly as xl computes them.
import { AppError } from '../../shared/errors.js';

/** A rate limit on the guest's outgoing traffic: credit replenished every intervalUs microseconds. */
export interface XlVifRate {
  bytesPerSecond: number;
  /** Credit interval in microseconds (xl's default is 50 ms). */
  intervalUs: number;
}

/** A NIC as xl understands it, in canonical form. */
export interface XlVifSpec {
  /** MAC address, lower case, colon-separated. */
  mac?: string;
  /** Addresses the hotplug script allows (space-separated in xl). */
  ip?: string[];
  bridge?: string;
  /** HVM only: "ioemu" (emulated and PV, the default) or "vif" (PV only). */
  type?: 'ioemu' | 'vif';
  /** HVM only: the emulated NIC model (rtl8139, e1000, ...). */
  model?: string;
  /** Backend (host) interface name. */
  vifname?: string;
  script?: string;
  /** Backend (driver) domain name. */
  backend?: string;
  rate?: XlVifRate;
  gatewaydev?: string;
  forwarddev?: string;
  mtu?: number;
  devid?: number;
  /** VLAN list as written ("10p/20", "100+10x4u"), validated. */
  vlan?: string;
  /** Accepted and ignored by xl ("not supported"). */
  accel?: string;
  trusted?: boolean;
  /** COLO settings (colo_sock_mirror_id=..., ...), by name. */
  colo?: Record<string, string>;
}

/** The credit interval xl uses when a rate has none. */
export const XL_DEFAULT_RATE_INTERVAL_US = 50_000;

const U32_MAX = 0xffffffff;

const COLO_KEYS: ReadonlySet<string> = new Set([
  ...['mirror', 'compare_sec_in', 'redirector0', 'redirector1', 'redirector2', 'compare_pri_in', 'compare_notify', 'sec_redirector0', 'sec_redirector1']
    .flatMap((s) => ['id', 'ip', 'port'].map((f) => `colo_sock_${s}_${f}`)),
  'colo_filter_mirror_queue', 'colo_filter_mirror_outdev',
  ...['redirector0', 'redirector1', 'sec_redirector0', 'sec_redirector1'].flatMap((s) => ['queue', 'indev', 'outdev'].map((f) => `colo_filter_${s}_${f}`)),
  'colo_filter_sec_rewriter0_queue',
  'colo_compare_pri_in', 'colo_compare_sec_in', 'colo_compare_out', 'colo_compare_notify_dev',
  'colo_checkpoint_host', 'colo_checkpoint_port',
]);

const STRING_KEYS = ['bridge', 'model', 'vifname', 'script', 'backend', 'gatewaydev', 'forwarddev', 'accel'] as const;
const KNOWN = ['mac', 'ip', 'bridge', 'type', 'model', 'vifname', 'script', 'backend', 'rate', 'gatewaydev', 'netdev', 'forwarddev', 'mtu', 'devid', 'vlan', 'accel', 'trusted', 'untrusted', 'colo_*'];

const vifError = (spec: string, problem: string, part?: string) =>
  new AppError('INVALID_CONFIG', `Invalid vif spec ${JSON.stringify(spec)}: ${problem}${part !== undefined ? ` (at ${JSON.stringify(part)})` : ''}`, {
    details: { spec, ...(part !== undefined ? { part } : {}) },
  });

// C strtoull with base 0 on a leading run of digits, as xl reads rate numbers ("010" is octal 8).
function cUnsigned(digits: string): number {
  if (digits.length > 1 && digits.startsWith('0')) {
    const octal = /^0[0-7]*/.exec(digits)![0];
    return parseInt(octal, 8);
  }
  return Number(digits);
}

/** Parses an xl rate ("10Mb/s", "250KB/s", "1MB/s@20ms"): G/M/K are decimal, B bytes and b bits; the interval is in s (default), ms or us. */
export function parseVifRate(text: string): XlVifRate {
  const fail = (problem: string): never => { throw new AppError('INVALID_CONFIG', `Invalid rate ${JSON.stringify(text)}: ${problem}`); };
  const at = text.indexOf('@');
  const amount = at < 0 ? text : text.slice(0, at);
  if (amount === '') fail('no rate before "@" (e.g. 10Mb/s@20ms)');
  const m = /^([0-9]+)([GMK]?)([Bb])\/s$/.exec(amount);
  if (!m) fail('expected a number, an optional G, M or K, then B/s (bytes) or b/s (bits), e.g. 10Mb/s or 250KB/s');
  const n = cUnsigned(m![1]!);
  // xl refuses a zero and a number above 2^32-1 before applying the unit.
  if (n === 0) fail('the rate must be greater than zero');
  if (n > U32_MAX) fail(`the number ${m![1]} is above 4294967295 (use a larger unit)`);
  let bytesPerSecond = n * ({ G: 1e9, M: 1e6, K: 1e3, '': 1 } as const)[m![2] as 'G' | 'M' | 'K' | ''];
  if (m![3] === 'b') bytesPerSecond = Math.floor(bytesPerSecond / 8);
  if (bytesPerSecond === 0) fail('the rate is below one byte per second');
  let intervalUs = XL_DEFAULT_RATE_INTERVAL_US;
  if (at >= 0) {
    const interval = text.slice(at + 1);
    const im = /^([0-9]+)([mu]?)s?$/.exec(interval);
    if (!im) fail(`invalid replenishment interval ${JSON.stringify(interval)}: expected a number of s (the default unit), ms or us, e.g. 20ms`);
    const v = cUnsigned(im![1]!);
    if (v === 0) fail('the replenishment interval must be greater than zero');
    if (v > U32_MAX) fail(`the interval ${im![1]} is too large`);
    intervalUs = v * (im![2] === 'm' ? 1e3 : im![2] === 'u' ? 1 : 1e6);
    if (intervalUs > U32_MAX) fail(`the interval ${interval} is above 4294967295 us`);
  }
  // xl keeps the credit per interval in 64 bits and refuses a rate whose credit would overflow it.
  if (!Number.isSafeInteger(bytesPerSecond) || BigInt(bytesPerSecond) * BigInt(intervalUs) > 0xffffffffffffffffn) {
    fail('rate overflow: the credit per interval (bytes per second times the interval) does not fit in 64 bits');
  }
  return { bytesPerSecond, intervalUs };
}

/** Renders a rate in the shortest exact xl form (decimal units, the interval only when it is not xl's 50 ms default). */
export function renderVifRate(rate: XlVifRate): string {
  const { bytesPerSecond: b, intervalUs: us } = rate;
  if (!Number.isSafeInteger(b) || b <= 0) throw new AppError('INVALID_CONFIG', `Invalid rate of ${b} bytes per second: must be a whole number above zero (and below 2^53)`);
  if (!Number.isSafeInteger(us) || us <= 0 || us > U32_MAX) throw new AppError('INVALID_CONFIG', `Invalid rate interval of ${us} us: must be between 1 and 4294967295`);
  const unit = ([[1e9, 'G'], [1e6, 'M'], [1e3, 'K'], [1, '']] as const).find(([f]) => b % f === 0)!;
  const n = b / unit[0];
  if (n > U32_MAX) throw new AppError('INVALID_CONFIG', `Rate of ${b} bytes per second cannot be written for xl: ${n}${unit[1]}B/s is above 4294967295${unit[1]}B/s`);
  const interval = us === XL_DEFAULT_RATE_INTERVAL_US ? '' : us % 1e6 === 0 ? `@${us / 1e6}s` : us % 1e3 === 0 ? `@${us / 1e3}ms` : `@${us}us`;
  return `${n}${unit[1]}B/s${interval}`;
}

const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$/;

/** True for an IPv4 or IPv6 address, optionally with a /prefix. */
export function isIpAddress(text: string): boolean {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const prefix = slash < 0 ? undefined : text.slice(slash + 1);
  const v4 = IPV4.test(addr);
  const v6 = !v4 && isIpv6(addr);
  if (!v4 && !v6) return false;
  if (prefix === undefined) return true;
  return /^[0-9]{1,3}$/.test(prefix) && Number(prefix) <= (v4 ? 32 : 128);
}

function isIpv6(addr: string): boolean {
  if (!/^[0-9a-fA-F:.]+$/.test(addr) || addr.split('::').length > 2 || addr.includes(':::')) return false;
  // A single colon may not start or end the address ("::" may).
  if ((addr.startsWith(':') && !addr.startsWith('::')) || (addr.endsWith(':') && !addr.endsWith('::'))) return false;
  let groups = addr.split(':');
  const last = groups[groups.length - 1]!;
  // An embedded IPv4 tail (::ffff:10.0.0.1) counts as two groups.
  if (last.includes('.')) {
    if (!IPV4.test(last)) return false;
    groups = [...groups.slice(0, -1), '0', '0'];
  }
  const compressed = addr.includes('::');
  const filled = groups.filter((g) => g !== '');
  if (!filled.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  return compressed ? filled.length <= 7 : filled.length === 8 && groups.length === 8;
}

// VLAN terms: "10", "10p", "10u", "10-20", "10-20u", "100+10x4", "100+10x4u", separated by "/".
function vlanProblem(vlan: string): string | undefined {
  let pvids = 0;
  const terms = vlan.split('/');
  for (const term of terms) {
    const m = /^([0-9]+)(?:(p|u)|-([0-9]+)(u?)|\+([0-9]+)x([0-9]+)(u?))?$/.exec(term);
    if (!m) return `VLAN term ${JSON.stringify(term)} is not ID[p|u], ID-ID[u] or ID+OFFSETxCOUNT[u]`;
    const first = Number(m[1]);
    const ids = [first];
    if (m[3] !== undefined) ids.push(Number(m[3]));
    if (m[5] !== undefined) ids.push(first + Number(m[5]) * Number(m[6]));
    if (ids.some((id) => id < 1 || id > 4094)) return `VLAN term ${JSON.stringify(term)} names an ID outside 1-4094`;
    if (m[3] !== undefined && Number(m[3]) < first) return `VLAN range ${JSON.stringify(term)} ends below its start`;
    if (m[2] === 'p') pvids++;
  }
  if (pvids > 1) return 'more than one VLAN is marked as the PVID ("p")';
  if (terms.length > 1 && pvids === 0) return 'one VLAN must be marked as the PVID ("p") when several are given';
  return undefined;
}

const positiveInt = (text: string, max: number): number | undefined => {
  if (!/^[0-9]+$/.test(text)) return undefined;
  const n = Number(text);
  return n <= max ? n : undefined;
};

/** Parses one vif spec string; throws INVALID_CONFIG naming the spec and the offending part. */
export function parseVifSpec(spec: string): XlVifSpec {
  const fail = (problem: string, part?: string): never => { throw vifError(spec, problem, part); };
  const ctl = /[\x00-\x1f\x7f]/.exec(spec);
  if (ctl) fail(`control character U+${ctl[0].charCodeAt(0).toString(16).padStart(4, '0')} (a vif spec is one line)`);
  const out: XlVifSpec = {};
  for (const raw of spec.split(',')) {
    const part = raw.trim();
    // xl splits with strtok, which skips empty parts.
    if (part === '') continue;
    if (part === 'trusted' || part === 'untrusted') { out.trusted = part === 'trusted'; continue; }
    const eq = part.indexOf('=');
    if (eq < 0) fail(`unknown vif setting ${JSON.stringify(part)} (expected key=value; xl knows ${KNOWN.join(', ')})`, part);
    const key = part.slice(0, eq);
    const value = part.slice(eq + 1);
    const where = part;
    if (key === 'mac') {
      const m = /^([0-9a-fA-F]{1,2})([:-])([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})$/.exec(value);
      if (!m) fail('malformed MAC address: expected six groups of one or two hex digits separated by ":" (or "-"), e.g. 00:16:3e:12:34:56', where);
      out.mac = [m![1], m![3], m![4], m![5], m![6], m![7]].map((g) => g!.toLowerCase().padStart(2, '0')).join(':');
    } else if (key === 'ip') {
      const ips = value.split(/\s+/).filter(Boolean);
      if (ips.length === 0) fail('ip= needs at least one address', where);
      const bad = ips.find((ip) => !isIpAddress(ip));
      if (bad !== undefined) fail(`${JSON.stringify(bad)} is not an IPv4 or IPv6 address (ip= takes addresses separated by spaces)`, where);
      out.ip = ips;
    } else if (key === 'type') {
      if (value !== 'ioemu' && value !== 'vif') fail(`unknown type ${JSON.stringify(value)} (ioemu or vif)`, where);
      out.type = value as 'ioemu' | 'vif';
    } else if (key === 'rate') {
      try {
        out.rate = parseVifRate(value);
      } catch (e) {
        fail((e as Error).message, where);
      }
    } else if (key === 'mtu') {
      const n = positiveInt(value, 65535);
      if (n === undefined || n < 68) fail(`mtu must be a whole number from 68 to 65535, not ${JSON.stringify(value)}`, where);
      out.mtu = n;
    } else if (key === 'devid') {
      const n = positiveInt(value, 0x7fffffff);
      if (n === undefined) fail(`devid must be a whole number (0 or more), not ${JSON.stringify(value)}`, where);
      out.devid = n;
    } else if (key === 'vlan') {
      const problem = vlanProblem(value);
      if (problem) fail(problem, where);
      out.vlan = value;
    } else if (key === 'netdev' || (STRING_KEYS as readonly string[]).includes(key)) {
      // netdev is xl's deprecated name for gatewaydev.
      if (value === '') fail(`${key}= needs a value`, where);
      out[(key === 'netdev' ? 'gatewaydev' : key) as (typeof STRING_KEYS)[number]] = value;
    } else if (COLO_KEYS.has(key)) {
      if (value === '') fail(`${key}= needs a value`, where);
      out.colo = { ...out.colo, [key]: value };
    } else {
      fail(`unknown vif setting "${key}" (xl knows ${KNOWN.join(', ')})`, where);
    }
  }
  return out;
}

/** Renders a NIC in canonical form; parseVifSpec(renderVifSpec(v)) equals v. */
export function renderVifSpec(v: XlVifSpec): string {
  const fail = (problem: string): never => { throw new AppError('INVALID_CONFIG', `Cannot render vif${v.mac ? ` ${v.mac}` : ''}: ${problem}`); };
  const parts: string[] = [];
  const add = (key: string, value: string) => {
    // No value can hold a comma (xl has no escaping in vif specs) or surrounding white space (parsing trims it).
    if (value === '' || /[,\x00-\x1f\x7f]/.test(value) || value.trim() !== value) fail(`${key} ${JSON.stringify(value)} is empty or contains a comma, a control character or surrounding white space`);
    parts.push(`${key}=${value}`);
  };
  const check = (key: string, value: string) => {
    try {
      return parseVifSpec(`${key}=${value}`);
    } catch (e) {
      return fail((e as Error).message);
    }
  };
  if (v.mac !== undefined) { add('mac', v.mac); if (check('mac', v.mac).mac !== v.mac) fail(`MAC ${v.mac} is not in canonical form (lower case, two digits per group, ":")`); }
  if (v.bridge !== undefined) add('bridge', v.bridge);
  if (v.ip !== undefined) {
    if (v.ip.length === 0) fail('ip is an empty list');
    add('ip', v.ip.join(' '));
    check('ip', v.ip.join(' '));
    if (v.ip.some((ip) => /\s/.test(ip))) fail('an ip address contains white space');
  }
  if (v.type !== undefined) { add('type', v.type); check('type', v.type); }
  for (const key of ['model', 'vifname', 'script', 'backend', 'gatewaydev', 'forwarddev'] as const) if (v[key] !== undefined) add(key, v[key]);
  if (v.rate !== undefined) add('rate', renderVifRate(v.rate));
  for (const key of ['mtu', 'devid', 'vlan'] as const) {
    if (v[key] === undefined) continue;
    add(key, String(v[key]));
    check(key, String(v[key]));
  }
  if (v.accel !== undefined) add('accel', v.accel);
  if (v.trusted !== undefined) parts.push(v.trusted ? 'trusted' : 'untrusted');
  for (const [key, value] of Object.entries(v.colo ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    if (!COLO_KEYS.has(key)) fail(`unknown COLO setting "${key}"`);
    add(key, value);
  }
  return parts.join(',');
}
