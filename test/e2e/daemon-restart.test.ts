// E2e: hangard killed (-9, SIGTERM, SIGINT) leaves containers running; the next hangard adopts them, reports drift, autostarts.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HangarEvent } from '../../src/shared/schemas.js';
import { cliAsync, cliOk, setSharedDaemon, sharedDaemon, startDaemon, stopDaemon, TEST_ENV, uniquePrefix, type TestDaemon } from '../helpers/daemon.js';
import { alive, collectEvents, daemonPid, deleteAllWithPrefix, findInstance, pollUntil, procStartTime, settings } from '../helpers/e2e.js';

const P = uniquePrefix('dr');
const A = `${P}a`;
const B = `${P}b`;
const C = `${P}c`;
const D = `${P}d`;
let d: TestDaemon;

/** Starts a fresh daemon and makes it the shared one. */
async function restartDaemon(): Promise<void> {
  d = await startDaemon(TEST_ENV);
  setSharedDaemon(d);
}

/** Drift events the daemon found at start-up (replayed from its history). */
async function replayedDrift(waitFor?: string): Promise<HangarEvent[]> {
  const sub = await collectEvents({ replay: true, types: ['instance-drift'] });
  try {
    // Replay is sent right after the upgrade; give it a moment to arrive, longer when we know what must come.
    await pollUntil(() => (waitFor ? sub.events.some((e) => e.instance === waitFor) : false), waitFor ? 100 : 5, 100);
    return [...sub.events];
  } finally {
    sub.close();
  }
}

/** Init pid and its start time of a running instance, as the CLI lists it. */
function initOf(name: string): { pid: number; start: string } {
  const i = findInstance(name);
  expect(i?.state, `${name} state`).toBe('running');
  expect(i?.pid, `${name} pid`).toBeTypeOf('number');
  const start = procStartTime(i!.pid!);
  expect(start, `start time of ${name}'s init ${i!.pid}`).not.toBeNull();
  return { pid: i!.pid!, start: start! };
}

beforeAll(async () => {
  d = await sharedDaemon();
  cliOk(['launch', 'busybox', A]);
  cliOk(['launch', 'busybox', B]);
});

afterAll(async () => {
  try {
    await daemonPid();
  } catch {
    await restartDaemon();
  }
  deleteAllWithPrefix(P);
});

