// VM disk import: detects qcow2 or raw with qemu-img (never from the name), refuses external references, corruption and non-disks, then converts to a standalone qcow2.
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { Host, HostStat } from '../../host/host.js';
import * as qemuImg from '../../drivers/common/qemu-img.js';

/** Disk formats `image import --vm` accepts. */
export type DiskFormat = 'qcow2' | 'raw';

/** File name of the converted disk inside a VM image volume (the image's `disk` prop). */
export const VM_DISK_FILE = 'disk.qcow2';

/** Sector size: a raw disk is a whole number of sectors and holds a boot sector. */
export const SECTOR_SIZE = 512;

const ACCEPTED: readonly string[] = ['qcow2', 'raw'];
// qemu-img info reads only headers, and check reads metadata; both are bounded so a hostile file cannot hang the daemon.
const INFO_TIMEOUT_MS = 60_000;
const CHECK_TIMEOUT_MS = 30 * 60_000;

/** What the checks learned about a disk file. */
export interface DiskFacts {
  format: DiskFormat;
  virtualSize: number;
  fileSize: number;
}

/** The fields of `qemu-img info --output=json` the checks read. */
export interface QemuImgInfo {
  format?: unknown;
  'virtual-size'?: unknown;
  'backing-filename'?: unknown;
  'full-backing-filename'?: unknown;
  encrypted?: unknown;
  'format-specific'?: { type?: unknown; data?: Record<string, unknown> };
}

function invalid(msg: string, cause?: unknown): AppError {
  return new AppError('INVALID_ARCHIVE', msg, cause === undefined ? undefined : { cause });
}

/** Parses `qemu-img info --output=json`; INVALID_ARCHIVE when it is not a JSON object. */
export function parseQemuImgInfo(stdout: string, label: string): QemuImgInfo {
  let v: unknown;
  try {
    v = JSON.parse(stdout);
  } catch (e) {
    throw invalid(`${label}: qemu-img info printed no JSON`, e);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`${label}: qemu-img info printed unexpected JSON`);
  return v as QemuImgInfo;
}

/**
 * Pure checks of qemu-img's view of a disk: format qcow2 or raw only; no backing file (it would make the image read a
 * host file); for qcow2 also no external data file, no encryption and no corrupt flag. Returns format and virtual size.
 */
export function checkDiskInfo(info: QemuImgInfo, label: string): { format: DiskFormat; virtualSize: number } {
  const format = typeof info.format === 'string' ? info.format : '';
  if (!ACCEPTED.includes(format)) {
    throw invalid(`${label} is a ${format || 'unknown'} disk image; only qcow2 and raw can be imported (convert it first: qemu-img convert -O qcow2 FILE disk.qcow2)`);
  }
  const backing = info['backing-filename'] ?? info['full-backing-filename'];
  if (backing !== undefined) {
    throw invalid(`${label} refers to a backing file ${JSON.stringify(backing)}; import a standalone image (qemu-img convert -O qcow2 FILE standalone.qcow2)`);
  }
  const data = info['format-specific']?.data ?? {};
  if (data['data-file'] !== undefined) throw invalid(`${label} keeps its data in an external file ${JSON.stringify(data['data-file'])}; import a standalone image`);
  if (info.encrypted === true || data.encrypt !== undefined) throw invalid(`${label} is encrypted; decrypt it first`);
  if (data.corrupt === true) throw invalid(`${label} is marked corrupt by qemu; repair it first (qemu-img check -r all)`);
  const virtualSize = info['virtual-size'];
  if (typeof virtualSize !== 'number' || !Number.isSafeInteger(virtualSize) || virtualSize <= 0) throw invalid(`${label} has no usable virtual size`);
  return { format: format as DiskFormat, virtualSize };
}

/**
 * Pure checks of a raw disk: at least one sector, a whole number of sectors, and the boot-sector signature 0x55 0xAA
 * at offset 510 (MBR, or GPT's protective MBR). qemu-img calls any file "raw", so the signature is what tells a
 * disk from, say, a text file; blank raw disks are refused (create a qcow2 instead: qemu-img create -f qcow2).
 */
export function checkRawDisk(size: number, head: Uint8Array, label: string): void {
  if (size < SECTOR_SIZE) throw invalid(`${label} is not a disk image: ${size} bytes is less than one ${SECTOR_SIZE}-byte sector`);
  if (size % SECTOR_SIZE !== 0) throw invalid(`${label} is not a disk image: its size ${size} is not a multiple of ${SECTOR_SIZE}`);
  if (head.length < SECTOR_SIZE || head[510] !== 0x55 || head[511] !== 0xaa) {
    throw invalid(`${label} is not a disk image: raw disks must start with a partition table (MBR or GPT boot signature 55 AA at offset 510)`);
  }
}

/**
 * Interprets `qemu-img check --output=json`: exit 0 clean, 3 only leaked clusters (harmless, dropped by the
 * conversion); 2 or any reported corruption means corrupt; anything else means the check could not run.
 */
