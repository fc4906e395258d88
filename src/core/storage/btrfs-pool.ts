// The btrfs storage pool: a fully allocated, loop-mounted (nosuid,nodev) btrfs file with images, instance volumes (copy-on-write snapshots) and their snapshots, limited by qgroups.
import { dirname, join, resolve } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import { Reverter } from '../../host/reverter.js';
import { formatSize as formatBytes } from '../../shared/units.js';
import { readMountAt } from '../../host/mounts.js';
import { parseFileAllocation, parseFilesystemUsage, parseQgroupShow, parseStatfs, parseSubvolumeList, type QgroupRow } from './parse.js';
import type { PoolInfo, StoragePool, VolumeUsage } from './pool.js';

/** What the pool reports about itself (defined with the pool contract). */
export type { PoolInfo } from './pool.js';

/** The least a pool file may be: smaller pools are refused rather than created. */
export const MIN_POOL_BYTES = 512 * 1024 ** 2;

/** Space left free on the file system under the pool file (the state: database, logs, caches): 1 GiB or 5%, the larger. */
export function poolHeadroom(fsTotalBytes: number): number {
  return Math.max(1024 ** 3, Math.round(fsTotalBytes * 0.05));
}

/** Mount options of the pool: no set-uid programs and no device nodes through it, whatever a volume holds. */
export const POOL_MOUNT_OPTIONS = ['noatime', 'nosuid', 'nodev'] as const;

/** A read-only snapshot of an instance volume. */
export interface VolumeSnapshot {
  name: string;
  createdAt: string;
}

/** Options of a BtrfsPool. */
export interface BtrfsPoolOptions {
  /** Mount point of the pool. */
  poolDir: string;
  /** Sparse backing file, created on first ensure(). */
  poolImage: string;
  /** Size of a newly created backing file (less when the file system under it has less, see ensure()). */
  sizeBytes: number;
  /** Where the pool is mounted a second time, with set-uid programs allowed (still nodev), for container root file systems. */
  rootsDir: string;
}

// Names become path components under the pool: no separators, no leading dot (temporary volumes start with one).
const COMPONENT_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

function checkComponent(value: string, what: string): string {
  if (!COMPONENT_RE.test(value)) throw new AppError('INVALID_NAME', `Invalid ${what} ${JSON.stringify(value)} for the storage pool`);
  return value;
}

function checkSize(sizeBytes: number | undefined, what: string): void {
  if (sizeBytes === undefined) return;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new AppError('INVALID_SIZE', `Invalid ${what} ${sizeBytes}: must be a positive whole number of bytes`);
}

/** Storage pool on btrfs; every machine access goes through Host. */
export class BtrfsPool implements StoragePool {
  private readonly poolDir: string;
  private readonly poolImage: string;
  private readonly rootsDir: string;
  private readonly requestedBytes: number;
  /** Warnings found by ensure() (a pool that could not be fully backed by disk). */
  private readonly ensureWarnings: string[] = [];
  private ready: Promise<void> | undefined;
  // Referenced bytes of sealed (read-only, hence immutable) images, so launching does not fork to check a size.
  private readonly imageSizes = new Map<string, number>();

  constructor(private readonly host: Host, opts: BtrfsPoolOptions) {
    this.poolDir = resolve(opts.poolDir);
    this.poolImage = resolve(opts.poolImage);
    this.rootsDir = resolve(opts.rootsDir);
    this.requestedBytes = opts.sizeBytes;
  }

  /**
   * Makes the pool usable: creates the backing file (fully allocated, no larger than the disk under it allows) and
   * formats it if missing, mounts it nosuid,nodev and again for container roots, enables quotas; fast when mounted.
   */
  ensure(): Promise<void> {
    this.ready ??= this.doEnsure().catch((e: unknown) => {
      this.ready = undefined;
      throw e;
    });
    return this.ready;
  }

  /** Unmounts the pool and its container-roots mount (the loop device detaches itself); for tests and teardown. */
  async unmount(): Promise<void> {
    this.ready = undefined;
    this.imageSizes.clear();
    if ((await readMountAt(this.host, this.rootsDir))?.fsType === 'btrfs') await this.run(['umount', this.rootsDir], `Failed to unmount ${this.rootsDir}`);
    if ((await readMountAt(this.host, this.poolDir))?.fsType !== 'btrfs') return;
    await this.run(['umount', this.poolDir], `Failed to unmount the storage pool at ${this.poolDir}`);
  }

