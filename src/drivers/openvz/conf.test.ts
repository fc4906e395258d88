// Unit tests of the OpenVZ config reader and writer: byte-for-byte round trips, in-place changes, refusals with line numbers, and vzctl's value forms.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { formatVzPair, parseVzNumber, parseVzPair, VZ_UNLIMITED, vzBytes, VzConf } from './conf.js';

// A CT config as a vSwap host keeps one (Hangar's own sample, in vzctl's layout).
const CT = [
  '# Container 101',
  '',
  '# RAM and swap (pages)',
  'PHYSPAGES="0:131072"',
  'SWAPPAGES="0:262144"',
  'DISKSPACE="2G:2.2G"',
  'DISKINODES="131072:144179"',
  "HOSTNAME='ct101.example.org'",
  'ONBOOT=yes   # bare value, then a comment',
  '  NUMPROC="240:240"',
  'IP_ADDRESS="10.0.0.101 10.0.0.102"',
  'VE_ROOT="/vz/root/$VEID"',
  'X_VENDOR_KEY="kept as it is"',
  'CPUUNITS="1000"',
  '',
].join('\n');

const refusal = (f: () => unknown): string => {
  try { f(); } catch (e) { return isAppError(e) ? `${e.code}: ${e.message}` : String(e); }
  return 'no error';
};

describe('VzConf', () => {
  it('reads keys and values in every quoting form, and writes an unchanged file back byte for byte', () => {
    const c = VzConf.parse(CT, '101.conf');
    expect(c.get('PHYSPAGES')).toBe('0:131072');
    expect(c.get('HOSTNAME')).toBe('ct101.example.org');
    expect(c.get('ONBOOT')).toBe('yes');
    expect(c.get('NUMPROC')).toBe('240:240');
    expect(c.get('IP_ADDRESS')).toBe('10.0.0.101 10.0.0.102');
    expect(c.get('VE_ROOT')).toBe('/vz/root/$VEID');
    expect(c.get('NOPE')).toBeUndefined();
    expect(c.keys()).toEqual(['PHYSPAGES', 'SWAPPAGES', 'DISKSPACE', 'DISKINODES', 'HOSTNAME', 'ONBOOT', 'NUMPROC', 'IP_ADDRESS', 'VE_ROOT', 'X_VENDOR_KEY', 'CPUUNITS']);
    expect(c.toString()).toBe(CT);
    const crlf = CT.replace(/\n/g, '\r\n');
    expect(VzConf.parse(crlf).toString()).toBe(crlf);
    expect(VzConf.parse('A="1"').toString()).toBe('A="1"\n');
  });

  it('changes a key where it is, drops its earlier duplicates, appends a new one, deletes; comments and unknown keys stay', () => {
    const c = VzConf.parse(`${CT}CPUUNITS="2000"\n`);
    expect(c.get('CPUUNITS')).toBe('2000');
    c.set('CPUUNITS', '500');
    c.set('SWAPPAGES', '0:0');
    c.set('NAME', 'web');
    c.delete('DISKINODES');
    const out = c.toString();
    expect(out).toBe(`${CT.replace('SWAPPAGES="0:262144"', 'SWAPPAGES="0:0"').replace('CPUUNITS="1000"\n', '').replace('DISKINODES="131072:144179"\n', '')}CPUUNITS="500"\nNAME="web"\n`);
    expect(VzConf.parse(out).entries()).toContainEqual(['X_VENDOR_KEY', 'kept as it is']);
    expect(refusal(() => c.set('BAD KEY', 'x'))).toBe('INVALID_ARGUMENT: Invalid config key "BAD KEY"');
    expect(refusal(() => c.set('NAME', 'a"b'))).toBe('INVALID_ARGUMENT: The value of NAME must not hold a double quote or a line break');
  });

  it('refuses garbage lines, unclosed quotes and text after a value, naming the file and line', () => {
    expect(refusal(() => VzConf.parse('A="1"\nthis is garbage\n', '101.conf'))).toBe('INVALID_CONFIG: 101.conf:2: not a KEY="value" line: "this is garbage"');
    expect(refusal(() => VzConf.parse('\n\n1ABC="x"\n', 'c'))).toBe('INVALID_CONFIG: c:3: not a KEY="value" line: "1ABC=\\"x\\""');
    expect(refusal(() => VzConf.parse('HOSTNAME="ct101\n', 'c'))).toBe('INVALID_CONFIG: c:1: the value has no closing "');
    expect(refusal(() => VzConf.parse('NAME="a" b\n', 'c'))).toBe('INVALID_CONFIG: c:1: unexpected "b" after the value (quote a value with blanks or quotes in it)');
    expect(refusal(() => VzConf.parse('NAME=a b\n', 'c'))).toBe('INVALID_CONFIG: c:1: unexpected "b" after the value (quote a value with blanks or quotes in it)');
  });
});

