// Unit tests of the CTID.conf translation: vSwap memory, guarantees, CPU, disk, addresses, every pair listed, refusals naming file and key.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { ctidOfFile, exactSize, importVzConfText, parseCtid } from './import.js';

const VSWAP = [
  '# a vSwap container (Hangar\'s own fixture, in vzctl 4\'s layout)',
  'PHYSPAGES="0:512M"',
  'SWAPPAGES="0:262144"',
  'DISKSPACE="2G:2.2G"',
  'DISKINODES="131072:144179"',
  'QUOTATIME="0"',
  'CPUUNITS="1000"',
  'CPULIMIT="50"',
  'CPUS="2"',
  'NUMPROC="400:500"',
  'KMEMSIZE="14372700:14790164"',
  'NETFILTER="stateless"',
  'VE_ROOT="/vz/root/$VEID"',
  'VE_PRIVATE="/vz/private/$VEID"',
  'OSTEMPLATE="debian-12-x86_64"',
  'ORIGIN_SAMPLE="vswap-512m"',
  'IP_ADDRESS="10.0.0.101 10.0.0.102/32"',
  'HOSTNAME="ct101.example.org"',
  'NAMESERVER="10.0.0.1"',
  'ONBOOT="yes"',
  'NAME="web"',
  'DESCRIPTION="front end"',
  'X_LOCAL="mine"',
  '',
].join('\n');

const refusal = (f: () => unknown): string => {
  try { f(); } catch (e) { return isAppError(e) ? `${e.code}: ${e.message}` : String(e); }
  return 'no error';
};

