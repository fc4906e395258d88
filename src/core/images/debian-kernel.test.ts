// Tests of the Debian kernel helpers: output parsers, bzImage payload and PVH note detection, vmlinux extraction, module resolution, the package cache.
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../host/local.js';
import {
  bzImagePayload, extractVmlinux, fetchDebPackage, hasPvhNote, moduleName, parseAptVersion, parseKernelConfig, parseMetaDepends,
  parseModinfo, payloadCandidates, resolveKernelModules, safeVersion,
} from './debian-kernel.js';

const host = new LocalHost();
let dir = '';
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'hangar-dk-')); });
afterAll(async () => { if (dir) await host.fs.rm(dir, { recursive: true, force: true }); });

// A minimal ELF64 with one PT_NOTE segment holding a note (name, type), padded to size.
function fakeElf(noteName: string, noteType: number, size = 64): Buffer {
  const b = Buffer.alloc(Math.max(size, 256));
  b.write('\x7fELF', 0, 'latin1');
  b[4] = 2; b[5] = 1;
  b.writeBigUInt64LE(64n, 0x20);
  b.writeUInt16LE(56, 0x36);
  b.writeUInt16LE(1, 0x38);
  b.writeUInt32LE(4, 64);
  b.writeBigUInt64LE(128n, 64 + 8);
  b.writeBigUInt64LE(24n, 64 + 0x20);
  b.writeUInt32LE(noteName.length + 1, 128);
  b.writeUInt32LE(4, 132);
  b.writeUInt32LE(noteType, 136);
  b.write(noteName, 140, 'latin1');
  return b;
}

// A bzImage-shaped buffer: setup header with HdrS and the payload location, then the payload.
function fakeBzImage(payload: Buffer): Buffer {
  const b = Buffer.alloc(1024 + 64 + payload.length + 32);
  b[0x1f1] = 1;
  b.write('HdrS', 0x202, 'latin1');
  b.writeUInt32LE(64, 0x248);
  b.writeUInt32LE(payload.length, 0x24c);
  payload.copy(b, 1024 + 64);
  return b;
}

describe('parsers', () => {
  it('reads the versioned kernel package of a meta package', () => {
    expect(parseMetaDepends('linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n')).toBe('linux-image-6.1.0-56-cloud-amd64');
    expect(parseMetaDepends('x\n  Depends: something-else\n')).toBeUndefined();
  });
  it('reads a package version and makes it file-name safe', () => {
    expect(parseAptVersion('Package: qemu-guest-agent\nVersion: 1:7.2+dfsg-7+deb12u18+b3\nArchitecture: amd64\n')).toBe('1:7.2+dfsg-7+deb12u18+b3');
    expect(safeVersion('1:7.2+dfsg-7')).toBe('1_7.2+dfsg-7');
  });
  it('parses a kernel config', () => {
    const c = parseKernelConfig('CONFIG_VIRTIO_NET=m\n# CONFIG_FOO is not set\nCONFIG_EXT4_FS=y\nCONFIG_CMDLINE="a b"\n');
    expect(c.get('CONFIG_VIRTIO_NET')).toBe('m');
    expect(c.get('CONFIG_EXT4_FS')).toBe('y');
    expect(c.get('CONFIG_CMDLINE')).toBe('a b');
    expect(c.has('CONFIG_FOO')).toBe(false);
  });
  it('reads modinfo fields and normalises module names', () => {
    const ko = Buffer.from('\x7fELF junk\0license=GPL\0depends=virtio,virtio_ring\0name=virtio_net\0vermagic=6.1.0 SMP\0', 'latin1');
    const info = parseModinfo(ko);
    expect(info.get('depends')).toEqual(['virtio,virtio_ring']);
    expect(info.get('name')).toEqual(['virtio_net']);
    expect(moduleName('kernel/drivers/char/hw_random/virtio-rng.ko')).toBe('virtio_rng');
  });
});

