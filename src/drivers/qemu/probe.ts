// Probes for the QEMU backend: is qemu-system-x86_64 installed (which version), and can it use KVM or only TCG.
import type { Host } from '../../core/host/host.js';
import type { DriverProbe } from '../driver.js';
import { firstQmpError, parseQemuVersionText, parseQueryKvm, qemuErrorText } from './parse.js';
import { QEMU_BINARY } from './render-argv.js';

/** What probeQemu reports: the driver probe plus the binary it looked at. */
export type QemuProbe = DriverProbe & { version: string | null; binary: string };

/** The accelerator to use and why. */
export interface AccelDecision {
  accel: 'kvm' | 'tcg';
  reason: string;
}

/** The KVM device node. */
export const KVM_DEVICE = '/dev/kvm';

// Character device bits of st_mode (S_IFMT / S_IFCHR).
const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;

/** QMP commands fed to the KVM check on stdin: it answers query-kvm, then quits by itself. */
export const KVM_CHECK_QMP = '{"execute":"qmp_capabilities"}\n{"execute":"query-kvm"}\n{"execute":"quit"}\n';

/** argv of the KVM check: a paused pc machine with the `-cpu host` vCPU the renderer uses, QMP on stdio; 40-80 ms. */
export function kvmCheckArgv(binary = QEMU_BINARY): string[] {
  // `-machine none` would only prove KVM_CREATE_VM: it has no vCPU, and on some nested hosts creating a VM works while
  // loading the host CPU model's MSRs aborts QEMU (7.2 on AMD EPYC: "failed to set MSR 0x10a"). A paused pc machine
  // creates and resets the vCPU without running guest code.
  return [binary, '-accel', 'kvm', '-machine', 'pc', '-cpu', 'host', '-m', '16', '-S', '-nodefaults', '-no-user-config', '-display', 'none', '-qmp', 'stdio'];
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Runs `<binary> --version`; available is false (with the reason) when the binary is missing or says nothing parseable. */
export async function probeQemu(host: Host, binary = QEMU_BINARY): Promise<QemuProbe> {
  try {
    const res = await host.exec([binary, '--version'], { allowFailure: true, timeoutMs: 30_000 });
    const version = parseQemuVersionText(res.stdout);
    if (res.code === 0 && version) return { available: true, version, reason: null, binary };
    const why = qemuErrorText(res.stderr.split('\n').filter((l) => l.trim()).slice(0, 2).join('\n')) || res.stdout.trim() || `exit code ${res.code}`;
    return { available: false, version: null, reason: `${binary} --version failed: ${why}`, binary };
  } catch (e) {
    return { available: false, version: null, reason: `${binary} not found (install the qemu-system-x86 package): ${message(e)}`, binary };
  }
}

/** UEFI firmware pairs (read-only code, variable-store template) in the order they are preferred: Debian's ovmf package, 4 MiB builds first. */
export const OVMF_CANDIDATES = [
  { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/usr/share/OVMF/OVMF_VARS_4M.fd' },
  { code: '/usr/share/OVMF/OVMF_CODE.fd', vars: '/usr/share/OVMF/OVMF_VARS.fd' },
] as const;

/** The first installed OVMF pair (both files present), or null when UEFI guests cannot run here. */
export async function findUefiFirmware(host: Host): Promise<{ code: string; vars: string } | null> {
  for (const c of OVMF_CANDIDATES) {
    const [code, vars] = await Promise.all([host.fs.stat(c.code), host.fs.stat(c.vars)]);
    if (code?.isFile && vars?.isFile) return { code: c.code, vars: c.vars };
  }
  return null;
}

/** Chooses KVM when /dev/kvm exists and QEMU really gets a KVM VM from it; otherwise TCG, with the reason either way. */
export async function detectAccel(host: Host, binary = QEMU_BINARY): Promise<AccelDecision> {
  let st;
  try {
    st = await host.fs.stat(KVM_DEVICE);
  } catch (e) {
    return { accel: 'tcg', reason: `${KVM_DEVICE} cannot be examined (${message(e)}): software emulation (TCG)` };
  }
  if (!st) return { accel: 'tcg', reason: `${KVM_DEVICE} missing: software emulation (TCG)` };
  if ((st.mode & S_IFMT) !== S_IFCHR) return { accel: 'tcg', reason: `${KVM_DEVICE} is not a character device: software emulation (TCG)` };

  // The node can exist yet be useless (no permission, nested virtualisation off, another hypervisor owning VT-x): only
  // creating a VM proves it, and QEMU itself is the one that has to succeed.
  let res;
  try {
    res = await host.exec(kvmCheckArgv(binary), { input: KVM_CHECK_QMP, allowFailure: true, timeoutMs: 10_000 });
  } catch (e) {
    return { accel: 'tcg', reason: `${KVM_DEVICE} present but ${binary} could not be run (${message(e)}): software emulation (TCG)` };
  }
  const kvm = parseQueryKvm(res.stdout);
  if (kvm?.enabled) return { accel: 'kvm', reason: `KVM usable (${KVM_DEVICE})` };
  const why = qemuErrorText(res.stderr.split('\n').filter((l) => l.trim()).slice(0, 2).join('\n')) || firstQmpError(res.stdout) || (kvm ? 'query-kvm reports KVM not enabled' : res.signal ? `killed by ${res.signal}` : `exit code ${res.code}`);
  return { accel: 'tcg', reason: `${KVM_DEVICE} present but KVM failed: ${why}; software emulation (TCG)` };
}
