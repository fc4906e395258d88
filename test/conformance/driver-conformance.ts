// Reusable vitest suite: the same scenario (probe, validate, lifecycle, console, enforced limits, live config) against any driver, with declared skips named by reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Host, HostProcess } from '../../src/host/host.js';
import { ScriptedHost } from '../../src/host/scripted.js';
import type { HostDriver, InstanceHandle, InstanceRecord } from '../../src/drivers/driver.js';
import { ALL_DRIVERS } from '../../src/drivers/registry.js';
import { CONFIG_KEYS, keyAllowed, resourcesOf, unsupportedKeys, validateConfig, type InstanceConfig } from '../../src/shared/config.js';
import { AppError, isAppError, type ErrorCode } from '../../src/shared/errors.js';
import { AcceleratorInfoSchema, DriverFeaturesSchema, TechnologySchema } from '../../src/shared/schemas.js';
import { driverEnv } from '../helpers/driver-env.js';

/** Steps of the scenario, in order; skips are keyed by these names. */
export const CONFORMANCE_STEPS = [
  'probe', 'validate', 'create', 'start', 'exec', 'console', 'limits', 'apply-config', 'freeze', 'snapshot', 'stop-graceful', 'restart', 'stop-force', 'delete',
] as const;

/** A step name. */
export type ConformanceStep = (typeof CONFORMANCE_STEPS)[number];

/** Limits as the backend enforces them, read from the backend itself (cgroup files, QEMU's monitor, the fake's records); null: none. */
export interface ObservedLimits {
  memoryBytes?: number | null;
  /** CPU time cap in percent of one CPU. */
  cpuCapPct?: number | null;
  processes?: number | null;
  /** Processes the backend's OOM killer has ended so far (cgroup memory events, a guest kernel's /proc/vmstat). */
  oomKills?: number;
}

/** What a driver's test sets up for the suite. */
export interface ConformanceEnv {
  /** The driver opened on the host the suite runs on. */
  hostDriver: HostDriver;
  /** That host (the suite reads console logs through it). */
  host: Host;
  /** A handle for an instance with this name and config: its root volume made, nothing of the driver's own yet. */
  makeHandle(name: string, config: InstanceConfig): Promise<{ handle: InstanceHandle; record: InstanceRecord }>;
  /** What the driver keeps on the host for the instance (files, cgroups, processes, links): none before create and after delete. */
  artifacts(record: InstanceRecord): Promise<string[]>;
  /** The limits the backend enforces on the running instance, read from the backend (not from the record). */
  observeLimits(handle: InstanceHandle, record: InstanceRecord): Promise<ObservedLimits>;
  /** Undoes everything setup did, even after failures. */
  cleanup(): Promise<void>;
}