  /** The size of the pool file (what was created, or the existing file), in bytes; 0 before ensure(). */
  async sizeBytes(): Promise<number> {
    return (await this.host.fs.stat(this.poolImage))?.size ?? 0;
  }

  /** Size, usage and health of the pool (see health()), plus a warning when it is 90% full. */
  async info(): Promise<PoolInfo> {
    const health = await this.health();
    if (health.state === 'unmounted') return { driver: 'btrfs', path: this.poolDir, sizeBytes: null, usedBytes: null, ...health };
    const res = await this.run(['btrfs', 'filesystem', 'usage', '-b', this.poolDir], 'Failed to read the storage pool usage');
    const usage = parseFilesystemUsage(res.stdout);
    const warnings = [...health.warnings];
    if (usage.sizeBytes && usage.usedBytes !== null && usage.usedBytes > usage.sizeBytes * 0.9) warnings.push(`the storage pool is ${Math.round((usage.usedBytes / usage.sizeBytes) * 100)}% full`);
    return { driver: 'btrfs', path: this.poolDir, ...usage, state: health.state === 'ok' && warnings.length ? 'degraded' : health.state, warnings };
  }

  /** Whether the pool takes writes, and what needs attention: read-only file system, a thin backing file, a nearly full disk under it (one fork). */
  async health(): Promise<Pick<PoolInfo, 'state' | 'warnings'>> {
    const mount = await readMountAt(this.host, this.poolDir);
    if (mount?.fsType !== 'btrfs') return { state: 'unmounted', warnings: ['the storage pool is not mounted'] };
    const warnings = [...this.ensureWarnings];
    const readOnly = mount.superOptions.split(',').includes('ro') || mount.options.split(',').includes('ro');
    if (readOnly) warnings.push('the storage pool file system is read-only (btrfs stopped after a write error); instances cannot write to their disks');
    const under = await this.statfs(dirname(this.poolImage)).catch(() => undefined);
    if (under && under.availBytes < poolHeadroom(under.totalBytes) / 2) warnings.push(`the file system under the pool (${dirname(this.poolImage)}, which also holds the database) has only ${Math.round(under.availBytes / 1024 ** 2)} MiB free`);
    return { state: readOnly ? 'read-only' : warnings.length ? 'degraded' : 'ok', warnings };
  }

  /** Path of an image volume: <pool>/images/<fp>. */
  imagePath(fp: string): string {
    return join(this.poolDir, 'images', checkComponent(fp, 'image fingerprint'));
  }

  /** Path of an instance volume, which is the container's root file system: <pool>/instances/<name>. */
  instancePath(name: string): string {
    return join(this.poolDir, 'instances', checkComponent(name, 'instance name'));
  }

  /** The same volume through the container-roots mount (set-uid allowed), as a container's runtime mounts it. */
  containerRootPath(name: string): string {
    return join(this.rootsDir, 'instances', checkComponent(name, 'instance name'));
  }

  /** Path of one snapshot of an instance: <pool>/snapshots/<name>/<snap>. */
  snapshotPath(name: string, snap: string): string {
    return join(this.snapshotDir(name), checkComponent(snap, 'snapshot name'));
  }

  /** Creates an empty, writable image volume to unpack an image into; returns its path. */
  async createImageVolume(fp: string): Promise<string> {
    const path = this.imagePath(fp);
    await this.ensure();
    if (await this.host.fs.stat(path)) throw new AppError('ALREADY_EXISTS', `Image volume "${fp}" already exists`);
    await this.run(['btrfs', 'subvolume', 'create', path], `Failed to create the volume of image "${fp}"`);
    return path;
  }

  /** Makes an image volume read-only; instances are snapshots of it from then on. */
  async sealImageVolume(fp: string): Promise<void> {
    const path = this.imagePath(fp);
    await this.ensure();
    await this.mustExist(path, `Image volume "${fp}" not found`);
    await this.run(['btrfs', 'property', 'set', '-ts', path, 'ro', 'true'], `Failed to make the volume of image "${fp}" read-only`);
  }

