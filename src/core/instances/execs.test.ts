// Unit tests of the exec registry: ids listed per instance, signals by id, forgetting on exit, the disconnect signal and its SIGKILL after the grace.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import type { HostProcess } from '../../host/host.js';
import { ExecRegistry } from './execs.js';

/** A process that records the signals it gets and exits when told to. */
function fakeProc(): HostProcess & { signals: string[]; exit(): void } {
  let exit!: () => void;
  const done = new Promise<{ code: number | null; signal: string | null }>((r) => { exit = () => r({ code: 0, signal: null }); });
  const signals: string[] = [];
  return {
    pid: Promise.resolve(1234), stdin: null, stdout: null, stderr: null, signals,
    wait: () => done,
    kill: (s) => { signals.push(s ?? 'SIGTERM'); },
    exit: () => exit(),
  };
}

const flush = () => new Promise((r) => setImmediate(r));

afterEach(() => { vi.useRealTimers(); });

describe('ExecRegistry', () => {
  it('lists the execs of one instance with their ids, signals one by id, and forgets it once it exits', async () => {
    const reg = new ExecRegistry();
    const a = fakeProc();
    const b = fakeProc();
    const ea = reg.add('web1', a, { command: ['sleep', '9'], tty: false });
    const eb = reg.add('web2', b, { command: ['sh'], tty: true, disconnectSignal: 'SIGHUP' });
    expect(ea.id).not.toBe(eb.id);
    expect(reg.list('web1')).toEqual([{ id: ea.id, command: ['sleep', '9'], tty: false, startedAt: expect.any(String) as string, disconnectSignal: 'SIGKILL' }]);
    expect(reg.list('web2').map((e) => [e.id, e.disconnectSignal])).toEqual([[eb.id, 'SIGHUP']]);
    expect(reg.signal('web1', ea.id, 'SIGINT').id).toBe(ea.id);
    expect(a.signals).toEqual(['SIGINT']);
    // Another instance's exec is not reachable through this one's name.
    const err = (() => { try { reg.signal('web1', eb.id, 'SIGKILL'); return null; } catch (e) { return e; } })();
    expect(isAppError(err, 'NOT_FOUND')).toBe(true);
    expect(b.signals).toEqual([]);
    a.exit();
    await flush();
    expect(reg.list('web1')).toEqual([]);
    expect(isAppError((() => { try { return reg.signal('web1', ea.id, 'SIGINT'); } catch (e) { return e; } })(), 'NOT_FOUND')).toBe(true);
  });

  it('a disconnect sends SIGKILL by default, once', async () => {
    const reg = new ExecRegistry();
    const p = fakeProc();
    reg.add('web1', p, { command: ['true'], tty: false }).disconnected();
    expect(p.signals).toEqual(['SIGKILL']);
  });

  it('another disconnect signal is followed by SIGKILL after the grace unless the command ended', async () => {
    vi.useFakeTimers();
    const reg = new ExecRegistry(5_000);
    const stubborn = fakeProc();
    reg.add('web1', stubborn, { command: ['sh'], tty: false, disconnectSignal: 'SIGTERM' }).disconnected();
    expect(stubborn.signals).toEqual(['SIGTERM']);
    vi.advanceTimersByTime(4_999);
    expect(stubborn.signals).toEqual(['SIGTERM']);
    vi.advanceTimersByTime(1);
    expect(stubborn.signals).toEqual(['SIGTERM', 'SIGKILL']);

    const polite = fakeProc();
    reg.add('web1', polite, { command: ['sh'], tty: false, disconnectSignal: 'SIGHUP' }).disconnected();
    polite.exit();
    await vi.runAllTimersAsync();
    expect(polite.signals).toEqual(['SIGHUP']);
  });

  it('a process that cannot be signalled (a guest agent without kill) says why: the signal is refused, never pretended', () => {
    const reg = new ExecRegistry();
    const p = { ...fakeProc(), signalProblem: () => 'the guest agent cannot signal a process' };
    const e = reg.add('vm1', p, { command: ['sleep', '9'], tty: false });
    expect(reg.list('vm1').map((x) => x.id)).toEqual([e.id]);
    expect(() => reg.signal('vm1', e.id, 'SIGTERM')).toThrow(/guest agent cannot signal a process/);
    expect(p.signals).toEqual([]);
  });

  it('a disconnect after the command ended signals nothing', async () => {
    const reg = new ExecRegistry();
    const p = fakeProc();
    const e = reg.add('web1', p, { command: ['true'], tty: false });
    p.exit();
    await flush();
    e.disconnected();
    expect(p.signals).toEqual([]);
  });
});
