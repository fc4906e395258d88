// The image service: builds, imports, lists and deletes images held as sealed volumes in the storage pool.
import { createHash, randomBytes } from 'node:crypto';
import { AppError } from '../../shared/errors.js';
import { assertName } from '../../shared/names.js';
import { formatSize } from '../../shared/units.js';
import type { Image, InstanceType } from '../../shared/schemas.js';
import type { StateDb, ImageRow } from '../db/database.js';
import type { EventBus } from '../events.js';
import type { Host } from '../../host/host.js';
import { Reverter } from '../../host/reverter.js';
import type { StoragePool } from '../storage/pool.js';
import { buildBusyboxRootfs } from './busybox.js';
import { buildDebianRootfs } from './debian.js';
import { buildBusyboxVmImage } from './busybox-vm.js';
import { buildDebianVmImage } from './debian-vm.js';
import { importRootfsTarball, verifyRootfsTree } from './tar-import.js';
import { convertVmDisk, inspectVmDisk, verifyVmDisk, VM_DISK_FILE } from './disk-import.js';

/** Dependencies of the image service. */
export interface ImageServiceDeps {
  host: Host;
  db: StateDb;
  events: EventBus;
  pool: StoragePool;
  mirror: string;
  cacheDir: string;
}

const key = (alias: string, type: InstanceType) => `${type}/${alias}`;

/** What a builder produced. */
interface Built { props: Record<string, string>; description: string }

const KNOWN_RELEASES = ['bookworm', 'bullseye', 'trixie', 'buster'];

/** Manages the local image store. */
export class ImageService {
  constructor(private readonly d: ImageServiceDeps) {}

  /** All images with the instances using them. */
  list(): Image[] {
    const users = this.usersByImage();
    return this.d.db.listImages().map((r) => this.toWire(r, users.get(key(r.alias, r.type)) ?? []));
  }

  /** One image of the given type; NOT_FOUND when unknown, INVALID_ARGUMENT when only the other type exists. */
  get(alias: string, type: InstanceType = 'container'): ImageRow {
    const row = this.d.db.getImage(alias, type);
    if (row) return row;
    const other: InstanceType = type === 'vm' ? 'container' : 'vm';
    if (this.d.db.getImage(alias, other)) {
      throw new AppError('INVALID_ARGUMENT', `Image "${alias}" is a ${other} image and cannot be used for a ${type}`);
    }
    const hint = `hangar image list; hangar image build busybox${type === 'vm' ? ' --vm' : ''}`;
    throw new AppError('NOT_FOUND', `Image "${alias}"${type === 'vm' ? ' (vm)' : ''} not found`, { details: { hint } });
  }

  /** True when an image of that alias and type exists. */
  has(alias: string, type: InstanceType = 'container'): boolean {
    return this.d.db.getImage(alias, type) !== undefined;
  }

  /** Checks a build request before any work starts. */
  validateBuild(kind: string, opts: { release?: string; alias?: string; vm?: boolean }): { alias: string; release: string } {

    const type: InstanceType = opts.vm ? 'vm' : 'container';
    const release = opts.release ?? 'bookworm';
    if (kind === 'debian' && !KNOWN_RELEASES.includes(release)) {
      throw new AppError('INVALID_ARGUMENT', `Unknown Debian release "${release}"`, { details: { known: KNOWN_RELEASES } });
    }
    if (kind !== 'debian' && opts.release) throw new AppError('INVALID_ARGUMENT', `--release only applies to debian images`);
    const alias = assertName(opts.alias ?? kind, 'image');
    if (this.d.db.getImage(alias, type)) throw new AppError('ALREADY_EXISTS', `Image "${alias}"${opts.vm ? ' (vm)' : ''} already exists`, { details: { hint: `hangar image delete ${alias}${opts.vm ? ' --vm' : ''}` } });
    return { alias, release };
  }

  /** Builds a built-in image (busybox or debian). */
  async build(kind: 'busybox' | 'debian', opts: { release?: string; alias?: string; vm?: boolean }, progress: (msg: string) => void = () => undefined): Promise<Image> {
    const { alias, release } = this.validateBuild(kind, opts);
    if (opts.vm && kind === 'busybox') {
      return this.createFrom(alias, 'vm', `busybox-static + Debian kernel from ${this.d.mirror}`, progress, (dir) =>
        buildBusyboxVmImage(this.d.host, dir, { cacheDir: this.d.cacheDir, onProgress: progress }));
    }
    if (opts.vm) {
      return this.createFrom(alias, 'vm', `debootstrap ${release} from ${this.d.mirror} (kernel, qemu-guest-agent, cloud-init)`, progress, (dir) =>
        buildDebianVmImage(this.d.host, dir, { release, mirror: this.d.mirror, cacheDir: this.d.cacheDir, onProgress: progress }));
    }
    const source = kind === 'debian' ? `debootstrap ${release} from ${this.d.mirror}` : 'busybox-static (local, no network)';
    return this.createFrom(alias, 'container', source, progress, async (dir) => {
      if (kind === 'busybox') return buildBusyboxRootfs(this.d.host, dir);
      return buildDebianRootfs(this.d.host, dir, { release, mirror: this.d.mirror, cacheDir: this.d.cacheDir, onProgress: progress });
    });
  }

