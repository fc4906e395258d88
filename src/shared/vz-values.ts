// OpenVZ's value forms (vzctl options and CTID.conf values): pages, 1 KiB blocks, barrier:limit pairs, unlimited, binary suffixes and fractions.
import { AppError } from './errors.js';

/** The unit of a resource parameter's plain numbers (a size suffix always means bytes, converted into it). */
export type VzUnit = 'pages' | 'bytes' | 'kib' | 'items';

/** OpenVZ's page: 4 KiB. */
export const VZ_PAGE_BYTES = 4096;

/** vzctl's "unlimited": LONG_MAX on 64-bit hosts. */
export const VZ_UNLIMITED = 9223372036854775807n;

/** The unit of each resource parameter Hangar reads (beancounters, vSwap memory, disk quota). */
export const VZ_PARAM_UNITS: Readonly<Record<string, VzUnit>> = {
  PHYSPAGES: 'pages', SWAPPAGES: 'pages', LOCKEDPAGES: 'pages', PRIVVMPAGES: 'pages', SHMPAGES: 'pages', VMGUARPAGES: 'pages', OOMGUARPAGES: 'pages',
  KMEMSIZE: 'bytes', TCPSNDBUF: 'bytes', TCPRCVBUF: 'bytes', OTHERSOCKBUF: 'bytes', DGRAMRCVBUF: 'bytes', DCACHESIZE: 'bytes',
  NUMPROC: 'items', NUMTCPSOCK: 'items', NUMOTHERSOCK: 'items', NUMFLOCK: 'items', NUMPTY: 'items', NUMSIGINFO: 'items', NUMFILE: 'items',
  AVNUMPROC: 'items', NUMIPTENT: 'items', DISKINODES: 'items',
  DISKSPACE: 'kib',
};

const SUFFIX: Record<string, bigint> = { K: 1024n, M: 1024n ** 2n, G: 1024n ** 3n, T: 1024n ** 4n, P: 1024n ** 5n };
const UNIT_BYTES: Record<VzUnit, bigint> = { pages: BigInt(VZ_PAGE_BYTES), bytes: 1n, kib: 1024n, items: 1n };

/**
 * One number of a parameter in its unit: plain (already in the unit), with a binary suffix K/M/G/T/P (bytes, also
 * fractional as in 2.2G, rounded down to whole units; items take the suffix as a multiplier), or "unlimited" (null).
 */
export function parseVzNumber(text: string, unit: VzUnit, what: string): bigint | null {
  const t = text.trim();
  if (t === 'unlimited') return null;
  const m = /^(\d+)(?:\.(\d+))?([KMGTPkmgtp])?$/.exec(t);
  if (!m || (m[2] !== undefined && m[3] === undefined)) {
    throw new AppError('INVALID_SIZE', `${what}: ${JSON.stringify(t)} is not a number (plain ${unitWords(unit)}, a size with K, M, G, T or P, or unlimited)`);
  }
  const int = BigInt(m[1]!);
  if (!m[3]) return clampUnlimited(int);
  const mult = SUFFIX[m[3].toUpperCase()]!;
  // A fraction of a suffix: digits over 10^n, in bytes, exactly.
  const frac = m[2] ?? '';
  const scaled = (int * 10n ** BigInt(frac.length) + BigInt(frac || '0')) * mult / 10n ** BigInt(frac.length);
  return clampUnlimited(unit === 'items' ? scaled : scaled / UNIT_BYTES[unit]);
}

function clampUnlimited(n: bigint): bigint | null {
  return n >= VZ_UNLIMITED ? null : n;
}

function unitWords(unit: VzUnit): string {
  return { pages: '4 KiB pages', bytes: 'bytes', kib: '1 KiB blocks', items: 'counts' }[unit];
}

/** A resource parameter: barrier (soft) and limit (hard) in its unit; null is unlimited. */
export interface VzPair {
  barrier: bigint | null;
  limit: bigint | null;
}

/** `barrier:limit`, or one number for both, in the parameter's unit; a barrier above its limit is refused. */
export function parseVzPair(text: string, unit: VzUnit, what: string): VzPair {
  const parts = text.split(':');
  if (parts.length > 2 || parts.some((p) => p.trim() === '')) throw new AppError('INVALID_SIZE', `${what}: ${JSON.stringify(text)} is not barrier:limit or one number`);
  const barrier = parseVzNumber(parts[0]!, unit, what);
  const limit = parts.length === 2 ? parseVzNumber(parts[1]!, unit, what) : barrier;
  if (limit !== null && (barrier === null || barrier > limit)) throw new AppError('INVALID_SIZE', `${what}: the barrier ${parts[0]!.trim()} is above the limit ${parts[1]!.trim()}`);
  return { barrier, limit };
}

/** A pair as vzctl writes it: barrier:limit, plain numbers in the unit or `unlimited`. */
export function formatVzPair(pair: VzPair): string {
  const n = (v: bigint | null) => (v === null ? 'unlimited' : String(v));
  return `${n(pair.barrier)}:${n(pair.limit)}`;
}

/** Bytes of a number in a unit (null stays unlimited). */
export function vzBytes(n: bigint | null, unit: Exclude<VzUnit, 'items'>): bigint | null {
  return n === null ? null : n * UNIT_BYTES[unit];
}
