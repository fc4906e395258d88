// The fake driver in-process, without root: the conformance suite on a scripted host, and what only the fake models (its probe switch, its userland).
import { posix } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { ScriptedHost } from '../../src/host/scripted.js';
import { FAKE_INIT_MEMORY, fakeDriver, fakeWorld } from '../../src/drivers/fake/driver.js';
import type { HostDriver, InstanceHandle, InstanceRecord } from '../../src/drivers/driver.js';
import { isAppError } from '../../src/shared/errors.js';
import { resourcesOf, type InstanceConfig } from '../../src/shared/config.js';
import { driverEnv } from '../helpers/driver-env.js';
import { collect, runDriverConformance, type ObservedLimits } from '../conformance/driver-conformance.js';

const host = new ScriptedHost();
const prefix = `f${randomBytes(3).toString('hex')}`;
const base = `/var/lib/${prefix}`;
const env = driverEnv(host, { prefix, dataDir: base });
let fake: HostDriver;
const handles: InstanceHandle[] = [];

/** A record for a fake instance (its root volume is only a path: the fake keeps its files in memory). */
function makeRecord(short: string, config: InstanceConfig = {}): InstanceRecord {
  const name = `${prefix}-${short}`;
  return {
    name, host: host.name, type: 'container', driver: 'fake', image: 'busybox', config,
    rootPath: posix.join(base, 'roots', name), instanceDir: posix.join(base, 'instances', name),
    nic: { bridge: `${prefix}br`, hostIfName: `${prefix}v1`, mac: '02:00:00:00:00:01', ipv4: '10.0.0.2', prefixLength: 24, gateway: '10.0.0.1' },
    imageProps: {},
  };
}

/** Loads a handle on the opened fake and remembers it for cleanup. */
async function load(short: string, config: InstanceConfig = {}): Promise<{ handle: InstanceHandle; record: InstanceRecord }> {
  fake ??= await fakeDriver.open(env);
  const record = makeRecord(short, config);
  const handle = fake.load(record);
  handles.push(handle);
  return { handle, record };
}

afterAll(async () => {
  for (const h of handles) {
    await h.stop({ force: true, timeoutMs: 1000 }).catch(() => undefined);
    await h.delete().catch(() => undefined);
  }
  for (const name of [...fakeWorld.keys()]) if (name.startsWith(`${prefix}-`)) fakeWorld.delete(name);
});

runDriverConformance({
  driverName: 'fake',
  setup: async () => {
    fake = await fakeDriver.open(env);
    return {
      hostDriver: fake,
      host,
      makeHandle: (short, config) => load(short, config),
      artifacts: async (record) => [
        ...(fakeWorld.has(record.name) ? [`fake instance ${record.name}`] : []),
        ...(await host.fs.readdir(record.instanceDir)).filter((f) => host.text(posix.join(record.instanceDir, f)) !== undefined),
      ],
      observeLimits: async (_handle, record): Promise<ObservedLimits> => {
        const inst = fakeWorld.get(record.name);
        if (!inst) return {};
        const r = resourcesOf(inst.limits);
        return { memoryBytes: r.memoryMax ?? null, cpuCapPct: r.cpuCapPct ?? null, processes: r.processes ?? null, oomKills: inst.oomKills };
      },
      cleanup: async () => undefined,
    };
  },
  config: { 'limits.memory': '64MiB', 'limits.cpu': '1', 'limits.processes': '50' },
  restartOnly: { 'limits.cpu': '2' },
  unavailableSettings: { HANGAR_FAKE_UNAVAILABLE: 'off for the conformance probe' },
  skips: { snapshot: 'the fake has no backend snapshots (features.snapshots is false)' },
});

