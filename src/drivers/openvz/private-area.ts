// An OpenVZ container's private area: an ext4 image file (the substitute for ploop) made from the template tree, loop-mounted at VE_ROOT, grown live.
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import { readMounts } from '../../host/mounts.js';

/** The image's file name inside the instance volume (OpenVZ 7 keeps its ploop image under root.hdd too). */
export const PRIVATE_IMAGE = 'root.hdd';

/** The least image size: ext4's own metadata and a journal need room before the first file. */
export const PRIVATE_MIN_BYTES = 16 * 1024 ** 2;

/** ext4 sizes are whole 4 KiB blocks. */
const BLOCK = 4096;

/** What one private area is: its image file and where it mounts. */
export interface PrivateArea {
  host: Host;
  /** The image file (VE_PRIVATE/root.hdd). */
  image: string;
  /** The mount point (VE_ROOT). */
  root: string;
  /** The file system label (the instance name; ext4 labels hold 16 bytes). */
  label: string;
}

/** The image size for a limits.disk in bytes: rounded down to whole blocks. */
export function imageBytes(diskBytes: number): number {
  return Math.floor(diskBytes / BLOCK) * BLOCK;
}

/** The mkfs.ext4 argv making the image from a template tree: its own ids kept (0-based), inodes fixed when asked. */
export function mkfsArgv(area: PrivateArea, fromTree: string, bytes: number, inodes?: number): string[] {
  return [
    'mkfs.ext4', '-q', '-F', '-t', 'ext4', '-m', '0', '-L', area.label.slice(0, 16),
    // No lazy init: a container's first writes must not race the kernel's background zeroing of a sparse file.
    '-E', 'root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0',
    ...(inodes !== undefined ? ['-N', String(inodes)] : []),
    // A journal of 1/64 of the area (4-64 MiB): mke2fs's default (64 MiB from 2 GiB on) would be what stops a shrink.
    '-J', `size=${journalMiB(bytes)}`,
    '-d', fromTree, area.image,
  ];
}

/** The journal size in MiB for an area of this many bytes. */
export function journalMiB(bytes: number): number {
  return Math.min(64, Math.max(4, Math.floor(bytes / 1024 ** 2 / 64)));
}

/** The least size the area can shrink to (resize2fs -P: its data, inode tables and journal), mounted or not. */
export async function minimumBytes(area: PrivateArea): Promise<number> {
  const dev = (await isMounted(area)) ? await loopOf(area) : area.image;
  const [est, head] = await Promise.all([
    area.host.exec(['resize2fs', '-P', dev], { allowFailure: true }),
    area.host.exec(['dumpe2fs', '-h', dev], { allowFailure: true }),
  ]);
  const blocks = Number(/minimum size of the filesystem:\s*(\d+)/.exec(est.stdout)?.[1]);
  const block = Number(/^Block size:\s*(\d+)/m.exec(head.stdout)?.[1]);
  if (!Number.isFinite(blocks) || !Number.isFinite(block)) throw new AppError('BACKEND_FAILED', `Failed to tell how small the private area of "${area.label}" can be`, { cause: new Error(`${est.stderr.trim()} ${head.stderr.trim()}`.trim() || 'resize2fs -P and dumpe2fs -h said nothing usable') });
  return blocks * block;
}

/** True when the image is mounted at its root. */
export async function isMounted(area: PrivateArea): Promise<boolean> {
  return (await readMounts(area.host)).some((m) => m.mountPoint === area.root);
}

/** Makes the image from a tree (sparse, limits.disk big); on failure nothing is left. */
export async function makePrivate(area: PrivateArea, fromTree: string, sizeBytes: number, inodes?: number): Promise<void> {
  const bytes = imageBytes(sizeBytes);
  if (bytes < PRIVATE_MIN_BYTES) throw new AppError('INVALID_SIZE', `Disk space of ${sizeBytes} bytes is too small for a private area (at least ${PRIVATE_MIN_BYTES / 1024 ** 2} MiB)`);
  try {
    await area.host.exec(['truncate', '-s', String(bytes), area.image]);
    const res = await area.host.exec(mkfsArgv(area, fromTree, bytes, inodes), { allowFailure: true });
    if (res.code !== 0) {
      const said = res.stderr.trim() || `mkfs.ext4 exited with code ${res.code}`;
      const full = /No space left|Could not allocate|too small|inode/i.test(said);
      throw new AppError(full ? 'INVALID_SIZE' : 'BACKEND_FAILED', `Failed to make the private area of "${area.label}"${full ? ': the template does not fit in the disk space or inodes given' : ''}`, { cause: new Error(said) });
    }
  } catch (err) {
    await area.host.fs.rm(area.image, { force: true });
    throw err;
  }
}

/** Mounts the image at its root (a loop device that goes away with the mount); nothing when already mounted. */
export async function mountPrivate(area: PrivateArea): Promise<void> {
  if (await isMounted(area)) return;
  if (!(await area.host.fs.stat(area.image))) throw new AppError('NOT_FOUND', `The private area of "${area.label}" is missing (${area.image})`);
  await area.host.fs.mkdir(area.root, { recursive: true, mode: 0o755 });
  // nodev: a device node in the tree opens nothing on the host; set-uid stays (su, sudo inside), which is why VE_ROOT's parent is root-only.
  const res = await area.host.exec(['mount', '-t', 'ext4', '-o', 'loop,noatime,nodev', area.image, area.root], { allowFailure: true });
  if (res.code !== 0) throw new AppError('BACKEND_FAILED', `Failed to mount the private area of "${area.label}" at ${area.root}`, { cause: new Error(res.stderr.trim() || `mount exited with code ${res.code}`) });
}

