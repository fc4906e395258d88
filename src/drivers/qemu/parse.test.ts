// Unit tests of the QEMU output parsers.
import { describe, expect, it } from 'vitest';
import { firstQmpError, parseQemuVersionText, parseQmpStream, parseQueryKvm, qemuErrorText, splitQemuVersion } from './parse.js';

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

const KVM_ON = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}
{"return": {}}
{"return": {"enabled": true, "present": true}}
{"timestamp": {"seconds": 1795736638, "microseconds": 957561}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}
{"return": {}}
`;

describe('QMP parsing', () => {
  it('decodes a stream, skipping partial lines', () => {
    expect(parseQmpStream(`${KVM_ON}{"return": {"enab`)).toHaveLength(5);
  });
  it('finds the query-kvm answer', () => {
    expect(parseQueryKvm(KVM_ON)).toEqual({ enabled: true, present: true });
    expect(parseQueryKvm(KVM_ON.replace('"enabled": true', '"enabled": false'))).toEqual({ enabled: false, present: true });
    expect(parseQueryKvm('{"return": {}}\n')).toBeNull();
    expect(parseQueryKvm('')).toBeNull();
  });
  it('reports the first QMP error', () => {
    expect(firstQmpError('{"return": {}}\n{"error": {"class": "CommandNotFound", "desc": "The command query-kvmm has not been found"}}\n')).toBe('CommandNotFound: The command query-kvmm has not been found');
    expect(firstQmpError(KVM_ON)).toBeNull();
  });
  it('strips the program prefix from QEMU error lines', () => {
    expect(qemuErrorText('Could not access KVM kernel module: Permission denied\nqemu-system-x86_64: failed to initialize kvm: Permission denied\n'))
      .toBe('Could not access KVM kernel module: Permission denied; failed to initialize kvm: Permission denied');
    expect(qemuErrorText('\n')).toBe('');
  });
});