describe('importVzConfText', () => {
  it('translates a vSwap CT: RAM, swap, CPU weight, cap and count, disk, processes, addresses, identity; every pair and every dropped key listed', () => {
    const t = importVzConfText(VSWAP, { source: '/etc/vz/conf/101.conf' });
    expect(t).toMatchObject({ ctid: 101, name: 'web', type: 'container', driver: 'openvz', hostname: 'ct101.example.org', ostemplate: 'debian-12-x86_64', private: '/vz/private/101', root: '/vz/root/101' });
    expect(t.config).toEqual({
      'limits.memory': '512MiB', 'limits.memory.swap': '1GiB', 'limits.cpu.weight': '100', 'limits.cpu.cap': '50%', 'limits.cpu': '2',
      // 2.2G is 2306867.2 KiB: whole KiB, as vzctl stores it.
      'limits.disk': `${2306867}KiB`, 'limits.disk.inodes': '144179', 'limits.processes': '500', 'boot.autostart': 'true', 'user.description': 'front end',
      'openvz.nameserver': '10.0.0.1',
    });
    expect(t.addresses).toEqual(['10.0.0.101', '10.0.0.102']);
    expect(t.ubc).toEqual([
      { param: 'PHYSPAGES', unit: 'pages', barrier: '0', limit: '131072' },
      { param: 'SWAPPAGES', unit: 'pages', barrier: '0', limit: '262144' },
      { param: 'DISKSPACE', unit: 'kib', barrier: '2097152', limit: '2306867' },
      { param: 'DISKINODES', unit: 'items', barrier: '131072', limit: '144179' },
      { param: 'NUMPROC', unit: 'items', barrier: '400', limit: '500' },
      { param: 'KMEMSIZE', unit: 'bytes', barrier: '14372700', limit: '14790164' },
    ]);
    expect(t.untranslated.map((u) => u.key)).toEqual(['QUOTATIME', 'KMEMSIZE', 'NETFILTER', 'ORIGIN_SAMPLE', 'X_LOCAL']);
    expect(t.untranslated.find((u) => u.key === 'X_LOCAL')).toEqual({ key: 'X_LOCAL', value: 'mine', reason: 'not an OpenVZ setting Hangar knows' });
    // Every key of the file is accounted for, once.
    const seen = [...t.translated.map((x) => x.key), ...t.untranslated.map((x) => x.key)].sort();
    expect(seen).toEqual(VSWAP.split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split('=')[0]!).sort());
  });

  it('takes the guarantee from MEMGUARANTEE (OpenVZ 7) or VMGUARPAGES\'s barrier, and refuses one above the RAM limit', () => {
    expect(importVzConfText('PHYSPAGES="512M:512M"\nMEMGUARANTEE="25"\n', { source: '7.conf' }).config).toMatchObject({ 'limits.memory': '512MiB', 'limits.memory.guarantee': '128MiB' });
    const old = importVzConfText('PHYSPAGES="0:unlimited"\nVMGUARPAGES="33792:unlimited"\n', { source: '8.conf' });
    expect(old.config).toEqual({ 'limits.memory.guarantee': '132MiB' });
    expect(old.untranslated[0]).toMatchObject({ key: 'PHYSPAGES', reason: expect.stringContaining('unlimited RAM') });
    const over = importVzConfText('PHYSPAGES="0:64M"\nVMGUARPAGES="33792:unlimited"\n', { source: '9.conf' });
    expect(over.config).toEqual({ 'limits.memory': '64MiB' });
    expect(over.untranslated).toContainEqual({ key: 'VMGUARPAGES', value: '33792:unlimited', reason: 'the barrier (132MiB) is above the RAM limit (64MiB): a guarantee must fit in it' });
    expect(importVzConfText('NAME="Not_A_Name"\n', { source: '10.conf' })).toMatchObject({ name: 'ct10', translated: [{ key: 'NAME', to: ['name'], note: expect.stringContaining('the instance is ct10') }] });
  });

  it('refuses garbage lines, bad pairs and values, and files whose CTID it cannot tell, naming file, line and key', () => {
    expect(refusal(() => importVzConfText('PHYSPAGES="0:512M"\ngarbage here\n', { source: '101.conf' }))).toBe('INVALID_CONFIG: 101.conf:2: not a KEY="value" line: "garbage here"');
    expect(refusal(() => importVzConfText('PHYSPAGES="512M:0"\n', { source: '101.conf' }))).toBe('INVALID_SIZE: 101.conf: PHYSPAGES: the barrier 512M is above the limit 0');
    expect(refusal(() => importVzConfText('KMEMSIZE="lots"\n', { source: '101.conf' }))).toMatch(/^INVALID_SIZE: 101\.conf: KMEMSIZE: "lots" is not a number/);
    expect(refusal(() => importVzConfText('CPUUNITS="0"\n', { source: '101.conf' }))).toBe('INVALID_CONFIG: 101.conf: CPUUNITS "0" is not a number from 8 to 500000');
    expect(refusal(() => importVzConfText('IP_ADDRESS="10.0.0.300"\n', { source: '101.conf' }))).toBe('INVALID_CONFIG: 101.conf: IP_ADDRESS holds "10.0.0.300", not an IPv4 address');
    expect(refusal(() => importVzConfText('ONBOOT="maybe"\n', { source: '101.conf' }))).toBe('INVALID_CONFIG: 101.conf: ONBOOT "maybe" is not yes or no');
    expect(refusal(() => importVzConfText('A="1"\n', { source: 'web.conf' }))).toBe('INVALID_ARGUMENT: Cannot tell the CTID of web.conf: name the file CTID.conf or give the CTID');
    // A guarantee that cannot be honoured is listed, not refused: the rest of the container still imports.
    expect(importVzConfText('PHYSPAGES="0:512M"\nMEMGUARANTEE="150"\n', { source: '101.conf' }).untranslated).toEqual([
      { key: 'MEMGUARANTEE', value: '150', reason: 'a percentage needs a RAM limit (PHYSPAGES) and must be at most 100' },
    ]);
  });
});

describe('CTIDs and sizes', () => {
  it('takes CTIDs in vzctl\'s range only, from arguments and file names', () => {
    expect(parseCtid('101')).toBe(101);
    expect(parseCtid('2147483647')).toBe(2147483647);
    for (const bad of ['0', '-1', '2147483648', 'abc', '1e3', '']) expect(refusal(() => parseCtid(bad))).toMatch(/^INVALID_NAME: Invalid CTID .*: a CTID is a number from 1 to 2147483647$/);
    expect(ctidOfFile('/etc/vz/conf/101.conf')).toBe(101);
    expect(ctidOfFile('ve-basic.conf-sample')).toBeUndefined();
  });

  it('writes sizes exactly in the largest binary unit that divides them', () => {
    expect(exactSize(512n * 1024n ** 2n)).toBe('512MiB');
    expect(exactSize(2n * 1024n ** 3n)).toBe('2GiB');
    expect(exactSize(2306867n * 1024n)).toBe('2306867KiB');
    expect(exactSize(1000n)).toBe('1000');
  });
});
