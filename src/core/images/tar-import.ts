// Rootfs tarball import: detects compression from magic bytes, validates every entry with npm tar's Parser, extracts with system tar, then checks what is on disk.
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { Parser } from 'tar';
import { AppError } from '../../shared/errors.js';
import type { Host, HostStat } from '../../host/host.js';

/** Compression formats an imported tarball may use. */
export type Compression = 'gzip' | 'xz' | 'zstd' | 'none';

const MAGIC: [Compression, number[]][] = [
  ['gzip', [0x1f, 0x8b]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
];

/** Detects the compression of a file from its first bytes (never from its name); 'none' means "maybe a plain tar". */
export function detectCompression(head: Uint8Array): Compression {
  for (const [kind, magic] of MAGIC) {
    if (head.length >= magic.length && magic.every((b, i) => head[i] === b)) return kind;
  }
  return 'none';
}

/** The facts about one tar entry the safety check needs. */
export interface TarEntryInfo {
  path: string;
  /** npm tar's type name: File, OldFile, ContiguousFile, Directory, SymbolicLink, Link, FIFO, CharacterDevice, ... */
  type: string;
  linkpath?: string;
}

type Kind = 'dir' | 'symlink' | 'other';

function invalid(msg: string): AppError {
  return new AppError('INVALID_ARCHIVE', msg);
}

/** Splits an archive path into components; rejects absolute paths and ".." anywhere. */
function components(raw: string, subject: string): string[] {
  if (raw.startsWith('/')) throw invalid(`Archive ${subject} ${JSON.stringify(raw)} is an absolute path`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw invalid(`Archive ${subject} ${JSON.stringify(raw)} contains a ".." component`);
  return parts;
}

/**
 * Incremental safety check of a rootfs tarball's entries, in archive order. Rules: no absolute paths or "..";
 * no entry below a path that was ever a symlink or a non-directory; relative symlinks must stay inside the rootfs
 * (absolute targets are allowed: they point inside the rootfs from the container's view); hardlinks must name an
 * earlier non-directory entry by a safe path; only files, directories, symlinks, hardlinks and FIFOs (no device
 * nodes, sparse files or other types). finish() also requires a non-empty archive that looks like a rootfs:
 * a top-level "usr" or "bin" (directory or symlink).
 */
export class TarEntryValidator {
  private kinds = new Map<string, Kind>();
  private top = new Set<string>();
  /** Top-level directories that hold a usr or bin (an archive packed one level too high). */
  private wrapped = new Set<string>();
  private count = 0;

  /** Checks one entry; throws AppError INVALID_ARCHIVE naming the entry. */
  add(e: TarEntryInfo): void {
    const parts = components(e.path, 'entry');
    const name = JSON.stringify(e.path);
    this.checkAncestors(parts, name);
    let kind: Kind;
    switch (e.type) {
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
      case 'FIFO':
        kind = 'other';
        break;
      case 'Directory':
        kind = 'dir';
        break;
      case 'SymbolicLink':
        this.checkSymlinkTarget(parts, e.linkpath ?? '', name);
        kind = 'symlink';
        break;
      case 'Link':
        kind = this.checkHardlinkTarget(e.linkpath ?? '', name);
        break;
      case 'CharacterDevice':
      case 'BlockDevice':
        throw invalid(`Archive entry ${name} is a device node; rootfs tarballs must not contain devices (the container manager provides /dev)`);
      default:
        throw invalid(`Archive entry ${name} has unsupported type ${e.type}`);
    }
    if (parts.length === 0) {
      if (kind !== 'dir') throw invalid(`Archive entry ${name} would replace the root directory`);
    } else {
      const key = parts.join('/');
      if (this.kinds.get(key) === 'dir' && kind !== 'dir') throw invalid(`Archive entry ${name} replaces a directory defined earlier in the archive`);
      // A path that was ever a symlink stays one for the checks: extraction order tricks must not launder it.
      if (this.kinds.get(key) !== 'symlink') this.kinds.set(key, kind);
      this.top.add(parts[0]!);
      if (parts[1] === 'usr' || parts[1] === 'bin') this.wrapped.add(parts[0]!);
    }
    this.count++;
  }

  /** Final checks once every entry was added; returns the number of entries. */
  finish(): { entries: number } {
    if (this.count === 0) throw invalid('Archive is empty');
    if (!this.top.has('usr') && !this.top.has('bin')) {
      const only = this.top.size === 1 ? [...this.top][0]! : undefined;
      if (only !== undefined && this.wrapped.has(only)) {
        throw invalid(`Archive does not look like a root file system: everything is under "${only}/"; pack it from inside that directory (tar -C ${only} -c .)`);
      }
      throw invalid('Archive does not look like a root file system: it has no top-level "usr" or "bin"');
    }
    return { entries: this.count };
  }

  private checkAncestors(parts: string[], name: string): void {
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      const kind = this.kinds.get(prefix);
      if (kind === 'symlink') throw invalid(`Archive entry ${name} goes through the symlink "${prefix}" defined earlier in the archive`);
      if (kind === 'other') throw invalid(`Archive entry ${name} lies below "${prefix}", which is not a directory`);
    }
  }

  private checkSymlinkTarget(parts: string[], target: string, name: string): void {
    if (target === '') throw invalid(`Archive symlink ${name} has an empty target`);
    if (target.startsWith('/')) return;
    let depth = parts.length - 1;
    for (const c of target.split('/')) {
      if (c === '' || c === '.') continue;
      depth += c === '..' ? -1 : 1;
      if (depth < 0) throw invalid(`Archive symlink ${name} -> ${JSON.stringify(target)} points outside the root file system`);
    }
  }

  private checkHardlinkTarget(target: string, name: string): Kind {
    if (target === '') throw invalid(`Archive hardlink ${name} has an empty target`);
    const parts = components(target, `hardlink ${name} target`);
    this.checkAncestors(parts, `${name} (hardlink target ${JSON.stringify(target)})`);
    const kind = this.kinds.get(parts.join('/'));
    if (kind === undefined) throw invalid(`Archive hardlink ${name} -> ${JSON.stringify(target)} names no earlier entry`);
    if (kind === 'dir') throw invalid(`Archive hardlink ${name} -> ${JSON.stringify(target)} names a directory`);
    return kind;
  }
}

/** Pure safety check of a list of entries in archive order (see TarEntryValidator). */
export function validateTarEntries(entries: Iterable<TarEntryInfo>): { entries: number } {
  const v = new TarEntryValidator();
  for (const e of entries) v.add(e);
  return v.finish();
}

const DECOMPRESS: Record<Compression, (file: string) => string[]> = {
  gzip: (f) => ['gzip', '-dc', '--', f],
  xz: (f) => ['xz', '-dc', '--', f],
  zstd: (f) => ['zstd', '-dcq', '--', f],
  none: (f) => ['cat', '--', f],
};

const TAR_FLAG: Record<Compression, string[]> = { gzip: ['-z'], xz: ['-J'], zstd: ['--zstd'], none: [] };

/** Imports a rootfs tarball into destDir (existing, empty); nothing is written unless every entry passes validation. */
export async function importRootfsTarball(host: Host, file: string, destDir: string, opts: { onProgress?: (msg: string) => void } = {}): Promise<{ entries: number }> {
  const progress = opts.onProgress ?? (() => undefined);
  const before = await host.fs.stat(file);
  if (!before?.isFile) throw new AppError('NOT_FOUND', `Archive ${file} does not exist or is not a regular file`);
  const dest = await host.fs.stat(destDir);
  if (!dest?.isDirectory) throw new AppError('NOT_FOUND', `Import directory ${destDir} does not exist`);
  if ((await host.fs.readdir(destDir)).length > 0) throw new AppError('INVALID_STATE', `Import directory ${destDir} is not empty`);

  const compression = detectCompression(await readHead(host, file, 8));
  progress(`Checking archive ${file} (${compression === 'none' ? 'uncompressed' : compression})`);
  const { entries } = await validateArchive(host, file, compression, progress);
  if (changed(before, await host.fs.stat(file))) throw new AppError('CONFLICT', `Archive ${file} changed while it was being checked`);

  progress(`Extracting ${entries} entries`);
  try {
    await host.exec([
      'tar', '-x', ...TAR_FLAG[compression], '-f', file, '-C', destDir,
      '--numeric-owner', '--same-owner', '--same-permissions',
      // Only xattrs a rootfs needs: file capabilities and user attributes (no trusted.*, e.g. overlayfs metadata).
      '--xattrs', '--xattrs-include=security.capability', '--xattrs-include=user.*',
    ]);
  } catch (e) {
    await emptyDir(host, destDir);
    throw new AppError('HOST_FAILED', `Failed to extract archive ${file} into ${destDir}`, { cause: e });
  }
  // The check above read the archive with one parser and GNU tar extracted it with another: where the two disagree
  // (old-GNU sparse extension blocks, say), only what is now on disk tells the truth, and that is what decides.
  try {
    await verifyRootfsTree(host, destDir, `Archive ${file}`);
  } catch (e) {
    await emptyDir(host, destDir);
    throw e;
  }
  return { entries };
}

/**
 * Checks an extracted or built root file system as it is on disk: no device nodes or sockets anywhere (the container
 * runtime makes /dev itself), and no file hard-linked to anything outside the tree. Throws INVALID_ARCHIVE naming what.
 */
export async function verifyRootfsTree(host: Host, root: string, subject: string): Promise<void> {
  const special = await host.exec(['find', root, '-xdev', '(', '-type', 'b', '-o', '-type', 'c', '-o', '-type', 's', ')', '-printf', '%y %P\\0'], { timeoutMs: 600_000 });
  const first = special.stdout.split('\0').find(Boolean);
  if (first) {
    const [type, ...rest] = first.split(' ');
    const what = type === 'b' ? 'a block device' : type === 'c' ? 'a character device' : 'a socket';
    throw new AppError('INVALID_ARCHIVE', `${subject} put ${what} at /${rest.join(' ')} in the root file system; images must not contain device nodes (the container manager provides /dev)`);
  }
  // Every name of a multiply linked file must be inside the tree: more links than names here means one points outside.
  const links = await host.exec(['find', root, '-xdev', '-type', 'f', '-links', '+1', '-printf', '%i %n %P\\0'], { timeoutMs: 600_000 });
  const seen = new Map<string, { want: number; names: string[] }>();
  for (const line of links.stdout.split('\0')) {
    const m = /^(\d+) (\d+) (.*)$/s.exec(line);
    if (!m) continue;
    const e = seen.get(m[1]!) ?? { want: Number(m[2]), names: [] };
    e.names.push(m[3]!);
    seen.set(m[1]!, e);
  }
  for (const e of seen.values()) {
    if (e.names.length < e.want) throw new AppError('INVALID_ARCHIVE', `${subject} left /${e.names[0]} hard-linked to a file outside the root file system`);
  }
}

function changed(a: HostStat, b: HostStat | undefined): boolean {
  return !b || a.size !== b.size || a.mtimeMs !== b.mtimeMs;
}

async function readAll(stream: Readable | null): Promise<Buffer> {
  const chunks: Buffer[] = [];
  if (stream) for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function readHead(host: Host, file: string, n: number): Promise<Buffer> {
  const proc = host.spawn(['head', '-c', String(n), '--', file]);
  proc.stdin?.end();
  const [out, err, exit] = await Promise.all([readAll(proc.stdout), readAll(proc.stderr), proc.wait()]);
  if (exit.code !== 0) throw new AppError('HOST_FAILED', `Failed to read archive ${file}`, { cause: new Error(err.toString('utf8').trim()) });
  return out;
}

/** Streams the decompressed archive through the checks; writes nothing. */
async function validateArchive(host: Host, file: string, compression: Compression, progress: (msg: string) => void): Promise<{ entries: number }> {
  const proc = host.spawn(DECOMPRESS[compression](file));
  proc.stdin?.end();
  const stderr = readAll(proc.stderr);
  let result: { entries: number } | undefined;
  let failure: unknown;
  try {
    result = await validateTarStream(proc.stdout as AsyncIterable<Buffer>, `Archive ${file}`, progress);
  } catch (e) {
    failure = e;
  }
  // Stop the decompressor we started when its output was abandoned early; it may be blocked on a huge archive.
  const abandoned = proc.stdout !== null && !proc.stdout.readableEnded;
  if (abandoned) proc.kill('SIGKILL');
  const exit = await proc.wait();
  const errText = (await stderr).toString('utf8').trim();
  // A decompressor that failed on its own (not killed by us) is the root cause of whatever the parser saw.
  if (!abandoned && exit.code !== 0) {
    throw new AppError('INVALID_ARCHIVE', `Archive ${file} is corrupt or truncated (${compression === 'none' ? 'read' : `${compression} decompression`} failed)`, { cause: new Error(errText || `exit code ${exit.code}`) });
  }
  if (failure !== undefined || !result) throw failure;
  return result;
}

/**
 * Parses an uncompressed tar stream with npm tar's strict Parser and runs every entry through TarEntryValidator.
 * Throws INVALID_ARCHIVE (message starting with label) for unsafe entries, corrupt or truncated data, non-tar
 * input, nested compression, an empty archive or a tree that is not a rootfs.
 */
export async function validateTarStream(stream: AsyncIterable<Buffer>, label: string, progress: (msg: string) => void = () => undefined): Promise<{ entries: number }> {
  const validator = new TarEntryValidator();
  let failure: unknown;
  let seen = 0;
  // Compression is handled before this point: the parser must not sniff and unpack a nested layer.
  const parser = new Parser({ strict: true, brotli: false, zstd: false });
  parser.on('entry', (entry: { path: string; type: string; linkpath?: string; resume(): void }) => {
    if (failure === undefined) {
      try {
        validator.add({ path: entry.path, type: entry.type, linkpath: entry.linkpath });
        if (++seen % 5000 === 0) progress(`Checked ${seen} entries`);
      } catch (e) {
        failure = e;
      }
    }
    entry.resume();
  });
  // npm tar hands entries of types it does not handle (old-GNU sparse 'S', volume headers, ...) to this event instead of
  // 'entry': GNU tar would extract them, so they are refused like every unknown type.
  parser.on('ignoredEntry', (entry: { path: string; type: string }) => {
    failure ??= new AppError('INVALID_ARCHIVE', `Archive entry ${JSON.stringify(entry.path)} has unsupported type ${entry.type}`);
  });
  parser.on('error', (e: Error) => {
    const empty = /Unrecognized archive format/.test(e.message);
    failure ??= new AppError('INVALID_ARCHIVE', empty ? 'Archive is empty or not a tar archive' : `Archive is not a valid tar archive: ${e.message}`, { cause: e });
  });
  const ended = new Promise<void>((resolve) => {
    parser.on('end', () => resolve());
    parser.on('close', () => resolve());
  });
  let first = true;
  let total = 0;
  let tail: Buffer<ArrayBufferLike> = Buffer.alloc(0);
  for await (const chunk of stream) {
    total += chunk.length;
    tail = chunk.length >= 512 ? chunk.subarray(chunk.length - 512) : Buffer.concat([tail, chunk]).subarray(-512);
    if (first && chunk.length > 0) {
      first = false;
      const inner = detectCompression(chunk);
      if (inner !== 'none') failure ??= new AppError('INVALID_ARCHIVE', `Archive is compressed twice (${inner} inside); recompress it once`);
    }
    if (failure !== undefined) break;
    if (!parser.write(chunk) && failure === undefined) await once(parser, 'drain').catch(() => undefined);
  }
  if (failure === undefined) {
    parser.end();
    await ended;
  }
  // A complete tar ends with zero blocks; the parser silently ignores a partial trailing header.
  if (failure === undefined && total > 0 && (total % 512 !== 0 || tail.some((b) => b !== 0))) {
    failure = new AppError('INVALID_ARCHIVE', 'Archive is truncated (no end-of-archive marker)');
  }
  try {
    if (failure !== undefined) throw failure;
    return validator.finish();
  } catch (e) {
    if (e instanceof AppError && e.message === 'Archive is empty') throw new AppError('INVALID_ARCHIVE', `${label} is empty or not a tar archive`);
    // Messages of this module start with "Archive"; name the actual file instead.
    if (e instanceof AppError && e.message.startsWith('Archive ')) throw new AppError(e.code, label + e.message.slice('Archive'.length), { cause: e.cause });
    throw e;
  }
}

/** Removes everything inside dir (not dir itself), never following symlinks. */
async function emptyDir(host: Host, dir: string): Promise<void> {
  for (const name of await host.fs.readdir(dir)) await host.fs.rm(`${dir}/${name}`, { recursive: true, force: true });
}
