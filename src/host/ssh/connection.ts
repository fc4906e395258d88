// One kept-alive SSH connection to a host: pinned host key, reconnection with bounded backoff, fail-fast while down, session slots.
import { readFile } from 'node:fs/promises';
import type { Client, ClientChannel, ConnectConfig, SFTPWrapper } from 'ssh2';
import { AppError } from '../../shared/errors.js';
import { hostKeyAlgorithms, parseFingerprint, sshFingerprint } from './host-key.js';
import { ssh2 } from './ssh2-module.js';

/** How to reach and trust one host. */
export interface SshConnectOptions {
  /** The host's name in Hangar (errors name it). */
  name: string;
  /** Address (name or IP) of the SSH server. */
  host: string;
  port?: number;
  /** Default root: Hangar manages containers and VMs there. */
  username?: string;
  /** The private key itself (OpenSSH or PEM format) ... */
  privateKey?: string | Buffer;
  /** ... or the file holding it, read at every connection attempt. */
  identityFile?: string;
  passphrase?: string;
  /** The pinned server key, as OpenSSH prints it: SHA256:base64 without padding. */
  hostKeyFingerprint: string;
  /** The pinned key's type (probeHostKey tells it): only that kind of key is then asked for. */
  hostKeyType?: string;
  /** One connection attempt's budget (default 10 s). */
  connectTimeoutMs?: number;
  /** SSH keepalives: interval (default 10 s); the connection counts as dead after 3 unanswered ones. */
  keepaliveIntervalMs?: number;
  /** Reconnection backoff: first delay (default 250 ms), doubled per failure up to maxMs (default 15 s). */
  reconnect?: { initialMs?: number; maxMs?: number };
  /** Sessions the server allows on one connection (OpenSSH MaxSessions, default 10); more wait for a free one. */
  maxSessions?: number;
}

/** Counters for tests and diagnostics. */
export interface SshStats {
  /** Successful connections (1 plus reconnections). */
  connects: number;
  /** Session channels opened (commands, pty, sftp). */
  sessions: number;
  /** Stream-local forwards opened (connectUnix). */
  forwards: number;
  /** SFTP requests sent. */
  sftpRequests: number;
}

// SSH_MSG_CHANNEL_OPEN_FAILURE reasons of an sshd with no session to spare (OpenSSH 9.2 answers CONNECT_FAILED, 2,
// for a session; others say ADMINISTRATIVELY_PROHIBITED, 1, or RESOURCE_SHORTAGE, 4).
const NO_SESSION_REASONS = new Set([1, 2, 4]);
const SESSION_RETRIES = 200;
const SESSION_RETRY_MS = 25;
// A channel request the server refused (ssh2 says "Unable to exec" and the like): the command never started.
const REFUSED_REQUEST = /^Unable to (exec|request a pseudo-terminal|start subsystem)/;
const REFUSED_RETRIES = 20;
const REFUSED_RETRY_MS = 100;

interface Waiter { resolve: () => void; reject: (e: unknown) => void }
interface ReadyWaiter extends Waiter { failFast: boolean }

/** The connection of one SshHost; everything fails fast with HOST_UNREACHABLE while it is down (calls right after a drop wait for the one reconnection attempt that follows it). */
export class SshConnection {
  readonly stats: SshStats = { connects: 0, sessions: 0, forwards: 0, sftpRequests: 0 };
  private readonly opts: SshConnectOptions;
  private readonly pinned: string;
  private client: Client | undefined;
  private sftpChannel: Promise<SFTPWrapper> | undefined;
  private lastError: AppError | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private connecting = false;
  // From a drop until the first reconnection attempt after it ends: calls made meanwhile wait for that attempt
  // (bounded by its connect budget) instead of failing for a drop the next moment may already have mended.
  private rejoining = false;
  private readyWaiters: ReadyWaiter[] = [];
  // Session slots of the current connection; a waiter is rejected when that connection goes.
  private active = 0;
  private queue: Waiter[] = [];

  constructor(opts: SshConnectOptions) {
    this.opts = opts;
    this.pinned = parseFingerprint(opts.hostKeyFingerprint);
    if (opts.privateKey === undefined && opts.identityFile === undefined) throw new AppError('INVALID_ARGUMENT', `Host "${opts.name}": privateKey or identityFile is required`);
  }

  /** Where it connects, for messages: user@address:port. */
  get address(): string { return `${this.opts.username ?? 'root'}@${this.opts.host}:${this.opts.port ?? 22}`; }

  /** True while connected. */
  get up(): boolean { return this.client !== undefined; }

  /** True once close() was called. */
  get isClosed(): boolean { return this.closed; }

  /** Starts connecting (and keeps reconnecting in the background after every drop, until close()). */
  start(): void { this.attempt(); }

