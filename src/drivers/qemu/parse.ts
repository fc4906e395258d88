// Parsers for QEMU output: `--version` text and QMP messages (greeting, query-kvm answers, errors).

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

/** One decoded QMP message. */
export type QmpMessage = Record<string, unknown>;

/** Decodes a QMP stream (one JSON object per line, as `-qmp stdio` writes it); lines that are not JSON objects are skipped. */
export function parseQmpStream(text: string): QmpMessage[] {
  const out: QmpMessage[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    try {
      const v: unknown = JSON.parse(t);
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) out.push(v as QmpMessage);
    } catch {
      // A partial line (the process died mid-write) carries nothing usable.
    }
  }
  return out;
}

/** The KVM state a `query-kvm` answer reports. */
export interface QmpKvmState {
  present: boolean;
  enabled: boolean;
}

/** Finds the `query-kvm` answer ({"return": {"enabled": .., "present": ..}}) in a QMP stream; null when there is none. */
export function parseQueryKvm(text: string): QmpKvmState | null {
  for (const msg of parseQmpStream(text)) {
    const ret = msg.return;
    if (ret === null || typeof ret !== 'object' || Array.isArray(ret)) continue;
    const r = ret as Record<string, unknown>;
    if (typeof r.present === 'boolean' && typeof r.enabled === 'boolean') return { present: r.present, enabled: r.enabled };
  }
  return null;
}

/** The first QMP error in a stream as "Class: description"; null when there is none. */
export function firstQmpError(text: string): string | null {
  for (const msg of parseQmpStream(text)) {
    const err = msg.error;
    if (err === null || typeof err !== 'object') continue;
    const e = err as Record<string, unknown>;
    return `${typeof e.class === 'string' ? e.class : 'Error'}: ${typeof e.desc === 'string' ? e.desc : JSON.stringify(e)}`;
  }
  return null;
}

/** QEMU's own error lines without the "qemu-system-x86_64: " program prefix, joined with "; "; empty input gives "". */
export function qemuErrorText(stderr: string): string {
  return stderr
    .split('\n')
    .map((l) => l.trim().replace(/^qemu-system-[\w-]+:\s*/, ''))
    .filter(Boolean)
    .join('; ');
}
