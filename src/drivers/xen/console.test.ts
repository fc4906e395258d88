// Unit tests of attachXenConsole: it waits for the previous console of the domain, retries while xenconsole's lock is held, and passes guest output and input through.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { HostProcess } from '../../host/host.js';
import { attachXenConsole, type ConsoleTracker } from './console.js';
import type { Xl } from './xl.js';

/** A scripted `xl console` process: what it printed, what it was sent, and a way to end it. */
interface FakeConsole { proc: HostProcess; input: string[]; exit: (code: number) => void; print: (s: string) => void; startedAt: number }

/** An Xl whose console() hands out scripted processes, each set up by `script` (attempt number → behaviour). */
function fakeXl(script: (c: FakeConsole, attempt: number) => void, lock: Array<boolean | null> = []): { xl: Xl; started: FakeConsole[]; lockAsked: () => number } {
  const started: FakeConsole[] = [];
  let asked = 0;
  const xl = {
    // The lock's answers in order (free once they run out).
    consoleLockFree: async (): Promise<boolean | null> => { asked++; return lock.length ? lock.shift()! : true; },
    console: (): HostProcess => {
      const stdin = new PassThrough();
      const stdout = new PassThrough();
      let exit!: (code: number) => void;
      const ended = new Promise<{ code: number | null; signal: string | null }>((r) => { exit = (code) => { stdout.end(); r({ code, signal: null }); }; });
      const c: FakeConsole = {
        proc: { pid: Promise.resolve(1), stdin, stdout, stderr: null, wait: () => ended, kill: () => exit(129) },
        input: [], exit, print: (s) => stdout.write(s), startedAt: Date.now(),
      };
      stdin.on('data', (d: Buffer) => c.input.push(d.toString()));
      started.push(c);
      setImmediate(() => script(c, started.length - 1));
      return c.proc;
    },
  } as unknown as Xl;
  return { xl, started, lockAsked: () => asked };
}

const read = (p: HostProcess): Promise<string> => new Promise((r) => { let s = ''; p.stdout!.on('data', (d: Buffer) => { s += d.toString(); }).on('end', () => r(s)); });
const SIZE = { cols: 80, rows: 24 };

describe('attachXenConsole', () => {
  it('retries while xenconsole reports its lock held, hiding the refusals, then relays output and input of the attached one', async () => {
    const { xl, started } = fakeXl((c, n) => {
      if (n < 2) { c.print('\r\nxenconsole: Could not lock /var/lock/xenconsole.3: Resource temporarily unavailable\r\n'); c.exit(1); return; }
      c.print('guest login: ');
    });
    const con = attachXenConsole(xl, 'd1', SIZE, new Map());
    const out = read(con);
    con.stdin!.write('root\r');
    await new Promise((r) => setTimeout(r, 700));
    expect(started).toHaveLength(3);
    expect(started[2]!.input.join('')).toBe('root\r');
    started[2]!.exit(0);
    expect(await out).toBe('guest login: ');
    expect(await con.wait()).toEqual({ code: 0, signal: null });
  });

  it('passes a refusal through once the retries are spent, and other failures at once', async () => {
    const held = fakeXl((c) => { c.print('xenconsole: Could not lock /var/lock/xenconsole.3: Resource temporarily unavailable\n'); c.exit(1); });
    const con = attachXenConsole(held.xl, 'd1', SIZE, new Map());
    expect(await read(con)).toMatch(/^xenconsole: Could not lock/);
    expect((await con.wait()).code).toBe(1);
    expect(held.started.length).toBe(16);
    const gone = fakeXl((c) => { c.print('xl: domain d2 does not exist\n'); c.exit(1); });
    const con2 = attachXenConsole(gone.xl, 'd2', SIZE, new Map());
    expect(await read(con2)).toBe('xl: domain d2 does not exist\n');
    expect(gone.started).toHaveLength(1);
  }, 20_000);

  it('waits while the lock is held before running xl console, and goes ahead when the lock cannot be told', async () => {
    const held = fakeXl((c) => c.print('login: '), [false, false, true]);
    const con = attachXenConsole(held.xl, 'd1', SIZE, new Map());
    await new Promise((r) => setTimeout(r, 250));
    expect(held.started).toHaveLength(0);
    await new Promise((r) => setTimeout(r, 400));
    expect(held.started).toHaveLength(1);
    expect(held.lockAsked()).toBe(3);
    con.kill();
    const unknown = fakeXl((c) => c.print('login: '), [null]);
    const con2 = attachXenConsole(unknown.xl, 'd1', SIZE, new Map());
    await new Promise((r) => setTimeout(r, 50));
    expect(unknown.started).toHaveLength(1);
    con2.kill();
  });

  it('a second console of the same domain starts only after the first one exited', async () => {
    const tracker: ConsoleTracker = new Map();
    const { xl, started } = fakeXl(() => undefined);
    const first = attachXenConsole(xl, 'd1', SIZE, tracker);
    const second = attachXenConsole(xl, 'd1', SIZE, tracker);
    await new Promise((r) => setTimeout(r, 200));
    expect(started).toHaveLength(1);
    first.kill();
    await first.wait();
    await new Promise((r) => setTimeout(r, 50));
    expect(started).toHaveLength(2);
    second.kill();
    expect((await second.wait()).code).toBe(129);
    expect(tracker.size).toBe(0);
  });
});
