// Unit tests for the rootfs tarball checks: compression sniffing, the entry rules, and the strict stream parser on hand-made archives.
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { goodRootfsEntries, makeTar, type RawTarEntry } from '../../../test/fixtures/archives/make-tar.js';
import { detectCompression, validateTarEntries, validateTarStream, type TarEntryInfo } from './tar-import.js';

async function* chunks(buf: Buffer, size = 700): AsyncIterable<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

const base: TarEntryInfo[] = [
  { path: './', type: 'Directory' },
  { path: 'usr/', type: 'Directory' },
  { path: 'bin', type: 'SymbolicLink', linkpath: 'usr/bin' },
];

function rejects(entries: TarEntryInfo[], pattern: RegExp): void {
  let err: unknown;
  try {
    validateTarEntries(entries);
  } catch (e) {
    err = e;
  }
  expect(isAppError(err, 'INVALID_ARCHIVE')).toBe(true);
  expect((err as Error).message).toMatch(pattern);
}

describe('detectCompression', () => {
  it('recognises magic bytes, not names', () => {
    expect(detectCompression(Buffer.from([0x1f, 0x8b, 8, 0]))).toBe('gzip');
    expect(detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0]))).toBe('xz');
    expect(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1]))).toBe('zstd');
    expect(detectCompression(Buffer.from('bin/\0\0\0'))).toBe('none');
    expect(detectCompression(Buffer.from([0xfd, 0x37, 0x7a]))).toBe('none');
  });
});

describe('validateTarEntries', () => {
  it('accepts a normal rootfs with absolute symlinks, hardlinks and fifos', () => {
    const out = validateTarEntries([
      ...base,
      { path: 'usr/bin/', type: 'Directory' },
      { path: 'usr/bin/sh', type: 'File' },
      { path: 'usr/bin/dash', type: 'Link', linkpath: 'usr/bin/sh' },
      { path: 'etc/localtime', type: 'SymbolicLink', linkpath: '/usr/share/zoneinfo/UTC' },
      { path: 'usr/lib/x', type: 'SymbolicLink', linkpath: '../../usr/bin/sh' },
      { path: 'run/initctl', type: 'FIFO' },
    ]);
    expect(out.entries).toBe(9);
  });

  it('rejects absolute paths and ".." components', () => {
    rejects([...base, { path: '/etc/passwd', type: 'File' }], /"\/etc\/passwd" is an absolute path/);
    rejects([...base, { path: 'usr/../../etc/passwd', type: 'File' }], /"usr\/..\/..\/etc\/passwd" contains a "\.\."/);
    rejects([...base, { path: '..', type: 'Directory' }], /contains a "\.\."/);
  });

  it('rejects entries written through an earlier symlink', () => {
    rejects([...base, { path: 'a', type: 'SymbolicLink', linkpath: '/' }, { path: 'a/etc/passwd', type: 'File' }], /"a\/etc\/passwd" goes through the symlink "a"/);
    rejects([...base, { path: 'bin/evil', type: 'File' }], /goes through the symlink "bin"/);
    // Redefining the symlink as a directory does not make it safe.
    rejects([...base, { path: 'a', type: 'SymbolicLink', linkpath: 'usr' }, { path: 'a', type: 'Directory' }, { path: 'a/x', type: 'File' }], /symlink "a"/);
  });

  it('rejects relative symlinks that climb out of the rootfs', () => {
    rejects([...base, { path: 'x', type: 'SymbolicLink', linkpath: '../../../etc' }], /"x" -> "..\/..\/..\/etc" points outside/);
    rejects([...base, { path: 'usr/x', type: 'SymbolicLink', linkpath: '../..' }], /points outside/);
    rejects([...base, { path: 'usr/x', type: 'SymbolicLink', linkpath: '' }], /empty target/);
  });

  it('rejects unsafe hardlinks', () => {
    rejects([...base, { path: 'h', type: 'Link', linkpath: '/etc/shadow' }], /hardlink "h" target "\/etc\/shadow" is an absolute path/);
    rejects([...base, { path: 'h', type: 'Link', linkpath: '../etc/shadow' }], /contains a "\.\."/);
    rejects([...base, { path: 'h', type: 'Link', linkpath: 'bin/passwd' }], /hardlink target "bin\/passwd".*symlink "bin"/);
    rejects([...base, { path: 'h', type: 'Link', linkpath: 'usr/nothing' }], /names no earlier entry/);
    rejects([...base, { path: 'h', type: 'Link', linkpath: 'usr' }], /names a directory/);
  });

  it('rejects device nodes and unknown types', () => {
    rejects([...base, { path: 'dev/sda', type: 'BlockDevice' }], /"dev\/sda" is a device node/);
    rejects([...base, { path: 'dev/null', type: 'CharacterDevice' }], /"dev\/null" is a device node/);
    rejects([...base, { path: 'big', type: 'SparseFile' }], /"big" has unsupported type SparseFile/);
  });

  it('rejects entries below files and a non-directory root', () => {
    rejects([...base, { path: 'f', type: 'File' }, { path: 'f/g', type: 'File' }], /below "f", which is not a directory/);
    rejects([{ path: './', type: 'File' }], /replace the root/);
    rejects([...base, { path: 'usr/x', type: 'File' }, { path: 'usr', type: 'SymbolicLink', linkpath: '/' }], /"usr" replaces a directory/);
  });

  it('rejects empty archives and trees that are not a rootfs', () => {
    rejects([], /empty/);
    rejects([{ path: 'etc/', type: 'Directory' }, { path: 'etc/passwd', type: 'File' }], /no top-level "usr" or "bin"/);
    rejects([{ path: 'rootfs/', type: 'Directory' }, { path: 'rootfs/usr/', type: 'Directory' }], /everything is under "rootfs\/"/);
  });
});

