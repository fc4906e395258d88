// Unit tests of the Xen driver over a scripted Dom0 (FakeXl): probe, validate refusals, the lifecycle through xl, live changes, image placement, errors.
import { describe, expect, it } from 'vitest';
import { ScriptedHost } from '../../host/scripted.js';
import { isAppError } from '../../shared/errors.js';
import { keyAllowed, unsupportedKeys } from '../../shared/config.js';
import { driverEnv } from '../../../test/helpers/driver-env.js';
import type { HostDriver, InstanceRecord } from '../driver.js';
import { ALL_DRIVERS, DEFAULT_DRIVERS, selectDrivers } from '../registry.js';
import { domainUuid } from './domain.js';
import { xenDriver } from './driver.js';
import { FakeXl, fakeXlInfo } from './fake-xl.js';
import { parseXlConfig, xlNumber, xlString, xlStringList } from './xl-cfg.js';

const IMAGE = '/var/lib/hangar/images/f00d';
const imageFiles = { [`${IMAGE}/vmlinux`]: 'ELF kernel', [`${IMAGE}/initrd.img`]: 'cpio', [`${IMAGE}/disk.raw`]: 'ext4 data' };

const record = (config: Record<string, string> = {}, over: Partial<InstanceRecord> = {}): InstanceRecord => ({
  name: 'web1', host: 'xenhost', type: 'vm', driver: 'xen', image: 'busybox', config,
  rootPath: '/var/lib/hangar/pool/instances/web1',
  instanceDir: '/var/lib/hangar/instances/web1',
  nic: { bridge: 'xenbr0', hostIfName: 'hgr0a1b2c3d', mac: '02:48:47:00:00:07', ipv4: '10.123.0.7', prefixLength: 24, gateway: '10.123.0.1' },
  imageProps: { kernel: 'vmlinux', initrd: 'initrd.img', disk: 'disk.raw', cmdline: 'console=ttyS0 quiet' },
  imagePath: IMAGE,
  ...over,
});

async function open(fake: FakeXl): Promise<HostDriver> {
  return xenDriver.open(driverEnv(fake.host, { dataDir: '/var/lib/hangar', prefix: 'hgr' }));
}

const caught = async (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e);

describe('xen driver: registration', () => {
  it('is registered, enabled by default, and its keys are refused by lxc and qemu', () => {
    expect(ALL_DRIVERS).toContain(xenDriver);
    expect(DEFAULT_DRIVERS.split(',')).toContain('xen');
    expect(selectDrivers('lxc,qemu,xen').map((d) => d.name)).toEqual(['lxc', 'qemu', 'xen']);
    for (const other of ALL_DRIVERS.filter((d) => d.name !== 'xen')) {
      expect(unsupportedKeys({ 'boot.virt': 'pv', 'limits.network.egress': '10MiB' }, other.keys), other.name).toEqual(['boot.virt', 'limits.network.egress']);
    }
    expect(keyAllowed('boot.virt', xenDriver.keys)).toBe(true);
    expect(xenDriver.features).toEqual({ freeze: true, snapshots: false, statefulStop: true, console: true, execTty: false, liveCopy: false, graphicalConsole: false, monitor: false });
  });
});