/** What a driver's test provides to the suite. */
export interface ConformanceOptions {
  driverName: string;
  /** Prepares the environment (bridge, rootfs, ...); cleanup must undo everything, even after failures. */
  setup: () => Promise<ConformanceEnv>;
  /** Config of the suite's instance; limits.memory is required (the limits step checks the backend enforces it). */
  config: InstanceConfig;
  /** A change the driver takes only at the next start (answered pending by applyConfig on a running instance). */
  restartOnly?: InstanceConfig;
  /** User the console's login prompt (if any) lets in without a password. */
  consoleLogin?: string;
  /** Settings with which the driver's probe fails on a host without its tools (real backends need none: their tools are missing there). */
  unavailableSettings?: Record<string, string>;
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

/**
 * The checks a config passes before anything of an instance exists, in the order InstanceService.validateFor makes
 * them (without the daemon's own host-size checks): values (shared parsers), the driver's keys, the driver's validate.
 */
export function admit(hd: HostDriver, config: InstanceConfig): InstanceConfig {
  const validated = validateConfig(config);
  const problems = unsupportedKeys(validated, hd.driver.keys).map((k) => `${k} is not supported by the ${hd.driver.name} backend`);
  problems.push(...hd.validate(validated));
  if (problems.length > 0) throw new AppError('UNSUPPORTED', `Invalid config on the ${hd.driver.name} backend: ${problems.join('; ')}`, { details: { problems } });
  return validated;
}

/** Polls fn until it returns true (bounded); answers whether it did. */
async function eventually(fn: () => Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Known keys with a valid value, one of which each driver does not declare (the suite sets it to see it refused). */
const FOREIGN_KEYS: [string, string][] = [['security.privileged', 'true'], ['boot.kernel', '/boot/vmlinuz'], ['limits.memory.swap', '64MiB'], ['limits.disk.read', '10MiB']];

const MIB = 1024 ** 2;

/** A pipeline that makes the shell hold `bytes` of memory (tail keeps a line without newline whole) and prints how many it got. */
const hogScript = (bytes: number) => `set -o pipefail; head -c ${bytes} /dev/zero | tail -n 1 | wc -c`;

/** Registers the conformance suite for one driver. */
export function runDriverConformance(opts: ConformanceOptions): void {
  const skips = opts.skips ?? {};
  const name = opts.instanceName ?? 'conf1';
  const stopTimeoutMs = opts.stopTimeoutMs ?? 30_000;
  const settleMs = Math.max(30_000, Math.floor((opts.stepTimeoutMs ?? 120_000) / 3));

  describe(`driver conformance: ${opts.driverName}`, () => {
    let env: ConformanceEnv | undefined;
    let handle: InstanceHandle;
    let record: InstanceRecord;
    let firstStart: { pid: number | null; startTime: number | null } = { pid: null, startTime: null };

    beforeAll(async () => {
      if (resourcesOf(opts.config).memoryMax === undefined) throw new Error('the conformance config must set limits.memory');
      env = await opts.setup();
      ({ handle, record } = await env.makeHandle(name, opts.config));
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
    const sh = (script: string) => run(['sh', '-c', script]);
    const observe = () => env!.observeLimits(handle, record);

    step('probe', async () => {
      const hd = env!.hostDriver;
      const d = hd.driver;
      expect(ALL_DRIVERS.filter((x) => x.name === opts.driverName)).toEqual([d]);
      expect(d.type).toBe(record.type);
      expect(['tree', 'image']).toContain(d.storage);
      expect(DriverFeaturesSchema.safeParse(d.features).success).toBe(true);
      expect(TechnologySchema.safeParse(d.technology).success).toBe(true);
      expect(TechnologySchema.safeParse(hd.technology(record.config)).success).toBe(true);
      // Available here: its version, and no reason.
      expect(hd.probe).toEqual({ available: true, version: expect.stringMatching(/\S/), reason: null });
      const details = hd.details();
      expect(Object.keys(details).length).toBeGreaterThan(0);
      for (const [label, value] of Object.entries(details)) expect(typeof value === 'string' && label.trim() !== '', `${label}: ${String(value)}`).toBe(true);
      if (d.type === 'vm') expect(AcceleratorInfoSchema.safeParse(hd.accelerator?.()).success).toBe(true);
      // The features promise exactly what the handle has.
      expect(handle.snapshots !== undefined).toBe(d.features.snapshots);
      expect(handle.openGraphicalConsole !== undefined).toBe(d.features.graphicalConsole);
      expect(handle.monitor !== undefined).toBe(d.features.monitor);
      if (d.features.console) expect(skips.console).toBeUndefined();
      if (d.features.freeze) expect(skips.freeze).toBeUndefined();

      // On a host without its tools the driver still opens, and says why it is unavailable.
      const bare = new ScriptedHost(() => new Error('ENOENT: no such file or directory'), { name: 'bare' });
      const down = await d.open(driverEnv(bare, { settings: opts.unavailableSettings ?? {} }));
      expect(down.driver).toBe(d);
      expect(down.probe.available).toBe(false);
      expect(down.probe.version).toBeNull();
      expect(down.probe.reason).toMatch(/\S/);
      expect(typeof down.details()).toBe('object');
    });

    step('validate', async () => {
      const hd = env!.hostDriver;
      const keys = hd.driver.keys;
      expect(await env!.artifacts(record)).toEqual([]);
      expect(admit(hd, record.config)).toEqual(record.config);
      // Every declared key is one the shared parsers know: otherwise no config could ever set it.
      for (const k of keys) expect(Object.hasOwn(CONFIG_KEYS, k) || k.endsWith('.*'), k).toBe(true);
      const foreign = FOREIGN_KEYS.find(([k]) => !keyAllowed(k, keys));
      if (!foreign) throw new Error(`${hd.driver.name} declares every key of FOREIGN_KEYS: add one it does not take`);
      const cases: { what: string; change: InstanceConfig; code: ErrorCode; names: string }[] = [
        { what: 'a key the driver does not declare', change: { [foreign[0]]: foreign[1] }, code: 'UNSUPPORTED', names: foreign[0] },
        { what: 'an unknown key', change: { 'limits.bogus': '1' }, code: 'INVALID_CONFIG', names: 'limits.bogus' },
        { what: 'a negative memory size', change: { 'limits.memory': '-64MiB' }, code: 'INVALID_SIZE', names: 'limits.memory' },
        { what: 'a memory size that is no size', change: { 'limits.memory': 'lots' }, code: 'INVALID_SIZE', names: 'limits.memory' },
        { what: 'more memory than any host has', change: { 'limits.memory': '1024TiB' }, code: 'UNSUPPORTED', names: 'limits.memory' },
        { what: 'less memory than the backend needs', change: { 'limits.memory': '1MiB' }, code: 'UNSUPPORTED', names: 'limits.memory' },
      ];
      if (keyAllowed('limits.processes', keys)) cases.push({ what: 'zero processes', change: { 'limits.processes': '0' }, code: 'INVALID_CONFIG', names: 'limits.processes' });
      if (keyAllowed('limits.cpu', keys)) cases.push({ what: 'more CPUs than the host has', change: { 'limits.cpu': '4096' }, code: 'UNSUPPORTED', names: 'limits.cpu' });
      if (keyAllowed('limits.cpu.weight', keys)) cases.push({ what: 'a CPU weight out of range', change: { 'limits.cpu.weight': '20000' }, code: 'INVALID_CONFIG', names: 'limits.cpu.weight' });
      for (const c of cases) {
        const bad = { ...record.config, ...c.change };
        const err = (() => { try { admit(hd, bad); return undefined; } catch (e) { return e; } })();
        expect(isAppError(err, c.code), `${c.what}: ${String(err)}`).toBe(true);
        expect((err as Error).message, c.what).toContain(c.names);
        // Loading a handle for it is no side effect either.
        expect((await hd.load({ ...record, config: bad }).state()).state, c.what).toBe('stopped');
      }
      expect(await env!.artifacts(record)).toEqual([]);
    });

    step('create', async () => {
      await handle.create();
      expect((await handle.state()).state).toBe('stopped');
      expect((await env!.artifacts(record)).length).toBeGreaterThan(0);
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
      const r = await sh('echo hello-from-$(hostname); echo oops >&2; exit 3');
      expect(r.stdout.trim()).toBe(`hello-from-${record.name}`);
      expect(r.stderr).toContain('oops');
      expect(r.code).toBe(3);
      const withStdin = await collect(handle.exec({ command: ['cat'] }), 'piped input\n');
      expect(withStdin.stdout).toBe('piped input\n');
      expect(withStdin.code).toBe(0);
    });

    step('console', async () => {
      const con = handle.attachConsole({ cols: 80, rows: 24 });
      let seen = '';
      con.stdout!.on('data', (d: Buffer) => { seen += d.toString('utf8'); });
      // The typed line holds "$(hostname)"; only the shell that ran it prints the marker.
      const marker = `console-${record.name}`;
      // What the terminal shows, without its control sequences (a shell asks where the cursor is after its prompt).
      const shown = () => seen.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
      const prompt = /(login:|[#$>])\s*$/;
      const login = /login:\s*$/;
      try {
        expect(await eventually(async () => { con.stdin!.write('\r'); await new Promise((r) => setTimeout(r, 250)); return prompt.test(shown()); }, settleMs), `a prompt on the console; got ${JSON.stringify(seen.slice(-200))}`).toBe(true);
        if (login.test(shown())) {
          if (!opts.consoleLogin) throw new Error(`the console asks for a login: set consoleLogin (got ${JSON.stringify(seen.slice(-200))})`);
          seen = '';
          con.stdin!.write(`${opts.consoleLogin}\r`);
          expect(await eventually(async () => /[#$]\s*$/.test(shown()), settleMs), `a shell after logging in; got ${JSON.stringify(seen.slice(-200))}`).toBe(true);
        }
        con.stdin!.write('echo console-$(hostname)\r');
        expect(await eventually(async () => seen.includes(marker), settleMs), `the console ran the line; got ${JSON.stringify(seen.slice(-300))}`).toBe(true);
      } finally {
        con.kill('SIGKILL');
        await con.wait();
      }
      // Detaching leaves the instance running and usable, and what the console showed is in its log.
      expect((await handle.state()).state).toBe('running');
      expect((await run(['true'])).code).toBe(0);
      expect(await eventually(async () => ((await env!.host.fs.readTextIfExists(handle.consoleLogPath())) ?? '').includes(marker), 10_000)).toBe(true);
    });

    step('limits', async () => {
      const u = await handle.usage();
      expect(typeof u.cpuTimeNs).toBe('number');
      expect(u.memoryBytes).toBeGreaterThan(0);
      // A container's processes are host processes the driver can count; a VM's run inside its guest kernel.
      if (record.type === 'container') expect(u.processes).toBeGreaterThanOrEqual(1);
      expect(typeof u.rxBytes).toBe('number');
      expect(typeof u.txBytes).toBe('number');

      // The backend holds the configured limits, read back from the backend itself.
      const want = resourcesOf(record.config);
      const limit = want.memoryMax!;
      const seen = await observe();
      expect(seen.memoryBytes).toBe(limit);
      if (seen.cpuCapPct !== undefined) expect(seen.cpuCapPct).toBe(want.cpuCapPct ?? null);
      if (seen.processes !== undefined) expect(seen.processes).toBe(want.processes ?? null);
      if (want.cpuCount !== undefined) expect((await run(['nproc'])).stdout.trim()).toBe(String(want.cpuCount));

      // And enforces the memory limit: a quarter of it can be held, twice it cannot; the instance survives the kill.
      const small = Math.floor(limit / 4);
      const fits = await sh(hogScript(small));
      expect(fits.stdout.trim(), fits.stderr).toBe(String(small));
      expect(fits.code).toBe(0);
      if (record.type === 'container') expect((await handle.usage()).memoryPeakBytes).toBeGreaterThan(small);
      const before = seen.oomKills;
      expect(typeof before).toBe('number');
      const big = 2 * limit;
      const hog = await sh(hogScript(big));
      expect(hog.code).not.toBe(0);
      expect(hog.stdout.trim()).not.toBe(String(big));
      expect((await observe()).oomKills).toBeGreaterThan(before!);
      expect((await handle.state()).state).toBe('running');
      expect((await run(['true'])).code).toBe(0);
    });

    step('apply-config', async () => {
      const hd = env!.hostDriver;
      const prev = record.config;
      const was = resourcesOf(prev);
      const memory = Math.floor((was.memoryMax! * 3) / 4 / MIB) * MIB;
      const liveChange: InstanceConfig = { 'limits.memory': `${memory / MIB}MiB`, ...(keyAllowed('limits.cpu.cap', hd.driver.keys) ? { 'limits.cpu.cap': '50%' } : {}) };
      const next = admit(hd, { ...prev, ...liveChange, ...opts.restartOnly });
      const changed = Object.keys({ ...liveChange, ...opts.restartOnly }).sort();
      const answers = (res: { live: string[]; pending: string[] }) => {
        // Every changed key is answered once: applied now, or waiting for a restart.
        expect([...res.live, ...res.pending].sort()).toEqual(changed);
        expect(res.live.sort()).toEqual(Object.keys(liveChange).sort());
        expect(res.pending.sort()).toEqual(Object.keys(opts.restartOnly ?? {}).sort());
      };
      const matches = async (mem: number, cap: number | null) => {
        const o = await observe();
        return o.memoryBytes === mem && (o.cpuCapPct === undefined || o.cpuCapPct === cap);
      };
      let reverted = false;
      try {
        answers(await handle.applyConfig(next, prev));
        expect(await eventually(() => matches(memory, liveChange['limits.cpu.cap'] ? 50 : null), settleMs), `new limits in force: ${JSON.stringify(await observe())}`).toBe(true);
        expect((await handle.state()).state).toBe('running');
        // And back: lifting and raising limits live works as well.
        reverted = true;
        answers(await handle.applyConfig(prev, next));
        expect(await eventually(() => matches(was.memoryMax!, was.cpuCapPct ?? null), settleMs), `old limits in force: ${JSON.stringify(await observe())}`).toBe(true);
      } finally {
        if (!reverted) await handle.applyConfig(prev, next).catch(() => undefined);
      }
      expect((await run(['true'])).code).toBe(0);
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
      const token = (t: string) => sh(`echo ${t} > ${file}`);
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
      expect(await env!.artifacts(record)).toEqual([]);
      await expect(handle.start()).rejects.toThrow();
    });
  });
}
