// A domain's text console through `xl console`, attached only once the previous console of that domain has let go of xenconsole's lock.
import { PassThrough } from 'node:stream';
import type { HostProcess } from '../../host/host.js';
import type { Xl } from './xl.js';

// xenconsole takes an exclusive flock on /var/lock/xenconsole.DOMID and refuses a second client with this message.
const LOCK_HELD = /xenconsole: Could not lock \S+: Resource temporarily unavailable/;
// A console closed a moment ago may still hold the lock while its xenconsole handles the hang-up.
const PREVIOUS_EXIT_WAIT_MS = 3000;
const RETRIES = 15;
const RETRY_MS = 200;
const ATTACHED_MS = 300;
const LOCK_WAIT_MS = 10_000;

/** The consoles this daemon attached, by domain name: the next attach waits for the last one's exit. */
export type ConsoleTracker = Map<string, Promise<unknown>>;

/**
 * Attaches to the console of domain `name`: waits (bounded) for the previous console this daemon attached to that domain
 * to exit and for xenconsole's lock to be free, then runs `xl console`; when xenconsole still finds its lock held (another
 * client, or a hang-up not yet handled) it tries again for a few seconds, and only then passes the refusal through. The returned process stands for whichever
 * attempt is attached.
 */
export function attachXenConsole(xl: Xl, name: string, size: { cols: number; rows: number }, tracker: ConsoleTracker): HostProcess {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  let current: HostProcess | undefined;
  let killed: NodeJS.Signals | undefined;
  let pendingSize: { cols: number; rows: number } | undefined;
  const previous = tracker.get(name);

  const run = async (): Promise<{ code: number | null; signal: string | null }> => {
    if (previous) await Promise.race([previous.catch(() => undefined), new Promise((r) => setTimeout(r, PREVIOUS_EXIT_WAIT_MS))]);
    // A console whose channel closed can hold the lock a while longer: its xenconsole exits once it handles the hang-up,
    // and is slow to report a held lock itself. Asked first, so that output never carries a refusal that a retry hides.
    for (const until = Date.now() + LOCK_WAIT_MS; !killed && Date.now() < until;) {
      if ((await xl.consoleLockFree(name).catch(() => null)) !== false) break;
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
    for (let attempt = 0; ; attempt++) {
      if (killed) return { code: null, signal: killed };
      const proc = xl.console(name, pendingSize ?? size);
      current = proc;
      // Output is held back, and input left waiting in stdin, until this attempt is attached: its first output is not
      // the refusal, or it is still running after ATTACHED_MS (xenconsole refuses at once).
      let held: Buffer[] | null = [];
      let refused = false;
      const onInput = (d: Buffer): void => { proc.stdin?.write(d); };
      const onEnd = (): void => { proc.stdin?.end(); };
      const attached = (): void => {
        if (held === null || refused) return;
        for (const b of held) stdout.write(b);
        held = null;
        stdin.on('data', onInput).once('end', onEnd).resume();
      };
      const timer = setTimeout(attached, ATTACHED_MS);
      proc.stdout?.on('data', (d: Buffer) => {
        if (held === null) { stdout.write(d); return; }
        held.push(d);
        const text = Buffer.concat(held).toString('utf8');
        // Line ends alone (a pty echoing a return) decide nothing: the refusal may still follow.
        if (LOCK_HELD.test(text)) refused = true;
        else if (text.trim() !== '') attached();
      });
      const res = await proc.wait();
      clearTimeout(timer);
      stdin.pause().off('data', onInput).off('end', onEnd);
      if (refused && attempt < RETRIES && !killed) {
        await new Promise((r) => setTimeout(r, RETRY_MS));
        continue;
      }
      if (held) for (const b of held) stdout.write(b);
      return res;
    }
  };
  const done = run().finally(() => stdout.end());
  tracker.set(name, done);
  void done.finally(() => { if (tracker.get(name) === done) tracker.delete(name); }).catch(() => undefined);
  return {
    pid: Promise.resolve(-1),
    stdin,
    stdout,
    stderr: null,
    wait: () => done,
    kill: (signal: NodeJS.Signals = 'SIGTERM') => { killed = signal; current?.kill(signal); },
    resize: (cols, rows) => { pendingSize = { cols, rows }; current?.resize?.(cols, rows); },
  };
}
