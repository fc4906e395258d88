// Parsing and reading of /proc/PID/stat and of the "Key: N kB" files (/proc/meminfo, /proc/PID/status), shared by every backend.
import type { Host } from './host.js';

/** Fields 3.. of /proc/PID/stat (field 2, comm, may contain spaces and parentheses: they start after the last ")"). */
export function procStatFields(text: string): string[] | null {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  return text.slice(close + 1).trim().split(/\s+/);
}

/** Field n (1-based, n >= 3) of /proc/PID/stat as a number, or null. */
export function procStatField(text: string, n: number): number | null {
  const v = procStatFields(text)?.[n - 3];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : null;
}

/** Field 22 of /proc/PID/stat (starttime, clock ticks since boot): with the pid, it names one process for good; null when malformed. */
export function procStartTime(stat: string): number | null {
  return procStatField(stat, 22);
}

/** The start time of a process (procStartTime), or null when it does not exist. */
export async function readProcStartTime(host: Host, pid: number): Promise<number | null> {
  const stat = await host.fs.readTextIfExists(`/proc/${pid}/stat`);
  return stat === undefined ? null : procStartTime(stat);
}

/** A "Key:   N kB" line of /proc/meminfo or /proc/PID/status (MemTotal, VmRSS, VmHWM, ...) in bytes, or undefined when absent. */
export function procKbField(text: string, key: string): number | undefined {
  const escaped = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${escaped}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}