describe('vzctl values', () => {
  it('reads numbers in their unit, sizes with binary suffixes (fractions included) converted into it, and unlimited', () => {
    expect(parseVzNumber('131072', 'pages', 'PHYSPAGES')).toBe(131072n);
    expect(parseVzNumber('512M', 'pages', 'PHYSPAGES')).toBe(131072n);
    expect(parseVzNumber('1g', 'pages', 'SWAPPAGES')).toBe(262144n);
    expect(parseVzNumber('2G', 'kib', 'DISKSPACE')).toBe(2097152n);
    // 2.2 GiB = 2306867.2 KiB: whole blocks.
    expect(parseVzNumber('2.2G', 'kib', 'DISKSPACE')).toBe(2306867n);
    expect(parseVzNumber('14372700', 'bytes', 'KMEMSIZE')).toBe(14372700n);
    expect(parseVzNumber('64K', 'items', 'DISKINODES')).toBe(65536n);
    expect(parseVzNumber('unlimited', 'pages', 'PHYSPAGES')).toBeNull();
    expect(parseVzNumber(String(VZ_UNLIMITED), 'items', 'NUMPROC')).toBeNull();
    expect(vzBytes(131072n, 'pages')).toBe(512n * 1024n ** 2n);
    expect(vzBytes(2097152n, 'kib')).toBe(2n * 1024n ** 3n);
  });

  it('reads barrier:limit pairs and single numbers, and writes them as vzctl does', () => {
    expect(parseVzPair('0:512M', 'pages', 'PHYSPAGES')).toEqual({ barrier: 0n, limit: 131072n });
    expect(parseVzPair('240', 'items', 'NUMPROC')).toEqual({ barrier: 240n, limit: 240n });
    expect(parseVzPair('33792:unlimited', 'pages', 'VMGUARPAGES')).toEqual({ barrier: 33792n, limit: null });
    expect(formatVzPair({ barrier: 0n, limit: 131072n })).toBe('0:131072');
    expect(formatVzPair({ barrier: 33792n, limit: null })).toBe('33792:unlimited');
  });

  it('refuses what vzctl refuses, naming the parameter', () => {
    expect(refusal(() => parseVzNumber('12x', 'pages', 'PHYSPAGES'))).toBe('INVALID_SIZE: PHYSPAGES: "12x" is not a number (plain 4 KiB pages, a size with K, M, G, T or P, or unlimited)');
    expect(refusal(() => parseVzNumber('1.5', 'kib', 'DISKSPACE'))).toBe('INVALID_SIZE: DISKSPACE: "1.5" is not a number (plain 1 KiB blocks, a size with K, M, G, T or P, or unlimited)');
    expect(refusal(() => parseVzNumber('-1', 'items', 'NUMPROC'))).toMatch(/^INVALID_SIZE: NUMPROC: "-1" is not a number/);
    expect(refusal(() => parseVzPair('1:2:3', 'items', 'NUMPROC'))).toBe('INVALID_SIZE: NUMPROC: "1:2:3" is not barrier:limit or one number');
    expect(refusal(() => parseVzPair('5:', 'items', 'NUMPROC'))).toBe('INVALID_SIZE: NUMPROC: "5:" is not barrier:limit or one number');
    expect(refusal(() => parseVzPair('2G:1G', 'kib', 'DISKSPACE'))).toBe('INVALID_SIZE: DISKSPACE: the barrier 2G is above the limit 1G');
    expect(refusal(() => parseVzPair('unlimited:1G', 'kib', 'DISKSPACE'))).toBe('INVALID_SIZE: DISKSPACE: the barrier unlimited is above the limit 1G');
  });
});
