// Outside ends of instances, seen at once: the init of each running container and the QEMU of each VM is watched through a pidfd (Host.watchExit), a Xen domain through its backend's event (HostDriver.watchEnd), its end recorded and published, and with boot.autorestart=on-failure the instance started again with a backoff.
import { hostOf, lockKey, type InstanceServiceDeps } from './context.js';
import { handleIn } from './placement.js';

/** Restarts allowed in RESTART_WINDOW_MS before on-failure gives up. */
export const RESTART_LIMIT = 5;
export const RESTART_WINDOW_MS = 10 * 60 * 1000;
/** The first restart's delay; each next one doubles it. */
export const RESTART_BASE_DELAY_MS = 1000;

/** Watches the processes of running instances whose driver's pid is their life (a container's init, a VM's QEMU), on hosts that can watch. */
export class ExitWatcher {
  private readonly armed = new Map<string, { pid: number; cancel: () => void }>();
  private readonly restarts = new Map<string, number[]>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly d: InstanceServiceDeps, private readonly start: (name: string) => Promise<void>, private readonly delayMs = RESTART_BASE_DELAY_MS) {}

  /** Watches the recorded init of an instance (replacing an older watch); nothing for one that is stopped, or whose driver or host cannot. */
  arm(name: string): void {
    const row = this.d.db.getInstance(name);
    const had = this.armed.get(name);
    if (had && row?.initPid === had.pid) return;
    this.disarm(name);
    if (this.closed || !row || row.initPid === null || row.expectedState === 'stopped' || !this.d.hosts.has(row.host)) return;
    const h = this.d.hosts.get(row.host);
    const hd = h.drivers.all().find((x) => x.driver.name === row.driver);
    const pid = row.initPid;
    const onEnd = () => {
      if (this.armed.get(name)?.pid === pid) this.armed.delete(name);
      void this.ended(name, pid).catch((err: unknown) => this.d.log?.(`recording the end of "${name}" failed: ${err instanceof Error ? err.message : String(err)}`));
    };
    // The backend's own event where it has one (a Xen domid is no host process), else the pidfd of its process.
    const cancel = hd?.watchEnd ? hd.watchEnd(pid, onEnd) : hd?.driver.pidIsInit === true ? h.host.watchExit?.(pid, onEnd) : undefined;
    if (cancel) this.armed.set(name, { pid, cancel });
  }

  /** Watches every running instance of a host anew (after its reconciliation: a remote host's watches died with its connection). */
  armHost(host: string): void {
    for (const row of this.d.db.listInstances()) {
      if (row.host !== host) continue;
      this.disarm(row.name);
      this.arm(row.name);
    }
  }

  /** Stops watching an instance. */
  disarm(name: string): void {
    this.armed.get(name)?.cancel();
    this.armed.delete(name);
  }

  /** Ends every watch and pending restart (daemon shutdown, tests). */
  close(): void {
    this.closed = true;
    for (const name of [...this.armed.keys()]) this.disarm(name);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  /** An init ended: unless Hangar stopped or restarted the instance itself meanwhile, it is recorded stopped and said, then restarted if asked. */
  private async ended(name: string, pid: number): Promise<void> {
    let restart = false;
    await this.d.locks.withLock(lockKey(name), async () => {
      const row = this.d.db.getInstance(name);
      // A stop or restart of Hangar's own holds the lock and records its outcome before this runs.
      if (!row || row.initPid !== pid || row.expectedState === 'stopped') return;
      const h = hostOf(this.d, row);
      const handle = handleIn(this.d, h, row);
      // The pidfd wakes at the exit; until LXC's monitor has reaped the init (a zombie for a moment), it still reads as running.
      let st = await handle.state();
      for (let i = 0; i < 250 && st.state !== 'stopped' && st.pid === pid; i++) {
        await new Promise((r) => setTimeout(r, 20));
        st = await handle.state();
      }
      // Confirmed by a second read: one failed backend read (an xl list under load) must not cost a running instance its run.
      if (st.state === 'stopped') st = await handle.state();
      if (st.state !== 'stopped') {
        // Its init is another process by now (restarted behind Hangar's back): that one is recorded and watched.
        if (st.pid !== null && st.pid !== pid) {
          this.d.db.updateInstance(name, { initPid: st.pid, initStartTime: st.startTime });
          this.arm(name);
        }
        return;
      }
      // What the instance held on the host (an OpenVZ private area's mount, a VM's tap) is released as a stop would.
      await handle.stop({ force: true, timeoutMs: 1000 }).catch(() => undefined);
      this.d.db.updateInstance(name, { expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null });
      const what = !h.drivers.all().some((x) => x.driver.name === row.driver && x.driver.pidIsInit === true) ? `domain (id ${pid})` : row.type === 'vm' ? `QEMU process (pid ${pid})` : `init (pid ${pid})`;
      this.d.events.emit({ type: 'instance-stopped', instance: name, message: `Instance "${name}" stopped outside Hangar: its ${what} ended`, data: { by: 'outside', pid } });
      restart = row.config['boot.autorestart'] === 'on-failure';
    });
    if (restart) this.scheduleRestart(name);
  }

  /** Starts it again after a delay that doubles with each restart of the window; past the limit, says so and leaves it stopped. */
  private scheduleRestart(name: string): void {
    const now = Date.now();
    const recent = (this.restarts.get(name) ?? []).filter((t) => now - t < RESTART_WINDOW_MS);
    if (recent.length >= RESTART_LIMIT) {
      this.restarts.set(name, recent);
      this.d.events.emit({ type: 'instance-restart-failed', instance: name, message: `Instance "${name}" stopped outside Hangar ${RESTART_LIMIT} times in ${RESTART_WINDOW_MS / 60_000} minutes: boot.autorestart gives up (start it by hand)`, data: { by: 'autorestart', restarts: recent.length } });
      return;
    }
    recent.push(now);
    this.restarts.set(name, recent);
    const delay = this.delayMs * 2 ** (recent.length - 1);
    const t = setTimeout(() => {
      this.timers.delete(t);
      void (async () => {
        const row = this.d.db.getInstance(name);
        // Started (or deleted) by someone else meanwhile.
        if (this.closed || !row || row.expectedState !== 'stopped') return;
        try {
          await this.start(name);
          this.d.events.emit({ type: 'instance-restarted', instance: name, data: { by: 'autorestart', attempt: recent.length, delayMs: delay } });
        } catch (err) {
          this.d.events.emit({ type: 'instance-restart-failed', instance: name, message: `Restarting instance "${name}" (boot.autorestart) failed: ${err instanceof Error ? err.message : String(err)}`, data: { by: 'autorestart', attempt: recent.length } });
        }
      })();
    }, delay);
    t.unref();
    this.timers.add(t);
  }
}
