// Unit tests of QemuAccel against a scripted host: what it runs, what it caches and when it measures again.
import { describe, expect, it } from 'vitest';
import { ScriptedHost } from '../../host/scripted.js';
import { isAppError } from '../../shared/errors.js';
import { probeChecksum, PROBE_EXIT_CODE } from './accel.js';
import { QemuAccel, type AccelCheckOptions } from './accel-check.js';

const CACHE = '/var/lib/h/cache/accel.json';
const GUEST = { kernel: '/c/vmlinux', initrd: '/c/accel-guest.cpio', cmdline: 'console=ttyS0 rdinit=/init', marker: 'HANGAR-ACCEL-OK' };
const ROM_OK = { stdout: `hangar-probe: real protected long ${probeChecksum()}\n`, code: PROBE_EXIT_CODE };

/** A host with /dev/kvm whose QEMU answers each test guest per accelerator as told. */
function machine(answers: { rom: Record<'kvm' | 'tcg', object>; linux?: Record<'kvm' | 'tcg', object> }, bootId = 'boot-1') {
  const host = new ScriptedHost((argv) => {
    const accel = argv[argv.indexOf('-accel') + 1] as 'kvm' | 'tcg';
    return argv.includes('-bios') ? answers.rom[accel] : answers.linux?.[accel];
  }, { files: { '/proc/sys/kernel/random/boot_id': `${bootId}\n`, '/proc/sys/kernel/osrelease': '6.18.44\n' } });
  host.putNode('/dev/kvm', 0o020600);
  return host;
}

const opts = (over: Partial<AccelCheckOptions> = {}): AccelCheckOptions => ({ binary: 'qemu-system-x86_64', qemuBuild: 'QEMU emulator version 7.2.22 (Debian)', mode: 'auto', cacheFile: CACHE, linuxGuest: async () => GUEST, ...over });
const qemuRuns = (h: ScriptedHost) => h.commands('qemu-system-x86_64');

