// Unit tests of the QEMU probes against a scripted host, plus one run against the real QEMU when it is installed.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ExecOptions, ExecResult, Host, HostStat } from '../../core/host/host.js';
import { LocalHost } from '../../core/host/local.js';
import { detectAccel, findUefiFirmware, KVM_CHECK_QMP, probeQemu } from './probe.js';

type Script = (argv: readonly string[], opts?: ExecOptions) => ExecResult | Error;

const charDev: HostStat = { size: 0, mode: 0o020600, uid: 0, gid: 0, isDirectory: false, isFile: false, isSymbolicLink: false, mtimeMs: 0 };

function scriptedHost(script: Script, kvm: HostStat | null = charDev): Host & { calls: { argv: readonly string[]; opts?: ExecOptions | undefined }[] } {
  const calls: { argv: readonly string[]; opts?: ExecOptions | undefined }[] = [];
  const host = {
    name: 'scripted',
    calls,
    async exec(argv: readonly string[], opts?: ExecOptions) {
      calls.push({ argv, opts });
      const r = script(argv, opts);
      if (r instanceof Error) throw r;
      return r;
    },
    fs: { stat: async (p: string) => (p === '/dev/kvm' ? kvm ?? undefined : undefined) },
  };
  return host as unknown as Host & { calls: typeof calls };
}

const ok = (stdout: string, stderr = ''): ExecResult => ({ code: 0, signal: null, stdout, stderr });
const QMP_KVM = (enabled: boolean) => `{"QMP": {"version": {}}}\n{"return": {}}\n{"return": {"enabled": ${enabled}, "present": true}}\n{"return": {}}\n`;

describe('probeQemu', () => {
  it('reports the version', async () => {
    const host = scriptedHost(() => ok('QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n'));
    expect(await probeQemu(host)).toEqual({ available: true, version: '7.2.22', reason: null, binary: 'qemu-system-x86_64' });
    expect(host.calls[0]!.argv).toEqual(['qemu-system-x86_64', '--version']);
  });
  it('is unavailable, with a reason, when the binary is missing or fails', async () => {
    const missing = await probeQemu(scriptedHost(() => new Error('spawn qemu-system-x86_64 ENOENT')));
    expect(missing).toMatchObject({ available: false, version: null });
    expect(missing.reason).toMatch(/not found.*qemu-system-x86.*ENOENT/);
    const broken = await probeQemu(scriptedHost(() => ({ code: 1, signal: null, stdout: '', stderr: 'qemu-system-x86_64: error while loading shared libraries\n' })), '/opt/q');
    expect(broken).toMatchObject({ available: false, binary: '/opt/q' });
    expect(broken.reason).toBe('/opt/q --version failed: error while loading shared libraries');
  });
});

describe('detectAccel', () => {
  it('chooses TCG without running QEMU when /dev/kvm is missing or not a device', async () => {
    const host = scriptedHost(() => ok(''), null);
    expect(await detectAccel(host)).toEqual({ accel: 'tcg', reason: '/dev/kvm missing: software emulation (TCG)' });
    expect(host.calls).toHaveLength(0);
    expect((await detectAccel(scriptedHost(() => ok(''), { ...charDev, mode: 0o100644 }))).reason).toMatch(/not a character device/);
  });
  it('chooses KVM when QEMU gets a KVM VM, feeding QMP on stdin', async () => {
    const host = scriptedHost(() => ok(QMP_KVM(true)));
    expect(await detectAccel(host)).toEqual({ accel: 'kvm', reason: 'KVM usable (/dev/kvm)' });
    expect(host.calls[0]!.argv).toEqual(expect.arrayContaining(['-accel', 'kvm', '-machine', 'pc', '-cpu', 'host', '-S', '-qmp', 'stdio']));
    expect(host.calls[0]!.opts).toMatchObject({ input: KVM_CHECK_QMP, allowFailure: true });
  });
  it('falls back to TCG with QEMU\'s own message when KVM fails', async () => {
    const host = scriptedHost(() => ({ code: 1, signal: null, stdout: '', stderr: 'Could not access KVM kernel module: Permission denied\nqemu-system-x86_64: failed to initialize kvm: Permission denied\n' }));
    expect(await detectAccel(host)).toEqual({
      accel: 'tcg',
      reason: '/dev/kvm present but KVM failed: Could not access KVM kernel module: Permission denied; failed to initialize kvm: Permission denied; software emulation (TCG)',
    });
    expect((await detectAccel(scriptedHost(() => ok(QMP_KVM(false))))).reason).toMatch(/KVM failed: query-kvm reports KVM not enabled/);
    const abort = { code: 134, signal: null, stdout: '{"QMP": {}}\n', stderr: 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.\nthird line\n' };
    expect((await detectAccel(scriptedHost(() => abort))).reason).toBe('/dev/kvm present but KVM failed: error: failed to set MSR 0x10a to 0x69; ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.; software emulation (TCG)');
    expect((await detectAccel(scriptedHost(() => new Error('ENOENT')))).reason).toMatch(/could not be run \(ENOENT\)/);
  });
  it.runIf(existsSync('/usr/bin/qemu-system-x86_64'))('agrees with the real host, quickly', async () => {
    const t0 = performance.now();
    const d = await detectAccel(new LocalHost());
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(d.accel).toBe(existsSync('/dev/kvm') ? d.accel : 'tcg');
    expect(d.reason).toMatch(d.accel === 'kvm' ? /^KVM usable/ : /TCG/);
  });
});

describe('findUefiFirmware', () => {
  const file: HostStat = { ...charDev, mode: 0o100644, isFile: true };
  const withFiles = (files: string[]): Host => ({ fs: { stat: async (p: string) => (files.includes(p) ? file : undefined) } }) as unknown as Host;
  it('prefers the 4 MiB OVMF pair and needs both the code and the variable template', async () => {
    expect(await findUefiFirmware(withFiles(['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_VARS_4M.fd', '/usr/share/OVMF/OVMF_CODE.fd', '/usr/share/OVMF/OVMF_VARS.fd']))).toEqual({ code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/usr/share/OVMF/OVMF_VARS_4M.fd' });
    expect(await findUefiFirmware(withFiles(['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_CODE.fd', '/usr/share/OVMF/OVMF_VARS.fd']))).toEqual({ code: '/usr/share/OVMF/OVMF_CODE.fd', vars: '/usr/share/OVMF/OVMF_VARS.fd' });
    expect(await findUefiFirmware(withFiles(['/usr/share/OVMF/OVMF_CODE_4M.fd']))).toBeNull();
  });
  it.skipIf(!existsSync('/usr/share/OVMF/OVMF_CODE_4M.fd'))('finds the firmware of the ovmf package on this host (skipped: ovmf not installed)', async () => {
    expect((await findUefiFirmware(new LocalHost()))?.code).toBe('/usr/share/OVMF/OVMF_CODE_4M.fd');
  });
});
