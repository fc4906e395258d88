// Parsers for lxc-info output, /proc/PID/cgroup and cgroup counter files.
import type { InstanceState } from '../../shared/schemas.js';

/** State and init pid as lxc-info reports them. */
export interface LxcInfo {
  state: string | null;
  pid: number | null;
}

/** Parses `lxc-info -s -p` output ("State: RUNNING", "PID: 123"). */
export function parseLxcInfo(text: string): LxcInfo {
  let state: string | null = null;
  let pid: number | null = null;
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z ]+?):\s*(\S.*?)\s*$/.exec(line);
    if (!m) continue;
    const key = m[1]!.toLowerCase();
    if (key === 'state') state = m[2]!.toUpperCase();
    else if (key === 'pid' && /^\d+$/.test(m[2]!)) pid = Number(m[2]);
  }
  return { state, pid };
}

/** Maps an LXC state name onto Hangar's instance states. */
export function lxcStateToInstanceState(state: string | null): InstanceState {
  switch (state) {
    case 'RUNNING':
    case 'THAWED':
      return 'running';
    case 'STOPPED':
      return 'stopped';
    case 'STARTING':
      return 'starting';
    case 'STOPPING':
    case 'ABORTING':
      return 'stopping';
    case 'FROZEN':
    case 'FREEZING':
      return 'frozen';
    default:
      return 'unknown';
  }
}

/** Cgroup membership of a process: v1 controller -> path, and the v2 path. */
export interface ProcCgroups {
  v1: Record<string, string>;
  v2: string | null;
}

/** Parses /proc/PID/cgroup ("4:memory:/hgr/web", "0::/hgr/web"). */
export function parseProcCgroup(text: string): ProcCgroups {
  const out: ProcCgroups = { v1: {}, v2: null };
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') { out.v2 = m[3]!; continue; }
    for (const ctrl of m[2]!.split(',')) if (ctrl) out.v1[ctrl] = m[3]!;
  }
  return out;
}

/** Parses "key value" lines (memory.oom_control, memory.events, cpu.stat, pids.events) into numbers. */
export function parseFlatKeyed(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*(\S+)\s+(-?\d+)\s*$/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** Parses a single-number cgroup file ("12345\n"); "max" and malformed values give null. */
export function parseCgroupNumber(text: string | undefined): number | null {
  const t = text?.trim();
  return t !== undefined && /^\d+$/.test(t) ? Number(t) : null;
}

/** The last n non-empty lines of text. */
export function tailLines(text: string, n: number): string[] {
  return text.split('\n').map((l) => l.trimEnd()).filter((l) => l !== '').slice(-n);
}
