// HostFs over the connection's one SFTP session: requests are pipelined, so a call costs one or two round trips, never one per file.
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import type { SFTPWrapper } from 'ssh2';
import { AppError, isAppError } from '../../shared/errors.js';
import type { ExecOptions, ExecResult, HostFs, HostStat } from '../host.js';
import type { SshConnection } from './connection.js';

// SFTP status codes (draft-ietf-secsh-filexfer-02) and the errno each stands for.
const NO_SUCH_FILE = 2;
const PERMISSION_DENIED = 3;
const OP_UNSUPPORTED = 8;
const ERRNO: Record<number, [string, string]> = {
  [NO_SUCH_FILE]: ['ENOENT', 'no such file or directory'],
  [PERMISSION_DENIED]: ['EACCES', 'permission denied'],
  [OP_UNSUPPORTED]: ['ENOTSUP', 'operation not supported'],
};
// One READ asks for this much (OpenSSH's sftp-server answers up to 256 KiB); a shorter answer is the end of the
// file: true of regular files and of the kernel's pseudo-files (proc, sysfs, cgroupfs), which fill what is asked.
const READ_LEN = 255 * 1024;
const S_IFMT = 0o170000;

type Cb<T> = (err: Error | undefined | null, value: T) => void;

/** Runs a command on the same host (for what SFTP cannot do in one request: recursive removal). */
export type RemoteExec = (argv: readonly string[], opts?: ExecOptions) => Promise<ExecResult>;

/** The file-system half of SshHost. */
export class SftpFs implements HostFs {
  constructor(private readonly conn: SshConnection, private readonly hostName: string, private readonly exec: RemoteExec) {}

  /** One SFTP request, errors turned into errno-style errors (HOST_UNREACHABLE when the connection went). */
  private req<T>(s: SFTPWrapper, syscall: string, path: string, send: (cb: Cb<T>) => void): Promise<T> {
    this.conn.stats.sftpRequests++;
    return new Promise<T>((resolve, reject) => {
      try {
        send((err, value) => (err ? reject(this.error(err, syscall, path)) : resolve(value)));
      } catch (e) {
        reject(this.error(e, syscall, path));
      }
    });
  }

  private error(e: unknown, syscall: string, path: string): Error {
    if (!this.conn.up) return this.conn.unreachable();
    const status = (e as { code?: unknown }).code;
    const known = typeof status === 'number' ? ERRNO[status] : undefined;
    const [code, text] = known ?? ['EIO', (e as Error).message || 'failure'];
    return Object.assign(new Error(`${code}: ${text}, ${syscall} '${path}' (host "${this.hostName}")`, { cause: e }), { code, syscall, path, sftpStatus: status });
  }

  private async session(): Promise<SFTPWrapper> {
    try {
      return await this.conn.sftp();
    } catch (e) {
      if (isAppError(e)) throw e;
      throw new AppError('HOST_FAILED', `Host "${this.hostName}" refused its SFTP subsystem`, { cause: e });
    }
  }

  /** Reads an open file to its end; closes it without waiting (the server handles requests in order). */
  private async readHandle(s: SFTPWrapper, handle: Buffer, path: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let pos = 0;
    try {
      for (;;) {
        const buf = Buffer.allocUnsafe(READ_LEN);
        const n = await this.req<number>(s, 'read', path, (cb) => s.read(handle, buf, 0, READ_LEN, pos, (err, bytes) => cb(err, bytes)));
        chunks.push(buf.subarray(0, n));
        pos += n;
        if (n < READ_LEN) break;
      }
    } finally {
      this.conn.stats.sftpRequests++;
      s.close(handle, () => undefined);
    }
    return Buffer.concat(chunks);
  }

  async readFile(path: string): Promise<Buffer> {
    const s = await this.session();
    const h = await this.req<Buffer>(s, 'open', path, (cb) => s.open(path, 'r', cb));
    return this.readHandle(s, h, path);
  }

