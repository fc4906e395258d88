// qemu-img through a Host: create, info, resize, convert, check and internal snapshots, each one argv (never a shell string).
import { AppError, isAppError } from '../../shared/errors.js';
import type { ExecResult, Host } from '../../host/host.js';

/** Options every qemu-img run takes. */
export interface QemuImgRunOptions {
  /** Kill qemu-img after this long (no limit by default). */
  timeoutMs?: number;
}

/** What `qemu-img create` makes: a format, a virtual size (the backing file's when omitted), an optional backing file. */
export interface QemuImgCreateSpec {
  format: string;
  sizeBytes?: number;
  backing?: { path: string; format: string };
}

/** What `qemu-img convert` reads and writes; `from` names the input format (qemu-img probes it when omitted). */
export interface QemuImgConvertSpec {
  source: string;
  from?: string;
  dest: string;
  to: string;
}

/** An internal snapshot operation of `qemu-img snapshot`. */
export type QemuImgSnapshotOp = 'create' | 'apply' | 'delete';

const SNAPSHOT_FLAGS: Record<QemuImgSnapshotOp, string> = { create: '-c', apply: '-a', delete: '-d' };

function failure(operation: string, file: string, code: number | null, detail: string): AppError {
  return new AppError('HOST_FAILED', `qemu-img ${operation} of ${file} failed`, {
    cause: new Error(detail.trim() || `exit code ${code}`),
    details: { tool: 'qemu-img', operation, file, exitCode: code },
  });
}

/** True when err is a qemu-img run that failed (its words are the cause), not qemu-img failing to start or printing nonsense. */
export function isQemuImgFailure(err: unknown): err is AppError & { cause: Error } {
  return isAppError(err, 'HOST_FAILED') && err.details?.tool === 'qemu-img' && err.details.exitCode !== undefined;
}

// A non-zero exit becomes HOST_FAILED naming the operation and the file, with qemu-img's own words as the cause.
async function run(host: Host, operation: string, file: string, args: readonly string[], opts: QemuImgRunOptions): Promise<ExecResult> {
  const res = await host.exec(['qemu-img', operation, ...args], { allowFailure: true, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
  if (res.code !== 0) throw failure(operation, file, res.code, res.stderr);
  return res;
}

/** Creates an image file at path. */
export async function create(host: Host, path: string, spec: QemuImgCreateSpec, opts: QemuImgRunOptions = {}): Promise<void> {
  const backing = spec.backing ? ['-F', spec.backing.format, '-b', spec.backing.path] : [];
  await run(host, 'create', path, ['-q', '-f', spec.format, ...backing, path, ...(spec.sizeBytes !== undefined ? [String(spec.sizeBytes)] : [])], opts);
}

/** Options of info and infoText. */
export interface QemuImgInfoOptions extends QemuImgRunOptions {
  /** -U: also read an image a running QEMU holds locked. */
  forceShare?: boolean;
}

/** The text of `qemu-img info --output=json`, for callers that judge untrusted output themselves. */
export async function infoText(host: Host, path: string, opts: QemuImgInfoOptions = {}): Promise<string> {
  return (await run(host, 'info', path, ['--output=json', ...(opts.forceShare ? ['-U'] : []), path], opts)).stdout;
}

/** Reads an image's header as a JSON object (HOST_FAILED when qemu-img prints anything else). */
export async function info(host: Host, path: string, opts: QemuImgInfoOptions = {}): Promise<Record<string, unknown>> {
  const text = await infoText(host, path, opts);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new AppError('HOST_FAILED', `qemu-img info of ${path} printed no JSON`, { cause: e, details: { tool: 'qemu-img', operation: 'info', file: path } });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new AppError('HOST_FAILED', `qemu-img info of ${path} printed unexpected JSON`, { details: { tool: 'qemu-img', operation: 'info', file: path } });
  }
  return v as Record<string, unknown>;
}

/** The virtual size of an image in bytes, also while a running QEMU holds it (0 when qemu-img reports none). */
export async function virtualSize(host: Host, path: string): Promise<number> {
  return Number((await info(host, path, { forceShare: true }))['virtual-size'] ?? 0);
}

/** Sets an image's virtual size to bytes (qemu-img itself refuses to shrink without --shrink). */
export async function resize(host: Host, path: string, bytes: number, opts: QemuImgRunOptions = {}): Promise<void> {
  await run(host, 'resize', path, ['-q', path, String(bytes)], opts);
}

/** Converts spec.source into a new image spec.dest. */
export async function convert(host: Host, spec: QemuImgConvertSpec, opts: QemuImgRunOptions = {}): Promise<void> {
  await run(host, 'convert', spec.dest, ['-q', ...(spec.from ? ['-f', spec.from] : []), '-O', spec.to, spec.source, spec.dest], opts);
}

/** Parses the percentages `qemu-img convert -p` prints ("    (12.34/100%)\r"), in order. */
export function parseConvertProgress(text: string): number[] {
  return [...text.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)].map((m) => Number(m[1]));
}

