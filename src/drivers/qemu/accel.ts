// Pure parts of the accelerator choice: the test guests' argv and output, the KVM verdict from their runs, and the choice per VM.
import { PROBE_CODE_HEX, PROBE_RESET_HEX } from './accel-probe-rom.js';
import { qemuMessage } from './parse.js';

/** What a user can ask for: the daemon's HANGAR_ACCEL and a VM's boot.accel. */
export const ACCEL_MODES = ['auto', 'kvm', 'tcg'] as const;

/** auto (KVM where it runs guests, else TCG), kvm (refused where KVM does not work) or tcg (always works). */
export type AccelMode = (typeof ACCEL_MODES)[number];

/** An accelerator QEMU runs a guest with. */
export type Accel = 'kvm' | 'tcg';

/** The vCPU model per accelerator: under KVM the host's own model (fastest, most capable); under TCG qemu64 (measured fastest to boot). */
export const CPU_MODEL: Record<Accel, string> = { kvm: 'host', tcg: 'qemu64' };

/** How far the ROM probe got, in the order its guest passes the stages. */
export const ROM_STAGES = ['none', 'real', 'protected', 'long', 'done'] as const;

/** One run of a test guest under one accelerator. */
export interface GuestRun {
  accel: Accel;
  /** ROM probe: the last of ROM_STAGES reached; Linux boot: 'booted' or 'none'. */
  reached: string;
  /** The guest did all it should (ROM: every stage and the right checksum; Linux: its marker). */
  ok: boolean;
  elapsedMs: number;
  /** QEMU was still running at the deadline and was killed. */
  timedOut: boolean;
  /** QEMU's own words on stderr, summarised (register dumps and feature warnings left out); '' when it said nothing. */
  message: string;
}

/** Everything known about KVM on one host: what the device node is, and how the test guests ran. */
export interface AccelEvidence {
  device: { state: 'present' | 'missing' | 'not-char' | 'unreadable'; detail?: string };
  /** The ROM probe under KVM and under TCG (absent when the device is not there). */
  rom?: { kvm: GuestRun; tcg: GuestRun };
  /** The Linux boot under KVM and under TCG, or why it could not run; absent while it has not run yet. */
  linux?: { kvm: GuestRun; tcg: GuestRun; kvmDeadlineMs: number } | { error: string };
  /** A VM that faulted under KVM before its guest ever did anything (recorded by the driver). */
  fault?: { instance: string; reason: string; at: string };
}

/** What the evidence says about KVM: usable, not usable, or not known yet (null: the Linux boot check is still to run). */
export interface KvmVerdict {
  usable: boolean | null;
  /** Why, in a user's words. */
  reason: string;
}

/** The 64 KiB BIOS ROM of the probe guest (native/accel-probe.S): code at offset 0, the reset vector at 0xfff0. */
export function probeRom(): Buffer {
  const rom = Buffer.alloc(0x10000);
  Buffer.from(PROBE_CODE_HEX, 'hex').copy(rom, 0);
  Buffer.from(PROBE_RESET_HEX, 'hex').copy(rom, 0xfff0);
  return rom;
}

/** The checksum the probe guest must print: xorshift64 (13, 7, 17) from its seed, 65536 rounds, as 16 hex digits. */
export function probeChecksum(): string {
  const mask = (1n << 64n) - 1n;
  let x = 0x9e3779b97f4a7c15n;
  for (let i = 0; i < 65536; i++) {
    x ^= (x << 13n) & mask;
    x ^= x >> 7n;
    x ^= (x << 17n) & mask;
  }
  return x.toString(16).padStart(16, '0');
}

/** The isa-debug-exit status the probe guest ends QEMU with: (0x10 << 1) | 1. */
export const PROBE_EXIT_CODE = 33;

/** argv of one ROM probe run: the ROM as BIOS, its serial port on stdout, the exit port; nothing else. */
export function romProbeArgv(binary: string, accel: Accel, romPath: string): string[] {
  return [
    binary, '-accel', accel, '-cpu', CPU_MODEL[accel], '-machine', 'q35', '-m', '16', '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-sandbox', 'on',
    '-bios', romPath, '-serial', 'stdio', '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
  ];
}

/** A Linux guest for the boot check: a kernel, an initramfs whose init prints marker and powers off, and its command line. */
export interface LinuxTestGuest {
  kernel: string;
  initrd: string;
  cmdline: string;
  marker: string;
}

/** argv of one Linux boot check: the machine and vCPU VMs get, the kernel's console on stdout, no reboot after a panic. */
export function linuxCheckArgv(binary: string, accel: Accel, guest: LinuxTestGuest): string[] {
  return [
    binary, '-accel', accel, '-cpu', CPU_MODEL[accel], '-machine', 'q35', '-m', '256', '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-sandbox', 'on', '-no-reboot',
    '-kernel', guest.kernel, '-initrd', guest.initrd, '-append', guest.cmdline, '-serial', 'stdio',
  ];
}

/** Reads one ROM probe run from what QEMU printed and how it ended. */
export function parseRomRun(accel: Accel, out: { stdout: string; stderr: string; code: number; timedOut: boolean; elapsedMs: number }): GuestRun {
  const m = /hangar-probe:((?: real| protected| long)*)(?: ([0-9a-f]{16}))?/.exec(out.stdout);
  const words = (m?.[1] ?? '').trim().split(' ').filter(Boolean);
  let reached: string = words.at(-1) ?? 'none';
  const ok = reached === 'long' && m?.[2] === probeChecksum() && out.code === PROBE_EXIT_CODE;
  if (ok) reached = 'done';
  return { accel, reached, ok, elapsedMs: out.elapsedMs, timedOut: out.timedOut, message: qemuMessage(out.stderr) };
}

