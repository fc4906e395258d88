// A storage pool of plain directories (copies instead of copy-on-write, no quotas, no second mount), for tests and the in-process daemon: it needs no root.
import { join, resolve } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import { Reverter } from '../../host/reverter.js';
import { checkComponent, checkSize, type PoolInfo, type StoragePool, type VolumeUsage } from './pool.js';

/** Options of a DirectoryPool. */
export interface DirectoryPoolOptions {
  /** The pool's directory; images/, instances/ and snapshots/ are made below it. */
  dir: string;
}

/**
 * A pool whose volumes are directories: an instance volume or snapshot is a full copy (cp -a, reflinked where the file
 * system can); sizes are checked but not enforced; container roots are the volumes themselves. Not a daemon setting.
 */
export class DirectoryPool implements StoragePool {
  private readonly dir: string;

  constructor(private readonly host: Host, opts: DirectoryPoolOptions) {
    this.dir = resolve(opts.dir);
  }

  /** Creates the pool's directories (private to their owner). */
  async ensure(): Promise<void> {
    await this.host.fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const d of ['images', 'instances', 'snapshots']) await this.host.fs.mkdir(join(this.dir, d), { recursive: true, mode: 0o700 });
  }

  /** What host info shows: a directory pool has no size of its own and is always ok. */
  async info(): Promise<PoolInfo> {
    return { driver: 'dir', path: this.dir, sizeBytes: null, usedBytes: null, state: 'ok', warnings: [] };
  }

  /** Path of an image volume: <pool>/images/<fp>. */
  imagePath(fp: string): string {
    return join(this.dir, 'images', checkComponent(fp, 'image fingerprint'));
  }

  /** Path of an instance volume: <pool>/instances/<name>. */
  instancePath(name: string): string {
    return join(this.dir, 'instances', checkComponent(name, 'instance name'));
  }

  /** The volume itself: a directory pool has no second, set-uid-capable mount. */
  containerRootPath(name: string): string {
    return this.instancePath(name);
  }

  /** Path of one snapshot of an instance: <pool>/snapshots/<name>/<snap>. */
  snapshotPath(name: string, snap: string): string {
    return join(this.snapshotDir(name), checkComponent(snap, 'snapshot name'));
  }

  /** Creates an empty image directory to unpack an image into; returns its path. */
  async createImageVolume(fp: string): Promise<string> {
    const path = this.imagePath(fp);
    if (await this.host.fs.stat(path)) throw new AppError('ALREADY_EXISTS', `Image volume "${fp}" already exists`);
    await this.host.fs.mkdir(path, { recursive: true });
    return path;
  }

  /** Checks the image directory exists (plain directories cannot be made read-only for their owner; nothing writes to them once sealed). */
  async sealImageVolume(fp: string): Promise<void> {
    await this.mustExist(this.imagePath(fp), `Image volume "${fp}" not found`);
  }

  /** Deletes an image directory; no error when it is missing. */
  async deleteImageVolume(fp: string): Promise<void> {
    await this.host.fs.rm(this.imagePath(fp), { recursive: true, force: true });
  }

  /** Creates an instance volume as a copy of an image (or, with empty, an empty directory); a size is checked, not enforced. */
  async createInstanceVolume(name: string, imageFp: string | null, sizeBytes?: number, opts: { empty?: boolean } = {}): Promise<string> {
    const path = this.instancePath(name);
    if (imageFp === null && !opts.empty) throw new AppError('INVALID_ARGUMENT', `The volume of instance "${name}" needs an image unless it starts empty`);
    const image = imageFp === null ? null : this.imagePath(imageFp);
    checkSize(sizeBytes, `root disk size for instance "${name}"`);
    if (image !== null) await this.mustExist(image, `Image volume "${imageFp}" not found`);
    if (await this.host.fs.stat(path)) throw new AppError('ALREADY_EXISTS', `Volume of instance "${name}" already exists`);
    if (opts.empty || image === null) {
      // Not recursive: a volume made meanwhile by someone else is an error, not shared.
      await this.host.fs.mkdir(join(path, '..'), { recursive: true });
      await this.host.fs.mkdir(path);
      return path;
    }
    await this.copyTree(image, path, `Failed to create the volume of instance "${name}" from image "${imageFp}"`);
    return path;
  }

  /** Checks the size and that the volume exists; a directory pool has no quotas to set. */
  async setInstanceSize(name: string, sizeBytes: number | undefined): Promise<void> {
    checkSize(sizeBytes, `root disk size for instance "${name}"`);
    await this.mustExist(this.instancePath(name), `Volume of instance "${name}" not found`);
  }

  /** The bytes of the volume's files (all its own: copies share nothing), no limit. */
  async instanceUsage(name: string): Promise<VolumeUsage> {
    const path = this.instancePath(name);
    await this.mustExist(path, `Volume of instance "${name}" not found`);
    const res = await this.host.exec(['du', '-sxb', path], { allowFailure: true });
    const bytes = Number(res.stdout.split(/\s/)[0]) || 0;
    return { referencedBytes: bytes, exclusiveBytes: bytes, limitBytes: null };
  }

  /** Deletes an instance volume, the leftovers of an interrupted restore and all its snapshots; no error when missing. */
  async deleteInstanceVolume(name: string): Promise<void> {
    for (const p of [this.instancePath(name), ...this.restoreTemps(name), this.snapshotDir(name)]) await this.host.fs.rm(p, { recursive: true, force: true });
  }

  /** Copies an instance volume into its snapshot directory. */
  async createSnapshot(name: string, snap: string): Promise<void> {
    const path = this.instancePath(name);
    const target = this.snapshotPath(name, snap);
    await this.mustExist(path, `Volume of instance "${name}" not found`);
    if (await this.host.fs.stat(target)) throw new AppError('ALREADY_EXISTS', `Snapshot "${snap}" of instance "${name}" already exists`);
    await this.host.fs.mkdir(this.snapshotDir(name), { recursive: true });
    await this.copyTree(path, target, `Failed to snapshot instance "${name}" as "${snap}"`);
  }

  /** Replaces the instance volume by a copy of snap; the old volume is put back when a step fails. */
  async restoreSnapshot(name: string, snap: string): Promise<void> {
    const path = this.instancePath(name);
    const source = this.snapshotPath(name, snap);
    await this.mustExist(path, `Volume of instance "${name}" not found`);
    await this.mustExist(source, `Snapshot "${snap}" of instance "${name}" not found`);
    const [fresh, old] = this.restoreTemps(name);
    for (const p of [fresh, old]) await this.host.fs.rm(p, { recursive: true, force: true });
    await new Reverter().run(async (r) => {
      await this.copyTree(source, fresh, `Failed to restore snapshot "${snap}" of instance "${name}"`);
      r.add('delete the restored volume', () => this.host.fs.rm(fresh, { recursive: true, force: true }));
      await this.host.fs.rename(path, old);
      r.add('put the old volume back', () => this.host.fs.rename(old, path));
      await this.host.fs.rename(fresh, path);
    });
    // The restore is done; should this fail, the old volume is removed by the next restore or delete.
    await this.host.fs.rm(old, { recursive: true, force: true }).catch(() => undefined);
  }

  /** The names of the instance volumes in the pool (temporaries, starting with a dot, are none). */
  async instanceNames(): Promise<string[]> {
    const dir = join(this.dir, 'instances');
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
    await this.mustExist(target, `Snapshot "${snap}" of instance "${name}" not found`);
    await this.host.fs.rm(target, { recursive: true, force: true });
  }

  /** Copies an instance volume to a new one; a size is checked, not enforced. */
  async copyInstance(src: string, dst: string, sizeBytes?: number): Promise<string> {
    const from = this.instancePath(src);
    const to = this.instancePath(dst);
    checkSize(sizeBytes, `root disk size for instance "${dst}"`);
    await this.mustExist(from, `Volume of instance "${src}" not found`);
    if (await this.host.fs.stat(to)) throw new AppError('ALREADY_EXISTS', `Volume of instance "${dst}" already exists`);
    await this.copyTree(from, to, `Failed to copy instance "${src}" to "${dst}"`);
    return to;
  }

  /** True when the instance has a volume. */
  async instanceExists(name: string): Promise<boolean> {
    return (await this.host.fs.stat(this.instancePath(name)))?.isDirectory === true;
  }

  private snapshotDir(name: string): string {
    return join(this.dir, 'snapshots', checkComponent(name, 'instance name'));
  }

  // Temporary volumes of a restore: the new volume being prepared, and the old one being replaced.
  private restoreTemps(name: string): [string, string] {
    checkComponent(name, 'instance name');
    return [join(this.dir, 'instances', `.${name}.restore`), join(this.dir, 'instances', `.${name}.old`)];
  }

  private async mustExist(path: string, message: string): Promise<void> {
    if (!(await this.host.fs.stat(path))) throw new AppError('NOT_FOUND', message);
  }

  // cp -a keeps modes, times, links and (for root) owners; an unprivileged copy keeps the caller as owner.
  private async copyTree(from: string, to: string, message: string): Promise<void> {
    try {
      await this.host.exec(['cp', '-a', '--reflink=auto', '--', from, to]);
    } catch (err) {
      await this.host.fs.rm(to, { recursive: true, force: true }).catch(() => undefined);
      throw new AppError('HOST_FAILED', message, { cause: err });
    }
  }
}
