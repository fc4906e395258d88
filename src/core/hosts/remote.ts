// One remote host's life in the daemon: connecting, opening its drivers, up, dropped and reconnecting; its state and why.
import type { HostState } from '../../shared/schemas.js';
import type { HostRow } from '../db/database.js';
import type { HostContext, HostProblem } from './context.js';
import type { RemoteLink } from './link.js';
import { errorText } from './remote-context.js';

/** What a remote host calls back into its service. */
export interface RemoteHooks {
  /** Opens the host's context over the link (facts, drivers, pool, network). */
  open(link: RemoteLink, row: HostRow): Promise<HostContext>;
  /** The host is up (first: for the first time since the daemon started or the host was added). */
  up(ctx: HostContext, first: boolean): Promise<void>;
  /** The host changed state (for events and the log). */
  changed(name: string, state: HostState, reason: string | null, previous: HostState): void;
  log(msg: string): void;
}

// How often a connected link is checked for a drop, and the reason of a down one refreshed.
const DROP_POLL_MS = 250;
const DOWN_POLL_MS = 1_000;
// Retry delays after the drivers could not be opened (the connection itself backs off in the link).
const OPEN_RETRY_MS = [2_000, 5_000, 10_000, 30_000];
// How long opening a host's drivers, storage and network may take before the attempt counts as failed.
const OPEN_TIMEOUT_MS = 120_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/** A remote host: its link, its opened context and its state, kept current by a watcher loop. */
export class RemoteHost {
  state: HostState = 'connecting';
  reason: string | null = 'not connected yet';
  since = new Date().toISOString();
  ctx: HostContext | undefined;
  private stopped = false;
  private reopening: Promise<void> | undefined;

  constructor(readonly row: HostRow, readonly link: RemoteLink, private readonly hooks: RemoteHooks) {}

  /** Starts watching; given the context of a host just added (or trusted), it is up at once. */
  start(ctx?: HostContext): void {
    if (ctx) {
      this.ctx = ctx;
      this.set('up', null);
    }
    void this.run().catch((err: unknown) => this.hooks.log(`host ${this.row.name}: watcher failed: ${errorText(err)}`));
  }

  /** Stops watching and closes the link; instances running there keep running. */
  stop(): void {
    this.stopped = true;
    this.link.close();
  }

  /** Why the host cannot be used, checked now: a dropped connection counts at once, before the watcher sees it. */
  problem(): HostProblem | undefined {
    if (this.state === 'up' && this.ctx) {
      if (this.link.connected) return undefined;
      return { reason: `Host "${this.row.name}" is unreachable: its connection dropped, reconnecting`, since: new Date().toISOString() };
    }
    return { reason: this.reason ?? `Host "${this.row.name}" is ${this.state}`, since: this.since };
  }

  private set(state: HostState, reason: string | null): void {
    const previous = this.state;
    if (state === previous && reason === this.reason) return;
    if (state !== previous) this.since = new Date().toISOString();
    this.state = state;
    this.reason = reason;
    this.hooks.changed(this.row.name, state, reason, previous);
  }

  private async run(): Promise<void> {
    let failures = 0;
    let first = true;
    // A context handed to start() was opened just now: not opened again on the first pass.
    let fresh = this.ctx !== undefined;
    while (!this.stopped) {
      if (!this.link.connected) {
        if (!(await this.waitConnected())) return;
      }
      if (!this.ctx) {
        this.set('connecting', `Host "${this.row.name}" is connected; its drivers, storage and network are being opened`);
        try {
          this.ctx = await this.openBounded();
          failures = 0;
        } catch (err) {
          if (this.stopped) return;
          this.set('down', `Host "${this.row.name}" is reachable but could not be opened: ${errorText(err)}`);
          await sleep(OPEN_RETRY_MS[Math.min(failures++, OPEN_RETRY_MS.length - 1)]!);
          continue;
        }
      } else if (!fresh) {
        // After a reconnection the old drivers still work (the link reconnected under them), so the host is up at
        // once; they are opened again in the background, as the machine may have rebooted meanwhile.
        this.reopen();
      }
      fresh = false;
      if (this.stopped) return;
      this.set('up', null);
      await this.hooks.up(this.ctx, first).catch((err: unknown) => this.hooks.log(`host ${this.row.name}: after connecting: ${errorText(err)}`));
      first = false;
      while (!this.stopped && this.link.connected) await sleep(DROP_POLL_MS);
      if (this.stopped) return;
      this.set('down', await this.downReason());
    }
  }

  /** Waits for the link to connect, keeping the reason current; false when the link was closed meanwhile. */
  private async waitConnected(): Promise<boolean> {
    let connected = false;
    let closed = false;
    const ready = this.link.ready().then(() => { connected = true; }, () => { closed = true; });
    for (;;) {
      // A connection that takes a moment is still "connecting"; one that is not there after it is down, with the link's reason.
      await Promise.race([ready, sleep(DOWN_POLL_MS)]);
      if (connected || closed || this.stopped) return connected && !this.stopped;
      this.set('down', await this.downReason());
    }
  }

  /** The link's own words for why it is down: a call fails at once with its last connection error. */
  private async downReason(): Promise<string> {
    if (this.link.connected) return `Host "${this.row.name}" is reconnecting`;
    return this.link.exec(['true'], { timeoutMs: 5_000 }).then(() => `Host "${this.row.name}" is reconnecting`, (err: unknown) => errorText(err));
  }

  /** Opens the host's context, or fails once OPEN_TIMEOUT_MS pass (a late result is dropped). */
  private openBounded(): Promise<HostContext> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_r, reject) => {
      timer = setTimeout(() => reject(new Error(`opening its drivers, storage and network took more than ${OPEN_TIMEOUT_MS / 1000} s`)), OPEN_TIMEOUT_MS);
      timer.unref();
    });
    return Promise.race([this.hooks.open(this.link, this.row), timeout]).finally(() => clearTimeout(timer));
  }

  private reopen(): void {
    if (this.reopening) return;
    this.reopening = this.openBounded().then(
      (ctx) => { if (!this.stopped) this.ctx = ctx; },
      (err: unknown) => this.hooks.log(`host ${this.row.name}: reopening its drivers after a reconnection failed (keeping the ones opened before): ${errorText(err)}`),
    ).finally(() => { this.reopening = undefined; });
  }
}