/** Reads one Linux boot check from what QEMU printed: booted once the marker is on the console. */
export function parseLinuxRun(accel: Accel, marker: string, out: { stdout: string; stderr: string; timedOut: boolean; elapsedMs: number }): GuestRun {
  const ok = out.stdout.includes(marker);
  return { accel, reached: ok ? 'booted' : 'none', ok, elapsedMs: out.elapsedMs, timedOut: out.timedOut, message: qemuMessage(out.stderr) };
}

const ms = (n: number) => (n < 10_000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(0)} s`);
const PRESENT_BUT_FAILING = '/dev/kvm is present but guests fail under it';

/** How a failed ROM run under KVM reads: QEMU's own words, else where the guest stopped. */
function romFailure(kvm: GuestRun, tcg: GuestRun): string {
  const tcgPart = tcg.ok ? `; software emulation ran it in ${ms(tcg.elapsedMs)}` : '';
  if (!kvm.timedOut && kvm.reached === 'none' && kvm.message) return `/dev/kvm is present but QEMU cannot run a guest with it: ${kvm.message}`;
  const where = kvm.reached === 'none' ? 'before its first instruction' : `after ${kvm.reached} mode`;
  const stall = kvm.timedOut ? ` and made no progress for ${ms(kvm.elapsedMs)}` : '';
  return `${PRESENT_BUT_FAILING}: ${kvm.message ? `${kvm.message}; ` : ''}a test guest stopped ${where}${stall}${tcgPart}`;
}

/** The KVM verdict from the evidence: a fault seen at run time wins, then the ROM probe, then the Linux boot. */
export function judgeKvm(e: AccelEvidence): KvmVerdict {
  switch (e.device.state) {
    case 'missing': return { usable: false, reason: '/dev/kvm does not exist (no hardware virtualization is exposed to this machine)' };
    case 'not-char': return { usable: false, reason: '/dev/kvm is not a character device' };
    case 'unreadable': return { usable: false, reason: `/dev/kvm cannot be examined${e.device.detail ? ` (${e.device.detail})` : ''}` };
    case 'present': break;
  }
  if (e.fault) return { usable: false, reason: `${PRESENT_BUT_FAILING}: VM "${e.fault.instance}" faulted under KVM before its guest started (${e.fault.reason}) at ${e.fault.at}` };
  if (!e.rom) return { usable: null, reason: '/dev/kvm is present; checking whether guests run under it' };
  const { kvm, tcg } = e.rom;
  if (!tcg.ok) return { usable: false, reason: `QEMU cannot run a test guest even with software emulation (${tcg.message || `it stopped after ${tcg.reached} mode`}), so nothing tells whether KVM works` };
  if (!kvm.ok) return { usable: false, reason: romFailure(kvm, tcg) };
  const rom = `a test guest ran under KVM in real, protected and long mode in ${ms(kvm.elapsedMs)}`;
  if (!e.linux) return { usable: null, reason: `/dev/kvm is present and ${rom}; checking that a Linux guest boots under it` };
  if ('error' in e.linux) return { usable: true, reason: `KVM runs guests here (${rom}); the Linux boot check could not run (${e.linux.error}), so a VM whose guest faults under KVM at once is restarted with software emulation` };
  const { kvm: lk, tcg: lt, kvmDeadlineMs } = e.linux;
  if (lk.ok) return { usable: true, reason: `KVM runs guests here: a Linux test guest booted in ${ms(lk.elapsedMs)} under KVM (${ms(lt.elapsedMs)} with software emulation)` };
  if (!lt.ok) return { usable: true, reason: `KVM runs guests here (${rom}); the Linux test guest did not boot with software emulation either (${lt.message || 'no marker'}), so its boot check says nothing about KVM` };
  const what = lk.message || `a Linux test guest that boots in ${ms(lt.elapsedMs)} with software emulation ${lk.timedOut ? `did not boot within ${ms(kvmDeadlineMs)}` : 'did not boot'}`;
  return { usable: false, reason: `${PRESENT_BUT_FAILING}: ${what}` };
}

/** The accelerator one VM gets, or why it cannot have what it asked for. */
export type AccelChoice = { accel: Accel; reason: string } | { refused: string };

/** Chooses for one VM: `requested` comes from `source` (boot.accel or HANGAR_ACCEL); null when KVM's verdict is still pending under auto or kvm. */
export function chooseAccel(requested: AccelMode, source: string, kvm: KvmVerdict): AccelChoice | null {
  if (requested === 'tcg') return { accel: 'tcg', reason: `software emulation (TCG), as ${source}=tcg asks` };
  if (kvm.usable === null) return null;
  if (requested === 'kvm') return kvm.usable ? { accel: 'kvm', reason: `hardware virtualization (KVM), as ${source}=kvm asks` } : { refused: `${source}=kvm, but KVM is not usable on this host: ${kvm.reason}` };
  return kvm.usable ? { accel: 'kvm', reason: `hardware virtualization (KVM): ${kvm.reason}` } : { accel: 'tcg', reason: `${kvm.reason}; using software emulation (TCG)` };
}
