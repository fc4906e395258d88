// Parsing and formatting of sizes (binary and decimal units), CPU caps and durations.
import { AppError } from './errors.js';

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kib: 1024, kb: 1000,
  m: 1024 ** 2, mib: 1024 ** 2, mb: 1000 ** 2,
  g: 1024 ** 3, gib: 1024 ** 3, gb: 1000 ** 3,
  t: 1024 ** 4, tib: 1024 ** 4, tb: 1000 ** 4,
};

/** Parses "512MiB", "1GB", "64M", "1048576" into bytes: KiB/MiB/GiB binary, kB/MB/GB decimal, bare K/M/G binary. */
export function parseSize(input: string | number, what = 'size'): number {
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input <= 0) throw new AppError('INVALID_SIZE', `Invalid ${what} ${input}: must be a positive whole number of bytes`);
    return input;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  if (!m) throw new AppError('INVALID_SIZE', `Invalid ${what} ${JSON.stringify(input)}: expected a number with an optional unit (KiB, MiB, GiB, TiB, kB, MB, GB, TB, K, M, G, T)`);
  const unit = m[2]!.toLowerCase();
  const mult = UNITS[unit];
  if (mult === undefined) throw new AppError('INVALID_SIZE', `Invalid ${what} ${JSON.stringify(input)}: unknown unit "${m[2]}"`);
  const bytes = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(bytes)) throw new AppError('INVALID_SIZE', `Invalid ${what} ${JSON.stringify(input)}: too large`);
  if (bytes <= 0) throw new AppError('INVALID_SIZE', `Invalid ${what} ${JSON.stringify(input)}: must be greater than zero`);
  return bytes;
}

/** Formats bytes with the largest binary unit that keeps one decimal: 1536 -> "1.5KiB". */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  const s = i === 0 ? String(v) : (Math.round(v * 10) / 10).toString();
  return `${s}${units[i]}`;
}

/** Parses a CPU cap "150%" (of one CPU) or "1.5" (CPUs) into a percentage of one CPU. */
export function parseCpuCap(input: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(input);
  if (!m) throw new AppError('INVALID_CONFIG', `Invalid CPU cap ${JSON.stringify(input)}: expected a percentage of one CPU such as "150%"`);
  const pct = m[2] ? Number(m[1]) : Number(m[1]) * 100;
  if (!(pct > 0)) throw new AppError('INVALID_CONFIG', `Invalid CPU cap ${JSON.stringify(input)}: must be greater than zero`);
  return pct;
}

/** Parses a positive integer, naming the subject in the error. */
export function parsePositiveInt(input: string | number, what: string): number {
  const n = typeof input === 'number' ? input : /^\s*\d+\s*$/.test(input) ? Number(input) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new AppError('INVALID_CONFIG', `Invalid ${what} ${JSON.stringify(input)}: must be a positive whole number`);
  return n;
}