describe('bzImage and ELF inspection', () => {
  it('finds the payload from the setup header, then by magic', () => {
    const payload = Buffer.concat([Buffer.from('28b52ffd', 'hex'), Buffer.alloc(100), Buffer.from([1, 2, 3, 4])]);
    const img = fakeBzImage(payload);
    expect(bzImagePayload(img)).toEqual({ offset: 1088, length: payload.length });
    const c = payloadCandidates(img);
    expect(c[0]).toEqual({ compressor: 'zstd', offset: 1088, length: payload.length - 4 });
    expect(bzImagePayload(Buffer.alloc(2048))).toBeUndefined();
    expect(payloadCandidates(Buffer.concat([Buffer.alloc(10), Buffer.from('1f8b08', 'hex')]))).toEqual([{ compressor: 'gzip', offset: 10, length: 3 }]);
  });
  it('detects the PVH entry note', () => {
    expect(hasPvhNote(fakeElf('Xen', 18))).toBe(true);
    expect(hasPvhNote(fakeElf('Xen', 5))).toBe(false);
    expect(hasPvhNote(fakeElf('GNU', 18))).toBe(false);
    expect(hasPvhNote(Buffer.from('not an elf at all, not at all, not at all, not at all, really not'))).toBe(false);
  });
  it('extracts a gzip and an xz vmlinux', async () => {
    const elf = fakeElf('Xen', 18, 2 * 1024 * 1024);
    const gz = join(dir, 'vmlinuz-gz');
    await writeFile(gz, fakeBzImage(gzipSync(elf)));
    expect(await extractVmlinux(host, gz, join(dir, 'vmlinux-gz'))).toEqual({ compressor: 'gzip', pvh: true });
    expect((await readFile(join(dir, 'vmlinux-gz'))).equals(elf)).toBe(true);
    // The kernel build appends the decompressed size to xz, zstd, lz4... payloads.
    const xz = execFileSync('xz', ['-c', '--check=crc32'], { input: elf });
    const size = Buffer.alloc(4);
    size.writeUInt32LE(elf.length);
    await writeFile(join(dir, 'vmlinuz-xz'), fakeBzImage(Buffer.concat([xz, size])));
    expect(await extractVmlinux(host, join(dir, 'vmlinuz-xz'), join(dir, 'vmlinux-xz'))).toEqual({ compressor: 'xz', pvh: true });
    expect((await readFile(join(dir, 'vmlinux-xz'))).equals(elf)).toBe(true);
  });
  it('fails clearly without a payload', async () => {
    await writeFile(join(dir, 'empty'), Buffer.alloc(4096));
    await expect(extractVmlinux(host, join(dir, 'empty'), join(dir, 'out'))).rejects.toThrow(/Failed to extract an ELF vmlinux/);
  });
});

describe('resolveKernelModules', () => {
  it('orders dependencies first and separates built-in and missing modules', async () => {
    const m = join(dir, 'modules');
    await mkdir(join(m, 'kernel/drivers'), { recursive: true });
    const ko = (deps: string) => Buffer.from(`\x7fELF\0depends=${deps}\0name=x\0`, 'latin1');
    await writeFile(join(m, 'kernel/drivers/virtio.ko'), ko(''));
    await writeFile(join(m, 'kernel/drivers/virtio_ring.ko'), ko('virtio'));
    await writeFile(join(m, 'kernel/drivers/virtio_net.ko'), ko('virtio_ring,virtio'));
    await writeFile(join(m, 'kernel/drivers/virtio-rng.ko'), ko('virtio'));
    await writeFile(join(m, 'modules.order'), ['virtio', 'virtio_ring', 'virtio_net', 'virtio-rng'].map((n) => `kernel/drivers/${n}.ko`).join('\n') + '\n');
    await writeFile(join(m, 'modules.builtin'), 'kernel/fs/ext4/ext4.ko\n');
    const plan = await resolveKernelModules(host, m, ['virtio_net', 'virtio_rng', 'ext4', 'nope']);
    expect(plan).toEqual({
      load: ['kernel/drivers/virtio.ko', 'kernel/drivers/virtio_ring.ko', 'kernel/drivers/virtio_net.ko', 'kernel/drivers/virtio-rng.ko'],
      builtin: ['ext4'],
      missing: ['nope'],
    });
  });
});

describe('fetchDebPackage', () => {
  it('falls back to a cached copy when apt knows no candidate', async () => {
    const cache = join(dir, 'cache');
    await mkdir(join(cache, 'hangar-no-such-package-x_1.0-1'), { recursive: true });
    const deb = await fetchDebPackage(host, 'hangar-no-such-package-x', cache);
    expect(deb).toEqual({ name: 'hangar-no-such-package-x', version: '1.0-1', root: join(cache, 'hangar-no-such-package-x_1.0-1') });
    await expect(fetchDebPackage(host, 'hangar-no-such-package-y', cache)).rejects.toThrow(/Failed to find the Debian package hangar-no-such-package-y/);
  });
});
