// The storage pool contract of the core services: image volumes, instance volumes (root file systems or disk directories) and their snapshots.
import { AppError } from '../../shared/errors.js';

/** What a pool reports about itself (host info). */
export interface PoolInfo {
  /** Which implementation: "btrfs", "dir". */
  driver: string;
  path: string;
  sizeBytes: number | null;
  usedBytes: number | null;
  /** ok; degraded (something to act on, see warnings); read-only (the file system stopped taking writes). */
  state: 'ok' | 'degraded' | 'read-only' | 'unmounted';
  /** What needs attention, in a user's words (thin provisioning, low space, read-only). */
  warnings: string[];
}

/** Space used by an instance volume: referenced (all it sees, counted by a limit), exclusive (not shared), and its limit. */
export interface VolumeUsage {
  referencedBytes: number;
  exclusiveBytes: number;
  limitBytes: number | null;
}

/** Where images and instances keep their files: exactly what the instance and image services use of a pool. */
export interface StoragePool {
  /** Directory of an image volume. */
  imagePath(fp: string): string;
  /** Directory of an instance volume (a container's root file system, a VM's disk directory). */
  instancePath(name: string): string;
  /** The instance volume as a container runtime mounts it (where set-uid programs are allowed). */
  containerRootPath(name: string): string;
  /** Creates an empty, writable image volume to unpack an image into; returns its path. */
  createImageVolume(fp: string): Promise<string>;
  /** Makes an image volume read-only; instances are made from it from then on. */
  sealImageVolume(fp: string): Promise<void>;
  /** Deletes an image volume; no error when it is missing. */
  deleteImageVolume(fp: string): Promise<void>;
  /**
   * Creates an instance volume from an image, limited to sizeBytes where the pool limits sizes; returns its path. With
   * empty, the volume starts empty (a VM driver makes its disks there, backed by the image's files where they are;
   * an imported OpenVZ CT's private area, with no image at all: imageFp null).
   */
  createInstanceVolume(name: string, imageFp: string | null, sizeBytes?: number, opts?: { empty?: boolean }): Promise<string>;
  /** Changes (or with undefined removes) the limit of an instance volume. */
  setInstanceSize(name: string, sizeBytes: number | undefined): Promise<void>;
  /** Space used by an instance volume. */
  instanceUsage(name: string): Promise<VolumeUsage>;
  /** Deletes an instance volume and its snapshots; no error when missing. */
  deleteInstanceVolume(name: string): Promise<void>;
  /** Takes a read-only snapshot of an instance volume. */
  createSnapshot(name: string, snap: string): Promise<void>;
  /** Replaces an instance volume by its snapshot snap. */
  restoreSnapshot(name: string, snap: string): Promise<void>;
  /** Deletes one snapshot of an instance volume. */
  deleteSnapshot(name: string, snap: string): Promise<void>;
  /** The names of an instance volume's snapshots, as they are in the pool (one read of a directory; [] when it has none). */
  snapshotNames(name: string): Promise<string[]>;
  /** Copies an instance volume to a new, independent one; returns its path. */
  copyInstance(src: string, dst: string, sizeBytes?: number): Promise<string>;
  /** True when the instance has a volume. */
  instanceExists(name: string): Promise<boolean>;
  /** The names of the instance volumes in the pool (reconciliation reports those without an instance). */
  instanceNames(): Promise<string[]>;
}

// Names become path components under a pool: no separators, no leading dot (temporary volumes start with one).
const COMPONENT_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** An instance, image or snapshot name as a pool path component; INVALID_NAME otherwise. */
export function checkComponent(value: string, what: string): string {
  if (!COMPONENT_RE.test(value)) throw new AppError('INVALID_NAME', `Invalid ${what} ${JSON.stringify(value)} for the storage pool`);
  return value;
}

/** A volume size: undefined (no limit) or a positive whole number of bytes; INVALID_SIZE otherwise. */
export function checkSize(sizeBytes: number | undefined, what: string): void {
  if (sizeBytes === undefined) return;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new AppError('INVALID_SIZE', `Invalid ${what} ${sizeBytes}: must be a positive whole number of bytes`);
}
