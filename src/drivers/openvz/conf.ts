// OpenVZ config files (CTID.conf, ve-*.conf-sample, vz.conf): a faithful reader and writer (comments, order and unknown keys kept) and the value forms vzctl uses.
import { AppError } from '../../shared/errors.js';

/** One line of a config file as it was read; `raw` is written back unchanged unless the entry is set. */
export type VzConfLine =
  | { kind: 'blank' | 'comment'; raw: string }
  | { kind: 'entry'; raw: string; key: string; value: string };

// vzctl's keys are shell variable names; OpenVZ's own are upper case, but a name of any case is kept as read.
const KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Parses one value after `KEY=`: "double quoted", 'single quoted' or bare up to blanks; then only blanks or a # comment. */
function parseValue(rest: string, where: string): string {
  const q = rest[0];
  let value: string;
  let after: string;
  if (q === '"' || q === "'") {
    const end = rest.indexOf(q, 1);
    if (end < 0) throw new AppError('INVALID_CONFIG', `${where}: the value has no closing ${q}`);
    value = rest.slice(1, end);
    after = rest.slice(end + 1);
  } else {
    const m = /^[^\s#"']*/.exec(rest)!;
    value = m[0];
    after = rest.slice(value.length);
  }
  if (!/^\s*(#.*)?$/.test(after)) throw new AppError('INVALID_CONFIG', `${where}: unexpected ${JSON.stringify(after.trim().slice(0, 20))} after the value (quote a value with blanks or quotes in it)`);
  return value;
}

/** A config file: its lines in order; lookups see the last entry of a key, as vzctl's reader does. */
export class VzConf {
  private constructor(private readonly lines: VzConfLine[], private readonly eol: string) {}

  /** Reads a config file's text; a line that is neither blank, a comment nor KEY=VALUE is refused with its line number. */
  static parse(text: string, file = 'config'): VzConf {
    const eol = text.includes('\r\n') ? '\r\n' : '\n';
    const parts = text.split(/\r?\n/);
    // A final newline ends the last line; it does not start another.
    if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
    const lines: VzConfLine[] = parts.map((raw, i) => {
      const where = `${file}:${i + 1}`;
      const t = raw.trim();
      if (t === '') return { kind: 'blank', raw };
      if (t.startsWith('#')) return { kind: 'comment', raw };
      const eq = t.indexOf('=');
      const key = eq < 0 ? t : t.slice(0, eq);
      if (eq < 0 || !KEY_RE.test(key)) {
        throw new AppError('INVALID_CONFIG', `${where}: not a KEY="value" line: ${JSON.stringify(t.slice(0, 40))}`);
      }
      return { kind: 'entry', raw, key, value: parseValue(t.slice(eq + 1), where) };
    });
    return new VzConf(lines, eol);
  }

  /** An empty config. */
  static empty(): VzConf {
    return new VzConf([], '\n');
  }

  /** The value of key (its last entry), or undefined. */
  get(key: string): string | undefined {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const l = this.lines[i]!;
      if (l.kind === 'entry' && l.key === key) return l.value;
    }
    return undefined;
  }

  /** Every key, in file order, once. */
  keys(): string[] {
    return [...new Set(this.lines.flatMap((l) => (l.kind === 'entry' ? [l.key] : [])))];
  }

  /** Every key with its (last) value, in file order. */
  entries(): Array<[string, string]> {
    return this.keys().map((k) => [k, this.get(k)!]);
  }

  /** Sets key: its last entry is rewritten in place (earlier duplicates go), else a line is appended; as vzctl writes it, KEY="value". */
  set(key: string, value: string): void {
    if (!KEY_RE.test(key)) throw new AppError('INVALID_ARGUMENT', `Invalid config key ${JSON.stringify(key)}`);
    if (/["\r\n]/.test(value)) throw new AppError('INVALID_ARGUMENT', `The value of ${key} must not hold a double quote or a line break`);
    const line: VzConfLine = { kind: 'entry', raw: `${key}="${value}"`, key, value };
    const at = this.lastIndex(key);
    if (at < 0) {
      this.lines.push(line);
      return;
    }
    this.lines[at] = line;
    this.dropEarlier(key, at);
  }

  /** Removes every entry of key; comments stay. */
  delete(key: string): void {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const l = this.lines[i]!;
      if (l.kind === 'entry' && l.key === key) this.lines.splice(i, 1);
    }
  }

  /** The file's text: lines not set are byte for byte what was read (with its line ends). */
  toString(): string {
    return this.lines.length === 0 ? '' : `${this.lines.map((l) => l.raw).join(this.eol)}${this.eol}`;
  }

  private lastIndex(key: string): number {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const l = this.lines[i]!;
      if (l.kind === 'entry' && l.key === key) return i;
    }
    return -1;
  }

  private dropEarlier(key: string, at: number): void {
    for (let i = at - 1; i >= 0; i--) {
      const l = this.lines[i]!;
      if (l.kind === 'entry' && l.key === key) this.lines.splice(i, 1);
    }
  }
}

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
