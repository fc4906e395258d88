// Reusable vitest suite: the same lifecycle scenario against any driver, with declared skips named by reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostProcess } from '../../src/core/host/host.js';
import type { InstanceHandle, InstanceRecord } from '../../src/drivers/driver.js';

/** Steps of the scenario, in order; skips are keyed by these names. */
export const CONFORMANCE_STEPS = [
  'create', 'start', 'exec', 'limits', 'freeze', 'snapshot', 'stop-graceful', 'restart', 'stop-force', 'delete',
] as const;

/** A step name. */
export type ConformanceStep = (typeof CONFORMANCE_STEPS)[number];

/** What a driver's test provides to the suite. */
export interface ConformanceOptions {
  driverName: string;
  /** Prepares the environment (bridge, rootfs, ...) and makes handles; cleanup must undo everything, even after failures. */
  setup: () => Promise<{
    makeHandle(name: string): Promise<{ handle: InstanceHandle; record: InstanceRecord }>;
    cleanup(): Promise<void>;
  }>;
  /** Steps to skip, each with the reason shown in the test name. */
  skips?: Partial<Record<ConformanceStep, string>>;
  /** Instance name used by the suite (default "conf1"). */
  instanceName?: string;
  /** Graceful stop timeout (default 30 s). */
  stopTimeoutMs?: number;
}

/** Runs a process to completion and collects its output. */
export async function collect(p: HostProcess, input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  p.stdout?.on('data', (d: Buffer) => out.push(Buffer.from(d)));
  p.stderr?.on('data', (d: Buffer) => err.push(Buffer.from(d)));
  if (p.stdin) p.stdin.end(input ?? '');
  const { code } = await p.wait();
  return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

/** Registers the conformance suite for one driver. */
export function runDriverConformance(opts: ConformanceOptions): void {
  const skips = opts.skips ?? {};
  const name = opts.instanceName ?? 'conf1';
  const stopTimeoutMs = opts.stopTimeoutMs ?? 30_000;

  describe(`driver conformance: ${opts.driverName}`, () => {
    let env: Awaited<ReturnType<ConformanceOptions['setup']>> | undefined;
    let handle: InstanceHandle;
    let record: InstanceRecord;
    let firstStart: { pid: number | null; startTime: number | null } = { pid: null, startTime: null };

    beforeAll(async () => {
      env = await opts.setup();
      ({ handle, record } = await env.makeHandle(name));
    });

    afterAll(async () => {
      try {
        if (handle) {
          await handle.stop({ force: true, timeoutMs: 10_000 }).catch(() => undefined);
          await handle.delete().catch(() => undefined);
        }
      } finally {
        await env?.cleanup();
      }
    });

    const step = (s: ConformanceStep, fn: () => Promise<void>) => {
      const reason = skips[s];
      if (reason !== undefined) it.skip(`${s} (skipped: ${reason})`, fn);
      else it(s, fn);
    };

    const run = async (command: string[]) => collect(handle.exec({ command }));

    step('create', async () => {
      await handle.create();
      expect((await handle.state()).state).toBe('stopped');
    });

    step('start', async () => {
      await handle.start();
      const st = await handle.state();
      expect(st.state).toBe('running');
      expect(st.pid).toBeGreaterThan(0);
      expect(st.startTime).toBeGreaterThan(0);
      firstStart = { pid: st.pid, startTime: st.startTime };
    });

    step('exec', async () => {
      const r = await run(['sh', '-c', 'echo hello-from-$(hostname); echo oops >&2; exit 3']);
      expect(r.stdout.trim()).toBe(`hello-from-${record.name}`);
      expect(r.stderr).toContain('oops');
      expect(r.code).toBe(3);
      const withStdin = await collect(handle.exec({ command: ['cat'] }), 'piped input\n');
      expect(withStdin.stdout).toBe('piped input\n');
      expect(withStdin.code).toBe(0);
    });

    step('limits', async () => {
      const u = await handle.usage();
      expect(typeof u.cpuTimeNs).toBe('number');
      expect(u.memoryBytes).toBeGreaterThan(0);
      expect(u.processes).toBeGreaterThanOrEqual(1);
      expect(typeof u.rxBytes).toBe('number');
      expect(typeof u.txBytes).toBe('number');
    });

    step('freeze', async () => {
      await handle.freeze();
      expect((await handle.state()).state).toBe('frozen');
      await handle.unfreeze();
      expect((await handle.state()).state).toBe('running');
      expect((await run(['true'])).code).toBe(0);
    });

    step('snapshot', async () => {
      throw new Error('InstanceHandle has no snapshot API: declare a skip naming who takes snapshots for this driver');
    });

    step('stop-graceful', async () => {
      await handle.stop({ force: false, timeoutMs: stopTimeoutMs });
      expect((await handle.state()).state).toBe('stopped');
    });

    step('restart', async () => {
      await handle.start();
      const st = await handle.state();
      expect(st.state).toBe('running');
      expect(st.startTime === firstStart.startTime && st.pid === firstStart.pid).toBe(false);
      expect((await run(['true'])).code).toBe(0);
    });

    step('stop-force', async () => {
      await handle.stop({ force: true, timeoutMs: stopTimeoutMs });
      expect((await handle.state()).state).toBe('stopped');
    });

    step('delete', async () => {
      await handle.delete();
      expect((await handle.state()).state).toBe('stopped');
      await expect(handle.start()).rejects.toThrow();
    });
  });
}