describe('xen driver: probe', () => {
  it('is available on a Dom0 and keeps xl info\'s facts', async () => {
    const fake = new FakeXl();
    const hd = await open(fake);
    expect(hd.probe).toEqual({ available: true, version: '4.17.5', reason: null });
    expect(hd.details()).toMatchObject({ xen: '4.17.5 (credit2 scheduler)', 'virt caps': 'pv hvm hap gnttab-v1 gnttab-v2', 'guest types': 'pv, pvh', memory: '1460 MiB free of 2047 MiB', cpus: '2' });
    expect(hd.accelerator?.()).toMatchObject({ default: null, kvmUsable: false, checking: false });
    expect(hd.technology({ 'limits.memory': '512MiB', 'limits.memory.guarantee': '256MiB' })).toEqual({
      kernel: 'own', memory: 'dedicated',
      isolation: 'Xen 4.17.5 domain, hardware-assisted (PVH: paravirtualized devices, no device model); memory dedicated up to 256 MiB (limits.memory.guarantee, xl memory), balloonable to 512 MiB (limits.memory, xl maxmem)',
    });
    expect(hd.technology({ 'boot.virt': 'pv' }).isolation).toContain('paravirtualized (PV)');
    expect(fake.xlCalls()).toEqual([['info'], ['list', '-v', 'Domain-0']]);
    // Domains' guarantees come from Xen's memory beside Dom0's, not from Dom0's RAM.
    expect(hd.memoryCapacityBytes?.()).toBe((2047 - 512) * 1024 ** 2);
  });
  it('is unavailable with a reason: xl missing, not a Dom0, xl info failing', async () => {
    const bare = await xenDriver.open(driverEnv(new ScriptedHost(() => new Error('spawn xl ENOENT'), { name: 'box' })));
    expect(bare.probe).toMatchObject({ available: false, version: null });
    expect(bare.probe.reason).toMatch(/^xl not found on host box .*ENOENT/);
    const domU = new FakeXl({ dom0: false, files: { '/proc/xen/capabilities': '' } });
    expect((await open(domU)).probe.reason).toBe('not a Xen Dom0: /proc/xen/capabilities on host xenhost says "", not control_d (a domU)');
    const broken = new FakeXl();
    broken.failNext.set('xl info', 'xc: error: Could not obtain handle on privileged command interface (2 = No such file or directory)\nlibxl: error: libxl.c:102:libxl_ctx_alloc: cannot open libxc handle: No such file or directory\n');
    expect((await open(broken)).probe.reason).toBe('xl info failed on host xenhost: xl info failed: xc: error: Could not obtain handle on privileged command interface (2 = No such file or directory), libxl: error: cannot open libxc handle: No such file or directory');
    // Unavailable, it still answers: stopped instances, and a clear refusal to start.
    const h = bare.load(record());
    expect((await h.state()).state).toBe('stopped');
    const err = await caught(h.start());
    expect(isAppError(err, 'UNSUPPORTED') || isAppError(err, 'NOT_FOUND')).toBe(true);
  });
});

describe('xen driver: validate', () => {
  it('refuses what this Xen host cannot run, naming why', async () => {
    const fake = new FakeXl();
    fake.info = fakeXlInfo({ virtCaps: 'pv', freeMiB: 700, cpus: 2 });
    const hd = await open(fake);
    expect(hd.validate({ 'limits.memory': '256MiB' })).toEqual([]);
    expect(hd.validate({ 'boot.virt': 'pvh' })).toEqual(['boot.virt=pvh: The instance needs a PVH domain, and this Xen host\'s virt_caps (pv) lack "hvm" (no VT-x/AMD-V, or it is disabled)']);
    expect(hd.validate({ 'limits.memory': '1GiB' })).toEqual(['limits.memory=1GiB is more than the 700 MiB Xen has free on this host (xl info free_memory); a domain gets that memory at start']);
    expect(hd.validate({ 'limits.memory': '1GiB', 'limits.memory.guarantee': '256MiB' })).toEqual([]);
    expect(hd.validate({ 'limits.cpu': '3' })).toEqual(['limits.cpu=3 exceeds the 2 CPUs of this host']);
    expect(hd.validate({ 'limits.memory': '32MiB' })[0]).toContain('below the 64 MiB the xen backend needs');
    expect(hd.validate({ 'limits.memory': '4TiB' })[0]).toContain("limits.memory=4TiB is larger than this host's 2GiB of RAM");
    expect(hd.validate({ 'boot.cmdline': 'quiet' })).toEqual(['boot.cmdline needs boot.kernel (it applies to a directly booted kernel)']);
    expect(hd.validate({ 'boot.firmware': 'uefi', 'boot.virt': 'pv' })[0]).toContain('boot.firmware is for HVM domains');
  });
  it('refuses HVM without a device model and leaves PVH to hosts with HAP', async () => {
    const hd = await open(new FakeXl());
    expect(hd.validate({ 'boot.virt': 'hvm' })).toEqual(['boot.virt=hvm: The instance needs an HVM domain, and this Xen host has no device model (qemu-system-i386 for Xen is not installed in Dom0)']);
    expect(hd.validate({ 'boot.virt': 'pvh' })).toEqual([]);
    const withQemu = new FakeXl({ files: { '/usr/lib/xen-4.17/bin/qemu-system-i386': 'ELF' } });
    expect((await open(withQemu)).validate({ 'boot.virt': 'hvm' })).toEqual([]);
  });
});

