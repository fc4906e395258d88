// Unit tests of the newc cpio writer, read back by GNU cpio itself.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { packCpio } from './cpio.js';
import { accelGuestInitrd, ACCEL_GUEST_INIT } from './accel-guest.js';

const list = (archive: Buffer) => spawnSync('cpio', ['-itv', '--quiet'], { input: archive, encoding: 'utf8' });

describe('packCpio', () => {
  it('writes directories, files, symlinks and device nodes GNU cpio reads back, owned by root', () => {
    const archive = packCpio([
      { path: 'bin', type: 'dir', mode: 0o755 },
      { path: 'bin/tool', type: 'file', mode: 0o750, data: Buffer.from('abc') },
      { path: 'bin/sh', type: 'symlink', target: 'tool' },
      { path: 'dev', type: 'dir', mode: 0o755 },
      { path: 'dev/console', type: 'char', mode: 0o600, major: 5, minor: 1 },
    ]);
    // Every member starts on a 4-byte boundary and the archive ends with the trailer.
    expect(archive.length % 4).toBe(0);
    expect(archive.includes(Buffer.from('TRAILER!!!\0'))).toBe(true);
    const r = list(archive);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^drwxr-xr-x +2 root +root +0 .* bin$/);
    expect(lines[1]).toMatch(/^-rwxr-x--- +1 root +root +3 .* bin\/tool$/);
    expect(lines[2]).toMatch(/^lrwxrwxrwx .* bin\/sh -> tool$/);
    expect(lines[4]).toMatch(/^crw------- +1 root +root +5, +1 .* dev\/console$/);
    const out = spawnSync('cpio', ['-i', '--quiet', '--to-stdout', 'bin/tool'], { input: archive });
    expect(out.stdout.toString()).toBe('abc');
  });
  it('refuses absolute paths and ".." (an initramfs is unpacked as root)', () => {
    expect(() => packCpio([{ path: '/etc/passwd', type: 'file', mode: 0o644, data: Buffer.alloc(0) }])).toThrow(/relative/);
    expect(() => packCpio([{ path: 'a/../../x', type: 'dir', mode: 0o755 }])).toThrow(/relative/);
  });
  it('packs the accelerator test guest: busybox, the console node and an init that prints the marker and powers off', () => {
    const archive = accelGuestInitrd(Buffer.from('busybox binary'));
    const names = list(archive).stdout.trim().split('\n').map((l) => l.split(' ').at(-1));
    expect(names).toEqual(['bin', 'bin/busybox', 'dev', 'dev/console', 'init']);
    expect(spawnSync('cpio', ['-i', '--quiet', '--to-stdout', 'init'], { input: archive }).stdout.toString()).toBe(ACCEL_GUEST_INIT);
    expect(ACCEL_GUEST_INIT).toMatch(/echo HANGAR-ACCEL-OK\n.*poweroff -f/s);
  });
});