  /** Deletes an image volume; instances made from it keep their data. No error when it is missing. */
  async deleteImageVolume(fp: string): Promise<void> {
    const path = this.imagePath(fp);
    await this.ensure();
    this.imageSizes.delete(fp);
    if (!(await this.host.fs.stat(path))) return;
    await this.deleteSubvolumes([path], `image "${fp}"`);
  }

  /** Creates an instance volume as a writable snapshot of an image (with empty, a new subvolume), limited to sizeBytes (total visible size) when given; returns its path. */
  async createInstanceVolume(name: string, imageFp: string | null, sizeBytes?: number, opts: { empty?: boolean } = {}): Promise<string> {
    const path = this.instancePath(name);
    if (imageFp === null && !opts.empty) throw new AppError('INVALID_ARGUMENT', `The volume of instance "${name}" needs an image unless it starts empty`);
    const image = imageFp === null ? null : this.imagePath(imageFp);
    checkSize(sizeBytes, `root disk size for instance "${name}"`);
    await this.ensure();
    if (image !== null) await this.mustExist(image, `Image volume "${imageFp}" not found`);
    if (await this.host.fs.stat(path)) throw new AppError('ALREADY_EXISTS', `Volume of instance "${name}" already exists`);
    if (opts.empty || image === null || imageFp === null) {
      await this.run(['btrfs', 'subvolume', 'create', path], `Failed to create the volume of instance "${name}"`);
      if (sizeBytes !== undefined) await this.limit(path, sizeBytes, `Failed to set the root disk size of instance "${name}"`);
      return path;
    }
    if (sizeBytes !== undefined) {
      const imageBytes = await this.imageSize(imageFp);
      if (sizeBytes < imageBytes) {
        throw new AppError('INVALID_SIZE', `Root disk size ${sizeBytes} bytes of instance "${name}" is smaller than its image (${imageBytes} bytes)`, { details: { sizeBytes, imageBytes } });
      }
    }
    await this.snapshotVolume(image, path, false, sizeBytes, `Failed to create the volume of instance "${name}" from image "${imageFp}"`);
    return path;
  }

  /** Changes (or with undefined removes) the root disk limit; refuses a size below current usage. */
  async setInstanceSize(name: string, sizeBytes: number | undefined): Promise<void> {
    const path = this.instancePath(name);
    checkSize(sizeBytes, `root disk size for instance "${name}"`);
    await this.ensure();
    await this.mustExist(path, `Volume of instance "${name}" not found`);
    if (sizeBytes !== undefined) {
      const row = await this.qgroupOf(path, true);
      if (sizeBytes < row.referencedBytes) {
        throw new AppError('INVALID_SIZE', `Root disk size ${sizeBytes} bytes of instance "${name}" is below its current usage (${row.referencedBytes} bytes)`, { details: { sizeBytes, usedBytes: row.referencedBytes } });
      }
    }
    await this.limit(path, sizeBytes, `Failed to set the root disk size of instance "${name}"`);
  }

  /** Space used by an instance volume: referenced (all it sees, counted by the limit) and exclusive (not shared with its image or snapshots). */
  async instanceUsage(name: string): Promise<VolumeUsage> {
    const path = this.instancePath(name);
    await this.ensure();
    await this.mustExist(path, `Volume of instance "${name}" not found`);
    const row = await this.qgroupOf(path, true);
    return { referencedBytes: row.referencedBytes, exclusiveBytes: row.exclusiveBytes, limitBytes: row.maxReferencedBytes };
  }

  /** Deletes an instance volume and all its snapshots (their qgroups go with them); no error when missing. */
  async deleteInstanceVolume(name: string): Promise<void> {
    const path = this.instancePath(name);
    const snapDir = this.snapshotDir(name);
    await this.ensure();
    const targets: string[] = [];
    // Includes the leftovers of an interrupted restore.
    for (const p of [path, ...this.restoreTemps(name)]) if (await this.host.fs.stat(p)) targets.push(p);
    if (await this.host.fs.stat(snapDir)) {
      for (const s of await this.host.fs.readdir(snapDir)) targets.push(join(snapDir, s));
    }
    if (targets.length > 0) await this.deleteSubvolumes(targets, `instance "${name}"`);
    await this.host.fs.rm(snapDir, { recursive: true, force: true });
  }

