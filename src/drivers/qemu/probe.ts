// Probes for the QEMU backend: is qemu-system-x86_64 installed (which version and build), and which UEFI firmware is there.
import { causeChain } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import type { DriverProbe } from '../driver.js';
import { parseQemuVersionText, qemuMessage } from './parse.js';
import { QEMU_BINARY } from './render-argv.js';

/** What probeQemu reports: the driver probe plus the binary it looked at and its build (the first line of --version). */
export type QemuProbe = DriverProbe & { version: string | null; binary: string; build: string | null };

// The innermost cause says what went wrong (ENOENT), the outer ones what was tried.
const message = (e: unknown) => [e instanceof Error ? e.message : String(e), ...causeChain(e)].join(': ');

/** Runs `<binary> --version`; available is false (with the reason) when the binary is missing or says nothing parseable. */
export async function probeQemu(host: Host, binary = QEMU_BINARY): Promise<QemuProbe> {
  try {
    const res = await host.exec([binary, '--version'], { allowFailure: true, timeoutMs: 30_000 });
    const version = parseQemuVersionText(res.stdout);
    if (res.code === 0 && version) return { available: true, version, reason: null, binary, build: res.stdout.split('\n')[0]!.trim() };
    const why = qemuMessage(res.stderr.split('\n').filter((l) => l.trim()).slice(0, 2).join('\n')) || res.stdout.trim() || `exit code ${res.code}`;
    return { available: false, version: null, reason: `${binary} --version failed: ${why}`, binary, build: null };
  } catch (e) {
    return { available: false, version: null, reason: `${binary} not found (install the qemu-system-x86 package): ${message(e)}`, binary, build: null };
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
