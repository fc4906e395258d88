// The QEMU process of a VM: launching it daemonized, finding it by its pid file, waiting for and forcing its exit, and what it uses.
import { AppError } from '../../shared/errors.js';
import type { Usage } from '../../shared/schemas.js';
import { procKbField, procStatField, readProcStartTime } from '../../host/procfs.js';
import { qemuMessage } from './parse.js';
import { dropSessions } from './sessions.js';
import type { Vm } from './vm.js';

const QUIT_WAIT_MS = 5_000;
// QEMU exits within milliseconds of a quit: poll finely so a forced stop is not dominated by the wait.
const POLL_MS = 5;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Removes what an earlier QEMU run left (pid file, sockets, its log, a recorded fault) before a new one starts. */
export async function removeRunFiles(vm: Vm): Promise<void> {
  const f = vm.files;
  for (const p of [f.pid, f.qmp, f.console, f.qga, f.vnc, f.log, f.fault]) await vm.host.fs.rm(p, { force: true });
}

/** Runs QEMU's argv; BACKEND_FAILED with QEMU's own words when it refuses to start. */
export async function launchQemu(vm: Vm, argv: readonly string[]): Promise<void> {
  // -daemonize: QEMU checks its arguments and devices, then detaches into its own session and outlives hangard; with -D
  // its messages (start-up errors too) go to its log.
  const res = await vm.host.exec(argv, { allowFailure: true, timeoutMs: 60_000 });
  if (res.code !== 0) {
    const said = qemuMessage(`${res.stderr}\n${(await vm.host.fs.readTextIfExists(vm.files.log)) ?? ''}`);
    throw new AppError('BACKEND_FAILED', `Failed to start instance "${vm.record.name}": QEMU exited with code ${res.code}`, { cause: new Error(said || 'no message') });
  }
}

/** The pid in the pid file when it names a live QEMU of this VM ("guest=<name>" on its command line), else null. */
export async function livePid(vm: Vm): Promise<number | null> {
  const text = await vm.host.fs.readTextIfExists(vm.files.pid);
  const pid = Number(text?.trim());
  if (!Number.isInteger(pid) || pid <= 0) return null;
  const cmdline = await vm.host.fs.readTextIfExists(`/proc/${pid}/cmdline`);
  const name = vm.record.name;
  if (!cmdline || !cmdline.split('\0').some((a) => a.startsWith(`guest=${name},`) || a === `guest=${name}`)) return null;
  return pid;
}

/** Waits up to timeoutMs for the VM's QEMU to be gone; true when it is. */
export async function waitExit(vm: Vm, pid: number | null, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (pid === null || (await livePid(vm)) === null) return true;
    if (Date.now() >= until) return false;
    await sleep(POLL_MS);
  }
}

/** Ends QEMU at once: QMP quit, then SIGTERM, then SIGKILL; its sessions are dropped. */
export async function killQemu(vm: Vm): Promise<void> {
  const pid = await livePid(vm);
  if (pid === null) { dropSessions(vm.files); return; }
  try {
    const m = await Promise.race([vm.mon(), sleep(1_000).then(() => undefined)]);
    await m?.qmp.quit({ timeoutMs: 1_000 });
  } catch { /* fall back to signals */ }
  if (!(await waitExit(vm, pid, QUIT_WAIT_MS))) await vm.host.kill(pid, 'SIGTERM');
  if (!(await waitExit(vm, pid, QUIT_WAIT_MS))) await vm.host.kill(pid, 'SIGKILL');
  await waitExit(vm, pid, QUIT_WAIT_MS);
  dropSessions(vm.files);
}

/** The RAM QEMU was started with (its -m argument), in bytes. */
export async function bootMemory(vm: Vm, pid: number | null): Promise<number | undefined> {
  if (pid === null) return undefined;
  const args = (await vm.host.fs.readTextIfExists(`/proc/${pid}/cmdline`))?.split('\0') ?? [];
  const m = /^(\d+)M$/.exec(args[args.indexOf('-m') + 1] ?? '');
  return m ? Number(m[1]) * 1024 ** 2 : undefined;
}

/** The process's start time (field 22 of /proc/pid/stat, in clock ticks since boot), or null when unreadable. */
export function startTimeOf(vm: Vm, pid: number): Promise<number | null> {
  return readProcStartTime(vm.host, pid);
}

/** CPU time and memory of the QEMU process, and the traffic of the VM's tap; empty when QEMU does not run. */
export async function qemuUsage(vm: Vm): Promise<Usage> {
  const pid = await livePid(vm);
  if (pid === null) return {};
  const tap = vm.record.nic.hostIfName;
  const [stat, status, rx, tx] = await Promise.all([
    vm.host.fs.readTextIfExists(`/proc/${pid}/stat`),
    vm.host.fs.readTextIfExists(`/proc/${pid}/status`),
    vm.host.fs.readTextIfExists(`/sys/class/net/${tap}/statistics/tx_bytes`),
    vm.host.fs.readTextIfExists(`/sys/class/net/${tap}/statistics/rx_bytes`),
  ]);
  const out: Usage = {};
  if (stat) {
    // utime + stime (fields 14 and 15), in clock ticks of 10 ms.
    out.cpuTimeNs = ((procStatField(stat, 14) ?? 0) + (procStatField(stat, 15) ?? 0)) * 10_000_000;
  }
  const rss = procKbField(status ?? '', 'VmRSS');
  const peak = procKbField(status ?? '', 'VmHWM');
  if (rss !== undefined) out.memoryBytes = rss;
  if (peak !== undefined) out.memoryPeakBytes = peak;
  // The host side of the tap sends what the guest receives.
  if (rx !== undefined) out.rxBytes = Number(rx.trim());
  if (tx !== undefined) out.txBytes = Number(tx.trim());
  return out;
}