  /** Takes a read-only snapshot of an instance volume. */
  async createSnapshot(name: string, snap: string): Promise<void> {
    const path = this.instancePath(name);
    const target = this.snapshotPath(name, snap);
    await this.ensure();
    await this.mustExist(path, `Volume of instance "${name}" not found`);
    if (await this.host.fs.stat(target)) throw new AppError('ALREADY_EXISTS', `Snapshot "${snap}" of instance "${name}" already exists`);
    await this.host.fs.mkdir(this.snapshotDir(name), { recursive: true });
    await this.snapshotVolume(path, target, true, undefined, `Failed to snapshot instance "${name}" as "${snap}"`);
  }

  /** Snapshots of an instance, oldest first. */
  async listSnapshots(name: string): Promise<VolumeSnapshot[]> {
    const snapDir = this.snapshotDir(name);
    await this.ensure();
    await this.mustExist(this.instancePath(name), `Volume of instance "${name}" not found`);
    const entries = (await this.host.fs.stat(snapDir)) ? await this.host.fs.readdir(snapDir) : [];
    if (entries.length === 0) return [];
    // Creation times come from btrfs (otime): the root directory of a snapshot keeps the times of its source.
    const res = await this.run(['btrfs', 'subvolume', 'list', '-s', this.poolDir], `Failed to list the snapshots of instance "${name}"`, { TZ: 'UTC' });
    const prefix = `snapshots/${name}/`;
    return parseSubvolumeList(res.stdout)
      .filter((r) => r.path.startsWith(prefix) && !r.path.slice(prefix.length).includes('/') && r.createdAt !== null)
      .sort((a, b) => a.id - b.id)
      .map((r) => ({ name: r.path.slice(prefix.length), createdAt: r.createdAt! }));
  }

  /** Replaces the instance volume by a writable snapshot of snap, keeping its root disk limit. */
  async restoreSnapshot(name: string, snap: string): Promise<void> {
    const path = this.instancePath(name);
    const source = this.snapshotPath(name, snap);
    await this.ensure();
    await this.mustExist(path, `Volume of instance "${name}" not found`);
    await this.mustExist(source, `Snapshot "${snap}" of instance "${name}" not found`);
    const limitBytes = (await this.qgroupOf(path, false)).maxReferencedBytes ?? undefined;
    const [fresh, old] = this.restoreTemps(name);
    // Leftovers of an interrupted restore would make the snapshot or rename fail.
    for (const p of [fresh, old]) if (await this.host.fs.stat(p)) await this.deleteSubvolumes([p], `instance "${name}"`);
    await new Reverter().run(async (r) => {
      await this.snapshotVolume(source, fresh, false, limitBytes, `Failed to restore snapshot "${snap}" of instance "${name}"`);
      r.add('delete the restored volume', () => this.deleteSubvolumes([fresh], `instance "${name}"`));
      await this.host.fs.rename(path, old);
      r.add('put the old volume back', () => this.host.fs.rename(old, path));
      await this.host.fs.rename(fresh, path);
    });
    // The restore is done; should this fail, the old volume is removed by the next restore or delete.
    await this.deleteSubvolumes([old], `instance "${name}"`).catch(() => undefined);
  }

  /** The names of the instance volumes in the pool (temporaries, starting with a dot, are none). */
  async instanceNames(): Promise<string[]> {
    const dir = join(this.poolDir, 'instances');
    return (await this.host.fs.stat(dir)) ? (await this.host.fs.readdir(dir)).filter((n) => !n.startsWith('.')).sort() : [];
  }

  /** The names of an instance volume's snapshots in the pool ([] when it has none). */
  async snapshotNames(name: string): Promise<string[]> {
    const dir = this.snapshotDir(name);
    // Names starting with a dot are an interrupted operation's temporaries, never snapshots.
    return (await this.host.fs.stat(dir)) ? (await this.host.fs.readdir(dir)).filter((n) => !n.startsWith('.')).sort() : [];
  }

  /** Deletes one snapshot of an instance. */
  async deleteSnapshot(name: string, snap: string): Promise<void> {
    const target = this.snapshotPath(name, snap);
    await this.ensure();
    await this.mustExist(target, `Snapshot "${snap}" of instance "${name}" not found`);
    await this.deleteSubvolumes([target], `snapshot "${snap}" of instance "${name}"`);
  }

