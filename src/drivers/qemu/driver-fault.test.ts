// Unit tests of how the QEMU driver sees a guest fault, against a scripted QMP peer: error state and reason, instance-error, the KVM fallback, exec ending at once.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalHost } from '../../host/local.js';
import type { BackendEvent, HostDriver, InstanceRecord } from '../driver.js';
import { driverEnv } from '../../../test/helpers/driver-env.js';
import { FixedAccelerator } from './accel-check.js';
import { qemuOnHost } from './driver.js';
import { FakeQmpPeer } from './qmp/fake-peer.js';

const KVM_DUMP = 'KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000001\nemulation failure\nRAX=ffff888003c40040 RBX=0000000000000000\nCode=24 5b <f0> 48 0f c7\n';

let dir: string;
let name: string;
let peer: FakeQmpPeer;
let status: { status: string; running: boolean };
let servers: Server[];
let fakeQemu: ChildProcess;
let events: BackendEvent[];
let accel: FixedAccelerator;

let sockets: Socket[];
const listen = (path: string, onConn: (c: Socket) => void) => new Promise<Server>((resolve, reject) => {
  const s = createServer((c) => { sockets.push(c); onConn(c); });
  s.once('error', reject);
  s.listen(path, () => resolve(s));
  servers.push(s);
});

function record(): InstanceRecord {
  return {
    name, host: 'local', type: 'vm', driver: 'qemu', image: 'busybox', config: {}, rootPath: join(dir, 'root'), instanceDir: dir,
    nic: { bridge: 'br0', hostIfName: 'tap0', mac: '02:00:00:00:00:01', ipv4: '10.1.0.5', prefixLength: 24, gateway: '10.1.0.1' }, imageProps: {},
  };
}

function ctx(): HostDriver {
  const env = driverEnv(new LocalHost(), { onBackendEvent: (_i, e) => events.push(e) });
  return qemuOnHost({ env, probe: { available: true, version: '7.2.22', reason: null }, version: '7.2.22', accel, uefi: null });
}

/** Writes what the driver's start records, as if this VM had been started under accel with the console log at its current size. */
function started(accelUsed: 'kvm' | 'tcg', requested: 'auto' | 'kvm' | 'tcg' = 'auto'): void {
  writeFileSync(join(dir, 'console.log'), 'early firmware output\n');
  writeFileSync(join(dir, 'run.json'), JSON.stringify({ choice: { accel: accelUsed, reason: 'test', requested }, startedAt: new Date().toISOString(), consoleBytes: 'early firmware output\n'.length }));
}

/** The guest faults: QEMU logs its message, stops the vCPUs (STOP) and reports the new run state. */
function fault(runState: string, log = ''): void {
  if (log) appendFileSync(join(dir, 'qemu.log'), log);
  status = { status: runState, running: false };
  peer.emitEvent('STOP');
}

const until = async (what: string, cond: () => boolean | Promise<boolean>) => {
  for (let i = 0; i < 200; i++) { if (await cond()) return; await new Promise((r) => setTimeout(r, 10)); }
  throw new Error(`timed out waiting for ${what}`);
};

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hangar-fault-'));
  name = `fvm${Math.random().toString(36).slice(2, 8)}`;
  events = [];
  servers = [];
  sockets = [];
  accel = new FixedAccelerator({ usable: true, reason: 'KVM runs guests here' });
  status = { status: 'running', running: true };
  peer = new FakeQmpPeer().handle('query-status', () => ({ return: { ...status, singlestep: false } })).handle('quit', { return: {} });
  await listen(join(dir, 'qmp.sock'), (c) => peer.accept(c));
  // A stand-in QEMU process: the driver recognises its VM's process by "guest=<name>," on the command line.
  fakeQemu = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)', '--', '-name', `guest=${name},debug-threads=on`], { stdio: 'ignore' });
  await until('the stand-in process', () => fakeQemu.pid !== undefined);
  writeFileSync(join(dir, 'qemu.pid'), `${fakeQemu.pid}\n`);
});

