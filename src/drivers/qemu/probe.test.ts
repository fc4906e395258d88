// Unit tests of the QEMU probes (version and build, UEFI firmware) against scripted hosts, plus the real host's firmware.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LocalHost } from '../../host/local.js';
import { ScriptedHost } from '../../host/scripted.js';
import { findUefiFirmware, probeQemu } from './probe.js';

const VERSION = 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n';

describe('probeQemu', () => {
  it('reports the version', async () => {
    const host = new ScriptedHost(() => ({ stdout: VERSION }));
    expect(await probeQemu(host)).toEqual({ available: true, version: '7.2.22', reason: null, binary: 'qemu-system-x86_64', build: 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)' });
    expect(host.calls.map((c) => c.argv)).toEqual([['qemu-system-x86_64', '--version']]);
  });
  it('is unavailable, with a reason, when the binary is missing or fails', async () => {
    const missing = await probeQemu(new ScriptedHost(() => new Error('spawn qemu-system-x86_64 ENOENT')));
    expect(missing).toMatchObject({ available: false, version: null });
    expect(missing.reason).toMatch(/not found.*qemu-system-x86.*ENOENT/);
    const broken = await probeQemu(new ScriptedHost(() => ({ code: 1, stderr: 'qemu-system-x86_64: error while loading shared libraries\n' })), '/opt/q');
    expect(broken).toMatchObject({ available: false, binary: '/opt/q' });
    expect(broken.reason).toBe('/opt/q --version failed: error while loading shared libraries');
  });
});

describe('findUefiFirmware', () => {
  const withFiles = (files: string[]): ScriptedHost => new ScriptedHost(() => undefined, { files: Object.fromEntries(files.map((f) => [f, 'firmware'])) });
  it('prefers the 4 MiB OVMF pair and needs both the code and the variable template', async () => {
    expect(await findUefiFirmware(withFiles(['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_VARS_4M.fd', '/usr/share/OVMF/OVMF_CODE.fd', '/usr/share/OVMF/OVMF_VARS.fd']))).toEqual({ code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/usr/share/OVMF/OVMF_VARS_4M.fd' });
    expect(await findUefiFirmware(withFiles(['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_CODE.fd', '/usr/share/OVMF/OVMF_VARS.fd']))).toEqual({ code: '/usr/share/OVMF/OVMF_CODE.fd', vars: '/usr/share/OVMF/OVMF_VARS.fd' });
    expect(await findUefiFirmware(withFiles(['/usr/share/OVMF/OVMF_CODE_4M.fd']))).toBeNull();
  });
  it.skipIf(!existsSync('/usr/share/OVMF/OVMF_CODE_4M.fd'))('finds the firmware of the ovmf package on this host (skipped: ovmf not installed)', async () => {
    expect((await findUefiFirmware(new LocalHost()))?.code).toBe('/usr/share/OVMF/OVMF_CODE_4M.fd');
  });
});
