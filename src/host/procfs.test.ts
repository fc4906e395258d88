// Unit tests of the /proc readers: stat fields behind an odd comm, the start time, "Key: N kB" lines of meminfo and status.
import { describe, expect, it } from 'vitest';
import { ScriptedHost } from './scripted.js';
import { procKbField, procStartTime, procStatField, readProcStartTime } from './procfs.js';

const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
fields[22 - 3] = '987654';
const STAT = `123 (my (odd) name) ${fields.join(' ')}\n`;

describe('/proc/PID/stat', () => {
  it('takes field 22 (start time) even when comm has spaces and parentheses', () => {
    expect(procStartTime(STAT)).toBe(987654);
    expect(procStatField(STAT, 14)).toBe(14);
    expect(procStartTime('garbage')).toBeNull();
    expect(procStatField('1 (x) S', 22)).toBeNull();
  });

  it('reads a start time through Host, null for a process that is gone', async () => {
    const host = new ScriptedHost(() => undefined, { files: { '/proc/42/stat': STAT } });
    expect(await readProcStartTime(host, 42)).toBe(987654);
    expect(await readProcStartTime(host, 43)).toBeNull();
  });
});

describe('"Key: N kB" files', () => {
  const meminfo = 'MemTotal:        8141456 kB\nMemFree:          123456 kB\nActive(anon):       2048 kB\nHugePages_Total:       0\n';
  const status = 'Name:\tqemu-system-x86\nVmHWM:\t  524288 kB\nVmRSS:\t  262144 kB\nThreads:\t5\n';
  it.each([
    [meminfo, 'MemTotal', 8141456 * 1024],
    [meminfo, 'MemFree', 123456 * 1024],
    [meminfo, 'Active(anon)', 2048 * 1024],
    [meminfo, 'HugePages_Total', undefined],
    [meminfo, 'Total', undefined],
    [status, 'VmRSS', 262144 * 1024],
    [status, 'VmHWM', 524288 * 1024],
    [status, 'Threads', undefined],
    ['', 'MemTotal', undefined],
  ])('%#: %s', (text, key, bytes) => {
    expect(procKbField(text, key)).toBe(bytes);
  });
});
