// Unit tests of the QEMU output parsers.
import { describe, expect, it } from 'vitest';
import { parseQemuVersionText, qemuMessage, splitQemuVersion } from './parse.js';

describe('parseQemuVersionText', () => {
  it('reads distribution and upstream version banners', () => {
    expect(parseQemuVersionText('QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n')).toBe('7.2.22');
    expect(parseQemuVersionText('QEMU emulator version 8.2.0\n')).toBe('8.2.0');
    expect(parseQemuVersionText('QEMU emulator version 9.1\n')).toBe('9.1');
    expect(parseQemuVersionText('bash: qemu: command not found')).toBeNull();
  });
  it('splits versions into numbers', () => {
    expect(splitQemuVersion('7.2.22')).toEqual({ major: 7, minor: 2, micro: 22 });
    expect(splitQemuVersion('9.1')).toEqual({ major: 9, minor: 1, micro: 0 });
    expect(splitQemuVersion(null)).toBeNull();
    expect(splitQemuVersion('seven')).toBeNull();
  });
});

describe('qemuMessage', () => {
  it('strips program prefixes and timestamps, joins lines with commas', () => {
    expect(qemuMessage('Could not access KVM kernel module: Permission denied\nqemu-system-x86_64: failed to initialize kvm: Permission denied\n'))
      .toBe('Could not access KVM kernel module: Permission denied, failed to initialize kvm: Permission denied');
    expect(qemuMessage('2026-12-02T18:34:58.844608Z qemu-system-x86_64: -kernel /x: could not load kernel\n')).toBe('-kernel /x: could not load kernel');
    expect(qemuMessage('\n')).toBe('');
    expect(qemuMessage("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n")).toBe('error: failed to set MSR 0x10a to 0x69');
  });
  it('keeps a KVM internal error and its kind, drops the register dump, feature warnings and the exit notice', () => {
    const log = [
      "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]",
      'KVM internal error. Suberror: 1', 'extra data[0]: 0x0000000000000001', 'extra data[1]: 0x74204dc70f48f00f', 'emulation failure',
      'RAX=ffff888003c40040 RBX=0000000000000000 RCX=0000000080400040 RDX=0000000000400001', 'R8 =ffffea00000f1008 R9 =0000000000000040',
      'RIP=ffffffff81317850 RFL=00000006 [-----P-] CPL=0 II=0 A20=1 SMM=0 HLT=0', 'ES =0000 0000000000000000 00000000 00000000',
      'CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]', 'TR =0040 fffffe0000003000 00004087 00008b00 DPL=0 TSS64-busy',
      'GDT=     fffffe0000001000 0000007f', 'CR0=80050033 CR2=ffff888003801000 CR3=0000000002a10000 CR4=000100b0', 'DR6=00000000ffff0ff0 DR7=0000000000000400',
      'EFER=0000000000000d01', 'Code=24 5b 80 41 81 e3 00 00 <f0> 48 0f c7 4d 20', 'qemu-system-x86_64: terminating on signal 15 from pid 1 (timeout)',
    ].join('\n');
    expect(qemuMessage(log)).toBe('KVM internal error. Suberror: 1, emulation failure');
  });
});