afterEach(async () => {
  fakeQemu.kill('SIGKILL');
  peer.closeAll();
  // The driver keeps its QMP connection for the VM's lifetime: end it from this side, or close() waits for it.
  for (const c of sockets) c.destroy();
  for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

describe('QEMU driver: a guest fault', () => {
  it('is state error with QEMU\'s message, not frozen; one instance-error event; a KVM fault before the guest ran marks KVM broken and asks for a restart', async () => {
    started('kvm');
    const vm = ctx().load(record());
    expect((await vm.state()).state).toBe('running');
    fault('internal-error', KVM_DUMP);
    await until('the instance-error event', () => events.some((e) => e.type === 'instance-error'));
    const st = await vm.state();
    expect(st.state).toBe('error');
    expect(st.error?.reason).toBe('KVM internal error. Suberror: 1, emulation failure');
    expect(events.find((e) => e.type === 'instance-error')?.data).toMatchObject({ runState: 'internal-error', reason: 'KVM internal error. Suberror: 1, emulation failure' });
    expect(accel.broken).toEqual([{ instance: name, reason: 'KVM internal error. Suberror: 1, emulation failure', at: st.error!.since }]);
    const fallback = events.find((e) => e.type === 'instance-accel-fallback');
    expect(fallback).toMatchObject({ action: 'restart', data: { from: 'kvm', to: 'tcg' } });
    expect(fallback?.message).toMatch(/faulted under KVM before its guest started .*restarts with software emulation/);
    // A second handle (another request, or a restarted hangard) sees the same fault and time, and no new event.
    const again = await ctx().load(record()).state();
    expect(again.error).toEqual(st.error);
    expect(events.filter((e) => e.type === 'instance-error')).toHaveLength(1);
    expect((await vm.details!()).fault).toMatch(/^KVM internal error\. Suberror: 1, emulation failure \(since /);
  });

  it('leaves a VM whose guest already ran in error for the user: no fallback, KVM not marked', async () => {
    started('kvm');
    const vm = ctx().load(record());
    await vm.state();
    appendFileSync(join(dir, 'console.log'), 'HANGAR-READY vm\n');
    fault('internal-error', KVM_DUMP);
    await until('the instance-error event', () => events.some((e) => e.type === 'instance-error'));
    expect((await vm.state()).state).toBe('error');
    expect(accel.broken).toEqual([]);
    expect(events.some((e) => e.type === 'instance-accel-fallback')).toBe(false);
  });

  it('marks KVM broken but does not restart a VM that asked for kvm itself', async () => {
    started('kvm', 'kvm');
    const vm = ctx().load(record());
    await vm.state();
    fault('internal-error', KVM_DUMP);
    await until('KVM marked broken', () => accel.broken.length === 1);
    expect(events.some((e) => e.type === 'instance-accel-fallback')).toBe(false);
  });

  it('names a disk error from its BLOCK_IO_ERROR, and keeps a user pause as frozen', async () => {
    started('tcg');
    const vm = ctx().load(record());
    await vm.state();
    status = { status: 'paused', running: false };
    peer.emitEvent('STOP');
    await until('frozen', async () => (await vm.state()).state === 'frozen');
    status = { status: 'running', running: true };
    peer.emitEvent('RESUME');
    await until('running', async () => (await vm.state()).state === 'running');
    peer.emitEvent('BLOCK_IO_ERROR', { device: '', 'node-name': 'root', operation: 'write', action: 'stop', nospace: true, reason: 'No space left on device' });
    fault('io-error');
    await until('error', async () => (await vm.state()).state === 'error');
    expect((await vm.state()).error?.reason).toBe('a disk I/O error stopped the VM: write on root failed (no space left on the host): No space left on device');
    expect(accel.broken).toEqual([]);
  });

  it('reads a panic held paused from the console log', async () => {
    started('tcg');
    const vm = ctx().load(record());
    await vm.state();
    appendFileSync(join(dir, 'console.log'), '[   12.345678] Kernel panic - not syncing: sysrq triggered crash\n');
    fault('guest-panicked');
    await until('error', async () => (await vm.state()).state === 'error');
    expect((await vm.state()).error?.reason).toBe('the guest kernel panicked: Kernel panic - not syncing: sysrq triggered crash');
  });

  it('ends an exec waiting for the guest agent at once when the guest faults, with the reason', async () => {
    started('tcg');
    // An agent socket that accepts and never answers: the exec would wait 30 s for it.
    await listen(join(dir, 'qga.sock'), () => undefined);
    const vm = ctx().load(record());
    await vm.state();
    const p = vm.exec({ command: ['true'] });
    p.stdin!.end();
    let stderr = '';
    p.stderr!.on('data', (d: Buffer) => { stderr += String(d); });
    await new Promise((r) => setTimeout(r, 200));
    fault('internal-error', 'qemu-system-x86_64: something went wrong inside QEMU\n');
    const res = await p.wait();
    expect(res.code).toBe(126);
    expect(stderr).toContain(`Cannot run a command in instance "${name}": it is in error (something went wrong inside QEMU)`);
    // And a later exec fails before it waits at all.
    const q = vm.exec({ command: ['true'] });
    q.stdin!.end();
    let err2 = '';
    q.stderr!.on('data', (d: Buffer) => { err2 += String(d); });
    expect((await q.wait()).code).toBe(126);
    expect(err2).toContain('it is in error (something went wrong inside QEMU)');
  });

  it('sees a fault that happened while nobody watched as soon as it connects', async () => {
    started('kvm');
    writeFileSync(join(dir, 'qemu.log'), KVM_DUMP);
    status = { status: 'internal-error', running: false };
    const st = await ctx().load(record()).state();
    expect(st).toMatchObject({ state: 'error', error: { reason: 'KVM internal error. Suberror: 1, emulation failure' } });
    expect(events.map((e) => e.type)).toEqual(['instance-error', 'instance-accel-fallback']);
  });
});
