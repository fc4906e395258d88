// Integration test of QmpClient against a real QEMU 7.2 (TCG, no machine, no guest): commands, events, HMP, reconnect, quit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostProcess } from '../../src/host/host.js';
import { LocalHost } from '../../src/host/local.js';
import { AppError } from '../../src/shared/errors.js';
import { QmpClient, eventTimeMs, type QmpEvent } from '../../src/drivers/qemu/qmp/client.js';

const host = new LocalHost();
let dir: string;
let sockPath: string;
let qemu: HostProcess | undefined;
let exited: Promise<{ code: number | null; signal: string | null }>;
let stderr = '';
const clients: QmpClient[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hangar-qmp-it-'));
  sockPath = join(dir, 'qmp.sock');
  qemu = host.spawn([
    'qemu-system-x86_64', '-machine', 'none', '-accel', 'tcg', '-nodefaults', '-display', 'none',
    '-qmp', `unix:${sockPath},server=on,wait=off`,
  ]);
  qemu.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  exited = qemu.wait();
});

afterAll(async () => {
  for (const c of clients) await c.close();
  // Only the QEMU this file spawned, by its own handle.
  if (qemu && (await host.kill(await qemu.pid, 0))) {
    qemu.kill('SIGKILL');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

async function connect(opts: Parameters<typeof QmpClient.connect>[2] = {}): Promise<QmpClient> {
  const c = await QmpClient.connect(host, sockPath, { retryForMs: 5000, ...opts });
  clients.push(c);
  return c;
}

describe('QmpClient against QEMU 7.2', () => {
  let first: QmpClient;

  it('connects right after spawn (retrying until the socket exists) and negotiates', async () => {
    first = await connect();
    expect(first.greeting?.QMP.version.qemu.major).toBe(7);
    expect(first.greeting?.QMP.version.qemu.minor).toBe(2);
  }, 20_000);

  it('answers query-status and query-kvm (TCG: KVM not enabled)', async () => {
    expect(await first.queryStatus()).toMatchObject({ status: 'running', running: true });
    const kvm = await first.queryKvm();
    expect(kvm.enabled).toBe(false);
    expect(typeof kvm.present).toBe('boolean');
    expect(await first.queryJobs()).toEqual([]);
  });

  it('stop emits STOP and cont emits RESUME, with timestamps', async () => {
    const all: QmpEvent[] = [];
    first.on('*', (ev) => all.push(ev));
    const before = Date.now();
    const stopped = await first.executeAndWaitEvent('stop', undefined, 'STOP', undefined, { timeoutMs: 5000 });
    expect(stopped.event.event).toBe('STOP');
    expect(Math.abs(eventTimeMs(stopped.event) - before)).toBeLessThan(5000);
    expect(await first.queryStatus()).toMatchObject({ status: 'paused', running: false });
    const resumed = first.waitForEvent('RESUME', undefined, 5000);
    await first.cont();
    expect((await resumed).event).toBe('RESUME');
    expect((await first.queryStatus()).running).toBe(true);
    expect(all.map((e) => e.event)).toEqual(['STOP', 'RESUME']);
  });

  it('passes HMP commands through and reports QMP errors with their class', async () => {
    const version = await first.humanMonitorCommand('info version');
    expect(version).toMatch(/^7\.2/);
    const err = await first.balloon(128 * 1024 * 1024).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('BACKEND_FAILED');
    expect((err as AppError).details?.class).toBe('DeviceNotActive');
    const hmpErr = await first.humanMonitorCommand('savevm t1', { checkError: true }).then(() => undefined, (e: unknown) => e);
    expect((hmpErr as AppError).message).toMatch(/no block device can store vmstate/);
  });

  it('serves one client at a time: a second connects only after the first closed', async () => {
    const blocked = await QmpClient.connect(host, sockPath, { timeoutMs: 300 }).then(() => undefined, (e: unknown) => e);
    expect((blocked as AppError).code).toBe('TIMEOUT');
    await first.close();
    const second = await connect({ timeoutMs: 5000 });
    expect((await second.queryStatus()).running).toBe(true);
    await second.close();
    const third = await connect({ timeoutMs: 5000 });
    expect((await third.queryKvm()).enabled).toBe(false);
  });

  it('quit emits SHUTDOWN (host-qmp-quit), closes the connection and QEMU exits', async () => {
    const c = clients.at(-1)!;
    const disconnected = new Promise<AppError>((r) => c.on('disconnected', r));
    const shutdown = c.waitForEvent('SHUTDOWN', undefined, 5000);
    await c.quit();
    expect((await shutdown).data).toEqual({ guest: false, reason: 'host-qmp-quit' });
    expect((await disconnected).details?.closedByClient).toBe(false);
    expect(c.connected).toBe(false);
    const res = await exited;
    expect(res, stderr).toEqual({ code: 0, signal: null });
  });
});
