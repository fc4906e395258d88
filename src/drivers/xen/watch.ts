// Domain ends seen at once on a Dom0: one `xenstore-watch @releaseDomain` per host (xenstored fires it whenever a domain goes), then one `xl list` says which watched domids may be gone, and each of those is confirmed by its xenstore home being gone too.
import type { Host, HostProcess } from '../../host/host.js';
import type { Xl } from './xl.js';

/** Watches domains of one Dom0 by domid; the xenstore watch runs only while some domain is watched. */
export class DomainWatch {
  private proc: HostProcess | null = null;
  private readonly watched = new Map<number, Set<{ onEnd: () => void; since: number }>>();
  // Numbers each `xl list`: a watch set after a list began is not judged by it (its domain may be newer than the list).
  private lists = 0;
  // Checks are serialised; a release during one asks for one more after it.
  private checking: Promise<void> | null = null;
  private again = false;

  constructor(private readonly host: Host, private readonly xl: Xl) {}

  /** Calls onEnd once domain domid is gone; answers the cancel, or undefined when the watch cannot run there. */
  watch(domid: number, onEnd: () => void): (() => void) | undefined {
    try {
      this.ensure();
    } catch {
      return undefined;
    }
    let set = this.watched.get(domid);
    if (!set) this.watched.set(domid, (set = new Set()));
    const entry = { onEnd, since: this.lists };
    set.add(entry);
    return () => {
      set.delete(entry);
      if (set.size === 0 && this.watched.get(domid) === set) this.watched.delete(domid);
      if (this.watched.size === 0) this.stopWatch();
    };
  }

  private ensure(): void {
    if (this.proc) return;
    const proc = this.host.spawn(['xenstore-watch', '@releaseDomain']);
    this.proc = proc;
    proc.stdin?.end();
    // xenstored fires a watch once when it is set: that first line is a check too, covering a domain gone before it.
    let buffered = '';
    proc.stdout?.on('data', (c: Buffer) => {
      buffered += c.toString('utf8');
      if (!buffered.includes('\n')) return;
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1);
      this.check();
    });
    proc.stderr?.resume();
    // A lost connection ends it: the watches stay, and the core arms them again when the host is back.
    void proc.wait().catch(() => undefined).then(() => { if (this.proc === proc) this.proc = null; });
  }

  private stopWatch(): void {
    const p = this.proc;
    this.proc = null;
    p?.kill('SIGKILL');
  }

  private check(): void {
    if (this.checking) { this.again = true; return; }
    this.checking = (async () => {
      do {
        this.again = false;
        const n = ++this.lists;
        const list = await this.xl.list().catch(() => null);
        if (!list) return;
        const alive = new Set(list.map((e) => e.domid));
        for (const [domid, set] of [...this.watched]) {
          if (alive.has(domid) || ![...set].some((x) => x.since < n)) continue;
          // A listing is one read of many domains: a domain it lacks ends only once libxl has also removed its home
          // in xenstore (done when it destroys a domain); an answer other than "no such path" keeps the watch.
          const home = await this.host.exec(['xenstore-exists', `/local/domain/${domid}`], { allowFailure: true, timeoutMs: 30_000 }).catch(() => null);
          if (!home || home.code !== 1) continue;
          for (const e of [...set].filter((x) => x.since < n)) {
            set.delete(e);
            e.onEnd();
          }
          if (set.size === 0) this.watched.delete(domid);
        }
      } while (this.again);
    })().finally(() => {
      this.checking = null;
      if (this.watched.size === 0) this.stopWatch();
    });
  }
}
