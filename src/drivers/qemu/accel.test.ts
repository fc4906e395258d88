// Unit tests of the accelerator choice: the probe ROM against its source, the test guests' output, the KVM verdict and the choice per VM.
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ESM script without types; only its assembleProbe() is used here.
import { assembleProbe } from '../../../scripts/gen-accel-probe.mjs';
import { chooseAccel, judgeKvm, linuxCheckArgv, parseLinuxRun, parseRomRun, probeChecksum, probeRom, PROBE_EXIT_CODE, romProbeArgv, type AccelEvidence, type GuestRun } from './accel.js';

const run = (over: Partial<GuestRun> & Pick<GuestRun, 'accel'>): GuestRun => ({ reached: 'done', ok: true, elapsedMs: 40, timedOut: false, message: '', ...over });
const romOk = { kvm: run({ accel: 'kvm', elapsedMs: 30 }), tcg: run({ accel: 'tcg', elapsedMs: 60 }) };
const linuxOk = { kvm: run({ accel: 'kvm', reached: 'booted', elapsedMs: 700 }), tcg: run({ accel: 'tcg', reached: 'booted', elapsedMs: 1900 }), kvmDeadlineMs: 15_000 };
const present: AccelEvidence['device'] = { state: 'present' };

describe('probe ROM', () => {
  it('is the assembled native/accel-probe.S, byte for byte (regenerate with scripts/gen-accel-probe.mjs)', () => {
    const rom = probeRom();
    expect(rom.length).toBe(0x10000);
    expect((assembleProbe() as Buffer).equals(rom)).toBe(true);
    // The reset vector jumps far to F000:0000, where the code starts.
    expect(rom.subarray(0xfff0, 0xfff5).toString('hex')).toBe('ea000000f0');
  });
  it('knows the checksum its guest prints (xorshift64 from the seed, as computed independently)', () => {
    expect(probeChecksum()).toBe('d63028b03dfd593c');
  });
  it('runs the ROM as BIOS with the serial port on stdout and the exit port, under the vCPU model VMs get', () => {
    expect(romProbeArgv('qemu', 'kvm', '/c/p.rom')).toEqual(expect.arrayContaining(['-accel', 'kvm', '-cpu', 'host', '-bios', '/c/p.rom', '-serial', 'stdio', '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04']));
    expect(romProbeArgv('qemu', 'tcg', '/c/p.rom')).toEqual(expect.arrayContaining(['-accel', 'tcg', '-cpu', 'qemu64']));
    const linux = linuxCheckArgv('qemu', 'kvm', { kernel: '/k', initrd: '/i', cmdline: 'console=ttyS0 rdinit=/init', marker: 'M' });
    expect(linux).toEqual(expect.arrayContaining(['-kernel', '/k', '-initrd', '/i', '-append', 'console=ttyS0 rdinit=/init', '-no-reboot', '-cpu', 'host', '-machine', 'q35']));
  });
});