describe('fake driver', () => {
  it('an unavailable fake refuses to start, naming why', async () => {
    const off = await fakeDriver.open(driverEnv(host, { prefix, dataDir: base, settings: { HANGAR_FAKE_UNAVAILABLE: 'maintenance' } }));
    expect(off.probe).toEqual({ available: false, version: null, reason: 'switched off by HANGAR_FAKE_UNAVAILABLE: maintenance' });
    const record = makeRecord('off');
    const h = off.load(record);
    handles.push(h);
    await h.create();
    const err = await h.start().catch((e: unknown) => e);
    expect(isAppError(err, 'UNSUPPORTED')).toBe(true);
    expect((err as Error).message).toContain('maintenance');
    expect((await h.state()).state).toBe('stopped');
  });

  it('a command waits out a freeze, and fails once the instance stops', async () => {
    const { handle } = await load('frz', { 'limits.memory': '64MiB' });
    await handle.create();
    await handle.start();
    await handle.freeze();
    let done = false;
    const pending = collect(handle.exec({ command: ['echo', 'thawed'] })).then((r) => { done = true; return r; });
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    await handle.unfreeze();
    expect(await pending).toEqual({ code: 0, stdout: 'thawed\n', stderr: '' });
    await handle.stop({ force: false, timeoutMs: 1000 });
    const late = await collect(handle.exec({ command: ['true'] }));
    expect(late.code).toBe(1);
    expect(late.stderr).toContain('is not running');
  });

  it('a restart-only change waits for the next start; a live one counts at once', async () => {
    const { handle } = await load('cpu', { 'limits.memory': '64MiB', 'limits.cpu': '1' });
    await handle.create();
    await handle.start();
    const next = { 'limits.memory': '32MiB', 'limits.cpu': '2' };
    expect(await handle.applyConfig(next, { 'limits.memory': '64MiB', 'limits.cpu': '1' })).toEqual({ live: ['limits.memory'], pending: ['limits.cpu'] });
    expect((await collect(handle.exec({ command: ['nproc'] }))).stdout).toBe('1\n');
    // 32 MiB minus the init's 4 MiB leaves 28: tail holds its input and its line, so 12 MiB fits (24) and 20 MiB does not (40).
    const hog = (mib: number) => collect(handle.exec({ command: ['sh', '-c', `set -o pipefail; head -c ${mib}m /dev/zero | tail -n 1 | wc -c`] }));
    expect((await hog(12)).stdout).toBe(`${12 * 1024 ** 2}\n`);
    expect(await hog(20)).toEqual({ code: 137, stdout: '0\n', stderr: 'Killed\n' });
    await handle.stop({ force: true, timeoutMs: 1000 });
    await handle.start();
    expect((await collect(handle.exec({ command: ['nproc'] }))).stdout).toBe('2\n');
    expect((await handle.usage()).memoryBytes).toBe(FAKE_INIT_MEMORY);
  });

  it('the userland: quoting, $VAR, &&/||, files, cwd, and unknown commands', async () => {
    const { handle } = await load('sh', { 'limits.memory': '64MiB' });
    await handle.create();
    await handle.start();
    const sh = (script: string, opts: { env?: Record<string, string>; cwd?: string } = {}) => collect(handle.exec({ command: ['sh', '-c', script], ...opts }));
    expect((await sh('echo "a  b" \'$FOO\' "$FOO" ${FOO}x', { env: { FOO: 'f;g' } })).stdout).toBe('a  b $FOO f;g f;gx\n');
    expect((await sh('false && echo no || echo yes; echo $?')).stdout).toBe('yes\n0\n');
    expect((await sh('echo one > /tmp/f; echo two >> /tmp/f; cat /tmp/f | wc -l')).stdout).toBe('2\n');
    expect((await sh('pwd', { cwd: '/tmp' })).stdout).toBe('/tmp\n');
    expect((await collect(handle.exec({ command: ['true'], cwd: '/no/such' }))).code).toBe(126);
    expect(await sh('nosuch arg')).toEqual({ code: 127, stdout: '', stderr: 'nosuch: not found\n' });
    expect((await sh('echo "unterminated')).code).toBe(2);
    expect((await sh('echo a & echo b')).code).toBe(2);
    expect((await sh('echo $(echo "x)y")\r\n')).stdout).toBe('x)y\n');
    expect((await sh('sh -c "exit 4"; echo after $?')).stdout).toBe('after 4\n');
  });

  it('the console ends when the instance stops, and its log keeps the boot and what was shown', async () => {
    const { handle, record } = await load('con', { 'limits.memory': '64MiB' });
    await handle.create();
    await handle.start();
    const con = handle.attachConsole({ cols: 80, rows: 24 });
    let seen = '';
    con.stdout!.on('data', (d: Buffer) => { seen += d.toString('utf8'); });
    con.stdin!.write('echo hi\r');
    for (let i = 0; i < 20 && !seen.includes('# '); i++) await new Promise((r) => setTimeout(r, 10));
    expect(seen).toBe('echo hi\r\nhi\r\n# ');
    await handle.stop({ force: false, timeoutMs: 1000 });
    expect(await con.wait()).toEqual({ code: 0, signal: null });
    expect(host.text(handle.consoleLogPath())).toBe(`fake init: ${record.name} started\r\necho hi\r\nhi\r\n# fake init: ${record.name} halted\r\n`);
  });
});
