// Unit tests for size and CPU-cap parsing.
import { describe, expect, it } from 'vitest';
import { parseCpuCap, parseSize } from './units.js';

describe('parseSize', () => {
  it('reads binary, decimal and bare units as vzctl does', () => {
    expect(parseSize('1KiB')).toBe(1024);
    expect(parseSize('1kB')).toBe(1000);
    expect(parseSize('64M')).toBe(64 * 1024 ** 2);
    expect(parseSize('2GB')).toBe(2e9);
    expect(parseSize('1.5GiB')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('4096')).toBe(4096);
  });
  it.each(['-1M', '0', '0MiB', '12XB', 'abc', '', '1 2M'])('refuses %j', (s) => {
    expect(() => parseSize(s)).toThrow(/Invalid size/);
  });
});

describe('parseCpuCap', () => {
  it('reads percentages and CPU counts', () => {
    expect(parseCpuCap('150%')).toBe(150);
    expect(parseCpuCap('0.5')).toBe(50);
  });
  it('refuses zero and junk', () => {
    expect(() => parseCpuCap('0%')).toThrow();
    expect(() => parseCpuCap('fast')).toThrow();
  });
});