describe('xen driver: lifecycle through xl', () => {
  it('creates, starts, pauses, changes limits live, stops gracefully, and deletes', async () => {
    const fake = new FakeXl({ files: imageFiles });
    const hd = await open(fake);
    const rec = record({ 'limits.memory': '256MiB', 'limits.cpu': '1', 'limits.disk': '1MiB' });
    const h = hd.load(rec);
    expect((await h.state()).state).toBe('stopped');
    await h.create();
    // The image's raw disk copied into the instance volume and grown to limits.disk.
    expect(fake.host.commands('cp')).toEqual([['cp', `${IMAGE}/disk.raw`, expect.stringMatching(/^\/var\/lib\/hangar\/pool\/instances\/web1\/root\.raw\.tmp-/)]]);
    expect(fake.host.text('/var/lib/hangar/pool/instances/web1/root.raw')?.length).toBe(1024 ** 2);
    await h.start();
    const cfg = parseXlConfig(fake.host.text('/var/lib/hangar/instances/web1/domain.cfg')!);
    expect(xlString(cfg, 'type')).toBe('pvh');
    expect(xlString(cfg, 'name')).toBe('web1');
    expect(xlString(cfg, 'uuid')).toBe(domainUuid('hgr', rec));
    expect([xlNumber(cfg, 'memory'), xlNumber(cfg, 'maxmem'), xlNumber(cfg, 'vcpus'), xlNumber(cfg, 'maxvcpus')]).toEqual([256, 256, 1, 2]);
    // Kernel and initrd in place (the image is on the Xen host), the disk raw on blkback, the NIC on its bridge.
    expect(xlString(cfg, 'kernel')).toBe(`${IMAGE}/vmlinux`);
    expect(xlString(cfg, 'ramdisk')).toBe(`${IMAGE}/initrd.img`);
    expect(xlString(cfg, 'cmdline')).toBe('console=ttyS0 quiet console=hvc0 hangar.hostname=web1 hangar.ip=10.123.0.7/24 hangar.gw=10.123.0.1');
    expect(xlStringList(cfg, 'disk')).toEqual(['format=raw,vdev=xvda,access=rw,backendtype=phy,target=/var/lib/hangar/pool/instances/web1/root.raw']);
    expect(xlStringList(cfg, 'vif')).toEqual(['mac=02:48:47:00:00:07,bridge=xenbr0,ip=10.123.0.7,vifname=hgr0a1b2c3d']);
    // What it was created with comes from the xl.cfg; only its domid is asked (xl list -l is for info and restores).
    expect(fake.xlCalls().slice(-2)).toEqual([['create', '/var/lib/hangar/instances/web1/domain.cfg'], ['domid', 'web1']]);
    expect(JSON.parse(fake.host.text('/var/lib/hangar/instances/web1/run.json')!)).toMatchObject({ domid: 1, type: 'pvh', maxmemMiB: 256, maxvcpus: 2 });

    const st = await h.state();
    expect(st).toEqual({ state: 'running', pid: 1, startTime: 176474000125 });
    expect(h.consoleLogPath()).toBe('/var/log/xen/console/guest-web1.log');
    expect(await h.usage()).toEqual({ cpuTimeNs: 300_000_000, memoryBytes: 256 * 1024 ** 2 });
    // Started twice is started once.
    await h.start();
    expect(fake.host.commands('xl').filter((a) => a[1] === 'create')).toHaveLength(1);

    await h.freeze();
    expect((await h.state()).state).toBe('frozen');
    await h.unfreeze();
    expect((await h.state()).state).toBe('running');

    // Memory down (target before maximum), a second vCPU, a cap: live; the disk size waits for a restart.
    const next = { ...rec.config, 'limits.memory': '192MiB', 'limits.cpu': '2', 'limits.cpu.cap': '50%', 'limits.disk': '2MiB' };
    expect(await h.applyConfig(next, rec.config)).toEqual({ live: ['limits.cpu', 'limits.cpu.cap', 'limits.memory'], pending: ['limits.disk'] });
    expect(fake.xlCalls().filter((a) => ['mem-set', 'mem-max', 'vcpu-set', 'sched-credit2'].includes(a[0]!))).toEqual([
      ['mem-set', 'web1', `${192 * 1024}k`], ['mem-max', 'web1', `${192 * 1024}k`], ['vcpu-set', 'web1', '2'], ['sched-credit2', '-d', 'web1', '-w', '256', '-c', '50'],
    ]);
    expect(fake.domains.get('web1')).toMatchObject({ targetKiB: 192 * 1024, maxKiB: 192 * 1024, vcpus: 2, cap: 50 });
    // And back up (maximum before target); above what it was created with only at the next start.
    await h.applyConfig(rec.config, next);
    expect(fake.domains.get('web1')).toMatchObject({ targetKiB: 256 * 1024, maxKiB: 256 * 1024, vcpus: 1, cap: 0 });
    expect(await h.applyConfig({ ...rec.config, 'limits.memory': '512MiB', 'limits.cpu': '4' }, rec.config)).toEqual({ live: [], pending: ['limits.cpu', 'limits.memory'] });

    await h.stop({ force: false, timeoutMs: 5_000 });
    expect(fake.xlCalls().filter((a) => a[0] === 'shutdown' || a[0] === 'destroy')).toEqual([['shutdown', 'web1']]);
    expect((await h.state()).state).toBe('stopped');

    await h.start();
    expect((await h.state()).pid).toBe(2);
    await h.delete();
    expect(fake.domains.size).toBe(0);
    expect(fake.host.text('/var/lib/hangar/pool/instances/web1/root.raw')).toBeUndefined();
    expect(await fake.host.fs.stat('/var/lib/hangar/instances/web1')).toBeUndefined();
    // Deleted is gone: no start from the image.
    expect(isAppError(await caught(h.start()), 'NOT_FOUND')).toBe(true);
  });

  it('given the state its caller just read, start reads none itself and answers the domain\'s domid and start time', async () => {
    const fake = new FakeXl({ files: imageFiles });
    const h = (await open(fake)).load(record({ 'limits.memory': '256MiB' }));
    await h.create();
    const calls = fake.xlCalls().length;
    const started = await h.start({ state: 'stopped', pid: null, startTime: null });
    expect(fake.xlCalls().slice(calls).map((a) => a.slice(0, 2).join(' '))).toEqual(['create /var/lib/hangar/instances/web1/domain.cfg', 'domid web1']);
    // What a state read says now, start had answered (domid and xenstore's start time).
    expect(started).toEqual(await h.state());
    expect(started).toMatchObject({ state: 'running', pid: 1 });
    // Already running: nothing is created again, and that state is answered.
    expect(await h.start(started!)).toEqual(started);
    expect(fake.xlCalls().filter((a) => a[0] === 'create')).toHaveLength(1);
  });

  it('destroys a guest that does not shut down within the timeout; force destroys at once', async () => {
    const fake = new FakeXl({ files: imageFiles });
    const hd = await open(fake);
    const h = hd.load(record({ 'boot.virt': 'pv' }));
    await h.create();
    await h.start();
    fake.domains.get('web1')!.ignoresShutdown = true;
    const t0 = Date.now();
    await h.stop({ force: false, timeoutMs: 600 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
    expect(fake.xlCalls().filter((a) => a[0] === 'shutdown' || a[0] === 'destroy')).toEqual([['shutdown', 'web1'], ['destroy', 'web1']]);
    await h.start();
    await h.stop({ force: true, timeoutMs: 60_000 });
    expect(fake.xlCalls().filter((a) => a[0] === 'shutdown' || a[0] === 'destroy').slice(2)).toEqual([['destroy', 'web1']]);
    expect((await h.state()).state).toBe('stopped');
  });

  it('stop --stateful saves the domain into its directory, and start restores it', async () => {
    const fake = new FakeXl({ files: imageFiles });
    const hd = await open(fake);
    const h = hd.load(record());
    await h.create();
    await h.start();
    await h.freeze();
    await h.stop({ force: false, timeoutMs: 5_000, stateful: true });
    // A paused guest cannot answer the suspend request: it is unpaused first.
    expect(fake.xlCalls().filter((a) => ['unpause', 'save'].includes(a[0]!))).toEqual([['unpause', 'web1'], ['save', 'web1', '/var/lib/hangar/instances/web1/state.save']]);
    expect((await h.state()).state).toBe('stopped');
    expect(await h.details!()).toMatchObject({ 'saved state': expect.stringContaining('/var/lib/hangar/instances/web1/state.save') });
    await h.start();
    expect(fake.xlCalls().filter((a) => a[0] === 'restore' || a[0] === 'create')).toEqual([['create', '/var/lib/hangar/instances/web1/domain.cfg'], ['restore', '/var/lib/hangar/instances/web1/state.save']]);
    expect((await h.state()).state).toBe('running');
    expect(fake.host.text('/var/lib/hangar/instances/web1/state.save')).toBeUndefined();
  });

  it('reports a domain of the same name it did not create as an error, and never stops or deletes it', async () => {
    const fake = new FakeXl({ files: imageFiles });
    const hd = await open(fake);
    fake.host.put('/tmp/theirs.cfg', 'name = "web1"\nuuid = "11111111-2222-4333-8444-555555555555"\nmemory = 128\n');
    await fake.host.exec(['xl', 'create', '/tmp/theirs.cfg']);
    const h = hd.load(record());
    const st = await h.state();
    expect(st.state).toBe('error');
    expect(st.error?.reason).toBe(`a domain named "web1" that Hangar did not create runs on host xenhost (uuid 11111111-2222-4333-8444-555555555555, not ${domainUuid('hgr', record())})`);
    expect(isAppError(await caught(h.stop({ force: true, timeoutMs: 1000 })), 'CONFLICT')).toBe(true);
    expect(isAppError(await caught(h.delete()), 'CONFLICT')).toBe(true);
    expect(isAppError(await caught(h.start()), 'INVALID_STATE')).toBe(true);
    expect(fake.domains.has('web1')).toBe(true);
  });

  it('fails a start with xl\'s own words and leaves no domain behind', async () => {
    const fake = new FakeXl({ files: imageFiles });
    const hd = await open(fake);
    const h = hd.load(record());
    await h.create();
    fake.failNext.set('xl create /var/lib/hangar/instances/web1/domain.cfg', 'Parsing config from /var/lib/hangar/instances/web1/domain.cfg\nlibxl: error: libxl_exec.c:117:libxl_report_child_exitstatus: /etc/xen/scripts/vif-bridge online [1234] exited with error status 1\nlibxl: error: libxl_create.c:1900:domcreate_attach_devices: Domain 1:unable to add vif devices\n');
    const err = await caught(h.start());
    expect(isAppError(err, 'BACKEND_FAILED')).toBe(true);
    expect((err as Error).message).toBe('xl create of domain "web1" failed');
    expect(((err as Error).cause as Error).message).toBe('libxl: error: /etc/xen/scripts/vif-bridge online [1234] exited with error status 1, libxl: error: unable to add vif devices');
    expect(fake.domains.size).toBe(0);
    expect((await h.state()).state).toBe('stopped');
  });

  it('refuses exec clearly and attaches the console through xl console on a pty', async () => {
    const fake = new FakeXl({ files: imageFiles });
    const hd = await open(fake);
    const h = hd.load(record());
    const err = (() => { try { h.exec({ command: ['true'] }); return undefined; } catch (e) { return e; } })();
    expect(isAppError(err, 'UNSUPPORTED')).toBe(true);
    expect((err as Error).message).toContain('exec needs a guest agent');
    const con = h.attachConsole({ cols: 80, rows: 24 });
    // First whether xenconsole's lock is free (no such domain here: it cannot be told), then xl console.
    for (let i = 0; i < 50 && !fake.host.calls.some((c) => c.argv[1] === 'console'); i++) await new Promise((r) => setTimeout(r, 10));
    expect(fake.host.calls.map((c) => c.argv).slice(-2)).toEqual([['xl', 'list', '-v', 'web1'], ['xl', 'console', 'web1']]);
    con.kill();
  });

  it('adopts an imported domain: running with its own UUID (or any, when its xl.cfg named none), started again with its own disks, deleted without them', async () => {
    const fake = new FakeXl({ files: { ...imageFiles, '/srv/xen/web1.img': 'their disk' } });
    const hd = await open(fake);
    const theirs = '11111111-2222-4333-8444-555555555555';
    const origin = (uuid: string | null) => ({
      kind: 'xen-import', source: '/etc/xen/web1.cfg', guestType: 'pvh', uuid, untranslated: [], nics: [],
      disks: [
        { index: 0, spec: 'format=raw,vdev=xvda,access=rw,target=/srv/xen/web1.img', use: 'root', note: 'kept', disk: { target: '/srv/xen/web1.img', format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' } },
        { index: 1, spec: 'vdev=xvdc,devtype=cdrom', use: 'ignored', note: 'no media', disk: { vdev: 'xvdc', format: 'raw', access: 'ro', devtype: 'cdrom' } },
      ],
    });
    const imported = (uuid: string | null) => record({ 'boot.kernel': '/srv/xen/vmlinuz', 'limits.memory': '128MiB' }, { image: '', imageProps: {}, imagePath: undefined, origin: origin(uuid) });
    fake.host.put('/tmp/theirs.cfg', `name = "web1"\nuuid = "${theirs}"\nmemory = 128\n`);
    await fake.host.exec(['xl', 'create', '/tmp/theirs.cfg']);
    expect(await hd.load(imported(theirs)).state()).toMatchObject({ state: 'running', pid: 1 });
    expect(await hd.load(imported(null)).state()).toMatchObject({ state: 'running', pid: 1 });
    // Hangar's own UUID for that name is not the running domain's: that one stays a stranger.
    expect((await hd.load(record()).state()).state).toBe('error');

    const h = hd.load(imported(theirs));
    await h.stop({ force: true, timeoutMs: 1000 });
    await h.create();
    await h.start();
    const cfg = parseXlConfig(fake.host.text('/var/lib/hangar/instances/web1/domain.cfg')!);
    expect(xlString(cfg, 'uuid')).toBe(theirs);
    expect(xlString(cfg, 'kernel')).toBe('/srv/xen/vmlinuz');
    expect(xlStringList(cfg, 'disk')).toEqual(['format=raw,vdev=xvda,access=rw,target=/srv/xen/web1.img']);
    expect(fake.host.text('/var/lib/hangar/pool/instances/web1/root.raw')).toBeUndefined();
    await h.stop({ force: true, timeoutMs: 1000 });
    await h.delete();
    expect(fake.host.text('/srv/xen/web1.img')).toBe('their disk');
  });
});

describe('xen driver: images on another machine', () => {
  it('copies kernel, initrd and a raw conversion of the qcow2 disk once into the Xen host\'s cache', async () => {
    const { xenOnHost } = await import('./driver.js');
    const { probeXen } = await import('./probe.js');
    const { Xl } = await import('./xl.js');
    const fake = new FakeXl();
    const local = new ScriptedHost((argv) => {
      // qemu-img convert -f qcow2 -O raw SRC DST on the daemon's machine.
      if (argv[0] === 'qemu-img') local.put(argv[argv.length - 1]!, 'raw disk bytes');
      return undefined;
    }, { name: 'local', files: { [`${IMAGE}/vmlinux`]: 'ELF kernel', [`${IMAGE}/initrd.img`]: 'cpio', [`${IMAGE}/disk.qcow2`]: 'QFI\xfb' } });
    const xl = new Xl(fake.host);
    const env = driverEnv(fake.host, { dataDir: '/var/lib/hangar-remote', prefix: 'hgr' });
    const hd = xenOnHost(env, await probeXen(fake.host, xl), xl, { imageSource: { host: local, scratchDir: '/var/lib/hangar/cache/xen' } });
    const rec = record({}, { imageProps: { kernel: 'vmlinux', initrd: 'initrd.img', disk: 'disk.qcow2' } });
    const h = hd.load(rec);
    await h.create();
    const cache = (await fake.host.fs.readdir('/var/lib/hangar-remote/xen/images'));
    expect(cache).toHaveLength(1);
    expect(cache[0]).toMatch(/^f00d-[0-9a-f]{16}$/);
    const dir = `/var/lib/hangar-remote/xen/images/${cache[0]}`;
    expect(fake.host.text(`${dir}/vmlinux`)).toBe('ELF kernel');
    expect(fake.host.text(`${dir}/initrd.img`)).toBe('cpio');
    expect(fake.host.text(`${dir}/disk.raw`)).toBe('raw disk bytes');
    expect(fake.host.text('/var/lib/hangar/pool/instances/web1/root.raw')).toBe('raw disk bytes');
    // Sent compressed and unpacked there, nothing left over; the conversion's scratch file is gone from the daemon's machine.
    expect(fake.host.commands('gunzip')).toHaveLength(3);
    expect((await fake.host.fs.readdir(dir)).sort()).toEqual(['.complete', 'disk.raw', 'initrd.img', 'vmlinux']);
    expect(await local.fs.readdir('/var/lib/hangar/cache/xen')).toEqual([]);
    await h.start();
    const cfg = parseXlConfig(fake.host.text('/var/lib/hangar/instances/web1/domain.cfg')!);
    expect(xlString(cfg, 'kernel')).toBe(`${dir}/vmlinux`);
    // A second instance of the image copies nothing more.
    const reads = local.calls.length;
    await hd.load(record({}, { name: 'web2', instanceDir: '/var/lib/hangar/instances/web2', imageProps: rec.imageProps })).create();
    expect(local.calls.length).toBe(reads);
  });
});