export function checkCheckResult(code: number, stdout: string, stderr: string, label: string): void {
  let corruptions = 0;
  try {
    const parsed = JSON.parse(stdout) as { corruptions?: unknown };
    if (typeof parsed.corruptions === 'number') corruptions = parsed.corruptions;
  } catch { /* exit code decides */ }
  const why = new Error(stderr.trim() || stdout.trim() || `exit code ${code}`);
  if (code === 2 || corruptions > 0) throw invalid(`${label} is corrupt (qemu-img check found ${corruptions || 'some'} errors)`, why);
  if (code !== 0 && code !== 3) throw invalid(`${label} could not be checked: it is damaged or not a valid qcow2 image`, why);
}

/** Parses `od -An -v -tx1` output into bytes. */
export function parseOdBytes(text: string): Uint8Array {
  const words = text.split(/\s+/).filter((w) => w !== '');
  return Uint8Array.from(words.map((w) => Number.parseInt(w, 16)));
}

/**
 * A qemu `json:` file name that opens path with the given format driver, the plain file protocol and no backing
 * chain: a file swapped for one with a backing reference after the checks still cannot read a host file through it.
 */
export function qemuSource(path: string, format: DiskFormat): string {
  const spec: Record<string, unknown> = { driver: format, file: { driver: 'file', filename: path } };
  if (format === 'qcow2') spec.backing = null;
  return `json:${JSON.stringify(spec)}`;
}

/** Fast checks (qemu-img info, raw boot sector); throws INVALID_ARCHIVE or NOT_FOUND. Writes nothing. */
export async function inspectVmDisk(host: Host, file: string): Promise<DiskFacts & { stat: HostStat }> {
  const label = `File ${file}`;
  // A plain absolute path: qemu never reads it as a protocol ("nbd:...") or "json:" name.
  if (!file.startsWith('/')) throw new AppError('INVALID_ARGUMENT', `${label}: path must be absolute`);
  const stat = await host.fs.stat(file);
  if (!stat?.isFile) throw new AppError('NOT_FOUND', `${label} does not exist or is not a regular file`);
  const text = await qemuImg.infoText(host, file, { timeoutMs: INFO_TIMEOUT_MS }).catch((e: unknown) => {
    throw qemuImg.isQemuImgFailure(e) ? invalid(`${label} is not a disk image qemu-img can read`, e.cause) : e;
  });
  const { format, virtualSize } = checkDiskInfo(parseQemuImgInfo(text, label), label);
  if (format === 'raw') {
    const od = await host.exec(['od', '-An', '-v', '-tx1', `-N${SECTOR_SIZE}`, '--', file], { timeoutMs: INFO_TIMEOUT_MS });
    checkRawDisk(stat.size, parseOdBytes(od.stdout), label);
  }
  return { format, virtualSize, fileSize: stat.size, stat };
}

/** Every check, including `qemu-img check` of qcow2 metadata; throws INVALID_ARCHIVE or NOT_FOUND. Writes nothing. */
export async function verifyVmDisk(host: Host, file: string): Promise<DiskFacts & { stat: HostStat }> {
  const facts = await inspectVmDisk(host, file);
  if (facts.format === 'qcow2') {
    // No -r: the check opens the file read-only and never repairs the caller's file.
    const res = await qemuImg.check(host, qemuSource(file, 'qcow2'), { timeoutMs: CHECK_TIMEOUT_MS });
    checkCheckResult(res.code, res.stdout, res.stderr, `File ${file}`);
  }
  return facts;
}

/**
 * Converts a verified disk into destDir/disk.qcow2 (qemu-img convert -O qcow2, also for qcow2 input: the result is
 * standalone and compacted). CONFLICT when the file changed since it was verified.
 */
export async function convertVmDisk(host: Host, file: string, destDir: string, facts: DiskFacts & { stat: HostStat }, onProgress: (msg: string) => void = () => undefined): Promise<string> {
  const dest = posix.join(destDir, VM_DISK_FILE);
  onProgress(`Converting ${facts.format} disk ${file} to qcow2`);
  let reported = 0;
  await qemuImg.convertWithProgress(host, { source: qemuSource(file, facts.format), dest, to: 'qcow2' }, (percent) => {
    // Reported in steps of 10 %.
    const pct = Math.floor(percent / 10) * 10;
    if (pct > reported) {
      reported = pct;
      onProgress(`Converting disk: ${pct}%`);
    }
  }).catch((e: unknown) => {
    throw new AppError('HOST_FAILED', `Failed to convert disk image ${file}`, { cause: qemuImg.isQemuImgFailure(e) ? e.cause : e });
  });
  const after = await host.fs.stat(file);
  if (!after || after.size !== facts.stat.size || after.mtimeMs !== facts.stat.mtimeMs) {
    throw new AppError('CONFLICT', `Disk image ${file} changed while it was being imported`);
  }
  return dest;
}