describe('daemon restart', () => {
  it('kill -9: containers keep running, a stopped-behind-its-back one shows stopped and is reported as drift', async () => {
    const a0 = initOf(A);
    const b0 = initOf(B);
    const oldPid = await daemonPid();
    d.client.close();
    process.kill(oldPid, 'SIGKILL');
    expect(await pollUntil(() => !alive(oldPid)), 'hangard gone after SIGKILL').toBe(true);
    expect(alive(a0.pid)).toBe(true);

    const stop = spawnSync('lxc-stop', ['-n', B, '-P', settings.lxcPath, '-k'], { encoding: 'utf8' });
    expect(stop.status, stop.stderr).toBe(0);
    expect(await pollUntil(() => !alive(b0.pid)), `init of ${B} gone`).toBe(true);

    await restartDaemon();
    expect(d.pid).not.toBe(oldPid);

    const a1 = initOf(A);
    expect(a1).toEqual(a0);
    const b1 = findInstance(B);
    expect(b1?.state).toBe('stopped');
    expect(b1?.pid).toBeNull();

    const drift = await replayedDrift(B);
    const forB = drift.filter((e) => e.instance === B);
    expect(forB, JSON.stringify(drift)).toHaveLength(1);
    expect(forB[0]!.data).toMatchObject({ expected: 'running', actual: 'stopped' });
    expect(drift.filter((e) => e.instance === A), 'no drift for the untouched instance').toEqual([]);

    // The adopted state is usable: B starts again with a new init.
    cliOk(['start', B]);
    expect(initOf(B).pid).not.toBe(b0.pid);
  });

  it('kill -9 while an exec runs: its command outlives the daemon, and the next hangard ends it (exec-ended drift)', async () => {
    const marker = String(400_000 + (process.pid % 100_000));
    const sleeps = () => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try { return readFileSync(`/proc/${p}/cmdline`, 'utf8') === `sleep\0${marker}\0`; } catch { return false; }
    }).map(Number);
    const run = cliAsync(['exec', A, '--', 'sleep', marker]);
    expect(await pollUntil(() => sleeps().length === 1, 100, 100), 'the exec\'s sleep runs').toBe(true);
    const [pid] = sleeps();
    const oldPid = await daemonPid();
    d.client.close();
    process.kill(oldPid, 'SIGKILL');
    expect(await pollUntil(() => !alive(oldPid)), 'hangard gone after SIGKILL').toBe(true);
    expect((await run).code).not.toBe(0);
    // Nothing a client could do reaches it now: only the next daemon can end it.
    await new Promise((r) => setTimeout(r, 500));
    expect(alive(pid!), 'the command outlived its client and daemon').toBe(true);
    await restartDaemon();
    expect(await pollUntil(() => !alive(pid!), 50, 100), 'the orphaned exec ended by the next daemon').toBe(true);
    const drift = (await replayedDrift(A)).filter((e) => e.instance === A);
    expect(drift.map((e) => e.data?.repair)).toEqual(['exec-ended']);
    expect(initOf(A).pid).toBe(findInstance(A)!.pid);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal}: hangard exits, containers keep running with the same init, no drift on restart`, async () => {
      const a0 = initOf(A);
      const oldPid = await daemonPid();
      await stopDaemon(d, signal);
      expect(await pollUntil(() => !alive(oldPid)), `hangard gone after ${signal}`).toBe(true);
      expect(procStartTime(a0.pid)).toBe(a0.start);

      await restartDaemon();
      expect(initOf(A)).toEqual(a0);
      const drift = await replayedDrift();
      expect(drift.filter((e) => e.instance === A || e.instance === B)).toEqual([]);
    });
  }

  it('a container whose init is killed from outside is recorded stopped at once, with an event; boot.autorestart=on-failure starts it again', async () => {
    const E = `${P}e`;
    const F = `${P}f`;
    cliOk(['launch', 'busybox', E]);
    cliOk(['launch', 'busybox', F, '-c', 'boot.autorestart=on-failure']);
    const sub = await collectEvents({ types: ['instance-stopped', 'instance-restarted'] });
    try {
      const e0 = initOf(E);
      const f0 = initOf(F);
      process.kill(e0.pid, 'SIGKILL');
      process.kill(f0.pid, 'SIGKILL');
      // The event comes from the pidfd's wake-up, not a poll; the bound is only there to fail rather than hang.
      const stopped = await pollUntil(() => sub.events.some((e) => e.type === 'instance-stopped' && e.instance === E), 100, 50);
      expect(stopped, JSON.stringify(sub.events)).toBe(true);
      expect(sub.events.find((e) => e.type === 'instance-stopped' && e.instance === E)?.data).toEqual({ by: 'outside', pid: e0.pid });
      expect(findInstance(E)).toMatchObject({ state: 'stopped', pid: null });
      // The recorded state, not only the observed one: a daemon restart finds no drift for it.
      const restarted = await pollUntil(() => sub.events.some((e) => e.type === 'instance-restarted' && e.instance === F), 150, 100);
      expect(restarted, JSON.stringify(sub.events)).toBe(true);
      expect(sub.events.find((e) => e.type === 'instance-restarted' && e.instance === F)?.data).toMatchObject({ by: 'autorestart', attempt: 1 });
      const f1 = initOf(F);
      expect(f1.pid).not.toBe(f0.pid);
      // Stopped by Hangar itself, it is not restarted.
      cliOk(['stop', F, '--force']);
      await new Promise((r) => setTimeout(r, 1500));
      expect(findInstance(F)?.state).toBe('stopped');
      expect(sub.events.filter((e) => e.type === 'instance-restarted' && e.instance === F)).toHaveLength(1);
      expect(sub.events.filter((e) => e.type === 'instance-stopped' && e.instance === F).map((e) => e.data?.by ?? 'hangar')).toEqual(['outside', 'hangar']);
      expect(() => cliOk(['config', 'set', F, 'boot.autorestart=always'])).toThrow(/expected no or on-failure/);
    } finally {
      sub.close();
    }
    const oldPid = await daemonPid();
    await stopDaemon(d, 'SIGTERM');
    expect(await pollUntil(() => !alive(oldPid))).toBe(true);
    await restartDaemon();
    const drift = await replayedDrift();
    expect(drift.filter((e) => e.instance === E || e.instance === F)).toEqual([]);
  });

  it('boot.autostart=true: a created (never started) instance runs after a daemon restart; one without it stays stopped', async () => {
    cliOk(['create', 'busybox', C, '-c', 'boot.autostart=true']);
    cliOk(['create', 'busybox', D]);
    expect(findInstance(C)?.state).toBe('stopped');
    expect(findInstance(C)?.config['boot.autostart']).toBe('true');
    expect(findInstance(D)?.state).toBe('stopped');

    const oldPid = await daemonPid();
    await stopDaemon(d, 'SIGTERM');
    expect(await pollUntil(() => !alive(oldPid))).toBe(true);
    await restartDaemon();

    // Autostart runs after the API is up: poll (bounded) for it.
    const running = await pollUntil(() => findInstance(C)?.state === 'running', 150, 200);
    expect(running, `${C} autostarted; log:\n${d.logFile}`).toBe(true);
    expect(alive(findInstance(C)!.pid!)).toBe(true);
    expect(findInstance(D)?.state).toBe('stopped');
  });
});
