// Unit tests for the pure helpers of id shifting: bounded parallel map, getfattr parsing, namespaced capabilities.
import { describe, expect, it } from 'vitest';
import { mapLimit, parseGetfattr, toNamespacedCapability } from './shift.js';

describe('mapLimit', () => {
  it('keeps order and never exceeds the limit', async () => {
    let running = 0;
    let peak = 0;
    const out = await mapLimit([1, 2, 3, 4, 5, 6, 7], 3, async (x) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setImmediate(r));
      running--;
      return x * 10;
    });
    expect(out).toEqual([10, 20, 30, 40, 50, 60, 70]);
    expect(peak).toBe(3);
  });

  it('rejects with the first error', async () => {
    await expect(mapLimit([1, 2], 2, async (x) => { if (x === 2) throw new Error('boom'); return x; })).rejects.toThrow('boom');
  });
});

describe('parseGetfattr', () => {
  it('maps files (with octal escapes) to capability values', () => {
    const text = '# file: /r/usr/bin/ping\nsecurity.capability=0x0100000200200000000000000000000000000000\n\n# file: /r/a\\040b\nsecurity.capability=0x01\n\n# file: /r/c\nuser.x=0x00\n';
    const m = parseGetfattr(text);
    expect([...m.keys()]).toEqual(['/r/usr/bin/ping', '/r/a b']);
    expect(m.get('/r/usr/bin/ping')).toBe('0x0100000200200000000000000000000000000000');
  });
});

describe('toNamespacedCapability', () => {
  it('turns a v2 capability into v3 with the root uid', () => {
    expect(toNamespacedCapability('0x0100000200200000000000000000000000000000', 100000)).toBe('0x0100000300200000000000000000000000000000a0860100');
  });

  it('rewrites the root uid of a v3 capability and rejects junk', () => {
    expect(toNamespacedCapability('0x01000003002000000000000000000000000000000a000000', 65536)).toBe('0x0100000300200000000000000000000000000000' + '00000100');
    expect(() => toNamespacedCapability('0x0100', 1)).toThrow(/Unrecognised/);
    expect(() => toNamespacedCapability('0x0100000900200000000000000000000000000000', 1)).toThrow(/revision/);
  });
});
