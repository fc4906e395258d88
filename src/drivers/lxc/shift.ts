// Id shifting for unprivileged containers: adds an offset to the owner and group of every entry of a tree, keeping setuid/setgid bits and file capabilities.
import { AppError } from '../../shared/errors.js';
import type { Host, HostStat } from '../../host/host.js';
import { mountPointsUnder, unescapeOctal } from '../../host/mounts.js';

/** Options for shiftIds. */
export interface ShiftOptions {
  /** Ids must be below this (the size of the container's id map); default 65536. */
  limit?: number;
  /** Concurrent file-system calls; default 32. */
  parallelism?: number;
  /** Ids of the tree start here (100000 to shift an unprivileged tree back with a negative offset); default 0. */
  base?: number;
}

interface Entry {
  path: string;
  st: HostStat;
}

/** Runs fn over items with at most `limit` calls in flight; rejects with the first error. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Parses `getfattr -d -e hex --absolute-names` output into path → hex value of security.capability. */
export function parseGetfattr(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let current: string | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = unescapeOctal(line.slice(8));
    } else if (current !== undefined && line.startsWith('security.capability=0x')) {
      out.set(current, line.slice('security.capability='.length));
    }
  }
  return out;
}

/**
 * Rewrites a security.capability value (hex "0x...") as a v3 (namespaced) capability whose root is rootUid,
 * so the capability still applies inside a user namespace whose root maps to rootUid.
 */
export function toNamespacedCapability(hex: string, rootUid: number): string {
  const buf = Buffer.from(hex.replace(/^0x/, ''), 'hex');
  if (buf.length < 20) throw new AppError('INVALID_ARCHIVE', `Unrecognised file capability value ${hex}`);
  const magic = buf.readUInt32LE(0);
  const revision = magic & 0xff000000;
  if (revision !== 0x02000000 && revision !== 0x03000000) throw new AppError('INVALID_ARCHIVE', `Unsupported file capability revision in ${hex}`);
  const out = Buffer.alloc(24);
  buf.copy(out, 0, 0, 20);
  out.writeUInt32LE(0x03000000 | (magic & 0x00ffffff), 0);
  out.writeUInt32LE(rootUid >>> 0, 20);
  return '0x' + out.toString('hex');
}

/**
 * Adds offset to the uid and gid of every entry below (and including) dir: lchown, never following symlinks,
 * never entering other mounted file systems. Every entry is checked (ids < limit) before anything changes,
 * so a bad tree is left untouched. setuid/setgid bits (cleared by chown) are restored; file capabilities
 * (also cleared) are restored as namespaced v3 capabilities when getfattr/setfattr (package attr) exist.
 * POSIX ACL entries naming users or groups are not shifted.
 */
export async function shiftIds(host: Host, dir: string, offset: number, opts: ShiftOptions = {}): Promise<{ entries: number }> {
  const limit = opts.limit ?? 65536;
  const par = opts.parallelism ?? 32;
  const base = opts.base ?? 0;
  if (!Number.isInteger(offset) || !Number.isInteger(base) || base < 0 || base + offset < 0 || base + offset + limit > 2 ** 32 - 1) {
    throw new AppError('INVALID_ARGUMENT', `Invalid id offset ${offset} (with a map of ${limit} ids)`);
  }
  const root = dir.replace(/(.)\/+$/, '$1');
  const rootSt = await host.fs.stat(root);
  if (!rootSt?.isDirectory) throw new AppError('NOT_FOUND', `Directory ${root} does not exist`);
  const skip = new Set(await mountPointsUnder(host, root));

  const entries: Entry[] = [{ path: root, st: rootSt }];
  let level: Entry[] = [entries[0]!];
  while (level.length > 0) {
    const children = await mapLimit(level, par, async (e) => {
      if (!e.st.isDirectory) return [];
      const names = await host.fs.readdir(e.path);
      const paths = names.map((n) => `${e.path}/${n}`).filter((p) => !skip.has(p));
      const stats = await mapLimit(paths, par, async (p) => ({ path: p, st: await host.fs.stat(p) }));
      return stats.filter((s): s is Entry => s.st !== undefined);
    });
    level = children.flat();
    entries.push(...level);
  }

  for (const e of entries) {
    if (e.st.uid < base || e.st.gid < base || e.st.uid >= base + limit || e.st.gid >= base + limit) {
      throw new AppError('INVALID_ARCHIVE', `${e.path} is owned by ${e.st.uid}:${e.st.gid}, outside the ${limit} ids from ${base} that the container maps; nothing was changed`);
    }
  }

  const caps = await readCapabilities(host, root);
  // Entries are recorded before any change, so a hardlinked inode seen twice is simply set to the same values again.
  await mapLimit(entries, par, async (e) => {
    await host.fs.chown(e.path, e.st.uid + offset, e.st.gid + offset);
    if (!e.st.isSymbolicLink && (e.st.mode & 0o6000) !== 0) await host.fs.chmod(e.path, e.st.mode & 0o7777);
  });
  for (const [path, hex] of caps) {
    await host.exec(['setfattr', '-h', '-n', 'security.capability', '-v', toNamespacedCapability(hex, base + offset), '--', path]);
  }
  return { entries: entries.length };
}

/** File capabilities below root, or an empty map when getfattr is not installed. */
async function readCapabilities(host: Host, root: string): Promise<Map<string, string>> {
  const res = await host
    .exec(['getfattr', '-R', '-P', '-h', '--one-file-system', '--absolute-names', '-d', '-e', 'hex', '-m', '^security\\.capability$', '--', root], { allowFailure: true })
    .catch(() => undefined);
  if (!res || (res.code !== 0 && res.stdout === '')) return new Map();
  return parseGetfattr(res.stdout);
}
