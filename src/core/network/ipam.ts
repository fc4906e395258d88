// IPv4 address management for the managed bridge: subnet parsing, address checks, stable allocation and MAC addresses (pure).
import { AppError } from '../../shared/errors.js';

/** A parsed IPv4 subnet; size counts every address in it, network and broadcast included. */
export interface Subnet {
  cidr: string;
  network: string;
  prefixLength: number;
  netmask: string;
  /** The first host address, owned by the bridge. */
  gateway: string;
  broadcast: string;
  firstHost: string;
  lastHost: string;
  size: number;
}

const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])';
const IPV4_RE = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

/** True for a dotted-quad IPv4 address in canonical form (no leading zeros, no whitespace). */
export function isValidIpv4(addr: string): boolean {
  return typeof addr === 'string' && IPV4_RE.test(addr);
}

/** Converts a valid dotted-quad address to an unsigned 32-bit integer. */
export function ipToInt(addr: string): number {
  if (!isValidIpv4(addr)) throw new AppError('INVALID_ADDRESS', `Invalid IPv4 address ${JSON.stringify(addr)}`);
  return addr.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

/** Converts an unsigned 32-bit integer to a dotted-quad address. */
export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Parses "a.b.c.d/len" (host bits must be zero, len 8..30); INVALID_ADDRESS otherwise. */
export function parseSubnet(cidr: string): Subnet {
  const m = typeof cidr === 'string' ? /^([0-9.]+)\/([0-9]{1,2})$/.exec(cidr) : null;
  if (!m || !isValidIpv4(m[1]!)) {
    throw new AppError('INVALID_ADDRESS', `Invalid subnet ${JSON.stringify(cidr)}: expected IPv4 CIDR such as 10.123.0.0/24`);
  }
  const prefixLength = Number(m[2]);
  if (prefixLength < 8 || prefixLength > 30) {
    throw new AppError('INVALID_ADDRESS', `Invalid subnet ${JSON.stringify(cidr)}: prefix length must be between 8 and 30`);
  }
  const size = 2 ** (32 - prefixLength);
  const mask = (0xffffffff - (size - 1)) >>> 0;
  const base = ipToInt(m[1]!);
  const network = (base & mask) >>> 0;
  if (network !== base) {
    throw new AppError('INVALID_ADDRESS', `Invalid subnet ${JSON.stringify(cidr)}: host bits are set (did you mean ${intToIp(network)}/${prefixLength}?)`);
  }
  const broadcast = network + size - 1;
  return {
    cidr: `${intToIp(network)}/${prefixLength}`,
    network: intToIp(network),
    prefixLength,
    netmask: intToIp(mask),
    gateway: intToIp(network + 1),
    broadcast: intToIp(broadcast),
    firstHost: intToIp(network + 1),
    lastHost: intToIp(broadcast - 1),
    size,
  };
}

/** True when addr (valid IPv4) lies inside subnet, network and broadcast included. */
export function subnetContains(subnet: Subnet, addr: string): boolean {
  if (!isValidIpv4(addr)) return false;
  const n = ipToInt(addr);
  const net = ipToInt(subnet.network);
  return n >= net && n < net + subnet.size;
}

/** True when two subnets share any address. */
export function subnetsOverlap(a: Subnet, b: Subnet): boolean {
  const a0 = ipToInt(a.network);
  const b0 = ipToInt(b.network);
  return a0 < b0 + b.size && b0 < a0 + a.size;
}

/** Throws INVALID_ADDRESS when addr is malformed, outside the subnet or reserved; CONFLICT when it is taken. */
export function checkAddress(subnet: Subnet, addr: string, taken: ReadonlySet<string>): void {
  if (!isValidIpv4(addr)) throw new AppError('INVALID_ADDRESS', `Invalid IPv4 address ${JSON.stringify(addr)}`);
  if (!subnetContains(subnet, addr)) {
    throw new AppError('INVALID_ADDRESS', `Address ${addr} is outside the subnet ${subnet.cidr}`);
  }
  if (addr === subnet.network) throw new AppError('INVALID_ADDRESS', `Address ${addr} is the network address of ${subnet.cidr}`);
  if (addr === subnet.broadcast) throw new AppError('INVALID_ADDRESS', `Address ${addr} is the broadcast address of ${subnet.cidr}`);
  if (addr === subnet.gateway) throw new AppError('INVALID_ADDRESS', `Address ${addr} is the gateway of ${subnet.cidr}`);
  if (taken.has(addr)) throw new AppError('CONFLICT', `Address ${addr} is already in use`);
}

/** Picks a free address for name: starts at a hash of name in the host range (gateway excluded) and probes upwards, wrapping. */
export function allocateAddress(subnet: Subnet, name: string, taken: ReadonlySet<string>): string {
  // Candidates are firstHost+1 .. lastHost: the gateway is firstHost.
  const first = ipToInt(subnet.firstHost) + 1;
  const count = subnet.size - 3;
  const start = hash32(name) % count;
  // Each probe either succeeds or lands on a taken address or the gateway (not firstHost on a host's own bridge),
  // so at most taken.size + 2 probes are needed.
  const limit = Math.min(count, taken.size + 2);
  for (let i = 0; i < limit; i++) {
    const addr = intToIp(first + ((start + i) % count));
    if (!taken.has(addr) && addr !== subnet.gateway) return addr;
  }
  throw new AppError('INSUFFICIENT_RESOURCES', `No free address left in ${subnet.cidr} for "${name}"`);
}

/** A stable locally administered unicast MAC derived from seed ("0a:" + five hash bytes). */
export function macFor(seed: string): string {
  return formatMac(0x0a, hashBytes(seed, 5));
}

/** A random locally administered unicast MAC ("0a:" + five random bytes). */
export function randomMac(): string {
  const bytes = new Uint8Array(5);
  globalThis.crypto.getRandomValues(bytes);
  return formatMac(0x0a, Array.from(bytes));
}

/** True for a colon-separated lower- or upper-case MAC such as 0a:12:34:56:78:9a. */
export function isValidMac(mac: string): boolean {
  return typeof mac === 'string' && /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac);
}

/** A short stable hexadecimal hash of s (8 characters, 32 bits). */
export function shortHash(s: string): string {
  return hash32(s).toString(16).padStart(8, '0');
}

function formatMac(first: number, rest: number[]): string {
  return [first, ...rest].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

// FNV-1a over the UTF-8 bytes of s, with a salt so several independent words can be drawn from one seed.
function fnv1a(s: string, salt: number): number {
  let h = (0x811c9dc5 ^ salt) >>> 0;
  for (const b of new TextEncoder().encode(s)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // Final avalanche (from murmur3's fmix32) so nearby names spread over the whole range.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

function hash32(s: string): number {
  return fnv1a(s, 0);
}

function hashBytes(s: string, n: number): number[] {
  const out: number[] = [];
  for (let word = 0; out.length < n; word++) {
    const h = fnv1a(s, word * 0x9e3779b9);
    for (let i = 0; i < 4 && out.length < n; i++) out.push((h >>> (8 * i)) & 255);
  }
  return out;
}