  async readText(path: string): Promise<string> {
    return (await this.readFile(path)).toString('utf8');
  }

  async readTextIfExists(path: string): Promise<string | undefined> {
    try {
      return await this.readText(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      // SFTP reports ESRCH (a /proc/<pid> file whose process ended while read) as a plain failure.
      if (code === 'EIO' && path.startsWith('/proc/')) return undefined;
      throw e;
    }
  }

  /** Every OPEN goes out at once, then every READ as its handle arrives: two round trips for any number of small files. */
  async readMany(paths: readonly string[]): Promise<(string | undefined)[]> {
    if (paths.length === 0) return [];
    const s = await this.session();
    return Promise.all(paths.map(async (p) => {
      try {
        const h = await this.req<Buffer>(s, 'open', p, (cb) => s.open(p, 'r', cb));
        return (await this.readHandle(s, h, p)).toString('utf8');
      } catch (e) {
        if (isAppError(e, 'HOST_UNREACHABLE')) throw e;
        return undefined;
      }
    }));
  }

  /** Temp file (mode 0600) written, given its mode and closed in one round trip, then renamed over path: readers never see part of it. */
  async writeAtomic(path: string, data: string | Buffer, mode = 0o644): Promise<void> {
    const s = await this.session();
    const tmp = posix.join(posix.dirname(path), `.${posix.basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
    const h = await this.req<Buffer>(s, 'open', tmp, (cb) => s.open(tmp, 'w', { mode: 0o600 }, cb));
    try {
      await Promise.all([...this.writes(s, h, tmp, data, 0), this.req<void>(s, 'fchmod', tmp, (cb) => s.fchmod(h, mode, cb)), this.req<void>(s, 'close', tmp, (cb) => s.close(h, cb))]);
      await this.renameIn(s, tmp, path);
    } catch (e) {
      this.conn.stats.sftpRequests++;
      if (this.conn.up) s.unlink(tmp, () => undefined);
      throw e;
    }
  }

  /** WRITE requests for data at offset, sent at once (the server's packet limit sets the chunk size). */
  private writes(s: SFTPWrapper, h: Buffer, path: string, data: string | Buffer, offset: number): Promise<void>[] {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    const out: Promise<void>[] = [];
    const chunk = 32 * 1024;
    for (let at = 0; at < buf.length; at += chunk) {
      const len = Math.min(chunk, buf.length - at);
      out.push(this.req<void>(s, 'write', path, (cb) => s.write(h, buf, at, len, offset + at, cb)));
    }
    return out;
  }

  /** Opens for appending, writes and closes in one round trip after the open (a cgroup file gets one write). */
  async appendFile(path: string, data: string | Buffer): Promise<void> {
    const s = await this.session();
    const h = await this.req<Buffer>(s, 'open', path, (cb) => s.open(path, 'a', cb));
    const writes = this.writes(s, h, path, data, 0);
    // Sent after the writes: the server handles one session's requests in order.
    const close = this.req<void>(s, 'close', path, (cb) => s.close(h, cb));
    try {
      await Promise.all(writes);
    } finally {
      await close.catch(() => undefined);
    }
  }

  async mkdir(path: string, opts: { recursive?: boolean; mode?: number } = {}): Promise<void> {
    const s = await this.session();
    const created = await this.mkdirIn(s, path, opts.recursive ?? true, opts.mode);
    // The mode asked for, exactly, whatever the server's umask: as LocalHost does, only for a directory it made.
    if (created && opts.mode !== undefined) await this.req<void>(s, 'chmod', path, (cb) => s.chmod(path, opts.mode!, cb));
  }

  /** mkdir, making parents when recursive; answers whether path itself was created. */
  private async mkdirIn(s: SFTPWrapper, path: string, recursive: boolean, mode: number | undefined): Promise<boolean> {
    const attrs = mode !== undefined ? { mode } : {};
    try {
      await this.req<void>(s, 'mkdir', path, (cb) => s.mkdir(path, attrs, cb));
      return true;
    } catch (e) {
      if (isAppError(e)) throw e;
      const st = await this.stat(path);
      if (st) {
        if (recursive && st.isDirectory) return false;
        throw Object.assign(new Error(`EEXIST: file already exists, mkdir '${path}' (host "${this.hostName}")`), { code: 'EEXIST', syscall: 'mkdir', path });
      }
      const parent = posix.dirname(path);
      if (!recursive || parent === path) throw e;
      await this.mkdirIn(s, parent, true, mode);
      await this.req<void>(s, 'mkdir', path, (cb) => s.mkdir(path, attrs, cb));
      return true;
    }
  }

  /** Recursive removal is one `rm -r` on the host (a tree over SFTP would be a request per entry). */
  async rm(path: string, opts: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    if (opts.recursive) {
      await this.exec(['rm', opts.force ? '-rf' : '-r', '--', path]);
      return;
    }
    const s = await this.session();
    try {
      await this.req<void>(s, 'unlink', path, (cb) => s.unlink(path, cb));
    } catch (e) {
      if (opts.force && (e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
  }

  async rmdir(path: string): Promise<void> {
    const s = await this.session();
    await this.req<void>(s, 'rmdir', path, (cb) => s.rmdir(path, cb));
  }

  async rename(from: string, to: string): Promise<void> {
    await this.renameIn(await this.session(), from, to);
  }

  /** Plain SFTP rename refuses an existing target; OpenSSH's posix-rename replaces it atomically, as rename(2) does. */
  private async renameIn(s: SFTPWrapper, from: string, to: string): Promise<void> {
    try {
      await this.req<void>(s, 'rename', from, (cb) => s.ext_openssh_rename(from, to, cb));
    } catch (e) {
      if (!/does not support/i.test(String((e as Error).cause ?? ''))) throw e;
      await this.req<void>(s, 'rename', from, (cb) => s.rename(from, to, cb));
    }
  }

  async stat(path: string): Promise<HostStat | undefined> {
    const s = await this.session();
    try {
      const st = await this.req<{ mode: number; uid: number; gid: number; size: number; mtime: number }>(s, 'lstat', path, (cb) => s.lstat(path, cb));
      const type = st.mode & S_IFMT;
      return { size: st.size, mode: st.mode, uid: st.uid, gid: st.gid, isDirectory: type === 0o040000, isFile: type === 0o100000, isSymbolicLink: type === 0o120000, mtimeMs: st.mtime * 1000 };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async readdir(path: string): Promise<string[]> {
    const s = await this.session();
    const entries = await this.req<{ filename: string }[]>(s, 'scandir', path, (cb) => s.readdir(path, cb));
    return entries.map((e) => e.filename);
  }

  async symlink(target: string, path: string): Promise<void> {
    const s = await this.session();
    await this.req<void>(s, 'symlink', path, (cb) => s.symlink(target, path, cb));
  }

  async readlink(path: string): Promise<string> {
    const s = await this.session();
    return this.req<string>(s, 'readlink', path, (cb) => s.readlink(path, cb));
  }

  /** lchown, as LocalHost: OpenSSH's lsetstat changes a symlink itself, not what it points to. */
  async chown(path: string, uid: number, gid: number): Promise<void> {
    const s = await this.session();
    try {
      await this.req<void>(s, 'lchown', path, (cb) => s.ext_openssh_lsetstat(path, { uid, gid }, cb));
    } catch (e) {
      if (!/does not support/i.test(String((e as Error).cause ?? ''))) throw e;
      await this.exec(['chown', '-h', `${uid}:${gid}`, '--', path]);
    }
  }

  async chmod(path: string, mode: number): Promise<void> {
    const s = await this.session();
    await this.req<void>(s, 'chmod', path, (cb) => s.chmod(path, mode, cb));
  }
}