  /** Checks an import request before any work starts; with vm, also probes the disk (format, backing file, boot sector). */
  async validateImport(path: string, alias: string, vm = false): Promise<void> {
    await this.checkImportTarget(path, alias, vm);
    if (vm) await inspectVmDisk(this.d.host, path);
  }

  /** Imports a rootfs tarball (gz, xz or zst) after checking every entry, or with vm a qcow2/raw disk as a VM image. */
  async import(path: string, alias: string, progress: (msg: string) => void = () => undefined, opts: { vm?: boolean } = {}): Promise<Image> {
    await this.checkImportTarget(path, alias, opts.vm === true);
    if (opts.vm) {
      progress(`Checking disk image ${path}`);
      // Every check, qemu-img check included, runs before the image volume exists.
      const facts = await verifyVmDisk(this.d.host, path);
      return this.createFrom(alias, 'vm', `import of ${path}`, progress, async (dir) => {
        await convertVmDisk(this.d.host, path, dir, facts, progress);
        return { props: { disk: VM_DISK_FILE, boot: 'disk' }, description: `Imported from ${path} (${facts.format}, ${formatSize(facts.virtualSize)} virtual disk)` };
      });
    }
    return this.createFrom(alias, 'container', `import of ${path}`, progress, async (dir) => {
      const { entries } = await importRootfsTarball(this.d.host, path, dir, { onProgress: progress });
      return { props: { init: '/sbin/init' }, description: `Imported from ${path} (${entries} entries)` };
    });
  }

  /** Deletes an image; refused while instances use it. */
  async delete(alias: string, type: InstanceType = 'container'): Promise<void> {
    const row = this.get(alias, type);
    const users = this.usersByImage().get(key(alias, type)) ?? [];
    if (users.length > 0) throw new AppError('IN_USE', `Cannot delete image "${alias}": used by ${users.join(', ')}`);
    await this.d.pool.deleteImageVolume(row.fingerprint);
    this.d.db.deleteImage(alias, type);
    this.d.events.emit({ type: 'image-deleted', message: alias, data: { alias } });
  }

  private async checkImportTarget(path: string, alias: string, vm: boolean): Promise<void> {
    assertName(alias, 'image');
    if (!path.startsWith('/')) throw new AppError('INVALID_ARGUMENT', `Image file path must be absolute: ${JSON.stringify(path)}`);
    const st = await this.d.host.fs.stat(path);
    if (!st || !st.isFile) throw new AppError('NOT_FOUND', `Image file ${path} not found or not a regular file`);
    const type: InstanceType = vm ? 'vm' : 'container';
    if (this.d.db.getImage(alias, type)) {
      throw new AppError('ALREADY_EXISTS', `Image "${alias}"${vm ? ' (vm)' : ''} already exists`, { details: { hint: `hangar image delete ${alias}${vm ? ' --vm' : ''}` } });
    }
  }

  private async createFrom(alias: string, type: InstanceType, source: string, progress: (msg: string) => void, fill: (dir: string) => Promise<Built>): Promise<Image> {
    const fingerprint = createHash('sha256').update(`${alias}\0${source}\0${Date.now()}\0${randomBytes(8).toString('hex')}`).digest('hex');
    const r = new Reverter();
    return r.run(async () => {
      progress(`Creating volume for image "${alias}"`);
      const dir = await this.d.pool.createImageVolume(fingerprint);
      r.add('delete image volume', () => this.d.pool.deleteImageVolume(fingerprint));
      // Stored with the container's own ids (0-based): containers see their tree through an idmapped mount.
      const built = await fill(dir);
      // Whatever made the tree (a builder, an archive), what is on disk is checked before it is sealed.
      if (type === 'container') await verifyRootfsTree(this.d.host, dir, `Image "${alias}"`);
      await this.d.pool.sealImageVolume(fingerprint);
      // Flush the new tree now, so the first launch's snapshot does not pay for writing it out.
      await this.d.host.exec(['sync', '-f', dir]);
      const sizeBytes = await this.treeSize(dir);
      const row: ImageRow = { alias, type, fingerprint, description: built.description, sizeBytes, createdAt: new Date().toISOString(), source, props: built.props };
      this.d.db.insertImage(row);
      this.d.events.emit({ type: 'image-created', message: alias, data: { alias, fingerprint } });
      progress(`Image "${alias}" ready`);
      return this.toWire(row, []);
    });
  }

  private async treeSize(dir: string): Promise<number> {
    const res = await this.d.host.exec(['du', '-sxb', dir], { allowFailure: true });
    return Number(res.stdout.split(/\s/)[0]) || 0;
  }

  private usersByImage(): Map<string, string[]> {
    const m = new Map<string, string[]>();
    for (const i of this.d.db.listInstances()) m.set(key(i.image, i.type), [...(m.get(key(i.image, i.type)) ?? []), i.name]);
    return m;
  }

  private toWire(r: ImageRow, usedBy: string[]): Image {
    return { alias: r.alias, type: r.type, fingerprint: r.fingerprint, description: r.description, sizeBytes: r.sizeBytes, createdAt: r.createdAt, source: r.source, usedBy };
  }
}