describe('QemuAccel', () => {
  it('runs nothing when /dev/kvm is missing, and says so', async () => {
    const host = new ScriptedHost(() => undefined, { files: { '/proc/sys/kernel/random/boot_id': 'b\n' } });
    const a = await QemuAccel.open(host, opts());
    expect(host.calls).toHaveLength(0);
    expect(a.verdict().usable).toBe(false);
    expect(a.info()).toMatchObject({ mode: 'auto', default: 'tcg', kvmUsable: false, checking: false });
    expect(a.info().reason).toBe('/dev/kvm does not exist (no hardware virtualization is exposed to this machine); using software emulation (TCG)');
  });

  it('decides TCG from the ROM probe alone when QEMU cannot run a guest with KVM, and caches that for this boot', async () => {
    const host = machine({ rom: { kvm: { code: 134, stderr: 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n' }, tcg: ROM_OK } });
    const a = await QemuAccel.open(host, opts());
    expect(qemuRuns(host).map((c) => c[c.indexOf('-accel') + 1]).sort()).toEqual(['kvm', 'tcg']);
    expect(qemuRuns(host)[0]).toEqual(expect.arrayContaining(['-bios', '/var/lib/h/cache/accel-probe.rom']));
    expect((await host.fs.readFile('/var/lib/h/cache/accel-probe.rom')).length).toBe(0x10000);
    expect(a.verdict()).toEqual({ usable: false, reason: '/dev/kvm is present but QEMU cannot run a guest with it: error: failed to set MSR 0x10a to 0x69' });
    await a.confirm();
    expect(qemuRuns(host)).toHaveLength(2);
    // The next daemon start on the same boot, kernel and QEMU reads the cache and runs nothing.
    const again = await QemuAccel.open(host, opts());
    expect(qemuRuns(host)).toHaveLength(2);
    expect(again.verdict()).toEqual(a.verdict());
    expect(JSON.parse(host.text(CACHE)!)).toMatchObject({ key: { bootId: 'boot-1', kernel: '6.18.44', qemu: 'QEMU emulator version 7.2.22 (Debian)' } });
  });

  it('measures again after a reboot, a new kernel or a new QEMU build', async () => {
    const host = machine({ rom: { kvm: { code: 1, stderr: 'failed to initialize kvm: Permission denied\n' }, tcg: ROM_OK } });
    await QemuAccel.open(host, opts());
    host.put('/proc/sys/kernel/random/boot_id', 'boot-2\n');
    await QemuAccel.open(host, opts());
    expect(qemuRuns(host)).toHaveLength(4);
    host.put('/proc/sys/kernel/osrelease', '6.19.0\n');
    await QemuAccel.open(host, opts());
    await QemuAccel.open(host, opts({ qemuBuild: 'QEMU emulator version 8.2.0' }));
    expect(qemuRuns(host)).toHaveLength(8);
  });

  it('leaves KVM pending after the ROM probe passed; confirm() boots Linux under both, once for concurrent callers', async () => {
    const host = machine({ rom: { kvm: ROM_OK, tcg: ROM_OK }, linux: { kvm: { stdout: '', signal: 'SIGTERM', code: -1, stderr: 'KVM internal error. Suberror: 1\nemulation failure\nRAX=1\n' }, tcg: { stdout: 'HANGAR-ACCEL-OK\n' } } });
    let guests = 0;
    const a = await QemuAccel.open(host, opts({ linuxGuest: async () => { guests++; return GUEST; } }));
    expect(a.verdict().usable).toBeNull();
    expect(a.info()).toMatchObject({ default: null, checking: true });
    await Promise.all([a.confirm(), a.confirm(), a.forStart(undefined, 'vm1')]);
    expect(guests).toBe(1);
    const linux = qemuRuns(host).filter((c) => c.includes('-kernel'));
    expect(linux).toHaveLength(2);
    expect(linux[0]).toEqual(expect.arrayContaining(['-kernel', '/c/vmlinux', '-initrd', '/c/accel-guest.cpio', '-append', 'console=ttyS0 rdinit=/init']));
    expect(a.verdict()).toEqual({ usable: false, reason: '/dev/kvm is present but guests fail under it: KVM internal error. Suberror: 1, emulation failure' });
    expect(await a.forStart(undefined, 'vm1')).toEqual({ accel: 'tcg', reason: '/dev/kvm is present but guests fail under it: KVM internal error. Suberror: 1, emulation failure; using software emulation (TCG)' });
    const err = await a.forStart('kvm', 'vm1').catch((e: unknown) => e);
    expect(isAppError(err, 'UNSUPPORTED') && err.message).toBe('Failed to start instance "vm1": boot.accel=kvm, but KVM is not usable on this host: /dev/kvm is present but guests fail under it: KVM internal error. Suberror: 1, emulation failure');
    expect((await QemuAccel.open(host, opts())).verdict()).toEqual(a.verdict());
  });

  it('chooses KVM once Linux booted under it, and keeps a fault recorded later across restarts', async () => {
    const host = machine({ rom: { kvm: ROM_OK, tcg: ROM_OK }, linux: { kvm: { stdout: 'HANGAR-ACCEL-OK\n' }, tcg: { stdout: 'HANGAR-ACCEL-OK\n' } } });
    const a = await QemuAccel.open(host, opts());
    expect(await a.forStart(undefined, 'vm1')).toMatchObject({ accel: 'kvm', reason: expect.stringMatching(/^hardware virtualization \(KVM\): KVM runs guests here: a Linux test guest booted/) as unknown });
    await a.markBroken({ instance: 'vm1', reason: 'KVM internal error. Suberror: 1, emulation failure', at: '2026-12-02T10:00:00.000Z' });
    expect(a.choose(undefined)).toMatchObject({ accel: 'tcg' });
    const after = await QemuAccel.open(host, opts());
    expect(after.verdict().usable).toBe(false);
    expect(after.verdict().reason).toMatch(/VM "vm1" faulted under KVM before its guest started/);
  });

  it('honours HANGAR_ACCEL: tcg whatever KVM does; kvm refused where it does not work', async () => {
    const host = machine({ rom: { kvm: { code: 1, stderr: 'failed to initialize kvm: Permission denied\n' }, tcg: ROM_OK } });
    expect((await QemuAccel.open(host, opts({ mode: 'tcg' }))).info()).toMatchObject({ default: 'tcg', reason: 'software emulation (TCG), as HANGAR_ACCEL=tcg asks' });
    const forced = await QemuAccel.open(host, opts({ mode: 'kvm' }));
    expect(forced.info()).toMatchObject({ default: null, reason: expect.stringMatching(/^HANGAR_ACCEL=kvm, but KVM is not usable on this host: .*Permission denied/) as unknown });
    expect(forced.choose('tcg')).toMatchObject({ accel: 'tcg' });
  });

  it('keeps the ROM verdict, saying why, when the Linux test guest cannot be prepared', async () => {
    const host = machine({ rom: { kvm: ROM_OK, tcg: ROM_OK } });
    const a = await QemuAccel.open(host, opts({ linuxGuest: async () => { throw new Error('apt-get download failed: no network'); } }));
    await a.confirm();
    expect(a.verdict()).toMatchObject({ usable: true, reason: expect.stringMatching(/could not run \(apt-get download failed: no network\)/) as unknown });
  });
});
