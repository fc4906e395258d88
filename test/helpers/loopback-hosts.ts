// Remote hosts without SSH, for in-process tests: links over a Host of this process (LocalHost, or a scripted Dom0) that a test can take down and bring back, and the connector that makes them.
import type { Duplex } from 'node:stream';
import { AppError } from '../../src/shared/errors.js';
import type { HostConnector, PresentedKey, RemoteLink } from '../../src/core/hosts/link.js';
import type { HostRow } from '../../src/core/db/database.js';
import type { ExecOptions, ExecResult, Host, HostFs, HostProcess, SpawnOptions } from '../../src/host/host.js';
import { LocalHost } from '../../src/host/local.js';

/** A pretend machine at address:port: the key it presents, the Host commands run on, the drivers the daemon opens there. */
export interface LoopbackMachine {
  key: PresentedKey;
  /** The Host behind its links (default a LocalHost). */
  host?: () => Host;
  /** HANGAR_DRIVERS of the pretend host (default "fake"). */
  drivers?: string;
}

/** A link to a pretend machine: everything goes to its inner Host while it is up, and fails at once with HOST_UNREACHABLE while it is down. */
export class LoopbackLink implements RemoteLink {
  readonly fs: HostFs;
  private downReason: string | null;
  private closed = false;
  private waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];

  constructor(readonly name: string, private readonly inner: Host, down: string | null = null) {
    this.downReason = down;
    const fs = inner.fs as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    this.fs = new Proxy(fs, {
      get: (t, k: string) => (...a: unknown[]) => (this.connected ? t[k]!.apply(t, a) : Promise.reject(this.unreachable())),
    }) as unknown as HostFs;
  }

  get connected(): boolean { return this.downReason === null && !this.closed; }

  /** Takes the link down (with why) or, with null, brings it back. */
  setDown(reason: string | null): void {
    this.downReason = reason;
    if (reason === null) for (const w of this.waiters.splice(0)) w.resolve();
  }

  ready(): Promise<void> {
    if (this.closed) return Promise.reject(this.unreachable());
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(this.unreachable());
  }

  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return this.connected ? this.inner.exec(argv, opts) : Promise.reject(this.unreachable());
  }

  spawn(argv: readonly string[], opts?: SpawnOptions): HostProcess {
    if (!this.connected) throw this.unreachable();
    return this.inner.spawn(argv, opts);
  }

  connectUnix(path: string): Promise<Duplex> {
    return this.connected ? this.inner.connectUnix(path) : Promise.reject(this.unreachable());
  }

  kill(pid: number, signal?: NodeJS.Signals | 0): Promise<boolean> {
    return this.connected ? this.inner.kill(pid, signal) : Promise.reject(this.unreachable());
  }

  private unreachable(): AppError {
    return new AppError('HOST_UNREACHABLE', `Host "${this.name}" is unreachable: ${this.closed ? 'its connection was closed' : this.downReason}`, { details: { host: this.name } });
  }
}

/** Makes links to pretend machines by address:port; unknown addresses refuse connections, a changed key is refused as SSH would. */
export class LoopbackConnector implements HostConnector {
  /** The pretend machines, by "address:port". */
  readonly machines = new Map<string, LoopbackMachine>();
  /** The latest link made for each host name. */
  readonly links = new Map<string, LoopbackLink>();

  /** The machine a host row points at. */
  machineOf(row: { address: string; port: number }): LoopbackMachine | undefined {
    return this.machines.get(`${row.address}:${row.port}`);
  }

  async probeKey(t: { address: string; port: number }): Promise<PresentedKey> {
    const m = this.machineOf(t);
    if (!m) throw new AppError('HOST_UNREACHABLE', `Cannot read the host key of ${t.address}:${t.port}`, { cause: new Error(`connect ECONNREFUSED ${t.address}:${t.port}`) });
    return { ...m.key };
  }

  async connect(row: HostRow): Promise<RemoteLink> {
    const why = this.refusal(row);
    if (why) throw new AppError('HOST_UNREACHABLE', `Host "${row.name}" is unreachable (${row.user}@${row.address}:${row.port})`, { cause: new Error(why) });
    return this.make(row, null);
  }

  link(row: HostRow): RemoteLink {
    return this.make(row, this.refusal(row));
  }

  private refusal(row: HostRow): string | null {
    const m = this.machineOf(row);
    if (!m) return `connect ECONNREFUSED ${row.address}:${row.port}`;
    if (m.key.fingerprint !== row.fingerprint) return `presented host key ${m.key.fingerprint}, not the pinned ${row.fingerprint}: refused`;
    return null;
  }

  private make(row: HostRow, down: string | null): LoopbackLink {
    const link = new LoopbackLink(row.name, this.machineOf(row)?.host?.() ?? new LocalHost(), down);
    this.links.set(row.name, link);
    return link;
  }
}

/** A fingerprint as OpenSSH prints it, made from a seed (tests). */
export function testFingerprint(seed: string): string {
  return `SHA256:${Buffer.from(seed.padEnd(32, '.')).toString('base64').replace(/=+$/, '').slice(0, 43).padEnd(43, 'A')}`;
}
