// Unit tests of QmpClient against the scripted FakeQmpPeer on a unix socket in a temporary directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalHost } from '../../../host/local.js';
import { AppError, isAppError } from '../../../shared/errors.js';
import { QmpClient, eventTimeMs, isQmpDisconnect, type QmpEvent } from './client.js';
import { FakeQmpPeer, type FakeQmpRequest } from './fake-peer.js';

const host = new LocalHost();
let dir: string;
let sockPath: string;
let peer: FakeQmpPeer;
let server: Server | undefined;
const clients: QmpClient[] = [];

function listen(p: FakeQmpPeer): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer((c) => p.accept(c));
    s.once('error', reject);
    s.listen(sockPath, () => resolve(s));
  });
}

async function connect(opts?: Parameters<typeof QmpClient.connect>[2]): Promise<QmpClient> {
  const c = await QmpClient.connect(host, sockPath, opts);
  clients.push(c);
  return c;
}

async function rejection(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error('expected a rejection');
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hangar-qmp-'));
  sockPath = join(dir, 'qmp.sock');
  peer = new FakeQmpPeer();
  server = await listen(peer);
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  peer.closeAll();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

describe('QmpClient handshake', () => {
  it('reads the greeting and sends qmp_capabilities before anything else', async () => {
    peer.handle('query-status', { return: { status: 'running', singlestep: false, running: true } });
    const c = await connect();
    expect(c.greeting?.QMP.version.qemu).toEqual({ micro: 22, minor: 2, major: 7 });
    expect(peer.received.map((r) => r.execute)).toEqual(['qmp_capabilities']);
    expect(await c.queryStatus()).toEqual({ status: 'running', singlestep: false, running: true });
    expect(peer.protocolErrors).toEqual([]);
    expect(c.connected).toBe(true);
  });

  it('retries while the socket does not exist yet, and fails fast without retryForMs', async () => {
    await new Promise<void>((r) => server!.close(() => r()));
    server = undefined;
    const err = await rejection(QmpClient.connect(host, sockPath));
    expect(err.code).toBe('BACKEND_FAILED');
    expect(err.message).toContain(sockPath);
    const started = Date.now();
    setTimeout(() => { void listen(peer).then((s) => { server = s; }); }, 150);
    const c = await connect({ retryForMs: 3000 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(c.greeting).toBeDefined();
  });

  it('times out when no greeting comes (another client holds the socket)', async () => {
    const first = await connect();
    const err = await rejection(QmpClient.connect(host, sockPath, { timeoutMs: 200 }));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toMatch(/greeting/);
    expect(first.connected).toBe(true);
  });
});

describe('QmpClient commands', () => {
  it('matches out-of-order replies by id, sent in one chunk', async () => {
    const got: FakeQmpRequest[] = [];
    peer.handle('query-a', (req) => { got.push(req); return undefined; });
    peer.handle('query-b', (req) => { got.push(req); return undefined; });
    const c = await connect();
    const a = c.execute<{ name: string }>('query-a', { x: 1 });
    const b = c.execute<{ name: string }>('query-b');
    await peer.waitForCommand('query-b');
    const [ra, rb] = [got[0]!, got[1]!];
    expect(ra.arguments).toEqual({ x: 1 });
    expect(rb.arguments).toBeUndefined();
    expect(typeof ra.id).toBe('number');
    expect(rb.id).toBeGreaterThan(ra.id as number);
    peer.sendRaw(peer.replyLine(rb, { return: { name: 'b' } }) + peer.replyLine(ra, { return: { name: 'a' } }));
    expect(await a).toEqual({ name: 'a' });
    expect(await b).toEqual({ name: 'b' });
  });

  it('reassembles replies and events split across chunks (including inside a UTF-8 character)', async () => {
    let pendingReq: FakeQmpRequest | undefined;
    peer.handle('query-name', (req) => { pendingReq = req; return undefined; });
    const c = await connect();
    const events: QmpEvent[] = [];
    c.on('*', (ev) => events.push(ev));
    const p = c.execute<{ name: string }>('query-name');
    await peer.waitForCommand('query-name');
    const text = peer.eventLine('RESET', { guest: true, reason: 'guest-reset' })
      + peer.replyLine(pendingReq!, { return: { name: 'vm-é€😀' } })
      + peer.eventLine('STOP');
    await peer.sendSplit(text, 3, 1);
    expect(await p).toEqual({ name: 'vm-é€😀' });
    await new Promise((r) => setTimeout(r, 20));
    expect(events.map((e) => e.event)).toEqual(['RESET', 'STOP']);
    expect(events[0]!.data).toEqual({ guest: true, reason: 'guest-reset' });
    expect(events[1]!.data).toEqual({});
  });

  it('qom-set and qom-get send the object path, property and value', async () => {
    peer.handle('qom-set', { return: {} });
    peer.handle('qom-get', { return: { 'bps-read': 1048576 } });
    const c = await connect();
    await c.qomSet('io0', 'limits', { 'bps-read': 1048576 });
    expect(peer.received.at(-1)).toMatchObject({ execute: 'qom-set', arguments: { path: 'io0', property: 'limits', value: { 'bps-read': 1048576 } } });
    expect(await c.qomGet('io0', 'limits')).toEqual({ 'bps-read': 1048576 });
    expect(peer.received.at(-1)).toMatchObject({ execute: 'qom-get', arguments: { path: 'io0', property: 'limits' } });
  });

  it('turns error replies into BACKEND_FAILED naming the command and the description', async () => {
    peer.handle('balloon', { error: { class: 'DeviceNotActive', desc: 'No balloon device has been activated' } });
    const c = await connect();
    const err = await rejection(c.balloon(256 * 1024 * 1024));
    expect(err.code).toBe('BACKEND_FAILED');
    expect(err.message).toBe('QMP balloon failed: No balloon device has been activated');
    expect(err.details).toMatchObject({ class: 'DeviceNotActive', desc: 'No balloon device has been activated' });
    expect(peer.received.at(-1)?.arguments).toEqual({ value: 256 * 1024 * 1024 });
    const unknown = await rejection(c.execute('no-such-command'));
    expect(unknown.details?.class).toBe('CommandNotFound');
  });

  it('times out a command that gets no reply, ignores the late reply and keeps working', async () => {
    let hung: FakeQmpRequest | undefined;
    peer.handle('query-slow', (req) => { hung = req; return 'hang'; });
    peer.handle('query-kvm', { return: { enabled: false, present: true } });
    const c = await connect({ commandTimeoutMs: 5000 });
    const started = Date.now();
    const err = await rejection(c.execute('query-slow', undefined, { timeoutMs: 100 }));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toContain('query-slow');
    expect(Date.now() - started).toBeLessThan(1000);
    peer.reply(hung!, { return: { late: true } });
    expect(await c.queryKvm()).toEqual({ enabled: false, present: true });
  });
});

describe('QmpClient events', () => {
  it('delivers events with data and timestamp to named and * listeners; off() stops delivery', async () => {
    const c = await connect();
    const named: QmpEvent[] = [];
    const all: QmpEvent[] = [];
    const onShutdown = (ev: QmpEvent) => named.push(ev);
    c.on('SHUTDOWN', onShutdown);
    c.on('*', (ev) => all.push(ev));
    c.on('SHUTDOWN', () => { throw new Error('a broken listener must not break delivery'); });
    const ts = { seconds: 1_700_000_000, microseconds: 123_456 };
    peer.emitEvent('SHUTDOWN', { guest: true, reason: 'guest-shutdown' }, ts);
    peer.emitEvent('GUEST_PANICKED', { action: 'pause', info: { type: 'hyper-v' } });
    peer.emitEvent('BALLOON_CHANGE', { actual: 134217728 });
    await c.waitForEvent('BALLOON_CHANGE', undefined, 1000);
    expect(named).toEqual([{ event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' }, timestamp: ts }]);
    expect(eventTimeMs(named[0]!)).toBe(1_700_000_000_123);
    expect(all.map((e) => e.event)).toEqual(['SHUTDOWN', 'GUEST_PANICKED', 'BALLOON_CHANGE']);
    c.off('SHUTDOWN', onShutdown);
    peer.emitEvent('SHUTDOWN', { guest: false, reason: 'host-signal' });
    await c.waitForEvent('SHUTDOWN', undefined, 1000);
    expect(named).toHaveLength(1);
  });

  it('waitForEvent honours its predicate and times out with TIMEOUT', async () => {
    const c = await connect();
    const w = c.waitForEvent('SHUTDOWN', (ev) => ev.data.guest === true, 2000);
    peer.emitEvent('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
    peer.emitEvent('SHUTDOWN', { guest: true, reason: 'guest-shutdown' });
    expect((await w).data).toEqual({ guest: true, reason: 'guest-shutdown' });
    const err = await rejection(c.waitForEvent('POWERDOWN', undefined, 50));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toContain('POWERDOWN');
  });

  it('executeAndWaitEvent catches an event QEMU sends before the reply', async () => {
    // QEMU 7.2 writes the STOP event and the reply to stop in the same chunk, event first.
    peer.handle('stop', (req, p) => { p.sendRaw(p.eventLine('STOP') + p.replyLine(req, { return: {} })); return undefined; });
    peer.handle('cont', (req, p) => { p.sendRaw(p.replyLine(req, { return: {} })); setTimeout(() => p.emitEvent('RESUME'), 20); return undefined; });
    const c = await connect();
    const stopped = await c.executeAndWaitEvent('stop', undefined, 'STOP', undefined, { timeoutMs: 1000 });
    expect(stopped.result).toEqual({});
    expect(stopped.event.event).toBe('STOP');
    const resumed = await c.executeAndWaitEvent('cont', undefined, 'RESUME', undefined, { timeoutMs: 1000 });
    expect(resumed.event.event).toBe('RESUME');
    // A failing command cancels the waiter instead of leaving a timer behind.
    const err = await rejection(c.executeAndWaitEvent('system_reset', undefined, 'RESET', undefined, { timeoutMs: 1000 }));
    expect(err.details?.class).toBe('CommandNotFound');
  });
});

describe('QmpClient jobs', () => {
  // A scripted snapshot job: state lives in jobs; interleaved events of another job run alongside.
  function scriptJobs(outcome: { error?: string } = {}): void {
    const jobs = new Map<string, { id: string; type: string; status: string; 'current-progress': number; 'total-progress': number; error?: string }>();
    const setStatus = (p: FakeQmpPeer, id: string, status: string) => {
      const j = jobs.get(id);
      if (j) j.status = status;
      p.emitEvent('JOB_STATUS_CHANGE', { id, status });
    };
    peer.handle('query-jobs', () => ({ return: [...jobs.values()] }));
    peer.handle('job-dismiss', (req, p) => {
      const id = req.arguments?.id as string;
      if (!jobs.has(id)) return { error: { class: 'GenericError', desc: 'Job not found' } };
      jobs.delete(id);
      setTimeout(() => p.emitEvent('JOB_STATUS_CHANGE', { id, status: 'null' }), 1);
      return { return: {} };
    });
    peer.handle('snapshot-save', (req, p) => {
      const id = req.arguments?.['job-id'] as string;
      jobs.set(id, { id, type: 'snapshot-save', status: 'created', 'current-progress': 0, 'total-progress': 1 });
      jobs.set('other', { id: 'other', type: 'snapshot-delete', status: 'created', 'current-progress': 0, 'total-progress': 1 });
      p.sendRaw(p.eventLine('JOB_STATUS_CHANGE', { id, status: 'created' }) + p.replyLine(req, { return: {} }));
      const steps: [string, string][] = [
        [id, 'running'], ['other', 'running'], ['other', 'concluded'], [id, 'waiting'], [id, 'pending'], [id, 'concluded'],
      ];
      steps.forEach(([jid, status], i) => setTimeout(() => {
        if (jid === id && status === 'concluded') {
          const j = jobs.get(id)!;
          j['current-progress'] = 1;
          if (outcome.error) j.error = outcome.error;
        }
        setStatus(p, jid, status);
      }, 10 + i * 10));
      return undefined;
    });
  }

  it('waits for its own job among interleaved ones, then dismisses it', async () => {
    scriptJobs();
    const c = await connect();
    const statuses: string[] = [];
    c.on('JOB_STATUS_CHANGE', (ev) => { if (ev.data.id === 'snap1') statuses.push(String(ev.data.status)); });
    await c.snapshotSave('snap1', 'tag1', 'disk0', ['disk0']);
    expect(peer.received.at(-1)?.arguments).toEqual({ 'job-id': 'snap1', tag: 'tag1', vmstate: 'disk0', devices: ['disk0'] });
    const info = await c.waitJob('snap1', { timeoutMs: 2000 });
    expect(info).toMatchObject({ id: 'snap1', type: 'snapshot-save', status: 'concluded' });
    const dismissed = peer.received.filter((r) => r.execute === 'job-dismiss').map((r) => r.arguments?.id);
    expect(dismissed).toEqual(['snap1']);
    expect(statuses).toContain('concluded');
    const remaining = await c.queryJobs();
    expect(remaining.map((j) => j.id)).toEqual(['other']);
  });

  it('handles a job that concluded before waitJob was called', async () => {
    scriptJobs();
    const c = await connect();
    await c.snapshotSave('snap2', 'tag2', 'disk0', ['disk0']);
    await c.waitForEvent('JOB_STATUS_CHANGE', (ev) => ev.data.id === 'snap2' && ev.data.status === 'concluded', 2000);
    expect((await c.waitJob('snap2', { timeoutMs: 1000 })).status).toBe('concluded');
    expect(peer.received.filter((r) => r.execute === 'job-dismiss')).toHaveLength(1);
  });

  it('rejects a failed job with its error after dismissing it, and an unknown job with NOT_FOUND', async () => {
    scriptJobs({ error: 'Device disk0 is writable but does not support snapshots' });
    const c = await connect();
    await c.snapshotSave('snap3', 'tag3', 'disk0', ['disk0']);
    const err = await rejection(c.waitJob('snap3', { timeoutMs: 2000 }));
    expect(err.code).toBe('BACKEND_FAILED');
    expect(err.message).toContain('does not support snapshots');
    expect(peer.received.filter((r) => r.execute === 'job-dismiss').map((r) => r.arguments?.id)).toEqual(['snap3']);
    expect((await rejection(c.waitJob('nope'))).code).toBe('NOT_FOUND');
  });
});

describe('QmpClient disconnects', () => {
  it('rejects pending commands and waiters naming the socket, and notifies listeners', async () => {
    peer.handle('query-slow', () => 'hang');
    const c = await connect();
    const notified: AppError[] = [];
    c.on('disconnected', (e) => notified.push(e));
    const pending = c.execute('query-slow');
    const waiting = c.waitForEvent('SHUTDOWN', undefined, 5000);
    await peer.waitForCommand('query-slow');
    peer.drop();
    const err = await rejection(pending);
    expect(err.code).toBe('BACKEND_FAILED');
    expect(err.message).toContain(sockPath);
    expect(err.message).toContain('query-slow');
    expect(isQmpDisconnect(err)).toBe(true);
    expect(isQmpDisconnect(await rejection(waiting))).toBe(true);
    await c.closed;
    expect(c.connected).toBe(false);
    expect(notified).toHaveLength(1);
    expect(notified[0]!.details).toMatchObject({ socket: sockPath, closedByClient: false });
    const after = await rejection(c.queryStatus());
    expect(isAppError(after, 'BACKEND_FAILED')).toBe(true);
    expect(after.message).toContain(sockPath);
  });

  it('quit resolves although QEMU drops the connection, and SHUTDOWN is delivered first', async () => {
    peer.handle('quit', (req, p) => {
      p.sendRaw(p.eventLine('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' }) + p.replyLine(req, { return: {} }));
      setTimeout(() => p.drop(), 5);
      return undefined;
    });
    const c = await connect();
    const shutdown = c.waitForEvent('SHUTDOWN', undefined, 1000);
    await c.quit();
    expect((await shutdown).data).toEqual({ guest: false, reason: 'host-qmp-quit' });
    await c.closed;
    // Without a reply at all, a dropped connection still counts as a completed quit.
    const c2 = await connect();
    peer.handle('quit', (_req, p) => { p.drop(); return undefined; });
    await c2.quit();
  });

  it('serves a second client once the first closed (one client at a time, like QEMU)', async () => {
    peer.handle('query-status', { return: { status: 'paused', singlestep: false, running: false } });
    const first = await connect();
    const secondP = QmpClient.connect(host, sockPath, { timeoutMs: 3000 });
    await new Promise((r) => setTimeout(r, 100));
    expect(peer.greeted).toBe(1);
    const closing = first.close();
    const firstPending = rejection(first.queryStatus());
    await closing;
    expect((await firstPending).details?.closedByClient).toBe(true);
    const second = await secondP;
    clients.push(second);
    expect(peer.greeted).toBe(2);
    expect((await second.queryStatus()).running).toBe(false);
    expect(peer.received.filter((r) => r.execute === 'qmp_capabilities').map((r) => r.connection)).toEqual([1, 2]);
    // And a third after the second goes.
    await second.close();
    const third = await connect();
    expect((await third.queryStatus()).status).toBe('paused');
  });
});
