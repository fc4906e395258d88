// Parsing of /proc/PID/stat, shared by every backend that watches a process.

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