/** Unmounts the root (its loop device is freed with it) and removes the empty mount point. */
export async function umountPrivate(area: PrivateArea): Promise<void> {
  if (await isMounted(area)) {
    const res = await area.host.exec(['umount', area.root], { allowFailure: true });
    if (res.code !== 0) throw new AppError('BUSY', `Failed to unmount the private area of "${area.label}" at ${area.root}`, { cause: new Error(res.stderr.trim() || `umount exited with code ${res.code}`) });
  }
  await area.host.fs.rmdir(area.root).catch(() => undefined);
}

/** The image file's size in bytes (undefined when there is none). */
export async function privateBytes(area: PrivateArea): Promise<number | undefined> {
  return (await area.host.fs.stat(area.image))?.size;
}

/** The loop device backing the mounted root. */
async function loopOf(area: PrivateArea): Promise<string> {
  const m = (await readMounts(area.host)).find((x) => x.mountPoint === area.root);
  if (!m || !m.source.startsWith('/dev/loop')) throw new AppError('BACKEND_FAILED', `The private area of "${area.label}" is not mounted from a loop device`);
  return m.source;
}

/**
 * Resizes the image to sizeBytes. A mounted one grows online (file, loop device, then ext4), where the kernel lets
 * this host's root (ext4's online resize wants CAP_SYS_RESOURCE): answers "offline" when it does not, with the
 * image left as it was, for the next start to do. An unmounted one grows or shrinks offline, a shrink only when the
 * data fits (resize2fs refuses otherwise, and the image is left as it was).
 */
export async function resizePrivate(area: PrivateArea, sizeBytes: number): Promise<'done' | 'offline'> {
  const bytes = imageBytes(sizeBytes);
  const now = await privateBytes(area);
  if (now === undefined) throw new AppError('NOT_FOUND', `The private area of "${area.label}" is missing (${area.image})`);
  if (bytes === now) return 'done';
  if (bytes < PRIVATE_MIN_BYTES) throw new AppError('INVALID_SIZE', `Disk space of ${sizeBytes} bytes is too small for a private area (at least ${PRIVATE_MIN_BYTES / 1024 ** 2} MiB)`);
  const tooSmall = (res: { stderr: string }) => /No space|too small|not enough|smaller than minimum/i.test(res.stderr);
  const fail = (what: string, res: { code: number; stderr: string }) => new AppError(
    tooSmall(res) ? 'INVALID_SIZE' : 'BACKEND_FAILED',
    `Failed to resize the private area of "${area.label}" to ${bytes} bytes${tooSmall(res) ? ': its data does not fit' : ''}`,
    { cause: new Error(res.stderr.trim() || `${what} exited with code ${res.code}`) },
  );
  if (bytes < now) {
    const min = await minimumBytes(area);
    if (bytes < min) throw new AppError('INVALID_SIZE', `Failed to shrink the private area of "${area.label}" to ${bytes / 1024 ** 2} MiB: its data, inode tables and journal need at least ${Math.ceil(min / 1024 ** 2)} MiB`);
  }
  if (await isMounted(area)) {
    if (bytes < now) return 'offline';
    const loop = await loopOf(area);
    await area.host.exec(['truncate', '-s', String(bytes), area.image]);
    await area.host.exec(['losetup', '-c', loop]);
    const res = await area.host.exec(['resize2fs', loop], { allowFailure: true });
    if (res.code === 0) return 'done';
    // Back to the size the file system has, so that the next start sees a size to change.
    await area.host.exec(['truncate', '-s', String(now), area.image]);
    await area.host.exec(['losetup', '-c', loop], { allowFailure: true });
    if (/Permission denied/i.test(res.stderr)) return 'offline';
    throw fail('resize2fs', res);
  }
  // Offline: resize2fs wants a freshly checked file system.
  const fsck = await area.host.exec(['e2fsck', '-f', '-p', area.image], { allowFailure: true });
  if (fsck.code > 1) throw fail('e2fsck', fsck);
  if (bytes > now) await area.host.exec(['truncate', '-s', String(bytes), area.image]);
  const res = await area.host.exec(['resize2fs', area.image, `${bytes / 1024}K`], { allowFailure: true });
  if (res.code !== 0) {
    if (bytes > now) await area.host.exec(['truncate', '-s', String(now), area.image], { allowFailure: true });
    throw fail('resize2fs', res);
  }
  if (bytes < now) await area.host.exec(['truncate', '-s', String(bytes), area.image]);
  return 'done';
}

/** Blocks and inodes used and free on the mounted root (df), or undefined when it is not mounted. */
export async function privateUsage(area: PrivateArea): Promise<{ usedBytes: number; sizeBytes: number; usedInodes: number; inodes: number } | undefined> {
  if (!(await isMounted(area))) return undefined;
  const res = await area.host.exec(['df', '-B1', '--output=used,size,iused,itotal', area.root], { allowFailure: true });
  const nums = res.stdout.trim().split('\n')[1]?.trim().split(/\s+/).map(Number);
  if (res.code !== 0 || !nums || nums.length < 4 || nums.some((n) => !Number.isFinite(n))) return undefined;
  return { usedBytes: nums[0]!, sizeBytes: nums[1]!, usedInodes: nums[2]!, inodes: nums[3]! };
}

/** The directory holding a container's mount point: root-only, since a set-uid file in a template is set-uid root on the host mount. */
export function rootsDir(dataDir: string): string {
  return posix.join(dataDir, 'openvz', 'root');
}
