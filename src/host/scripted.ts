// ScriptedHost: a Host for unit tests; files live in memory, commands are answered by a script, nothing touches the machine.
import { PassThrough } from 'node:stream';
import { AppError, isAppError } from '../shared/errors.js';
import type { ExecOptions, ExecResult, Host, HostFs, HostProcess, HostStat } from './host.js';

/** Answers one command: a partial result (code 0 and empty output by default), an AppError the host throws as it is, or another Error to throw as a spawn failure. */
export type ExecScript = (argv: readonly string[], opts: ExecOptions) => Partial<ExecResult> | Error | undefined | Promise<Partial<ExecResult> | Error | undefined>;

interface Node { data?: Buffer; mode: number; target?: string }

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/** An in-memory machine: a file tree (directories implied by their contents), scripted commands, and a record of every call. */
export class ScriptedHost implements Host {
  readonly name: string;
  /** Every exec, in order, with its options. */
  readonly calls: { argv: string[]; opts: ExecOptions }[] = [];
  /** Every kill(pid, signal). */
  readonly signals: [number, NodeJS.Signals | 0][] = [];
  /** Pids kill(pid, 0) finds alive. */
  readonly alive = new Set<number>();
  private readonly nodes = new Map<string, Node>();

  constructor(private readonly script: ExecScript = () => undefined, opts: { name?: string; files?: Record<string, string | Buffer> } = {}) {
    this.name = opts.name ?? 'scripted';
    for (const [p, d] of Object.entries(opts.files ?? {})) this.put(p, d);
  }

  /** Creates or replaces a file (mode defaults to 0644; a full st_mode with type bits is taken as is). */
  put(path: string, data: string | Buffer, mode = 0o644): void {
    this.nodes.set(path, { data: Buffer.from(data), mode: mode & 0o170000 ? mode : S_IFREG | mode });
  }

  /** A node with an arbitrary st_mode (device nodes, sockets), without content. */
  putNode(path: string, mode: number): void {
    this.nodes.set(path, { mode });
  }

  /** The content of a file, or undefined. */
  text(path: string): string | undefined {
    return this.nodes.get(path)?.data?.toString('utf8');
  }

  /** The argv of every exec whose argv[0] is cmd. */
  commands(cmd: string): string[][] {
    return this.calls.filter((c) => c.argv[0] === cmd).map((c) => c.argv);
  }

  async exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    this.calls.push({ argv: [...argv], opts });
    const r = await this.script(argv, opts);
    // An AppError is the host's own answer (HOST_UNREACHABLE of a dropped connection, say); another Error a spawn failure.
    if (isAppError(r)) throw r;
    if (r instanceof Error) throw new AppError('HOST_FAILED', `Failed to run ${argv.join(' ')}`, { cause: r });
    const res: ExecResult = { code: 0, signal: null, stdout: '', stderr: '', ...(r ?? {}) };
    if (res.code !== 0 && !opts.allowFailure) throw new AppError('HOST_FAILED', `Command failed: ${argv.join(' ')}`, { cause: new Error(res.stderr || `exit code ${res.code}`) });
    return res;
  }

  spawn(argv: readonly string[]): HostProcess {
    this.calls.push({ argv: [...argv], opts: {} });
    const out = new PassThrough();
    out.end();
    return { pid: Promise.resolve(-1), stdin: null, stdout: out, stderr: null, wait: async () => ({ code: 0, signal: null }), kill: () => undefined };
  }

  async connectUnix(path: string): Promise<never> {
    throw new AppError('HOST_FAILED', `No unix socket ${path} on scripted host ${this.name}`);
  }

  /** Records the signal; a process in `alive` that gets SIGTERM or SIGKILL is gone after it (its /proc entries too). */
  async kill(pid: number, signal: NodeJS.Signals | 0 = 'SIGTERM'): Promise<boolean> {
    this.signals.push([pid, signal]);
    const was = this.alive.has(pid);
    if (signal === 'SIGTERM' || signal === 'SIGKILL') {
      this.alive.delete(pid);
      for (const k of [...this.nodes.keys()]) if (k.startsWith(`/proc/${pid}/`)) this.nodes.delete(k);
    }
    return was;
  }

  private must(path: string): Node {
    const n = this.nodes.get(path);
    if (!n) throw Object.assign(new Error(`ENOENT: no such file or directory, '${path}'`), { code: 'ENOENT' });
    return n;
  }

  private isDir(path: string): boolean {
    const n = this.nodes.get(path);
    if (n) return (n.mode & 0o170000) === S_IFDIR;
    const prefix = path.endsWith('/') ? path : `${path}/`;
    return [...this.nodes.keys()].some((k) => k.startsWith(prefix));
  }

  readonly fs: HostFs = {
    readFile: async (p) => this.must(p).data ?? Buffer.alloc(0),
    readText: async (p) => (this.must(p).data ?? Buffer.alloc(0)).toString('utf8'),
    readTextIfExists: async (p) => this.nodes.get(p)?.data?.toString('utf8'),
    writeAtomic: async (p, d, mode = 0o644) => this.put(p, d, mode),
    appendFile: async (p, d) => this.put(p, Buffer.concat([this.nodes.get(p)?.data ?? Buffer.alloc(0), Buffer.from(d)])),
    mkdir: async (p, opts) => { if (!this.isDir(p)) this.nodes.set(p, { mode: S_IFDIR | (opts?.mode ?? 0o755) }); },
    rm: async (p, opts) => {
      if (!this.nodes.has(p) && !this.isDir(p) && !opts?.force) this.must(p);
      for (const k of [...this.nodes.keys()]) if (k === p || (opts?.recursive && k.startsWith(`${p}/`))) this.nodes.delete(k);
    },
    rmdir: async (p) => { this.nodes.delete(p); },
    rename: async (a, b) => { this.nodes.set(b, this.must(a)); this.nodes.delete(a); },
    stat: async (p): Promise<HostStat | undefined> => {
      const n = this.nodes.get(p);
      if (!n && !this.isDir(p)) return undefined;
      const mode = n?.mode ?? S_IFDIR | 0o755;
      const type = mode & 0o170000;
      return { size: n?.data?.length ?? 0, mode, uid: 0, gid: 0, isDirectory: type === S_IFDIR, isFile: type === S_IFREG, isSymbolicLink: type === S_IFLNK, mtimeMs: 0 };
    },
    readMany: async (paths) => paths.map((p) => this.nodes.get(p)?.data?.toString('utf8')),
    readdir: async (p) => {
      const prefix = p.endsWith('/') ? p : `${p}/`;
      const names = new Set<string>();
      for (const k of this.nodes.keys()) if (k.startsWith(prefix)) names.add(k.slice(prefix.length).split('/')[0]!);
      return [...names].sort();
    },
    symlink: async (target, p) => { this.nodes.set(p, { mode: S_IFLNK | 0o777, target }); },
    readlink: async (p) => this.must(p).target ?? '',
    chown: async () => undefined,
    chmod: async (p, mode) => {
      // A directory implied by its contents becomes a node of its own, with that mode.
      if (!this.nodes.has(p) && this.isDir(p)) this.nodes.set(p, { mode: S_IFDIR });
      const n = this.must(p);
      n.mode = (n.mode & 0o170000) | mode;
    },
  };
}
