// Trees streamed between hosts (tar over their links): the daemon's images copied to a remote host's pool on first use, and instance volumes moved.
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { HostProcess } from '../../host/host.js';
import type { HostContext } from './context.js';

/** Collects a stream's text (bounded), for error messages. */
function collect(proc: HostProcess, which: 'stderr'): () => string {
  let text = '';
  proc[which]?.on('data', (d: Buffer) => { if (text.length < 4096) text += d.toString('utf8'); });
  return () => text.trim();
}

/**
 * Streams the tree `src` of host `from` into the existing directory `dst` of host `to` with tar: numeric owners, modes,
 * xattrs and holes of sparse files (an OpenVZ private area's image) kept, trees stay 0-based for idmapped mounts.
 * Throws with what each side said when either tar fails.
 */
export async function streamTree(from: HostContext, src: string, to: HostContext, dst: string): Promise<void> {
  const reader = from.host.spawn(['tar', '-C', src, '--numeric-owner', '--xattrs', '--sparse', '-cf', '-', '.']);
  const writer = to.host.spawn(['tar', '-C', dst, '--numeric-owner', '--xattrs', '-xpf', '-']);
  const readErr = collect(reader, 'stderr');
  const writeErr = collect(writer, 'stderr');
  writer.stdin?.on('error', () => undefined);
  reader.stdout?.pipe(writer.stdin!);
  // A writer that ends (a tar that refuses its options, a full disk) leaves the reader blocked on a full pipe: it is ended,
  // and its output drained, since its exit is only reported once its stdout is closed.
  const stopReader = (): void => { reader.stdout?.unpipe(); reader.stdout?.resume(); reader.kill('SIGTERM'); };
  const [r, w] = await Promise.all([reader.wait(), writer.wait().then((res) => { if (res.code !== 0) stopReader(); return res; })]);
  if (r.code !== 0 || w.code !== 0) {
    const why = [r.code !== 0 ? `reading on host ${from.name}: ${readErr() || `exit ${r.code ?? r.signal}`}` : '', w.code !== 0 ? `writing on host ${to.name}: ${writeErr() || `exit ${w.code ?? w.signal}`}` : ''].filter(Boolean).join('; ');
    throw new Error(`tar failed ${why}`);
  }
}

/**
 * Makes sure the image volume `fp` of the local pool exists in the pool of `to` (a remote host): streamed (streamTree)
 * into a staging directory renamed into place when complete, so an interrupted copy is never taken for an image. The
 * caller holds the image's lock.
 */
export async function ensureImageOn(from: HostContext, to: HostContext, fp: string, progress: (m: string) => void = () => undefined): Promise<string> {
  const dest = to.pool.imagePath(fp);
  if ((await to.host.fs.stat(dest))?.isDirectory) return dest;
  const staging = posix.join(posix.dirname(dest), `.${posix.basename(dest)}.partial`);
  await to.host.fs.rm(staging, { recursive: true, force: true });
  await to.host.fs.mkdir(staging, { recursive: true, mode: 0o700 });
  progress(`Copying the image to host ${to.name}`);
  try {
    await streamTree(from, from.pool.imagePath(fp), to, staging);
    await to.host.fs.rename(staging, dest);
  } catch (err) {
    await to.host.fs.rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw new AppError('HOST_FAILED', `Failed to copy image ${fp.slice(0, 12)} to host ${to.name}`, { cause: err });
  }
  return dest;
}