  /** Resolves at the next successful connection (at once when up); rejects with the error of a failed attempt when failFast. */
  ready(failFast = false): Promise<void> {
    if (this.client) return Promise.resolve();
    if (this.closed) return Promise.reject(this.closedError());
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject, failFast }));
  }

  /** The error calls get while the host is down. */
  unreachable(): AppError {
    if (this.closed) return this.closedError();
    return this.lastError ?? new AppError('HOST_UNREACHABLE', `Host "${this.opts.name}" is unreachable: not connected yet (${this.address})`, { details: { host: this.opts.name } });
  }

  /** The live client, or HOST_UNREACHABLE at once. */
  current(): Client {
    if (!this.client) throw this.unreachable();
    return this.client;
  }

  /** Throws HOST_UNREACHABLE unless connected or reconnecting right after a drop (what a call would then wait for). */
  usable(): void {
    if (!this.client && !this.rejoining) throw this.unreachable();
  }

  /** The live client; right after a drop, the outcome of the reconnection under way; else HOST_UNREACHABLE at once. */
  private async live(): Promise<Client> {
    if (!this.client && this.rejoining && !this.closed) await this.ready(true);
    return this.current();
  }

  /** Opens a session channel once a slot is free: open(client) makes the request; the slot is freed when the channel closes. */
  async session(open: (c: Client, cb: (err: Error | undefined, ch: ClientChannel) => void) => void): Promise<ClientChannel> {
    const client = await this.live();
    // A waiter is handed the slot of the session that closed (active stays as it is), so none is ever over the limit.
    if (this.active >= this.sessionLimit()) await new Promise<void>((resolve, reject) => this.queue.push({ resolve, reject }));
    else this.active++;
    if (this.client !== client) throw this.unreachable();
    this.stats.sessions++;
    try {
      for (let tries = 0; ; tries++) {
        try {
          return await new Promise<ClientChannel>((resolve, reject) => {
            try {
              open(client, (err, ch) => {
                if (err) { reject(err); return; }
                // At once, not after a microtask: a short command's whole life may be in the packets being parsed now.
                ch.once('close', () => this.release(client));
                resolve(ch);
              });
            } catch (e) { reject(e); }
          });
        } catch (e) {
          // OpenSSH frees a closed session only after its main loop's next pass: an open right behind a close may
          // still find MaxSessions reached. Refused so while other sessions are open, it is retried, bounded.
          const refused = NO_SESSION_REASONS.has((e as { reason?: number }).reason ?? 0) && this.active > 1 && tries < SESSION_RETRIES;
          // Measured against dropbear 2022.83: an exec right after another channel closed is refused about every
          // second time, never 100 ms later. Nothing ran, so it is asked again.
          const requestRefused = e instanceof Error && REFUSED_REQUEST.test(e.message) && tries < REFUSED_RETRIES;
          if ((!refused && !requestRefused) || this.client !== client) throw e;
          await new Promise((r) => setTimeout(r, requestRefused ? REFUSED_RETRY_MS : SESSION_RETRY_MS));
        }
      }
    } catch (e) {
      this.release(client);
      throw this.client === client ? e : this.unreachable();
    }
  }

  /** A channel to a unix socket on the host (OpenSSH stream-local forwarding; not a session, so no slot). */
  async forwardUnix(path: string): Promise<ClientChannel> {
    const client = await this.live();
    this.stats.forwards++;
    return new Promise((resolve, reject) => {
      try { client.openssh_forwardOutStreamLocal(path, (err, ch) => (err ? reject(err) : resolve(ch))); } catch (e) { reject(e); }
    });
  }

  /** The connection's SFTP session, opened on first use and kept. */
  async sftp(): Promise<SFTPWrapper> {
    await this.live();
    if (!this.sftpChannel) {
      const opening = this.session((c, cb) => c.sftp((err, s) => cb(err, s as unknown as ClientChannel))).then((ch) => ch as unknown as SFTPWrapper);
      this.sftpChannel = opening;
      // A failed or closed SFTP session is opened anew by the next call.
      opening.then(
        (s) => s.once('close', () => { if (this.sftpChannel === opening) this.sftpChannel = undefined; }),
        () => { if (this.sftpChannel === opening) this.sftpChannel = undefined; },
      );
    }
    return this.sftpChannel;
  }

  /** Ends the connection for good: no more reconnection, every later call fails. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    for (const w of this.readyWaiters) w.reject(this.closedError());
    this.readyWaiters = [];
    const c = this.client;
    this.dropped(this.closedError());
    c?.end();
  }

  private sessionLimit(): number { return Math.max(1, this.opts.maxSessions ?? 10); }

  private release(client: Client): void {
    if (this.client !== client) return;
    const next = this.queue.shift();
    if (next) next.resolve();
    else this.active = Math.max(0, this.active - 1);
  }

  private closedError(): AppError {
    return new AppError('HOST_UNREACHABLE', `Host "${this.opts.name}" is unreachable: its connection was closed`, { details: { host: this.opts.name } });
  }

  /** Forgets the current connection: waiting calls fail, the SFTP session and session slots go with it. */
  private dropped(err: AppError): void {
    this.client = undefined;
    this.sftpChannel = undefined;
    this.active = 0;
    const queued = this.queue;
    this.queue = [];
    for (const w of queued) w.reject(err);
  }

  private schedule(): void {
    if (this.closed || this.timer) return;
    const o = this.opts.reconnect ?? {};
    const base = Math.min(o.maxMs ?? 15_000, (o.initialMs ?? 250) * 2 ** Math.min(this.failures, 16));
    // Jitter keeps many hosts that dropped together from reconnecting in lockstep.
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.timer = setTimeout(() => { this.timer = undefined; this.attempt(); }, delay);
    this.timer.unref();
  }

  private attempt(): void {
    if (this.closed || this.connecting || this.client) return;
    this.connecting = true;
    void this.connectOnce().then(
      (c) => {
        this.connecting = false;
        this.rejoining = false;
        if (this.closed) { c.end(); return; }
        this.client = c;
        this.failures = 0;
        this.lastError = undefined;
        this.stats.connects++;
        const waiters = this.readyWaiters;
        this.readyWaiters = [];
        for (const w of waiters) w.resolve();
      },
      (err: AppError) => {
        this.connecting = false;
        this.rejoining = false;
        this.failures++;
        this.lastError = err;
        for (const w of this.readyWaiters.filter((x) => x.failFast)) w.reject(err);
        this.readyWaiters = this.readyWaiters.filter((x) => !x.failFast);
        this.schedule();
      },
    );
  }

  private async connectOnce(): Promise<Client> {
    const o = this.opts;
    const port = o.port ?? 22;
    const details = { host: o.name, address: o.host, port };
    let privateKey: string | Buffer;
    try {
      privateKey = o.privateKey ?? (await readFile(o.identityFile!));
    } catch (e) {
      throw new AppError('HOST_UNREACHABLE', `Host "${o.name}" is unreachable: cannot read its identity file ${o.identityFile}`, { cause: e, details });
    }
    return new Promise((resolve, reject) => {
      const c = new (ssh2().Client)();
      let presented: string | undefined;
      let wasReady = false;
      let failure: unknown;
      c.on('error', (e) => {
        failure ??= e;
        // Before the connection is up an error ends the attempt ('close' follows and reports it).
        if (!wasReady) c.end();
      });
      c.once('ready', () => {
        wasReady = true;
        // Small requests and answers are the whole protocol here: Nagle's algorithm would hold each for an ACK.
        c.setNoDelay(true);
        resolve(c);
      });
      c.on('close', () => {
        if (!wasReady) {
          if (presented !== undefined && presented !== this.pinned) {
            reject(new AppError('HOST_UNREACHABLE', `Host "${o.name}" (${this.address}) presented host key ${presented}, not the pinned ${this.pinned}: refused (trust the new key only if the host was reinstalled)`, {
              details: { ...details, reason: 'host-key-mismatch', expected: this.pinned, presented },
            }));
          } else {
            reject(new AppError('HOST_UNREACHABLE', `Host "${o.name}" is unreachable (${this.address})`, { cause: failure ?? new Error('connection closed'), details }));
          }
          return;
        }
        if (this.client !== c) return;
        // Why it dropped (a keepalive timeout, a reset) is in the message: the cause chain is not always printed.
        const why = failure instanceof Error ? `: ${failure.message}` : '';
        this.dropped(new AppError('HOST_UNREACHABLE', `Host "${o.name}" is unreachable: the connection dropped (${this.address})${why}`, { cause: failure, details }));
        this.lastError = new AppError('HOST_UNREACHABLE', `Host "${o.name}" is unreachable: the connection dropped, reconnecting (${this.address})${why}`, { cause: failure, details });
        this.rejoining = !this.closed;
        this.attempt();
      });
      const config: ConnectConfig = {
        host: o.host, port, username: o.username ?? 'root', privateKey,
        ...(o.passphrase !== undefined ? { passphrase: o.passphrase } : {}),
        readyTimeout: o.connectTimeoutMs ?? 10_000,
        keepaliveInterval: o.keepaliveIntervalMs ?? 10_000,
        keepaliveCountMax: 3,
        hostVerifier: (key: Buffer) => { presented = sshFingerprint(key); return presented === this.pinned; },
        ...(o.hostKeyType ? { algorithms: { serverHostKey: hostKeyAlgorithms(o.hostKeyType) as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] } } : {}),
      };
      try {
        c.connect(config);
      } catch (e) {
        reject(new AppError('HOST_UNREACHABLE', `Host "${o.name}" is unreachable (${this.address})`, { cause: e, details }));
      }
    });
  }
}
