// CPUID hypervisor signature: runs the native probe (native/cpuid.c) and maps signatures to virt-what facts.
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';

/** Hypervisor families a CPUID signature (leaf 0x40000000) names, keyed by the signature without padding. */
const SIGNATURES: ReadonlyMap<string, string> = new Map([
  ['KVMKVMKVM', 'kvm'],
  ['TCGTCGTCGTCG', 'qemu'],
  ['XenVMMXenVMM', 'xen'],
  ['Microsoft Hv', 'hyperv'],
  ['VMwareVMware', 'vmware'],
  ['VBoxVBoxVBox', 'virtualbox'],
  ['bhyve bhyve', 'bhyve'],
  ['prl hyperv', 'parallels'],
  // Some Parallels versions store the signature byte-swapped.
  ['lrpepyh  vr', 'parallels'],
  ['lrpepyh vr', 'parallels'],
  ['ACRNACRNACRN', 'acrn'],
  ['QNXQVMBSQG', 'qnx'],
]);

/** The virt-what fact for a CPUID signature, or undefined when the signature is unknown. */
export function cpuidFamily(signature: string): string | undefined {
  // Signatures are padded with spaces or NULs to 12 bytes; the padding varies between versions.
  return SIGNATURES.get(signature.replace(/[\s\0]+$/, '').replace(/^[\s\0]+/, ''));
}

/**
 * Runs the probe binary and returns the hypervisor signature exactly as read (trailing spaces kept),
 * null when the CPU reports no hypervisor, or '' when the hypervisor bit is set but the leaf is empty.
 * Throws UNSUPPORTED on CPUs without CPUID and HOST_FAILED when the probe cannot run.
 */
export async function readCpuidSignature(host: Host, probePath: string): Promise<string | null> {
  const res = await host.exec([probePath], { allowFailure: true, timeoutMs: 10_000 });
  switch (res.code) {
    case 0:
      // The probe ends the signature with exactly one newline; everything before it is the signature.
      return res.stdout.endsWith('\n') ? res.stdout.slice(0, -1) : res.stdout;
    case 1:
      return null;
    case 2:
      return '';
    case 3:
      throw new AppError('UNSUPPORTED', `CPUID is not available on this architecture (probe ${probePath})`);
    default:
      throw new AppError('HOST_FAILED', `CPUID probe ${probePath} failed`, {
        cause: new Error(res.stderr.trim() || (res.signal ? `killed by ${res.signal}` : `exit code ${res.code}`)),
      });
  }
}