  /** Copies an instance volume (writable snapshot, independent of the source), limited to sizeBytes when given; returns the new path. */
  async copyInstance(src: string, dst: string, sizeBytes?: number): Promise<string> {
    const from = this.instancePath(src);
    const to = this.instancePath(dst);
    checkSize(sizeBytes, `root disk size for instance "${dst}"`);
    await this.ensure();
    await this.mustExist(from, `Volume of instance "${src}" not found`);
    if (await this.host.fs.stat(to)) throw new AppError('ALREADY_EXISTS', `Volume of instance "${dst}" already exists`);
    if (sizeBytes !== undefined) {
      const used = (await this.qgroupOf(from, true)).referencedBytes;
      if (sizeBytes < used) throw new AppError('INVALID_SIZE', `Root disk size ${sizeBytes} bytes of instance "${dst}" is below the usage of "${src}" (${used} bytes)`, { details: { sizeBytes, usedBytes: used } });
    }
    await this.snapshotVolume(from, to, false, sizeBytes, `Failed to copy instance "${src}" to "${dst}"`);
    return to;
  }

  /** True when the instance has a volume. */
  async instanceExists(name: string): Promise<boolean> {
    const st = await this.host.fs.stat(this.instancePath(name));
    return st?.isDirectory === true;
  }

  /** Destroys qgroups left behind by deleted subvolumes; needed only on kernels that do not drop them on their own. */
  async clearStaleQgroups(): Promise<void> {
    // Qgroups of subvolumes still being cleaned are busy and stay until the next call: failure here is expected.
    await this.host.exec(['btrfs', 'qgroup', 'clear-stale', this.poolDir], { allowFailure: true });
  }

  private snapshotDir(name: string): string {
    return join(this.poolDir, 'snapshots', checkComponent(name, 'instance name'));
  }

  // Temporary volumes of a restore: the new volume being prepared, and the old one being replaced.
  private restoreTemps(name: string): [string, string] {
    checkComponent(name, 'instance name');
    return [join(this.poolDir, 'instances', `.${name}.restore`), join(this.poolDir, 'instances', `.${name}.old`)];
  }

  private async doEnsure(): Promise<void> {
    let mount = await readMountAt(this.host, this.poolDir);
    if (mount) {
      await this.checkMount(mount.fsType, mount.source);
      // A pool mounted by an older hangard lacks nosuid,nodev: tightened in place, nothing is unmounted.
      const opts = mount.options.split(',');
      if (!opts.includes('nosuid') || !opts.includes('nodev')) await this.run(['mount', '-o', 'remount,nosuid,nodev', this.poolDir], `Failed to remount the storage pool at ${this.poolDir} nosuid,nodev`);
    } else {
      await this.host.fs.mkdir(dirname(this.poolImage), { recursive: true });
      await this.host.fs.mkdir(this.poolDir, { recursive: true, mode: 0o700 });
      await new Reverter().run(async (r) => {
        if (!(await this.host.fs.stat(this.poolImage))) {
          r.add('remove the pool image', () => this.host.fs.rm(this.poolImage, { force: true }));
          await this.createBackingFile();
          await this.run(['mkfs.btrfs', '-q', '-L', 'hangar', this.poolImage], `Failed to format the storage pool file ${this.poolImage}`);
        } else {
          await this.backExistingFile();
        }
        // noatime: atime updates would rewrite (and unshare) metadata of every file read in a snapshot.
        await this.run(['mount', '-t', 'btrfs', '-o', `loop,${POOL_MOUNT_OPTIONS.join(',')}`, this.poolImage, this.poolDir], `Failed to mount the storage pool ${this.poolImage} at ${this.poolDir}`);
        r.add('unmount the pool', () => this.host.exec(['umount', this.poolDir]));
        await this.run(['btrfs', 'quota', 'enable', this.poolDir], 'Failed to enable quotas on the storage pool');
      });
      mount = (await readMountAt(this.host, this.poolDir))!;
    }
    // Nothing in the pool is for other users: its root and top directories are root-only.
    await this.host.fs.chmod(this.poolDir, 0o700);
    for (const d of ['images', 'instances', 'snapshots']) await this.host.fs.mkdir(join(this.poolDir, d), { recursive: true, mode: 0o700 });
    for (const d of ['images', 'instances', 'snapshots']) await this.host.fs.chmod(join(this.poolDir, d), 0o700);
    await this.ensureRootsMount(mount.source);
    await this.clearStaleQgroups();
  }