/** Converts like convert(), reporting qemu-img's progress (a percentage) as it goes; a long conversion streams instead of buffering. */
export async function convertWithProgress(host: Host, spec: QemuImgConvertSpec, onProgress: (percent: number) => void): Promise<void> {
  const proc = host.spawn(['qemu-img', 'convert', '-p', ...(spec.from ? ['-f', spec.from] : []), '-O', spec.to, spec.source, spec.dest]);
  proc.stdin?.end();
  let err = '';
  proc.stderr?.on('data', (c: Buffer) => { err += c.toString('utf8'); });
  proc.stdout?.on('data', (c: Buffer) => { for (const pct of parseConvertProgress(c.toString('utf8'))) onProgress(pct); });
  const exit = await proc.wait();
  if (exit.code !== 0) throw failure('convert', spec.dest, exit.code, err || (exit.signal ? `killed by ${exit.signal}` : ''));
}

/**
 * Checks an image's metadata (read-only: never with -r). Its exit code is the answer, so it is returned, not thrown:
 * 0 clean, 2 corrupt, 3 leaked clusters only, 1 or 63 the check could not run; stdout is the JSON report.
 */
export async function check(host: Host, source: string, opts: QemuImgRunOptions = {}): Promise<ExecResult> {
  return host.exec(['qemu-img', 'check', '--output=json', source], { allowFailure: true, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
}

/** One internal snapshot of an image's table: its tag, and whether it holds a VM's RAM and device state. */
export interface QemuImgSnapshotEntry {
  name: string;
  stateful: boolean;
}

/** The internal snapshots of an image (also while a running QEMU holds it), from `qemu-img info`'s table. */
export async function snapshotList(host: Host, path: string, opts: QemuImgRunOptions = {}): Promise<QemuImgSnapshotEntry[]> {
  const table = (await info(host, path, { ...opts, forceShare: true })).snapshots;
  if (table === undefined) return [];
  if (!Array.isArray(table)) throw new AppError('HOST_FAILED', `qemu-img info of ${path} printed a snapshot table that is not a list`, { details: { tool: 'qemu-img', operation: 'info', file: path } });
  return table.flatMap((e: unknown) => {
    const o = typeof e === 'object' && e !== null ? (e as Record<string, unknown>) : {};
    return typeof o.name === 'string' ? [{ name: o.name, stateful: Number(o['vm-state-size'] ?? 0) > 0 }] : [];
  });
}

/** Creates, applies or deletes the internal snapshot tag of an image that no QEMU holds. */
export async function snapshot(host: Host, path: string, op: QemuImgSnapshotOp, tag: string, opts: QemuImgRunOptions = {}): Promise<void> {
  await run(host, 'snapshot', path, [SNAPSHOT_FLAGS[op], tag, path], opts);
}