describe('validateTarStream (npm tar strict parser)', () => {
  const good = makeTar(goodRootfsEntries());

  async function streamRejects(buf: Buffer, pattern: RegExp): Promise<void> {
    const err = await validateTarStream(chunks(buf), 'Archive t.tar').then(() => undefined, (e: unknown) => e);
    expect(isAppError(err, 'INVALID_ARCHIVE')).toBe(true);
    expect((err as Error).message).toMatch(pattern);
  }

  it('accepts a good archive and counts its entries', async () => {
    expect(await validateTarStream(chunks(good), 'Archive t.tar')).toEqual({ entries: goodRootfsEntries().length });
  });

  it('reports progress for large archives', async () => {
    const many: RawTarEntry[] = [{ path: 'usr/', type: '5' }];
    for (let i = 0; i < 5000; i++) many.push({ path: `usr/f${i}`, data: '' });
    const msgs: string[] = [];
    await validateTarStream(chunks(makeTar(many), 65536), 'Archive t.tar', (m) => msgs.push(m));
    expect(msgs).toContain('Checked 5000 entries');
  });

  it('rejects bad entries found by the parser', async () => {
    await streamRejects(makeTar([...goodRootfsEntries(), { path: 'a', type: '2', linkpath: '/' }, { path: 'a/etc/passwd', data: 'x' }]), /^Archive t\.tar entry "a\/etc\/passwd" goes through the symlink "a"/);
    await streamRejects(makeTar([...goodRootfsEntries(), { path: 'dev/null', type: '3' }]), /device node/);
    await streamRejects(makeTar([...goodRootfsEntries(), { path: 'usr/x', type: '2', linkpath: '../../../etc' }]), /points outside/);
    await streamRejects(makeTar([...goodRootfsEntries(), { path: 'h', type: '1', linkpath: '/etc/shadow' }]), /absolute path/);
  });

  it('rejects non-tar data, truncated and corrupt archives, empty archives', async () => {
    await streamRejects(Buffer.from('hello, this is not a tar archive at all\n'.repeat(40)), /not a valid tar archive|empty or not a tar/);
    await streamRejects(good.subarray(0, 512 * 3 + 100), /not a valid tar archive/);
    const corrupt = Buffer.from(good);
    corrupt[512 + 10] = 0x41; // second header's name changes, its checksum no longer matches
    await streamRejects(corrupt, /not a valid tar archive/);
    await streamRejects(Buffer.alloc(10240), /empty or not a tar|not a valid tar/);
    // Entries complete but the end-of-archive zero blocks and a partial next header: truncated, not accepted.
    await streamRejects(Buffer.concat([good.subarray(0, good.length - 1024), Buffer.from('usr/partial')]), /truncated/);
  });

  it('rejects nested compression instead of letting the parser unpack it', async () => {
    await streamRejects(gzipSync(good), /compressed twice/);
  });
});