  // Containers need set-uid programs (su, sudo, passwd) in their own root, which a nosuid mount forbids for every bind
  // mount of it: a second mount of the same file system, nodev but with suid, in a root-only directory, serves them.
  private async ensureRootsMount(device: string): Promise<void> {
    const existing = await readMountAt(this.host, this.rootsDir);
    if (existing?.fsType === 'btrfs' && existing.source === device) return;
    if (existing) throw new AppError('INVALID_STATE', `${this.rootsDir} is mounted from ${existing.source}, not from the storage pool (${device})`);
    await this.host.fs.mkdir(this.rootsDir, { recursive: true, mode: 0o700 });
    await this.host.fs.chmod(this.rootsDir, 0o700);
    await this.run(['mount', '-t', 'btrfs', '-o', 'noatime,nodev', device, this.rootsDir], `Failed to mount the storage pool at ${this.rootsDir} for container roots`);
  }

  private async statfs(dir: string): Promise<{ availBytes: number; totalBytes: number }> {
    return parseStatfs((await this.run(['stat', '-f', '-c', '%a %b %S', dir], `Failed to read the free space of ${dir}`)).stdout);
  }

  // A new pool file is allocated in full, so the file system under it filling up can never fail a write inside the
  // pool (btrfs would go read-only for good); it is made smaller, with a warning, when the disk cannot hold the size asked.
  private async createBackingFile(): Promise<void> {
    const dir = dirname(this.poolImage);
    const fs = await this.statfs(dir);
    const room = fs.availBytes - poolHeadroom(fs.totalBytes);
    let size = this.requestedBytes;
    if (size > room) {
      if (room < MIN_POOL_BYTES) {
        throw new AppError('INSUFFICIENT_RESOURCES', `Cannot create the storage pool in ${dir}: it has ${formatBytes(fs.availBytes)} free, and a pool needs ${formatBytes(MIN_POOL_BYTES)} plus ${formatBytes(poolHeadroom(fs.totalBytes))} left free for the database and logs (HANGAR_POOL_SIZE, HANGAR_DIR)`);
      }
      size = Math.floor(room / 1024 ** 2) * 1024 ** 2;
      this.ensureWarnings.push(`the storage pool was made ${formatBytes(size)} instead of ${formatBytes(this.requestedBytes)}: that is what ${dir} can hold with headroom`);
    }
    const res = await this.host.exec(['fallocate', '-l', String(size), this.poolImage], { allowFailure: true });
    if (res.code === 0) return;
    if (!/not supported/i.test(res.stderr)) throw new AppError('HOST_FAILED', `Failed to allocate the storage pool file ${this.poolImage} (${formatBytes(size)})`, { cause: new Error(res.stderr.trim() || `exit code ${res.code}`) });
    // A file system without fallocate (rare: some FUSE or network ones) gets a sparse file, and says so.
    await this.run(['truncate', '-s', String(size), this.poolImage], `Failed to create the storage pool file ${this.poolImage}`);
    this.ensureWarnings.push(`the storage pool file is sparse (${dirname(this.poolImage)} cannot preallocate): when that disk fills, the pool stops taking writes`);
  }

  // A pool file from before (sparse) gets its holes allocated now; where the disk cannot hold them, a warning stays.
  private async backExistingFile(): Promise<void> {
    const alloc = parseFileAllocation((await this.run(['stat', '-c', '%b %B %s', this.poolImage], `Failed to read ${this.poolImage}`)).stdout);
    if (alloc.allocatedBytes >= alloc.sizeBytes) return;
    const fs = await this.statfs(dirname(this.poolImage));
    const missing = alloc.sizeBytes - alloc.allocatedBytes;
    if (missing <= fs.availBytes - poolHeadroom(fs.totalBytes)) {
      const res = await this.host.exec(['fallocate', '-l', String(alloc.sizeBytes), this.poolImage], { allowFailure: true });
      if (res.code === 0) return;
    }
    this.ensureWarnings.push(`${formatBytes(missing)} of the ${formatBytes(alloc.sizeBytes)} storage pool file are not backed by disk (${dirname(this.poolImage)} has ${formatBytes(fs.availBytes)} free): when that disk fills, the pool stops taking writes; free space there and restart hangard`);
  }