describe('parseRomRun', () => {
  const out = (stdout: string, code = PROBE_EXIT_CODE, extra: { stderr?: string; timedOut?: boolean } = {}) => ({ stdout, stderr: extra.stderr ?? '', code, timedOut: extra.timedOut ?? false, elapsedMs: 50 });
  it('is done when all three modes ran, the checksum is right and the guest ended QEMU itself', () => {
    expect(parseRomRun('tcg', out(`hangar-probe: real protected long ${probeChecksum()}\n`))).toMatchObject({ reached: 'done', ok: true });
  });
  it('tells where a guest stopped, and that a wrong checksum or exit is not a pass', () => {
    expect(parseRomRun('kvm', out('hangar-probe: real', -1, { timedOut: true }))).toMatchObject({ reached: 'real', ok: false, timedOut: true });
    expect(parseRomRun('kvm', out('hangar-probe: real protected long ', -1, { timedOut: true, stderr: 'KVM internal error. Suberror: 1\nextra data[0]: 0x1\nemulation failure\nRAX=0\n' })))
      .toMatchObject({ reached: 'long', ok: false, message: 'KVM internal error. Suberror: 1, emulation failure' });
    expect(parseRomRun('kvm', out('hangar-probe: real protected long 0000000000000000\n'))).toMatchObject({ reached: 'long', ok: false });
    expect(parseRomRun('kvm', out(`hangar-probe: real protected long ${probeChecksum()}\n`, 0))).toMatchObject({ ok: false });
    expect(parseRomRun('kvm', out('', 134, { stderr: 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n' }))).toMatchObject({ reached: 'none', ok: false, message: 'error: failed to set MSR 0x10a to 0x69' });
  });
  it('reads a Linux boot by its marker', () => {
    expect(parseLinuxRun('kvm', 'HANGAR-ACCEL-OK', { stdout: 'HANGAR-ACCEL-OK\n', stderr: '', timedOut: false, elapsedMs: 900 })).toMatchObject({ reached: 'booted', ok: true });
    expect(parseLinuxRun('kvm', 'HANGAR-ACCEL-OK', { stdout: '', stderr: '', timedOut: true, elapsedMs: 15_000 })).toMatchObject({ reached: 'none', ok: false, timedOut: true });
  });
});

describe('judgeKvm', () => {
  it('says no without running anything when /dev/kvm is missing, not a device or unreadable', () => {
    expect(judgeKvm({ device: { state: 'missing' } })).toEqual({ usable: false, reason: '/dev/kvm does not exist (no hardware virtualization is exposed to this machine)' });
    expect(judgeKvm({ device: { state: 'not-char' } }).usable).toBe(false);
    expect(judgeKvm({ device: { state: 'unreadable', detail: 'EACCES' } }).reason).toMatch(/cannot be examined \(EACCES\)/);
  });
  it('says no with QEMU\'s words when QEMU cannot even run a guest with KVM', () => {
    const kvm = run({ accel: 'kvm', reached: 'none', ok: false, message: 'error: failed to set MSR 0x10a to 0x69' });
    expect(judgeKvm({ device: present, rom: { kvm, tcg: romOk.tcg } })).toEqual({ usable: false, reason: '/dev/kvm is present but QEMU cannot run a guest with it: error: failed to set MSR 0x10a to 0x69' });
  });
  it('says no, naming where the ROM guest stalled and what software emulation did, when it stops under KVM', () => {
    const kvm = run({ accel: 'kvm', reached: 'real', ok: false, timedOut: true, elapsedMs: 5000 });
    expect(judgeKvm({ device: present, rom: { kvm, tcg: romOk.tcg } }).reason).toBe('/dev/kvm is present but guests fail under it: a test guest stopped after real mode and made no progress for 5000 ms; software emulation ran it in 60 ms');
    const faulted = run({ accel: 'kvm', reached: 'long', ok: false, timedOut: true, elapsedMs: 5000, message: 'KVM internal error. Suberror: 1, emulation failure' });
    expect(judgeKvm({ device: present, rom: { kvm: faulted, tcg: romOk.tcg } }).reason).toMatch(/^\/dev\/kvm is present but guests fail under it: KVM internal error\. Suberror: 1, emulation failure; a test guest stopped after long mode/);
  });
  it('leaves the verdict open after the ROM probe passed, until a Linux guest booted', () => {
    expect(judgeKvm({ device: present, rom: romOk })).toMatchObject({ usable: null, reason: expect.stringMatching(/checking that a Linux guest boots/) as unknown });
    expect(judgeKvm({ device: present, rom: romOk, linux: linuxOk })).toEqual({ usable: true, reason: 'KVM runs guests here: a Linux test guest booted in 700 ms under KVM (1900 ms with software emulation)' });
  });
  it('says no when Linux boots with software emulation but not under KVM, with QEMU\'s message when it has one', () => {
    const stalled = { ...linuxOk, kvm: run({ accel: 'kvm', reached: 'none', ok: false, timedOut: true, elapsedMs: 15_000 }) };
    expect(judgeKvm({ device: present, rom: romOk, linux: stalled })).toEqual({ usable: false, reason: '/dev/kvm is present but guests fail under it: a Linux test guest that boots in 1900 ms with software emulation did not boot within 15 s' });
    const faulted = { ...linuxOk, kvm: run({ accel: 'kvm', reached: 'none', ok: false, timedOut: true, message: 'KVM internal error. Suberror: 1, emulation failure' }) };
    expect(judgeKvm({ device: present, rom: romOk, linux: faulted }).reason).toBe('/dev/kvm is present but guests fail under it: KVM internal error. Suberror: 1, emulation failure');
  });
  it('keeps the ROM verdict when the Linux check cannot tell (no kernel, or Linux fails with software emulation too)', () => {
    expect(judgeKvm({ device: present, rom: romOk, linux: { error: 'apt-get: no network' } })).toMatchObject({ usable: true, reason: expect.stringMatching(/could not run \(apt-get: no network\).*restarted with software emulation/) as unknown });
    const bothFail = { kvm: run({ accel: 'kvm', ok: false, reached: 'none' }), tcg: run({ accel: 'tcg', ok: false, reached: 'none', message: 'could not load kernel' }), kvmDeadlineMs: 15_000 };
    expect(judgeKvm({ device: present, rom: romOk, linux: bothFail })).toMatchObject({ usable: true, reason: expect.stringMatching(/did not boot with software emulation either \(could not load kernel\)/) as unknown });
  });
  it('says no when even software emulation cannot run the ROM guest (nothing can be concluded about KVM)', () => {
    expect(judgeKvm({ device: present, rom: { kvm: romOk.kvm, tcg: run({ accel: 'tcg', ok: false, reached: 'none', message: 'could not load PC BIOS' }) } }))
      .toMatchObject({ usable: false, reason: expect.stringMatching(/even with software emulation \(could not load PC BIOS\)/) as unknown });
  });
  it('lets a fault seen at run time win over every passed check', () => {
    const v = judgeKvm({ device: present, rom: romOk, linux: linuxOk, fault: { instance: 'vm1', reason: 'KVM internal error. Suberror: 1, emulation failure', at: '2026-12-02T10:00:00Z' } });
    expect(v).toEqual({ usable: false, reason: '/dev/kvm is present but guests fail under it: VM "vm1" faulted under KVM before its guest started (KVM internal error. Suberror: 1, emulation failure) at 2026-12-02T10:00:00Z' });
  });
});

describe('chooseAccel', () => {
  const yes = { usable: true, reason: 'KVM runs guests here' };
  const no = { usable: false, reason: '/dev/kvm is present but guests fail under it: X' };
  const open = { usable: null, reason: 'checking' };
  it('auto follows the verdict, saying why', () => {
    expect(chooseAccel('auto', 'HANGAR_ACCEL', yes)).toEqual({ accel: 'kvm', reason: 'hardware virtualization (KVM): KVM runs guests here' });
    expect(chooseAccel('auto', 'HANGAR_ACCEL', no)).toEqual({ accel: 'tcg', reason: '/dev/kvm is present but guests fail under it: X; using software emulation (TCG)' });
    expect(chooseAccel('auto', 'HANGAR_ACCEL', open)).toBeNull();
  });
  it('kvm is refused, naming why, where KVM does not work; tcg always works', () => {
    expect(chooseAccel('kvm', 'boot.accel', no)).toEqual({ refused: 'boot.accel=kvm, but KVM is not usable on this host: /dev/kvm is present but guests fail under it: X' });
    expect(chooseAccel('kvm', 'boot.accel', yes)).toMatchObject({ accel: 'kvm' });
    expect(chooseAccel('kvm', 'boot.accel', open)).toBeNull();
    for (const v of [yes, no, open]) expect(chooseAccel('tcg', 'boot.accel', v)).toEqual({ accel: 'tcg', reason: 'software emulation (TCG), as boot.accel=tcg asks' });
  });
});
