// Integration test: builds the Debian VM image (tree cached in /var/lib/hangar-test-cache/debian-vm) and boots it under TCG with a NoCloud seed and the guest agent.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { buildDebianVmImage } from '../../src/core/images/debian-vm.js';
import { buildSeedIso, renderNoCloudSeed } from '../../src/drivers/qemu/cloud-init.js';
import { JsonLineClient, waitFor } from '../helpers/vm-channels.js';

const CACHE = '/var/lib/hangar-test-cache/debian-vm';
const MIRROR = process.env.HANGAR_MIRROR ?? 'http://deb.debian.org/debian';
const host = new LocalHost();
const HOSTNAME = `hgtdvm${Math.random().toString(36).slice(2, 6)}`;
const MAC = '52:54:00:12:34:56';
const MARKER = 'HANGAR-CLOUD-INIT-OK';

describe('Debian VM image (debootstrap ~5 min on the first run, TCG boot)', () => {
  let dir = '';
  let qemu: ChildProcess | undefined;
  let exited: Promise<unknown> | undefined;
  let qga: JsonLineClient | undefined;
  let stderr = '';
  const messages: string[] = [];
  let result: Awaited<ReturnType<typeof buildDebianVmImage>>;
  const prop = (k: string): string => {
    const v = result.props[k];
    if (v === undefined) throw new Error(`image property ${k} is missing`);
    return v;
  };
  const serial = () => readFile(join(dir, 'serial.log'), 'utf8').catch(() => '');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `t${Math.random().toString(36).slice(2, 6)}-dvm-`));
    const t0 = Date.now();
    result = await buildDebianVmImage(host, join(dir, 'image'), { release: 'bookworm', mirror: MIRROR, cacheDir: CACHE, onProgress: (m) => messages.push(m) });
    console.log(`Debian VM image built in ${Date.now() - t0} ms (${messages.some((m) => /debootstrap/.test(m)) ? 'debootstrap' : 'cached tree'})`);
  }, 1_800_000);

  afterAll(async () => {
    qga?.close();
    if (qemu?.pid !== undefined && qemu.exitCode === null && qemu.signalCode === null) {
      qemu.kill('SIGKILL');
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('writes one self-booting disk: an MBR with boot code, a FAT boot partition with both boot loaders, the ext4 root', async () => {
    expect(result.props).toMatchObject({ disk: 'disk.qcow2', boot: 'disk', cloudInit: 'nocloud', guestAgent: 'qemu-ga', os: 'debian', release: 'bookworm' });
    expect(result.props.kernel).toBeUndefined();
    expect(await readdir(join(dir, 'image'))).toEqual(['disk.qcow2']);
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', join(dir, 'image', 'disk.qcow2')], { encoding: 'utf8' })) as { format: string; 'virtual-size': number; 'actual-size': number };
    expect(info.format).toBe('qcow2');
    expect(info['virtual-size']).toBe(2 * 1024 ** 3);
    // The partition table and file systems as the guest will see them (read from a raw copy of the first 66 MiB).
    const raw = join(dir, 'head.raw');
    execFileSync('qemu-img', ['dd', '-f', 'qcow2', '-O', 'raw', 'bs=1M', 'count=66', `if=${join(dir, 'image', 'disk.qcow2')}`, `of=${raw}`]);
    const head = await readFile(raw);
    expect(head.subarray(0, 440).equals((await readFile('/usr/lib/syslinux/mbr/mbr.bin')).subarray(0, 440))).toBe(true);
    expect([head[446], head[450], head.readUInt32LE(454), head[466], head.readUInt32LE(470)]).toEqual([0x80, 0xef, 2048, 0x83, 2048 + 64 * 2048]);
    const fat = execFileSync('mdir', ['-i', `${raw}@@1M`, '-a', '-b', '-/', '::'], { encoding: 'utf8', env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
    for (const f of ['::/vmlinuz', '::/initrd.img', '::/syslinux/ldlinux.sys', '::/syslinux/syslinux.cfg', '::/EFI/BOOT/BOOTX64.EFI', '::/loader/entries/debian.conf']) expect(fat).toContain(f);
    console.log('image', info['actual-size'], 'bytes;', result.description);
  });

  it('a second build reuses the cached tree (no debootstrap)', async () => {
    const again: string[] = [];
    const t0 = Date.now();
    await buildDebianVmImage(host, join(dir, 'image2'), { release: 'bookworm', mirror: MIRROR, cacheDir: CACHE, onProgress: (m) => again.push(m) });
    console.log(`cached Debian VM image build: ${Date.now() - t0} ms`);
    expect(again.filter((m) => /debootstrap|Retrieving/i.test(m))).toEqual([]);
    await rm(join(dir, 'image2'), { recursive: true, force: true });
  }, 600_000);

  it('boots under TCG to login:, runs the user-data and answers the guest agent with the meta-data hostname', async () => {
    const img = join(dir, 'image');
    const overlay = join(dir, 'root.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', join(img, prop('disk')), overlay]);
    const seed = renderNoCloudSeed({
      instanceId: `hgt-${HOSTNAME}`, hostname: HOSTNAME, ipv4: '10.0.2.15/24', gateway: '10.0.2.2', dns: ['10.0.2.3'], mac: MAC,
      userData: `#cloud-config\nruncmd:\n  - [ sh, -c, "echo ${MARKER} > /dev/ttyS0" ]\n`,
    });
    const seedDir = join(dir, 'seed');
    await host.fs.mkdir(seedDir);
    const iso = await buildSeedIso(host, seedDir, seed);
    const argv = [
      '-accel', 'tcg', '-M', 'pc', '-cpu', 'qemu64', '-m', '1024', '-smp', '1',
      '-nodefaults', '-no-user-config', '-display', 'none',
      '-serial', `file:${join(dir, 'serial.log')}`,
      // SeaBIOS boots the disk itself: syslinux in its MBR and boot partition.
      '-drive', `file=${overlay},format=qcow2,if=none,id=d0`, '-device', 'virtio-blk-pci,drive=d0,bootindex=1',
      '-drive', `file=${iso},format=raw,if=none,id=d1,readonly=on`, '-device', 'virtio-blk-pci,drive=d1',
      '-netdev', 'user,id=n0,restrict=on', '-device', `virtio-net-pci,netdev=n0,mac=${MAC}`,
      '-device', 'virtio-serial-pci',
      '-chardev', `socket,id=qga0,path=${join(dir, 'qga.sock')},server=on,wait=off`,
      '-device', `virtserialport,chardev=qga0,name=${prop('guestAgentPort')}`,
      '-qmp', `unix:${join(dir, 'qmp.sock')},server=on,wait=off`,
    ];
    const started = Date.now();
    const proc = spawn('qemu-system-x86_64', argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    qemu = proc;
    proc.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    exited = new Promise((resolve) => proc.once('exit', resolve));
    const seen = async (text: string) => {
      if (proc.exitCode !== null) throw new Error(`qemu exited: ${stderr}`);
      return (await serial()).includes(text) ? Date.now() - started : undefined;
    };
    const fail = async (e: unknown): Promise<never> => { throw new Error(`${String(e)}\nserial (tail):\n${(await serial()).slice(-6000)}\nqemu stderr:\n${stderr}`); };
    const toLogin = await waitFor('the login: prompt', 780_000, () => seen('login:')).catch(fail);
    console.log(`TCG boot to "login:": ${toLogin} ms`);
    const toMarker = await waitFor(`the ${MARKER} line from runcmd`, 300_000, () => seen(MARKER)).catch(fail);
    console.log(`TCG boot to the user-data marker: ${toMarker} ms`);

    qga = await JsonLineClient.open(join(dir, 'qga.sock'));
    const agent = qga;
    const sync = Math.floor(Math.random() * 1e9);
    await waitFor('the guest agent', 120_000, async () => {
      const r = await agent.call('guest-sync', { id: sync }, 3000).catch(() => undefined);
      return r?.return === sync ? true : undefined;
    }).catch(fail);
    const run = async (path: string, args: string[]): Promise<string> => {
      const started = await agent.call('guest-exec', { path, arg: args, 'capture-output': true });
      const pid = (started.return as { pid: number } | undefined)?.pid;
      if (pid === undefined) throw new Error(`guest-exec failed: ${JSON.stringify(started)}`);
      const st = await waitFor(`${path} in the guest`, 60_000, async () => {
        const r = (await agent.call('guest-exec-status', { pid })).return as { exited: boolean; exitcode?: number; 'out-data'?: string };
        return r.exited ? r : undefined;
      });
      return Buffer.from(st['out-data'] ?? '', 'base64').toString('utf8');
    };
    expect((await run('/bin/cat', ['/etc/hostname'])).trim()).toBe(HOSTNAME);
    // The static address from network-config, matched by MAC.
    expect(await run('/sbin/ip', ['-4', '-o', 'addr', 'show'])).toContain('10.0.2.15/24');
    const status = await run('/bin/sh', ['-c', 'cloud-init status --wait >/dev/null; cloud-init status --long; systemctl is-system-running; systemctl --failed --no-legend; cat /etc/resolv.conf | grep ^nameserver']);
    console.log('guest:', status.trim());
    expect(status).toMatch(/^status: done$/m);
  }, 900_000);

  it('powers off cleanly on the ACPI power button (system_powerdown)', async () => {
    const proc = qemu;
    if (!proc || proc.exitCode !== null) throw new Error('the VM is not running');
    const qmp = await JsonLineClient.open(join(dir, 'qmp.sock'));
    try {
      await qmp.next(5000, 'the QMP greeting');
      await qmp.call('qmp_capabilities');
      const t0 = Date.now();
      await qmp.call('system_powerdown');
      await waitFor('QEMU to exit after the power button', 180_000, async () => (proc.exitCode !== null || proc.signalCode !== null ? true : undefined));
      console.log(`ACPI power-off under TCG: ${Date.now() - t0} ms`);
      expect(proc.exitCode).toBe(0);
      expect(await serial()).not.toMatch(/Kernel panic/);
    } finally {
      qmp.close();
    }
  }, 200_000);
});
