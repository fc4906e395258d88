// Unit tests of the VM disk import checks: the pure rules, then inspect/verify/convert with the host's qemu-img in a temporary directory.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { LocalHost } from '../../host/local.js';
import {
  checkCheckResult, checkDiskInfo, checkRawDisk, convertVmDisk, inspectVmDisk, parseOdBytes, parseQemuImgInfo, qemuSource, verifyVmDisk, VM_DISK_FILE,
  type QemuImgInfo,
} from './disk-import.js';

function archiveError(fn: () => unknown, pattern: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(isAppError(err, 'INVALID_ARCHIVE'), String(err)).toBe(true);
  expect((err as Error).message).toMatch(pattern);
}

async function archiveErrorAsync(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(isAppError(err, 'INVALID_ARCHIVE'), String(err)).toBe(true);
  expect((err as Error).message).toMatch(pattern);
}

const qcow2Info: QemuImgInfo = { format: 'qcow2', 'virtual-size': 64 << 20, 'format-specific': { type: 'qcow2', data: { compat: '1.1', corrupt: false } } };

function bootSector(): Uint8Array {
  const b = new Uint8Array(512);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

describe('checkDiskInfo', () => {
  it('accepts standalone qcow2 and raw', () => {
    expect(checkDiskInfo(qcow2Info, 'x')).toEqual({ format: 'qcow2', virtualSize: 64 << 20 });
    expect(checkDiskInfo({ format: 'raw', 'virtual-size': 1024 }, 'x')).toEqual({ format: 'raw', virtualSize: 1024 });
  });

  it('refuses other formats by what qemu-img detected', () => {
    archiveError(() => checkDiskInfo({ ...qcow2Info, format: 'vmdk' }, 'd.qcow2'), /vmdk.*only qcow2 and raw/);
    archiveError(() => checkDiskInfo({ 'virtual-size': 1 }, 'x'), /unknown/);
  });

  it('refuses backing files, external data files, encryption and the corrupt flag', () => {
    archiveError(() => checkDiskInfo({ ...qcow2Info, 'backing-filename': '/etc/passwd' }, 'x'), /backing file "\/etc\/passwd"/);
    archiveError(() => checkDiskInfo({ ...qcow2Info, 'full-backing-filename': '/etc/shadow' }, 'x'), /backing file/);
    archiveError(() => checkDiskInfo({ ...qcow2Info, 'format-specific': { type: 'qcow2', data: { 'data-file': '/etc/passwd' } } }, 'x'), /external file/);
    archiveError(() => checkDiskInfo({ ...qcow2Info, encrypted: true }, 'x'), /encrypted/);
    archiveError(() => checkDiskInfo({ ...qcow2Info, 'format-specific': { type: 'qcow2', data: { corrupt: true } } }, 'x'), /corrupt/);
    archiveError(() => checkDiskInfo({ format: 'raw', 'virtual-size': 0 }, 'x'), /virtual size/);
  });
});

describe('checkRawDisk', () => {
  it('accepts whole sectors with a boot signature', () => {
    expect(() => checkRawDisk(1 << 20, bootSector(), 'x')).not.toThrow();
  });

  it('refuses short, unaligned or signature-less files', () => {
    archiveError(() => checkRawDisk(6, new TextEncoder().encode('hello\n'), 'x'), /less than one 512-byte sector/);
    archiveError(() => checkRawDisk(1000, bootSector(), 'x'), /not a multiple of 512/);
    archiveError(() => checkRawDisk(4096, new Uint8Array(512), 'x'), /boot signature/);
    archiveError(() => checkRawDisk(4096, bootSector().subarray(0, 511), 'x'), /boot signature/);
  });
});

describe('checkCheckResult', () => {
  it('passes clean images and leaks only', () => {
    expect(() => checkCheckResult(0, '{"check-errors":0}', '', 'x')).not.toThrow();
    expect(() => checkCheckResult(3, '{"leaks":2}', '', 'x')).not.toThrow();
  });

  it('refuses corruption and failed checks', () => {
    archiveError(() => checkCheckResult(2, '{"corruptions":3}', 'ERROR cluster 0', 'x'), /corrupt.*3 errors/);
    archiveError(() => checkCheckResult(0, '{"corruptions":1}', '', 'x'), /corrupt/);
    archiveError(() => checkCheckResult(1, '', 'Could not open', 'x'), /could not be checked/);
  });
});

describe('parsing and naming', () => {
  it('parses qemu-img JSON and od output', () => {
    expect(parseQemuImgInfo('{"format":"raw"}', 'x').format).toBe('raw');
    archiveError(() => parseQemuImgInfo('nope', 'x'), /no JSON/);
    archiveError(() => parseQemuImgInfo('[1]', 'x'), /unexpected JSON/);
    expect([...parseOdBytes(' 55 aa 00\n ff\n')]).toEqual([0x55, 0xaa, 0, 0xff]);
  });

  it('opens sources with an explicit driver and, for qcow2, no backing chain', () => {
    expect(JSON.parse(qemuSource('/a,b:"c"', 'qcow2').slice('json:'.length))).toEqual({ driver: 'qcow2', file: { driver: 'file', filename: '/a,b:"c"' }, backing: null });
    expect(JSON.parse(qemuSource('/x', 'raw').slice('json:'.length))).toEqual({ driver: 'raw', file: { driver: 'file', filename: '/x' } });
  });
});

const hasQemuImg = ['/usr/bin/qemu-img', '/usr/local/bin/qemu-img'].some((p) => existsSync(p));

describe.skipIf(!hasQemuImg)('with qemu-img', () => {
  const host = new LocalHost();
  let dir = '';
  const f = (name: string) => join(dir, name);
  const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { stdio: 'ignore' });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-disk-'));
    qemuImg('create', '-f', 'qcow2', f('good.qcow2'), '64M');
    qemuImg('create', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', f('evil.qcow2'));
    qemuImg('create', '-f', 'vmdk', f('d.vmdk'), '8M');
    const raw = Buffer.alloc(1 << 20);
    raw[510] = 0x55;
    raw[511] = 0xaa;
    await writeFile(f('mbr.img'), raw);
    await writeFile(f('text.txt'), 'just some text\n');
    await writeFile(f('trunc.qcow2'), (await readFile(f('good.qcow2'))).subarray(0, 4096));
    await writeFile(f('garbage.qcow2'), Buffer.concat([(await readFile(f('good.qcow2'))).subarray(0, 4), Buffer.alloc(65536, 0xab)]));
  });
  afterAll(async () => {
    if (dir) await host.fs.rm(dir, { recursive: true, force: true });
  });

  it('verifies and converts a qcow2 and an MBR raw disk into standalone qcow2', async () => {
    for (const [name, format] of [['good.qcow2', 'qcow2'], ['mbr.img', 'raw']] as const) {
      const facts = await verifyVmDisk(host, f(name));
      expect(facts.format).toBe(format);
      const out = join(dir, `out-${format}`);
      await host.fs.mkdir(out);
      const seen: string[] = [];
      const dest = await convertVmDisk(host, f(name), out, facts, (m) => seen.push(m));
      expect(dest).toBe(join(out, VM_DISK_FILE));
      const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', dest], { encoding: 'utf8' })) as QemuImgInfo;
      expect(info.format).toBe('qcow2');
      expect(info['backing-filename']).toBeUndefined();
      expect(info['virtual-size']).toBe(facts.virtualSize);
      expect(seen[0]).toMatch(/Converting/);
    }
  });

  it('refuses backing files, vmdk, text, truncated and garbled qcow2', async () => {
    await archiveErrorAsync(inspectVmDisk(host, f('evil.qcow2')), /backing file "\/etc\/passwd"/);
    await archiveErrorAsync(inspectVmDisk(host, f('d.vmdk')), /vmdk/);
    await archiveErrorAsync(inspectVmDisk(host, f('text.txt')), /not a disk image/);
    await archiveErrorAsync(verifyVmDisk(host, f('trunc.qcow2')), /corrupt/);
    await archiveErrorAsync(inspectVmDisk(host, f('garbage.qcow2')), /qemu-img can read/);
  });

  it('refuses a file that changed between the checks and the conversion', async () => {
    const facts = await verifyVmDisk(host, f('mbr.img'));
    const out = join(dir, 'out-changed');
    await host.fs.mkdir(out);
    await writeFile(f('mbr.img'), Buffer.concat([await readFile(f('mbr.img')), Buffer.alloc(512)]));
    const err = await convertVmDisk(host, f('mbr.img'), out, facts).then(() => undefined, (e: unknown) => e);
    expect(isAppError(err, 'CONFLICT'), String(err)).toBe(true);
  });
});
