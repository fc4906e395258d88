// Parsers for QEMU output: `--version` text, and its messages on stderr or in its log.

/** A QEMU version split into numbers. */
export interface QemuVersion {
  major: number;
  minor: number;
  micro: number;
}

/** The version from `qemu-system-x86_64 --version` ("QEMU emulator version 7.2.22 (Debian ...)") as "7.2.22"; null when absent. */
export function parseQemuVersionText(text: string): string | null {
  const m = /QEMU emulator version (\d+\.\d+(?:\.\d+)?)/.exec(text);
  return m ? m[1]! : null;
}

/** Splits "7.2.22" (or "7.2") into numbers; null when malformed. */
export function splitQemuVersion(version: string | null | undefined): QemuVersion | null {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(version ?? '');
  return m ? { major: Number(m[1]), minor: Number(m[2]), micro: Number(m[3] ?? 0) } : null;
}

// Lines of a KVM register dump: noise next to the message itself.
const DUMP_LINE = /^(extra data\[\d+\]:|(R[A-Z0-9]{1,2}|R\d+|E[A-Z]{2})\s*=|[A-Z]{2,4}\s*=|Code=|DR[0-7]=|CR[0-4]=|EFER=|RIP=|RFL=|[ECSDFG]S =|LDT=|TR =|GDT=|IDT=)/;

/** QEMU's stderr or log summarised: program prefixes and timestamps, register dumps, feature warnings and its exit notice left out; lines joined with ", ". */
export function qemuMessage(stderr: string): string {
  const lines: string[] = [];
  for (const raw of stderr.split('\n')) {
    const l = raw.trim().replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z\s+/, '').replace(/^qemu-system-[\w-]+:\s*/, '').trim();
    // An assertion's source location ("../../target/i386/kvm/kvm.c:3183: ...") only repeats the line before it for developers.
    if (!l || DUMP_LINE.test(l) || /^warning: host doesn't support requested feature/.test(l) || /^terminating on signal/.test(l) || /^\.\.\/\S+:\d+: .*Assertion/.test(l)) continue;
    if (!lines.includes(l)) lines.push(l);
  }
  return lines.join(', ');
}
