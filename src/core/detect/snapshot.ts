// Reads every file virtualization detection looks at, under a root directory, into one plain snapshot.
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';

/** A file's contents, or why there are none. */
export type FileRead = { kind: 'absent' } | { kind: 'unreadable'; code: string } | { kind: 'ok'; text: string };

/** A file read from one of several candidate paths (e.g. /proc/self/x, falling back to /proc/1/x). */
export interface NamedRead {
  /** Path inside the root, as shown in evidence. */
  path: string;
  read: FileRead;
}

/** DMI fields read from /sys/class/dmi/id (absent fields are left out). */
export type DmiFields = Partial<Record<(typeof DMI_FIELDS)[number], string>>;

/** The DMI fields detection uses. */
export const DMI_FIELDS = ['sys_vendor', 'product_name', 'product_version', 'board_vendor', 'bios_vendor', 'bios_version', 'chassis_asset_tag'] as const;

/** Everything detection reads from a root, gathered before any decision is made. */
export interface VirtSnapshot {
  environ1: FileRead;
  runSystemdContainer: FileRead;
  runHostContainerManager: FileRead;
  dockerenv: boolean;
  dockerinit: boolean;
  containerenv: FileRead;
  cgroup1: FileRead;
  cgroupSelf: FileRead;
  mountinfo: NamedRead;
  status: NamedRead;
  procVz: boolean;
  procBc: boolean;
  userBeancounters: boolean;
  cpuinfo: FileRead;
  osrelease: FileRead;
  sysinfo: FileRead;
  hypervisorType: FileRead;
  guestType: FileRead;
  procXen: boolean;
  xenCapabilities: FileRead;
  dmi: DmiFields;
}

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException | undefined)?.code ?? (e instanceof Error ? e.message : String(e));
}

// ENOTDIR and ELOOP mean a path component is missing or not a directory: the file is not there.
const ABSENT_CODES = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

async function readAt(host: Host, root: string, path: string): Promise<FileRead> {
  try {
    const text = await host.fs.readTextIfExists(posix.join(root, path));
    return text === undefined ? { kind: 'absent' } : { kind: 'ok', text };
  } catch (e) {
    const code = errCode(e);
    return ABSENT_CODES.has(code) ? { kind: 'absent' } : { kind: 'unreadable', code };
  }
}

async function existsAt(host: Host, root: string, path: string): Promise<boolean> {
  try {
    return (await host.fs.stat(posix.join(root, path))) !== undefined;
  } catch {
    return false;
  }
}

// /proc/self under a foreign procfs (root = /proc/PID/root) does not resolve for a process outside that
// PID namespace, so the container's init (/proc/1) stands in for "self" there.
async function readSelfOr1(host: Host, root: string, file: string): Promise<NamedRead> {
  const self = await readAt(host, root, `/proc/self/${file}`);
  if (self.kind !== 'absent') return { path: `/proc/self/${file}`, read: self };
  return { path: `/proc/1/${file}`, read: await readAt(host, root, `/proc/1/${file}`) };
}

/** Reads the snapshot for a root directory ("/" for the machine itself, /proc/PID/root for a container). */
export async function readSnapshot(host: Host, root: string): Promise<VirtSnapshot> {
  try {
    await host.fs.readdir(root);
  } catch (e) {
    const code = errCode(e);
    if (code === 'ENOENT') throw new AppError('NOT_FOUND', `Root directory "${root}" does not exist`, { cause: e });
    throw new AppError('INVALID_ARGUMENT', `Cannot read root directory "${root}"`, { cause: e });
  }
  const r = (p: string) => readAt(host, root, p);
  const e = (p: string) => existsAt(host, root, p);
  const dmiEntries = await Promise.all(
    DMI_FIELDS.map(async (f) => {
      const read = await r(`/sys/class/dmi/id/${f}`);
      return [f, read.kind === 'ok' ? read.text.trim() : undefined] as const;
    }),
  );
  const dmi: DmiFields = {};
  for (const [f, v] of dmiEntries) if (v) dmi[f] = v;
  const [environ1, runSystemdContainer, runHostContainerManager, dockerenv, dockerinit, containerenv, cgroup1, cgroupSelf, mountinfo, status] =
    await Promise.all([
      r('/proc/1/environ'),
      r('/run/systemd/container'),
      r('/run/host/container-manager'),
      e('/.dockerenv'),
      e('/.dockerinit'),
      r('/run/.containerenv'),
      r('/proc/1/cgroup'),
      r('/proc/self/cgroup'),
      readSelfOr1(host, root, 'mountinfo'),
      readSelfOr1(host, root, 'status'),
    ] as const);
  const [procVz, procBc, userBeancounters, cpuinfo, osrelease, sysinfo, hypervisorType, guestType, procXen, xenCapabilities] = await Promise.all([
    e('/proc/vz'),
    e('/proc/bc'),
    e('/proc/user_beancounters'),
    r('/proc/cpuinfo'),
    r('/proc/sys/kernel/osrelease'),
    r('/proc/sysinfo'),
    r('/sys/hypervisor/type'),
    r('/sys/hypervisor/guest_type'),
    e('/proc/xen'),
    r('/proc/xen/capabilities'),
  ] as const);
  return {
    environ1, runSystemdContainer, runHostContainerManager, dockerenv, dockerinit, containerenv, cgroup1, cgroupSelf, mountinfo, status,
    procVz, procBc, userBeancounters, cpuinfo, osrelease, sysinfo, hypervisorType, guestType, procXen, xenCapabilities, dmi,
  };
}

/** The text of a read, or '' when the file is absent or unreadable. */
export function textOf(read: FileRead): string {
  return read.kind === 'ok' ? read.text : '';
}
