// Reusable vitest suite: the same lifecycle scenario against any driver, with declared skips named by reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostProcess } from '../../src/host/host.js';
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
  /** Timeout of each step's test (default: vitest's testTimeout); VMs under software emulation need more. */
  stepTimeoutMs?: number;
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
      else it(s, fn, opts.stepTimeoutMs);
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
      // A container's processes are host processes the driver can count; a VM's run inside its guest kernel.
      if (record.type === 'container') expect(u.processes).toBeGreaterThanOrEqual(1);
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
      const snapshots = handle.snapshots;
      if (!snapshots) throw new Error('InstanceHandle has no snapshot API: declare a skip naming who takes snapshots for this driver');
      // /run is a tmpfs: the token lives only in the instance's RAM, so getting it back proves the memory was restored.
      const file = '/run/hangar-conformance-token';
      const token = (t: string) => run(['sh', '-c', `echo ${t} > ${file}`]);
      const snap = 'conformance';
      expect((await token('before-snapshot')).code).toBe(0);
      await snapshots.create(snap, { stateful: true });
      try {
        expect((await handle.state()).state).toBe('running');
        expect((await token('after-snapshot')).code).toBe(0);
        expect((await run(['cat', file])).stdout).toBe('after-snapshot\n');
        await snapshots.restore(snap, { stateful: true });
        expect((await handle.state()).state).toBe('running');
        const back = await run(['cat', file]);
        expect(back.stdout).toBe('before-snapshot\n');
        expect(back.code).toBe(0);
      } catch (err) {
        // The first failure is the one to report; deleting the snapshot is then only tidying up.
        await snapshots.delete(snap).catch(() => undefined);
        throw err;
      }
      await snapshots.delete(snap);
      expect((await run(['true'])).code).toBe(0);
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
