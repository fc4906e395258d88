// One QEMU VM as the driver's modules see it: its record, its host's QEMU facts, the files of its instance directory and volume, its monitor.
import { posix } from 'node:path';
import type { Host } from '../../host/host.js';
import type { DriverEnv, DriverProbe, InstanceRecord } from '../driver.js';
import type { VmAccelerator } from './accel-check.js';
import type { Accel, AccelMode } from './accel.js';
import { qemuPaths } from './render-argv.js';
import type { Monitor } from './sessions.js';

/** Root disk of a VM inside its instance volume. */
export const ROOT_DISK = 'root.qcow2';
/** UEFI variable store of a VM inside its instance volume. */
export const UEFI_VARS = 'efivars.fd';

/** What the QEMU driver keeps per host: the daemon's environment there, QEMU's version, the accelerator state and OVMF. */
export interface QemuHost {
  env: DriverEnv;
  probe: DriverProbe;
  version: string | null;
  /** Null when QEMU is not available on the host. */
  accel: VmAccelerator | null;
  uefi: { code: string; vars: string } | null;
}

/** How one QEMU run was started: its accelerator and why, when, how long the console log was then, and a KVM fault it replaces. */
export interface RunRecord {
  choice: { accel: Accel; reason: string; requested: AccelMode };
  startedAt: string;
  consoleBytes: number;
  fallback?: { reason: string; at: string };
}

/** QEMU's own files of a VM (render-argv's qemuPaths) and the driver's records next to them. */
export interface VmFiles extends ReturnType<typeof qemuPaths> {
  /** The root disk, in the instance volume. */
  rootDisk: string;
  /** Which hot-plug port each extra disk sits on (JSON: device name → port id). */
  ports: string;
  /** The machine type pinned at first start, so saved states and snapshots always load into the ABI they were made with. */
  machine: string;
  /** RAM and device state saved by stop --stateful; the next start resumes from it. */
  state: string;
  /** The accelerator the saved state was made under (its vCPU model must match on resume). */
  stateAccel: string;
  /** How the running QEMU was started (RunRecord). */
  run: string;
  /** The fault of the running QEMU, once it faulted. */
  fault: string;
  /** Left by a fault under KVM for the restart with software emulation, which records it in its RunRecord. */
  fallback: string;
}

/** Where the files of the VM of record live. */
export function vmFiles(record: InstanceRecord): VmFiles {
  const dir = (name: string) => posix.join(record.instanceDir, name);
  return {
    ...qemuPaths(record.instanceDir),
    rootDisk: posix.join(record.rootPath, ROOT_DISK),
    ports: dir('ports.json'),
    machine: dir('machine'),
    state: dir('state.bin'),
    stateAccel: dir('state.accel'),
    run: dir('run.json'),
    fault: dir('fault.json'),
    fallback: dir('accel-fallback.json'),
  };
}

/** One VM: what every module of the driver works on. */
export interface Vm {
  readonly record: InstanceRecord;
  readonly q: QemuHost;
  readonly host: Host;
  readonly files: VmFiles;
  /** The VM's QMP session (connected on first use, kept for QEMU's lifetime). */
  mon(): Promise<Monitor>;
  /** The session with its run state settled (after a STOP, the answer to query-status is in). */
  settledMon(): Promise<Monitor>;
}

/** A JSON file the driver wrote, or undefined when it is missing or unreadable. */
export async function readJson<T>(host: Host, path: string): Promise<T | undefined> {
  const text = await host.fs.readTextIfExists(path);
  try {
    return text ? (JSON.parse(text) as T) : undefined;
  } catch {
    return undefined;
  }
}

/** Writes value as one JSON line, atomically. */
export async function writeJson(host: Host, path: string, value: unknown): Promise<void> {
  await host.fs.writeAtomic(path, `${JSON.stringify(value)}\n`);
}

/** The trimmed text of a small file the driver wrote, or undefined when it is missing. */
export async function readTrimmed(host: Host, path: string): Promise<string | undefined> {
  return (await host.fs.readTextIfExists(path))?.trim();
}
