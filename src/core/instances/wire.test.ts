// Unit tests of the wire form of instances on remote hosts: a host that is down answers unknown at once, one that hangs within a bound, a local fault stays an error.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '../../shared/errors.js';
import type { HostDriver, InstanceHandle, ObservedState } from '../../drivers/driver.js';
import { fakeDriver } from '../../drivers/fake/driver.js';
import { DriverSet } from '../../drivers/registry.js';
import type { HostSnapshot } from '../../host/facts.js';
import { LocalHost } from '../../host/local.js';
import { StateDb, type InstanceRow } from '../db/database.js';
import { EventBus } from '../events.js';
import type { HostContext, HostDirectory, HostProblem } from '../hosts/context.js';
import type { ImageService } from '../images/service.js';
import { LockManager } from '../locks.js';
import { FakeNetwork } from '../network/fake-network.js';
import { DirectoryPool } from '../storage/directory-pool.js';
import type { InstanceServiceDeps } from './context.js';
import { toWire } from './wire.js';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

/** A driver whose instances answer state() with what the test gives (a promise that may never settle). */
function scriptedDriver(state: () => Promise<ObservedState>): HostDriver {
  const handle = { state, usage: async () => ({}), consoleLogPath: () => '/dev/null' } as unknown as InstanceHandle;
  return {
    driver: fakeDriver, probe: { available: true, version: '0', reason: null }, details: () => ({}),
    technology: () => fakeDriver.technology, validate: () => [], load: () => handle,
  };
}

/** Deps over one local and one remote host context; problem() of the remote one as the test says. */
function deps(remoteDriver: HostDriver, problem: () => HostProblem | undefined): InstanceServiceDeps {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-wire-'));
  dirs.push(dir);
  const host = new LocalHost();
  const ctx = (name: string, driver: HostDriver): HostContext => ({
    name, local: name === 'local', host, facts: { idmapIsolated: null } as unknown as HostSnapshot, drivers: DriverSet.of([driver]),
    pool: new DirectoryPool(host, { dir: join(dir, name) }), network: new FakeNetwork(), networkProblem: null, instancesDir: join(dir, name, 'instances'), poolSizeBytes: null,
  });
  const local = ctx('local', scriptedDriver(async () => { throw new Error('cgroup gone'); }));
  const remote = ctx('r1', remoteDriver);
  const hosts: HostDirectory = {
    local: () => local, has: (n) => n === 'local' || n === 'r1', up: () => [local],
    get: (n) => { if (n === 'local') return local; const p = problem(); if (p) throw new AppError('HOST_UNREACHABLE', p.reason); return remote; },
    problem: (n) => (n === 'local' ? undefined : problem()),
  };
  return { db: new StateDb(join(dir, 'state.db')), events: new EventBus(), locks: new LockManager(), images: {} as ImageService, hosts, prefix: 'hgw', memoryReserveBytes: 0, remoteReadTimeoutMs: 100 };
}

const row = (host: string): InstanceRow => ({
  name: 'w1', type: 'container', driver: 'fake', image: 'busybox', imageFingerprint: 'fp', config: {}, pendingConfig: {}, ipv4: '10.250.0.5', mac: '0a:00:00:00:00:05',
  expectedState: 'running', initPid: 7, initStartTime: 1, cpuset: null, idmapBlock: null, host, createdAt: 't', origin: null,
});

describe('toWire on hosts', () => {
  it('an instance of a host that is down is unknown at once, with the host\'s reason, and its driver is not asked', async () => {
    let asked = 0;
    const d = deps(scriptedDriver(async () => { asked++; return { state: 'running', pid: 1, startTime: 1 }; }), () => ({ reason: 'Host "r1" is unreachable: connect ECONNREFUSED', since: 's' }));
    const w = await toWire(d, row('r1'), true);
    expect(w).toMatchObject({ name: 'w1', host: 'r1', state: 'unknown', pid: null, error: { reason: 'Host "r1" is unreachable: connect ECONNREFUSED', since: 's' }, technology: fakeDriver.technology });
    expect(w.usage).toBeUndefined();
    expect(asked).toBe(0);
  });

  it('a remote host that does not answer is bounded: unknown, naming the host and the bound', async () => {
    const d = deps(scriptedDriver(() => new Promise<ObservedState>(() => undefined)), () => undefined);
    const t0 = Date.now();
    const w = await toWire(d, row('r1'), true);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(w).toMatchObject({ state: 'unknown', error: { reason: 'its state cannot be read: Host "r1" did not answer within 100 ms' } });
  });

  it('a connection that drops mid-read is unknown; a local driver fault stays an error', async () => {
    const d = deps(scriptedDriver(async () => { throw new AppError('HOST_UNREACHABLE', 'Host "r1" is unreachable: the connection dropped'); }), () => undefined);
    expect(await toWire(d, row('r1'), false)).toMatchObject({ state: 'unknown', error: { reason: expect.stringContaining('the connection dropped') } });
    expect(await toWire(d, row('local'), false)).toMatchObject({ state: 'error', error: { reason: 'its state cannot be read: cgroup gone' } });
  });
});