  private async checkMount(fsType: string, source: string): Promise<void> {
    if (fsType !== 'btrfs') throw new AppError('INVALID_STATE', `${this.poolDir} is mounted with ${fsType}, not the btrfs storage pool`);
    const loop = /^\/dev\/(loop\d+)$/.exec(source);
    if (!loop) return;
    // Without this, a pool directory mounted from another file would silently be used.
    const backing = (await this.host.fs.readTextIfExists(`/sys/block/${loop[1]}/loop/backing_file`))?.trim();
    if (backing !== undefined && backing !== this.poolImage) {
      throw new AppError('INVALID_STATE', `${this.poolDir} is mounted from ${backing}, not from the storage pool file ${this.poolImage}`);
    }
  }

  private async mounted(): Promise<boolean> {
    const mount = await readMountAt(this.host, this.poolDir);
    return mount?.fsType === 'btrfs';
  }

  private async run(argv: string[], message: string, env?: Record<string, string>) {
    try {
      return await this.host.exec(argv, env ? { env } : {});
    } catch (e) {
      throw new AppError('HOST_FAILED', message, { cause: e });
    }
  }

  private async mustExist(path: string, message: string): Promise<void> {
    if (!(await this.host.fs.stat(path))) throw new AppError('NOT_FOUND', message);
  }

  // One qgroup row of a subvolume; sync commits pending writes first, as usage is only accounted at transaction commit.
  private async qgroupOf(path: string, sync: boolean): Promise<QgroupRow> {
    const argv = ['btrfs', 'qgroup', 'show', '-re', '--raw', ...(sync ? ['--sync'] : []), '-f', path];
    const res = await this.run(argv, `Failed to read the quota group of ${path}`);
    const row = parseQgroupShow(res.stdout).find((q) => q.level === 0);
    if (!row) throw new AppError('HOST_FAILED', `No quota group for ${path}: are quotas enabled on the storage pool?`);
    return row;
  }

  private async imageSize(fp: string): Promise<number> {
    const cached = this.imageSizes.get(fp);
    if (cached !== undefined) return cached;
    const bytes = (await this.qgroupOf(this.imagePath(fp), true)).referencedBytes;
    this.imageSizes.set(fp, bytes);
    return bytes;
  }

  private async limit(path: string, sizeBytes: number | undefined, message: string): Promise<void> {
    // A referenced limit bounds everything the volume shows (image data included), which is what a root disk size means; an exclusive limit would not hold after a snapshot.
    await this.run(['btrfs', 'qgroup', 'limit', sizeBytes === undefined ? 'none' : String(sizeBytes), path], message);
  }

  private async snapshotVolume(from: string, to: string, readOnly: boolean, sizeBytes: number | undefined, message: string): Promise<void> {
    await this.run(['btrfs', 'subvolume', 'snapshot', ...(readOnly ? ['-r'] : []), from, to], message);
    if (sizeBytes === undefined) return;
    try {
      await this.limit(to, sizeBytes, message);
    } catch (e) {
      await this.deleteSubvolumes([to], to).catch(() => undefined);
      throw e;
    }
  }

  // Deletes subvolumes with a commit, so the kernel cleans them (and drops their qgroups) within about a second instead of at the next 30 s commit.
  private async deleteSubvolumes(paths: string[], what: string): Promise<void> {
    const first = await this.host.exec(['btrfs', 'subvolume', 'delete', '-c', ...paths], { allowFailure: true });
    if (first.code === 0) return;
    // Subvolumes created inside a volume (systemd-tmpfiles makes /var/lib/machines one) block its deletion: delete them first, deepest first.
    const list = await this.run(['btrfs', 'subvolume', 'list', this.poolDir], `Failed to delete ${what}`);
    const rels = paths.map((p) => p.slice(this.poolDir.length + 1));
    const all = parseSubvolumeList(list.stdout)
      .map((r) => r.path)
      .filter((p) => rels.some((rel) => p === rel || p.startsWith(`${rel}/`)))
      .sort((a, b) => b.split('/').length - a.split('/').length);
    if (all.length === 0) {
      throw new AppError('HOST_FAILED', `Failed to delete ${what}`, { cause: new Error(first.stderr.trim() || `exit code ${first.code}`) });
    }
    await this.run(['btrfs', 'subvolume', 'delete', '-c', ...all.map((p) => join(this.poolDir, p))], `Failed to delete ${what}`);
  }
}
