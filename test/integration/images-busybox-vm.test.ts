// Integration test: builds the busybox VM image (packages cached in /var/lib/hangar-test-cache/vm) and boots it under TCG with QMP and the guest agent.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { buildBusyboxVmImage, VM_POWERDOWN_MARKER, VM_READY_MARKER } from '../../src/core/images/busybox-vm.js';
import { JsonLineClient, waitFor } from '../helpers/vm-channels.js';

const CACHE = '/var/lib/hangar-test-cache/vm';
const host = new LocalHost();
// The agent and QEMU may not answer yet while the guest boots: their errors mean "not yet".
const waitForAny = <T>(what: string, ms: number, fn: () => Promise<T | undefined>) => waitFor(what, ms, fn, { ignoreErrors: true });
const HOSTNAME = `hgtvm${Math.random().toString(36).slice(2, 6)}`;

describe('busybox VM image (TCG boot)', () => {
  let dir = '';
  let qemu: ChildProcess | undefined;
  let exited: Promise<number | null> | undefined;
  let qmp: JsonLineClient | undefined;
  let qga: JsonLineClient | undefined;
  let started = 0;
  const messages: string[] = [];
  let result: Awaited<ReturnType<typeof buildBusyboxVmImage>>;
  const prop = (k: string): string => {
    const v = result.props[k];
    if (v === undefined) throw new Error(`image property ${k} is missing`);
    return v;
  };
  const serial = () => readFile(join(dir, 'serial.log'), 'utf8').catch(() => '');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `t${Math.random().toString(36).slice(2, 6)}-bbvm-`));
    const t0 = Date.now();
    result = await buildBusyboxVmImage(host, join(dir, 'image'), { cacheDir: CACHE, onProgress: (m) => messages.push(m) });
    console.log(`busybox VM image built in ${Date.now() - t0} ms`);
  }, 900_000);

  afterAll(async () => {
    qmp?.close();
    qga?.close();
    if (qemu?.pid !== undefined && qemu.exitCode === null && qemu.signalCode === null) {
      qemu.kill('SIGKILL');
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('writes the kernel, initramfs and data disk and returns their properties', async () => {
    expect(result.props).toMatchObject({ kernel: 'vmlinux', initrd: 'initrd.img', disk: 'disk.qcow2', machine: 'q35', guestAgent: 'qemu-ga', os: 'busybox' });
    expect(prop('cmdline')).toContain('console=ttyS0');
    const sizes: Record<string, number> = {};
    for (const f of ['vmlinux', 'initrd.img', 'disk.qcow2']) sizes[f] = (await stat(join(dir, 'image', f))).size;
    console.log('image files', sizes, result.description);
    expect((await readFile(join(dir, 'image', 'vmlinux'))).subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(sizes['disk.qcow2']).toBeLessThan(16 * 1024 * 1024);
    expect((await readdir(join(dir, 'image'))).sort()).toEqual(['disk.qcow2', 'initrd.img', 'vmlinux']);
  });

  it('a second build downloads nothing', async () => {
    const again: string[] = [];
    await buildBusyboxVmImage(host, join(dir, 'image2'), { cacheDir: CACHE, onProgress: (m) => again.push(m) });
    expect(again.filter((m) => /download/i.test(m))).toEqual([]);
    await rm(join(dir, 'image2'), { recursive: true, force: true });
  }, 300_000);

  it('boots under TCG to the ready marker', async () => {
    const img = join(dir, 'image');
    const argv = [
      '-accel', 'tcg', '-M', prop('machine'), '-cpu', prop('cpu'), '-smp', '1', '-m', '256',
      '-nodefaults', '-no-user-config', '-display', 'none',
      '-kernel', join(img, prop('kernel')), '-initrd', join(img, prop('initrd')),
      '-append', `${prop('cmdline')} hangar.hostname=${HOSTNAME}`,
      '-serial', `file:${join(dir, 'serial.log')}`,
      '-drive', `file=${join(img, prop('disk'))},format=qcow2,if=none,id=d0`, '-device', 'virtio-blk-pci,drive=d0',
      '-netdev', 'user,id=n0,restrict=on', '-device', 'virtio-net-pci,netdev=n0',
      '-device', 'virtio-serial-pci',
      '-chardev', `socket,id=qga0,path=${join(dir, 'qga.sock')},server=on,wait=off`,
      '-device', `virtserialport,chardev=qga0,name=${prop('guestAgentPort')}`,
      '-qmp', `unix:${join(dir, 'qmp.sock')},server=on,wait=off`,
    ];
    started = Date.now();
    const proc = spawn('qemu-system-x86_64', argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    qemu = proc;
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
    await waitForAny('the ready marker', 120_000, async () => {
      if (qemu!.exitCode !== null) throw new Error(`qemu exited: ${stderr}`);
      return (await serial()).includes(`${VM_READY_MARKER} ${HOSTNAME}`) ? true : undefined;
    }).catch(async (e: unknown) => { throw new Error(`${String(e)}\nserial:\n${await serial()}\nqemu stderr:\n${stderr}`); });
    console.log(`TCG boot to "${VM_READY_MARKER}": ${Date.now() - started} ms`);
    qmp = await JsonLineClient.open(join(dir, 'qmp.sock'));
    await qmp.next(5000);
    expect(await qmp.call('qmp_capabilities')).toHaveProperty('return');
  }, 180_000);

  it('answers guest-ping and guest-exec through the guest agent', async () => {
    qga = await JsonLineClient.open(join(dir, 'qga.sock'));
    // guest-sync-delimited discards anything left in the channel; retry until the agent listens.
    const id = 4242;
    await waitForAny('the guest agent', 60_000, async () => {
      const r = await qga!.call('guest-sync', { id }, 2000);
      return r.return === id ? true : undefined;
    });
    console.log(`guest agent answers ${Date.now() - started} ms after QEMU start`);
    expect(await qga.call('guest-ping')).toEqual({ return: {} });
    const exec = async (path: string, arg: string[]): Promise<string> => {
      const r = (await qga!.call('guest-exec', { path, arg, 'capture-output': true })) as { return: { pid: number } };
      const st = await waitForAny('guest-exec-status', 20_000, async () => {
        const s = (await qga!.call('guest-exec-status', { pid: r.return.pid })) as { return: { exited: boolean; exitcode?: number; 'out-data'?: string } };
        return s.return.exited ? s.return : undefined;
      });
      expect(st.exitcode).toBe(0);
      return Buffer.from(st['out-data'] ?? '', 'base64').toString();
    };
    expect(await exec('/bin/echo', ['hi'])).toBe('hi\n');
    expect(await exec('/bin/hostname', [])).toBe(`${HOSTNAME}\n`);
    expect(await exec('/bin/cat', ['/data/README'])).toContain('Hangar busybox VM');
    // DHCP runs in the background; QEMU's user network (restrict=on: no traffic leaves) hands out 10.0.2.15.
    await waitForAny('a DHCP address on eth0', 30_000, async () => ((await exec('/sbin/ip', ['-4', 'addr', 'show', 'eth0'])).includes('inet 10.0.2.15/24') ? true : undefined));
  }, 120_000);

  it('powers off on the ACPI power button', async () => {
    expect(await qmp!.call('system_powerdown')).toHaveProperty('return');
    const code = await Promise.race([exited!, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000))]);
    const out = await serial();
    expect(code, out).toBe(0);
    expect(out).toContain(`${VM_POWERDOWN_MARKER} ${HOSTNAME}`);
    expect(out).toContain('reboot: Power down');
    const shutdown = qmp!.events.find((e) => e.event === 'SHUTDOWN') as { data: { guest: boolean } } | undefined;
    expect(shutdown?.data.guest).toBe(true);
  }, 90_000);
});
