// An image's kernel, initrd and disk where the Xen host can use them: in place on the same host, or copied once into a per-host cache; the raw disk copy of each domain.
//
// xl reads kernels, initrds and disks from Dom0's file system, so they must be files of the Xen host. When the image
// directory is on that host (a local Dom0, or a host whose images core placed there), kernel and initrd are used in
// place. When it is on another machine (the daemon's own, with the Xen host reached over SSH: the driver is given that
// machine as its image source), they are copied once per image into <dataDir>/xen/images/<key>/ on the Xen host, read
// from the source with fs.readFile and written with fs.writeAtomic (gzip-compressed, unpacked by gunzip there when it
// has one); a .complete marker, written last, tells a finished copy.
// Disks become raw files (the kernel's blkback attaches them through a loop device, no QEMU needed in Dom0): a qcow2
// disk is converted by qemu-img on the Xen host when it has one, else on the image source into its scratch directory
// before the copy. Each domain gets its own copy of the raw disk in its instance directory, grown to limits.disk.
import { createHash, randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { gzipSync } from 'node:zlib';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import type { InstanceRecord } from '../driver.js';

/** The machine holding record.imagePath when it is not the Xen host, and a writable directory there for conversions. */
export interface XenImageSource {
  host: Host;
  scratchDir: string;
}

/** The image files a domain boots from, as paths on the Xen host. */
export interface XenImageFiles {
  /** Directory holding the image's kernel and initrd under their image property names (record.imagePath for xlConfigFor). */
  bootDir: string | undefined;
  /** The raw disk each domain copies, or undefined when the image has none. */
  rawDisk: string | undefined;
}

/** What placing an image needs: the Xen host, where its cache lives, the image source, qemu-img on either side. */
export interface XenImageContext {
  host: Host;
  cacheDir: string;
  source?: XenImageSource | undefined;
  /** qemu-img on the Xen host, or null. */
  qemuImg: string | null;
}

/** The format of an image's disk file from its name: raw for .raw/.img, qcow2 otherwise (Hangar's VM images are qcow2). */
export function diskFormatOf(file: string): 'raw' | 'qcow2' {
  return /\.(raw|img)$/i.test(file) ? 'raw' : 'qcow2';
}

const CONVERT_TIMEOUT_MS = 600_000;

/** The cache directory of an image: its directory name and a digest of its files' sizes and times, so a rebuilt image is copied again. */
async function cacheKey(source: Host, imagePath: string, files: string[]): Promise<string> {
  const h = createHash('sha256').update(imagePath);
  for (const f of files) {
    const st = await source.fs.stat(posix.join(imagePath, f));
    if (!st) throw new AppError('NOT_FOUND', `Image file ${posix.join(imagePath, f)} is missing on host ${source.name}`);
    h.update(`\0${f}\0${st.size}\0${st.mtimeMs}`);
  }
  return `${posix.basename(imagePath).replace(/[^A-Za-z0-9._-]/g, '_')}-${h.digest('hex').slice(0, 16)}`;
}

// Converts to a temporary name renamed into place, so an interrupted conversion never looks finished.
async function convertInto(host: Host, binary: string, from: string, to: string): Promise<void> {
  const tmp = `${to}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    await qemuImgConvert(host, binary, from, 'qcow2', tmp);
    await host.fs.rename(tmp, to);
  } catch (err) {
    await host.fs.rm(tmp, { force: true });
    throw err;
  }
}

async function qemuImgConvert(host: Host, binary: string, from: string, format: 'qcow2', to: string): Promise<void> {
  const res = await host.exec([binary, 'convert', '-f', format, '-O', 'raw', from, to], { allowFailure: true, timeoutMs: CONVERT_TIMEOUT_MS });
  if (res.code !== 0) throw new AppError('BACKEND_FAILED', `qemu-img convert of ${from} to raw on host ${host.name} failed`, { cause: new Error(res.stderr.trim() || `exit code ${res.code}`) });
}

/** Puts the image's boot files and raw disk where the Xen host reads them (idempotent: a cached image is reused). */
export async function placeImage(ctx: XenImageContext, record: InstanceRecord): Promise<XenImageFiles> {
  const props = record.imageProps;
  const wanted = [props.kernel, props.initrd, props.disk].filter((f): f is string => !!f);
  if (wanted.length === 0) return { bootDir: record.imagePath, rawDisk: undefined };
  const imagePath = record.imagePath;
  if (!imagePath) throw new AppError('INVALID_CONFIG', `Image "${record.image}" of instance "${record.name}" has no directory`);
  const host = ctx.host;
  const source = ctx.source;
  const disk = props.disk;
  const rawInPlace = disk !== undefined && diskFormatOf(disk) === 'raw';

  if (!source) {
    // Same host: everything in place, but a qcow2 disk, converted once into the cache.
    if (!disk) return { bootDir: imagePath, rawDisk: undefined };
    if (rawInPlace) return { bootDir: imagePath, rawDisk: posix.join(imagePath, disk) };
    const dir = posix.join(ctx.cacheDir, await cacheKey(host, imagePath, [disk]));
    const raw = posix.join(dir, 'disk.raw');
    if (!(await host.fs.stat(posix.join(dir, '.complete'))) && !ctx.qemuImg) {
      throw new AppError('UNSUPPORTED', `Image "${record.image}" has a qcow2 disk, and host ${host.name} has no qemu-img to make the raw disk a Xen domain attaches (install qemu-utils)`);
    }
    await fill(host, dir, (d) => convertInto(host, ctx.qemuImg!, posix.join(imagePath, disk), posix.join(d, 'disk.raw')));
    return { bootDir: imagePath, rawDisk: raw };
  }

  // Another machine holds the image: copy it once into the Xen host's cache.
  const dir = posix.join(ctx.cacheDir, await cacheKey(source.host, imagePath, wanted));
  const rawName = disk ? (rawInPlace ? disk : 'disk.raw') : undefined;
  await fill(host, dir, async (d) => {
    for (const f of [props.kernel, props.initrd]) if (f) await copyFile(source.host, posix.join(imagePath, f), host, posix.join(d, f));
    if (!disk) return;
    if (rawInPlace) {
      await copyFile(source.host, posix.join(imagePath, disk), host, posix.join(d, disk));
    } else if (ctx.qemuImg) {
      // Smaller to send as qcow2; the Xen host converts it.
      const qcow2 = posix.join(d, 'disk.qcow2');
      await copyFile(source.host, posix.join(imagePath, disk), host, qcow2);
      await convertInto(host, ctx.qemuImg, qcow2, posix.join(d, 'disk.raw'));
      await host.fs.rm(qcow2, { force: true });
    } else {
      const scratch = posix.join(source.scratchDir, `xen-${randomBytes(6).toString('hex')}.raw`);
      await source.host.fs.mkdir(source.scratchDir, { recursive: true });
      try {
        await qemuImgConvert(source.host, 'qemu-img', posix.join(imagePath, disk), 'qcow2', scratch);
        await copyFile(source.host, scratch, host, posix.join(d, 'disk.raw'));
      } finally {
        await source.host.fs.rm(scratch, { force: true });
      }
    }
  });
  return { bootDir: dir, rawDisk: rawName ? posix.join(dir, rawName) : undefined };
}

/** Fills a cache directory once: make writes each file atomically, and a .complete marker written last tells a finished directory from one an interrupted fill left. */
async function fill(host: Host, dir: string, make: (dir: string) => Promise<void>): Promise<void> {
  const done = posix.join(dir, '.complete');
  if (await host.fs.stat(done)) return;
  await host.fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await make(dir);
  await host.fs.writeAtomic(done, `${new Date().toISOString()}\n`);
}

/**
 * Copies one file from one host to another: read whole, sent gzip-compressed and unpacked by gunzip on the receiving
 * host (a raw disk is mostly zeros, a kernel compresses 4:1: 126 MiB of the busybox image travel as 16), or sent as it
 * is, atomically, when that host has no gunzip.
 */
async function copyFile(from: Host, fromPath: string, to: Host, toPath: string): Promise<void> {
  const st = await from.fs.stat(fromPath);
  const mode = (st?.mode ?? 0o644) & 0o777;
  const data = await from.fs.readFile(fromPath);
  const packed = `${toPath}.tmp-${randomBytes(4).toString('hex')}.gz`;
  await to.fs.writeAtomic(packed, gzipSync(data, { level: 1 }), mode);
  const res = await to.exec(['gunzip', '-f', packed], { allowFailure: true, timeoutMs: CONVERT_TIMEOUT_MS }).catch(() => undefined);
  const unpacked = packed.slice(0, -'.gz'.length);
  if (res?.code === 0 && (await to.fs.stat(unpacked))?.size === data.length) {
    await to.fs.rename(unpacked, toPath);
    return;
  }
  await to.fs.rm(packed, { force: true });
  await to.fs.rm(unpacked, { force: true });
  await to.fs.writeAtomic(toPath, data, mode);
}

/** The raw disk of a domain: a copy of the image's raw disk (made once), grown to sizeBytes; never shrunk. */
export async function ensureRawDisk(host: Host, path: string, opts: { base?: string | undefined; sizeBytes?: number | undefined; what: string }): Promise<{ created: boolean }> {
  const existing = await host.fs.stat(path);
  if (existing) {
    if (opts.sizeBytes !== undefined && opts.sizeBytes < existing.size) {
      throw new AppError('INVALID_SIZE', `${opts.what} cannot shrink from ${existing.size} to ${opts.sizeBytes} bytes; disks only grow`);
    }
    if (opts.sizeBytes !== undefined && opts.sizeBytes > existing.size) await host.exec(['truncate', '-s', String(opts.sizeBytes), path]);
    return { created: false };
  }
  const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    if (opts.base) {
      const base = await host.fs.stat(opts.base);
      if (!base) throw new AppError('NOT_FOUND', `${opts.what}: the image's disk ${opts.base} is missing on host ${host.name}`);
      if (opts.sizeBytes !== undefined && opts.sizeBytes < base.size) {
        throw new AppError('INVALID_SIZE', `${opts.what}: limits.disk (${opts.sizeBytes} bytes) is smaller than its image's disk (${base.size} bytes); disks only grow`);
      }
      await host.exec(['cp', opts.base, tmp], { timeoutMs: CONVERT_TIMEOUT_MS });
      if (opts.sizeBytes !== undefined && opts.sizeBytes > base.size) await host.exec(['truncate', '-s', String(opts.sizeBytes), tmp]);
    } else {
      if (opts.sizeBytes === undefined) throw new AppError('INVALID_CONFIG', `${opts.what} has no size`);
      // A sparse file of that size: blocks are allocated as the guest writes.
      await host.exec(['truncate', '-s', String(opts.sizeBytes), tmp]);
    }
    await host.fs.rename(tmp, path);
  } catch (err) {
    await host.fs.rm(tmp, { force: true });
    throw err;
  }
  return { created: true };
}
