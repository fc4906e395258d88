// The QEMU/KVM driver: VMs started directly (no libvirt), daemonized in their own session, driven over QMP and the guest agent.
import { posix } from 'node:path';
import { PassThrough, type Duplex } from 'node:stream';
import { AppError, isAppError } from '../../shared/errors.js';
import { devicesOf, resourcesOf, type DiskDevice, type InstanceConfig } from '../../shared/config.js';
import type { Usage } from '../../shared/schemas.js';
import type { Host, HostProcess } from '../../host/host.js';
import { procStatField } from '../../host/procfs.js';
import { Reverter } from '../../host/reverter.js';
import type { HostFacts } from '../../host/facts.js';
import type { ConfigApplyResult, Driver, DriverEnv, DriverProbe, ExecSpec, HostDriver, InstanceHandle, InstanceRecord, ObservedState, StopOptions } from '../driver.js';
import { QemuAccel, type VmAccelerator } from './accel-check.js';
import { ACCEL_MODES } from './accel.js';
import { hostFitProblems } from '../host-fit.js';
import { QmpClient } from './qmp/client.js';
import { QgaClient, withCwd } from './qga.js';
import { findUefiFirmware, probeQemu } from './probe.js';
import { buildSeedIso, renderNoCloudSeed } from './cloud-init.js';
import { cpuControllerRoot, placeVm, removeVmCgroup, vmCgroupDir, vmCpuCgroupWrites, writeLimits } from './cgroup.js';
import type { Accel, AccelMode } from './accel.js';
import { qemuMessage } from './parse.js';
import { DEFAULT_MEMORY_BYTES, HOTPLUG_PORTS, QEMU_NODES, hotplugPort, ioLimitsOf, isQ35, machineFamilyOf, qemuMachineType, qemuPaths, renderQemuArgv, throttleLimits, type QemuBoot, type QemuDisk } from './render-argv.js';

/** The least limits.memory a VM gets: a Linux guest kernel and its initramfs must fit. */
export const QEMU_MIN_MEMORY = 64 * 1024 ** 2;

const QMP_CONNECT_MS = 5_000;
const QUIT_WAIT_MS = 5_000;
const POWERDOWN_REPEAT_MS = 3_000;
// QEMU exits within milliseconds of a quit: poll finely so a forced stop is not dominated by the wait.
const POLL_MS = 5;
const AGENT_READY_MS = 30_000;
// A guest releases a PCIe disk after the attention button's 5 s grace period; software emulation adds to that.
const UNPLUG_WAIT_MS = 30_000;
const GUEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Root disk of a VM inside its instance volume. */
export const ROOT_DISK = 'root.qcow2';
/** UEFI variable store of a VM inside its instance volume. */
export const UEFI_VARS = 'efivars.fd';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** QMP run states the guest cannot leave without a reset (a KVM internal error, a disk error, a panic or power-off held paused): the VM is in error, not frozen. */
export const FAULT_RUN_STATES: ReadonlySet<string> = new Set(['internal-error', 'io-error', 'guest-panicked', 'shutdown']);

/** A fault of a VM: why, and since when. */
export interface VmFault { reason: string; since: string }

// One QMP connection per VM for the daemon's lifetime: QEMU serves one client at a time, and STOP/RESUME events keep the
// run state current without a round trip per state() call.
interface Monitor {
  qmp: QmpClient;
  /** The vCPUs run (false when paused by the user, while migrating, or after a fault). */
  running: boolean;
  /** The QMP run state as learned at connect and after every STOP. */
  status: string;
  /** Settles once the run state after the latest STOP is known (and a fault's reason is read). */
  settled: Promise<void>;
  /** The fault while the VM is in one of FAULT_RUN_STATES. */
  fault: VmFault | null;
  /** Resolves when the VM faults: waits on the guest (its agent) end at once. */
  faulted: Promise<VmFault>;
  /** The last BLOCK_IO_ERROR event's data: why an io-error stop happened. */
  ioError: Record<string, unknown> | null;
  /** The guest agent answered during this QEMU run. */
  agentSeen: boolean;
}

/** What the instance that opens a monitor contributes: lifecycle events, and the reading of a fault. */
interface MonitorHooks {
  event?: (type: string, data: Record<string, unknown>) => void;
  fault: (m: Monitor) => Promise<VmFault>;
}

const monitors = new Map<string, Promise<Monitor>>();
const agents = new Map<string, Promise<QgaClient>>();

// QMP events that become Hangar lifecycle events, seen the moment QEMU sends them.
const QMP_EVENTS: Record<string, string> = {
  SHUTDOWN: 'instance-shutdown',
  RESET: 'instance-reset',
  STOP: 'instance-paused',
  RESUME: 'instance-resumed',
  GUEST_PANICKED: 'instance-panicked',
  BALLOON_CHANGE: 'instance-balloon-changed',
};

async function monitor(host: Host, qmpPath: string, hooks: MonitorHooks): Promise<Monitor> {
  const cached = monitors.get(qmpPath);
  if (cached) return cached;
  const p: Promise<Monitor> = (async () => {
    const qmp = await QmpClient.connect(host, qmpPath, { retryForMs: QMP_CONNECT_MS });
    const st = await qmp.queryStatus();
    let signalFault: (f: VmFault) => void = () => undefined;
    const m: Monitor = {
      qmp, running: st.running, status: st.status, settled: Promise.resolve(), fault: null, ioError: null, agentSeen: false,
      faulted: new Promise<VmFault>((r) => { signalFault = r; }),
    };
    const learnFault = async () => {
      if (!FAULT_RUN_STATES.has(m.status) || m.fault) return;
      m.fault = await hooks.fault(m);
      signalFault(m.fault);
    };
    // A STOP says nothing about why: the run state does (paused by the user, or a fault).
    qmp.on('STOP', () => {
      m.running = false;
      m.settled = qmp.queryStatus().then((s) => { m.status = s.status; m.running = s.running; return learnFault(); }).catch(() => undefined);
    });
    qmp.on('RESUME', () => {
      m.running = true;
      m.status = 'running';
      // Only a system_reset (through the monitor) lets a faulted VM run again.
      if (m.fault) { m.fault = null; m.faulted = new Promise<VmFault>((r) => { signalFault = r; }); }
    });
    qmp.on('BLOCK_IO_ERROR', (e) => { m.ioError = e.data ?? {}; });
    if (hooks.event) {
      const notify = hooks.event;
      for (const [ev, type] of Object.entries(QMP_EVENTS)) qmp.on(ev, (e) => notify(type, { ...e.data, qmpEvent: ev }));
    }
    qmp.on('disconnected', () => { if (monitors.get(qmpPath) === p) monitors.delete(qmpPath); });
    // A VM that faulted while nobody watched (hangard was down) is seen as such at once.
    m.settled = learnFault().catch(() => undefined);
    return m;
  })();
  p.catch(() => { if (monitors.get(qmpPath) === p) monitors.delete(qmpPath); });
  monitors.set(qmpPath, p);
  return p;
}

function dropMonitor(qmpPath: string): void {
  const p = monitors.get(qmpPath);
  monitors.delete(qmpPath);
  void p?.then((m) => m.qmp.close(), () => undefined);
}

async function agent(host: Host, qgaPath: string): Promise<QgaClient> {
  const cached = agents.get(qgaPath);
  if (cached) {
    // A client of an earlier QEMU (the guest powered off and was started again) is replaced.
    const c = await cached.catch(() => undefined);
    if (c?.connected) return c;
    if (agents.get(qgaPath) === cached) agents.delete(qgaPath);
  }
  const p = QgaClient.connect(host, qgaPath, { timeoutMs: 2_000 });
  p.catch(() => { if (agents.get(qgaPath) === p) agents.delete(qgaPath); });
  agents.set(qgaPath, p);
  return p;
}

function dropAgent(qgaPath: string): void {
  const p = agents.get(qgaPath);
  agents.delete(qgaPath);
  void p?.then((a) => a.close(), () => undefined);
}

/** How one QEMU run was started: its accelerator and why, when, how long the console log was then, and a KVM fault it replaces. */
interface RunRecord {
  choice: { accel: Accel; reason: string; requested: AccelMode };
  startedAt: string;
  consoleBytes: number;
  fallback?: { reason: string; at: string };
}

/** The lowest hot-plug port no disk uses, or undefined when all are taken. */
function freePort(ports: Record<string, string>): string | undefined {
  const used = new Set(Object.values(ports));
  for (let i = 0; i < HOTPLUG_PORTS; i++) if (!used.has(hotplugPort(i))) return hotplugPort(i);
  return undefined;
}

/** The kernel command line of a kernel-booted VM: boot.cmdline or the image's own, plus the instance's identity and address. */
export function kernelCmdline(record: InstanceRecord): string {
  const base = (record.config['boot.kernel'] ? record.config['boot.cmdline'] : record.imageProps.cmdline) || 'console=ttyS0';
  const nic = record.nic;
  return `${base} hangar.hostname=${record.name} hangar.ip=${nic.ipv4}/${nic.prefixLength} hangar.gw=${nic.gateway}`;
}

/** Firmware of a disk-booted VM: boot.firmware, else the image's `firmware` property, else BIOS. */
export function firmwareOf(record: InstanceRecord): 'bios' | 'uefi' {
  return (record.config['boot.firmware'] ?? record.imageProps.firmware) === 'uefi' ? 'uefi' : 'bios';
}

/** The instance's own UEFI variable store (boot entries survive restarts and copies), in its volume. */
export function uefiVarsPath(record: InstanceRecord): string {
  return posix.join(record.rootPath, UEFI_VARS);
}

/**
 * How a VM boots: boot.kernel when set; else the image's kernel (the busybox image) unless boot.firmware asks for a
 * firmware boot; else the disk's own boot loader through SeaBIOS or OVMF (`uefiCode` is the host's OVMF code file).
 */
export function bootOf(record: InstanceRecord, uefiCode?: string | null): QemuBoot {
  const kernel = record.config['boot.kernel'];
  if (kernel) {
    const initrd = record.config['boot.initrd'];
    return { kind: 'kernel', kernel, ...(initrd ? { initrd } : {}), cmdline: kernelCmdline(record) };
  }
  const props = record.imageProps;
  if (props.kernel && record.imagePath && record.config['boot.firmware'] === undefined) {
    return {
      kind: 'kernel',
      kernel: posix.join(record.imagePath, props.kernel),
      ...(props.initrd ? { initrd: posix.join(record.imagePath, props.initrd) } : {}),
      cmdline: kernelCmdline(record),
    };
  }
  if (firmwareOf(record) === 'uefi') {
    if (!uefiCode) throw new AppError('UNSUPPORTED', `Instance "${record.name}" needs UEFI firmware, and OVMF is not installed on this host (install the ovmf package)`);
    return { kind: 'disk', firmware: { code: uefiCode, vars: uefiVarsPath(record) } };
  }
  return { kind: 'disk' };
}

/** What the QEMU driver keeps per host: the daemon's environment there, QEMU's version, the accelerator state and OVMF. */
export interface QemuHost {
  env: DriverEnv;
  probe: DriverProbe;
  version: string | null;
  /** Null when QEMU is not available on the host. */
  accel: VmAccelerator | null;
  uefi: { code: string; vars: string } | null;
}

class QemuInstance implements InstanceHandle {
  private readonly paths: ReturnType<typeof qemuPaths>;

  constructor(private readonly record: InstanceRecord, private readonly q: QemuHost) {
    this.paths = qemuPaths(record.instanceDir);
  }

  private get host(): Host { return this.q.env.host; }
  private get rootDisk(): string { return posix.join(this.record.rootPath, ROOT_DISK); }
  private get tap(): string { return this.record.nic.hostIfName; }
  /** The qcow2 file of the extra disk devices.<name>, in the instance volume. */
  private diskPath(name: string): string { return posix.join(this.record.rootPath, `disk-${name}.qcow2`); }
  /** Which hot-plug port each extra disk sits on (JSON: device name → port id). */
  private get portsFile(): string { return posix.join(this.record.instanceDir, 'ports.json'); }
  /** The machine type pinned at first start, so saved states and snapshots always load into the ABI they were made with. */
  private get machineFile(): string { return posix.join(this.record.instanceDir, 'machine'); }
  /** RAM and device state saved by stop --stateful; the next start resumes from it. */
  private get stateFile(): string { return posix.join(this.record.instanceDir, 'state.bin'); }
  /** The accelerator the saved state was made under (its vCPU model must match on resume). */
  private get stateAccelFile(): string { return posix.join(this.record.instanceDir, 'state.accel'); }
  /** How the running QEMU was started (RunRecord). */
  private get runFile(): string { return posix.join(this.record.instanceDir, 'run.json'); }
  /** The fault of the running QEMU, once it faulted. */
  private get faultFile(): string { return posix.join(this.record.instanceDir, 'fault.json'); }
  /** Left by a fault under KVM for the restart with software emulation, which records it in its RunRecord. */
  private get fallbackFile(): string { return posix.join(this.record.instanceDir, 'accel-fallback.json'); }

  consoleLogPath(): string { return this.paths.consoleLog; }

  private mon(): Promise<Monitor> {
    const notify = this.q.env.onBackendEvent;
    const name = this.record.name;
    return monitor(this.host, this.paths.qmp, {
      ...(notify ? { event: (type: string, data: Record<string, unknown>) => notify(name, { type, data }) } : {}),
      fault: (m) => this.onFault(m),
    });
  }

  /** The monitor with its run state settled (after a STOP, the answer to query-status is in). */
  private async settledMon(): Promise<Monitor> {
    const m = await this.mon();
    await m.settled;
    return m;
  }

  /** Creates the root disk: a qcow2 overlay on the image's disk (instant whatever the image size), sized by limits.disk. */
  async create(): Promise<void> {
    await this.host.fs.mkdir(this.record.instanceDir, { recursive: true });
    const size = resourcesOf(this.record.config).diskBytes;
    // Called again for a config change of the stopped VM: a larger limits.disk grows the existing disk, and no disk may shrink.
    if (await this.host.fs.stat(this.rootDisk)) {
      const current = await this.checkNoShrink(this.record.config);
      if (size !== undefined && current !== undefined && size > current) await this.host.exec(['qemu-img', 'resize', '-q', this.rootDisk, String(size)]);
      return;
    }
    const base = this.record.imageProps.disk && this.record.imagePath ? posix.join(this.record.imagePath, this.record.imageProps.disk) : undefined;
    if (!base) throw new AppError('INVALID_CONFIG', `Image "${this.record.image}" of instance "${this.record.name}" has no disk`);
    if (size !== undefined) {
      const virtual = await this.virtualSize(base);
      if (size < virtual) throw new AppError('INVALID_SIZE', `limits.disk of instance "${this.record.name}" (${size} bytes) is smaller than its image's disk (${virtual} bytes); disks only grow`);
    }
    await this.host.exec(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, this.rootDisk, ...(size !== undefined ? [String(size)] : [])]);
  }

  async start(): Promise<void> {
    const name = this.record.name;
    const st = await this.state();
    if (st.state === 'running' || st.state === 'frozen') return;
    if (st.state === 'error') throw new AppError('INVALID_STATE', `Failed to start instance "${name}": it is in error (${st.error?.reason ?? 'faulted'}); stop it first`);
    const facts = this.q;
    if (!facts.accel) throw new AppError('UNSUPPORTED', `Failed to start instance "${name}": QEMU is not available on this host`);
    // No implicit create(): a deleted instance must not come back from its image.
    if (!(await this.host.fs.stat(this.rootDisk))) throw new AppError('NOT_FOUND', `Failed to start instance "${name}": its root disk ${this.rootDisk} does not exist (create it first)`);
    const resume = (await this.host.fs.stat(this.stateFile)) !== undefined;
    const choice = await this.chooseAccel(facts.accel, resume);
    await this.releaseHostResources();
    await this.host.exec(['ip', 'tuntap', 'add', 'dev', this.tap, 'mode', 'tap']);
    try {
      await this.host.exec(['ip', 'link', 'set', 'dev', this.tap, 'master', this.record.nic.bridge, 'up']);
      for (const p of [this.paths.pid, this.paths.qmp, this.paths.console, this.paths.qga, this.paths.vnc, this.paths.log, this.faultFile]) await this.host.fs.rm(p, { force: true });
      await this.writeRun(choice);
      const machine = await this.machineType(facts.version);
      const extraDisks = await this.prepareDisks(machine);
      const seed = await this.cloudInitSeed();
      if (seed) extraDisks.push({ ...seed, node: 'seed' });
      const boot = bootOf(this.record, facts.uefi?.code);
      // The first UEFI start gets a fresh variable store from OVMF's template; later starts keep the guest's boot entries.
      if (boot.kind === 'disk' && boot.firmware && facts.uefi && !(await this.host.fs.stat(boot.firmware.vars))) {
        await this.host.exec(['cp', facts.uefi.vars, boot.firmware.vars]);
      }
      const argv = renderQemuArgv({ record: this.record, facts: { version: facts.version, accel: choice.accel }, boot, rootDisk: this.rootDisk, extraDisks, machine, ...(resume ? { incoming: true } : {}) });
      // -daemonize: QEMU checks its arguments and devices, then detaches into its own session and outlives hangard; with -D
      // its messages (start-up errors too) go to its log.
      const res = await this.host.exec(argv, { allowFailure: true, timeoutMs: 60_000 });
      if (res.code !== 0) {
        const said = qemuMessage(`${res.stderr}\n${(await this.host.fs.readTextIfExists(this.paths.log)) ?? ''}`);
        throw new AppError('BACKEND_FAILED', `Failed to start instance "${name}": QEMU exited with code ${res.code}`, { cause: new Error(said || 'no message') });
      }
      const pid = await this.livePid();
      if (pid !== null) await this.placeInCgroup(pid);
      const m = await this.mon();
      if (resume) {
        // Stateful start: load the RAM saved by stop --stateful; the guest continues where it was.
        await m.qmp.migrateIncoming(`exec:cat ${this.stateFile}`);
        await m.qmp.waitMigration({ timeoutMs: 300_000 });
        if (!(await m.qmp.queryStatus()).running) await m.qmp.cont();
        await this.host.fs.rm(this.stateFile, { force: true });
      }
    } catch (err) {
      await this.kill();
      await this.releaseHostResources();
      await this.host.fs.rm(this.paths.pid, { force: true });
      throw err;
    }
  }

  /**
   * The accelerator of this start: boot.accel, else the daemon's mode, decided by the host's test guests. A saved state
   * resumes only on the vCPU model it was saved from, so it keeps its accelerator.
   */
  private async chooseAccel(accel: VmAccelerator, resume: boolean): Promise<RunRecord['choice']> {
    const requested = this.record.config['boot.accel'] as AccelMode | undefined;
    const name = this.record.name;
    const saved = resume ? ((await this.host.fs.readTextIfExists(this.stateAccelFile))?.trim() as Accel | undefined) : undefined;
    if (saved === 'kvm' || saved === 'tcg') {
      if (saved === 'kvm' && accel.verdict().usable === false) {
        throw new AppError('UNSUPPORTED', `Failed to start instance "${name}": its saved state was made under KVM, which no longer works on this host (${accel.verdict().reason})`);
      }
      return { accel: saved, requested: requested ?? accel.mode, reason: `the accelerator its saved state was made under` };
    }
    const c = await accel.forStart(requested, name);
    return { ...c, requested: requested ?? accel.mode };
  }

  /** Records how this run was started (read back by info and by the fault handler). */
  private async writeRun(choice: RunRecord['choice']): Promise<void> {
    const fallback = await this.readJson<RunRecord['fallback']>(this.fallbackFile);
    const consoleBytes = (await this.host.fs.stat(this.paths.consoleLog))?.size ?? 0;
    const run: RunRecord = { choice, startedAt: new Date().toISOString(), consoleBytes, ...(fallback ? { fallback } : {}) };
    await this.host.fs.writeAtomic(this.runFile, `${JSON.stringify(run)}\n`);
    if (fallback) await this.host.fs.rm(this.fallbackFile, { force: true });
  }

  private async readJson<T>(path: string): Promise<T | undefined> {
    const text = await this.host.fs.readTextIfExists(path);
    try {
      return text ? (JSON.parse(text) as T) : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * A fault: its reason from QEMU's run state and its own words, kept in fault.json (so a restarted hangard reports the
   * same time), an instance-error event, and, when KVM broke before the guest ever ran, KVM marked broken and a restart
   * with software emulation.
   */
  private async onFault(m: Monitor): Promise<VmFault> {
    const pid = await this.livePid();
    const known = await this.readJson<VmFault & { pid: number | null }>(this.faultFile);
    if (known && known.pid === pid) return { reason: known.reason, since: known.since };
    const fault: VmFault = { reason: await this.faultReason(m), since: new Date().toISOString() };
    await this.host.fs.writeAtomic(this.faultFile, `${JSON.stringify({ ...fault, pid, runState: m.status })}\n`);
    const notify = this.q.env.onBackendEvent;
    const name = this.record.name;
    notify?.(name, { type: 'instance-error', message: `Instance "${name}" faulted: ${fault.reason}`, data: { reason: fault.reason, runState: m.status, since: fault.since } });
    const run = await this.readJson<RunRecord>(this.runFile);
    const accel = this.q.accel;
    if (accel && run?.choice.accel === 'kvm' && m.status === 'internal-error' && /KVM internal error/i.test(fault.reason) && !(await this.guestRan(m, run))) {
      await accel.markBroken({ instance: name, reason: fault.reason, at: fault.since });
      if (run.choice.requested === 'auto') {
        await this.host.fs.writeAtomic(this.fallbackFile, `${JSON.stringify({ reason: fault.reason, at: fault.since })}\n`);
        notify?.(name, {
          type: 'instance-accel-fallback',
          message: `Instance "${name}" faulted under KVM before its guest started (${fault.reason}); KVM is marked broken on this host and the VM restarts with software emulation (TCG)`,
          data: { from: 'kvm', to: 'tcg', reason: fault.reason },
          action: 'restart',
        });
      }
    }
    return fault;
  }

  /** The guest printed on its serial console or answered its agent since this run started. */
  private async guestRan(m: Monitor, run: RunRecord): Promise<boolean> {
    if (m.agentSeen) return true;
    return ((await this.host.fs.stat(this.paths.consoleLog))?.size ?? 0) > run.consoleBytes;
  }

  /** Why the VM stopped, in QEMU's words where it has them. */
  private async faultReason(m: Monitor): Promise<string> {
    switch (m.status) {
      case 'internal-error': {
        const said = qemuMessage((await this.host.fs.readTextIfExists(this.paths.log)) ?? '');
        return said || 'QEMU stopped the VM with an internal error (run state internal-error)';
      }
      case 'io-error': {
        const e = m.ioError;
        if (!e) return 'a disk I/O error stopped the VM (run state io-error)';
        const disk = String(e['node-name'] ?? e.device ?? 'a disk');
        return `a disk I/O error stopped the VM: ${String(e.operation ?? 'access')} on ${disk} failed${e.nospace === true ? ' (no space left on the host)' : ''}${e.reason ? `: ${String(e.reason)}` : ''}`;
      }
      case 'guest-panicked': {
        const log = (await this.host.fs.readTextIfExists(this.paths.consoleLog)) ?? '';
        const line = log.split('\n').reverse().find((l) => /Kernel panic/.test(l))?.trim();
        return `the guest kernel panicked${line ? `: ${line.replace(/^\[[\s\d.]+\]\s*/, '')}` : ''}`;
      }
      default:
        return `the guest stopped and QEMU holds it (run state ${m.status})`;
    }
  }

  /** The pinned machine type; the first start pins the versioned type of the image's family on this QEMU. */
  private async machineType(version: string | null): Promise<string> {
    const pinned = (await this.host.fs.readTextIfExists(this.machineFile))?.trim();
    if (pinned) return pinned;
    const machine = qemuMachineType(version, machineFamilyOf(this.record.imageProps));
    await this.host.fs.writeAtomic(this.machineFile, `${machine}\n`);
    return machine;
  }

  async stop(opts: StopOptions): Promise<void> {
    const name = this.record.name;
    const st = await this.state();
    if (st.state === 'stopped') { this.forget(); await this.releaseHostResources(); return; }
    if (st.state === 'error') {
      // A faulted guest can neither shut down nor be saved: whatever was asked, QEMU is ended.
      if (opts.stateful) throw new AppError('INVALID_STATE', `Cannot save the state of instance "${name}": it is in error (${st.error?.reason ?? 'faulted'})`);
      await this.kill();
    } else if (opts.stateful) {
      // Pause, stream the RAM and device state to a file (QEMU 7.2 has no file: URI; exec: runs cat), then quit.
      const m = await this.mon();
      if (m.running) await m.qmp.stop();
      await this.host.fs.rm(this.stateFile, { force: true });
      try {
        await m.qmp.migrate(`exec:cat > ${this.stateFile}`);
        await m.qmp.waitMigration({ timeoutMs: Math.max(opts.timeoutMs, 60_000) });
      } catch (err) {
        await this.host.fs.rm(this.stateFile, { force: true });
        await m.qmp.cont().catch(() => undefined);
        throw new AppError('BACKEND_FAILED', `Failed to save the state of instance "${name}"`, { cause: err });
      }
      const run = await this.readJson<RunRecord>(this.runFile);
      await this.host.fs.writeAtomic(this.stateAccelFile, `${run?.choice.accel ?? 'tcg'}\n`);
      await this.kill();
    } else if (opts.force) {
      await this.kill();
    } else {
      const m = await this.mon();
      if (!m.running) await m.qmp.cont();
      // ACPI power button: the guest shuts itself down; QEMU then exits. Pressed again every few seconds: a guest
      // still booting (its ACPI daemon not yet listening) would otherwise miss the only press it gets.
      const deadline = Date.now() + opts.timeoutMs;
      let exited = false;
      while (!exited && Date.now() < deadline) {
        await m.qmp.systemPowerdown().catch(() => undefined);
        exited = await this.waitExit(st.pid, Math.min(POWERDOWN_REPEAT_MS, Math.max(0, deadline - Date.now())));
      }
      if (!exited) {
        throw new AppError('TIMEOUT', `Failed to stop instance "${name}" within ${Math.round(opts.timeoutMs / 1000)} s`, { cause: new Error('the guest did not power off after the ACPI power button was pressed') });
      }
    }
    this.forget();
    await this.releaseHostResources();
  }

  async freeze(): Promise<void> {
    await (await this.mon()).qmp.stop();
  }

  async unfreeze(): Promise<void> {
    await (await this.mon()).qmp.cont();
  }

  async delete(): Promise<void> {
    const st = await this.state();
    if (st.state !== 'stopped') throw new AppError('INVALID_STATE', `Failed to delete instance "${this.record.name}": it is ${st.state}`);
    this.forget();
    await this.releaseHostResources();
    // The disks create() and start() made in the volume; the volume itself belongs to the storage pool.
    for (const f of await this.host.fs.readdir(this.record.rootPath).catch(() => [] as string[])) {
      if (f === ROOT_DISK || f === UEFI_VARS || /^disk-.+\.qcow2$/.test(f)) await this.host.fs.rm(posix.join(this.record.rootPath, f), { force: true });
    }
    await this.host.fs.rm(this.record.instanceDir, { recursive: true, force: true });
  }

  /** Running when the pidfile names a live QEMU of this instance; frozen when its vCPUs are paused; error after a guest fault. */
  async state(): Promise<ObservedState> {
    const pid = await this.livePid();
    if (pid === null) return { state: 'stopped', pid: null, startTime: null };
    const stat = await this.host.fs.readTextIfExists(`/proc/${pid}/stat`);
    const startTime = stat ? procStatField(stat, 22) : null;
    let m: Monitor;
    try {
      m = await this.settledMon();
    } catch {
      return { state: 'unknown', pid, startTime };
    }
    if (m.fault) return { state: 'error', pid, startTime, error: m.fault };
    return { state: m.running ? 'running' : 'frozen', pid, startTime };
  }

  async applyConfig(next: InstanceConfig, prev: InstanceConfig): Promise<ConfigApplyResult> {
    const keys = [...new Set([...Object.keys(next), ...Object.keys(prev)])].filter((k) => next[k] !== prev[k]).sort();
    const st = await this.state();
    const live: string[] = [];
    if (st.state === 'running' || st.state === 'frozen') {
      const was = resourcesOf(prev);
      const now = resourcesOf(next);
      // Refused before anything changes, so a rejected config leaves the running VM as it was.
      const rootSize = await this.checkNoShrink(next, keys);
      const cpuKeys = keys.filter((k) => k === 'limits.cpu.weight' || k === 'limits.cpu.cap');
      const dir = cpuKeys.length ? await this.cgroupDir() : null;
      if (dir && (await this.host.fs.stat(dir))) {
        await writeLimits(this.host, dir, vmCpuCgroupWrites(next, this.q.env.facts.cgroupLayout));
        live.push(...cpuKeys);
      }
      if (keys.some((k) => k.startsWith('devices.'))) live.push(...(await this.applyDevices(prev, next)));
      if (keys.includes('limits.disk') && now.diskBytes !== undefined) {
        if (rootSize !== undefined && now.diskBytes > rootSize) await (await this.mon()).qmp.execute('block_resize', { 'node-name': QEMU_NODES.top(QEMU_NODES.root), size: now.diskBytes });
        live.push('limits.disk');
      }
      // Disk limits live in the VM's one throttle group, changed in place for the next request; a VM started by an older
      // Hangar has no group, and then the change waits for its restart.
      if (keys.includes('limits.disk.read') || keys.includes('limits.disk.write')) {
        const applied = await (await this.mon()).qmp.qomSet(QEMU_NODES.throttleGroup, 'limits', throttleLimits(ioLimitsOf(next))).then(() => true, () => false);
        if (applied) live.push(...keys.filter((k) => k === 'limits.disk.read' || k === 'limits.disk.write'));
      }
      // The balloon moves guest RAM inside [guarantee, RAM at boot]; anything beyond waits for a restart.
      const bootRam = (await this.bootMemory(st.pid)) ?? was.memoryMax ?? DEFAULT_MEMORY_BYTES;
      const target = now.memoryMax ?? DEFAULT_MEMORY_BYTES;
      const ballooned = was.memoryGuarantee === undefined || was.memoryGuarantee < (was.memoryMax ?? DEFAULT_MEMORY_BYTES);
      if (keys.includes('limits.memory') && ballooned && target <= bootRam && now.memoryGuarantee !== now.memoryMax) {
        await (await this.mon()).qmp.balloon(Math.max(now.memoryGuarantee ?? 0, target));
        live.push('limits.memory');
      }
    }
    return { live, pending: keys.filter((k) => !live.includes(k)) };
  }

  exec(spec: ExecSpec): HostProcess {
    if (spec.tty) throw new AppError('UNSUPPORTED', `Instance "${this.record.name}" is a VM: exec runs through the guest agent, which has no terminal (drop -t)`);
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const input: Buffer[] = [];
    let kill: (() => void) | undefined;
    const done = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      stdin.on('data', (d: Buffer) => input.push(d));
      stdin.on('end', () => {
        void (async () => {
          try {
            const m = await this.settledMon();
            // A guest that faults (now or while we wait for its agent) ends the wait at once, with the reason.
            const faulted = m.faulted.then((f): never => { throw new AppError('INVALID_STATE', `Cannot run a command in instance "${this.record.name}": it is in error (${f.reason})`); });
            if (m.fault) await faulted;
            const qga = await agent(this.host, this.paths.qga);
            await Promise.race([qga.waitReady(AGENT_READY_MS), faulted]);
            m.agentSeen = true;
            const argv = spec.cwd ? withCwd(spec.command, spec.cwd) : spec.command;
            // The agent replaces the whole environment when one is given: keep a usable PATH.
            const res = await Promise.race([qga.run(argv, { input: Buffer.concat(input), ...(spec.env ? { env: { PATH: GUEST_PATH, ...spec.env } } : {}) }), faulted]);
            stdout.end(res.stdout);
            stderr.end(res.stderr);
            resolve({ code: res.code, signal: null });
          } catch (err) {
            dropAgent(this.paths.qga);
            stdout.end();
            stderr.end(`hangar: ${err instanceof Error ? err.message : String(err)}\n`);
            resolve({ code: 126, signal: null });
          }
        })();
      });
      kill = () => { stdin.end(); };
    });
    return { pid: Promise.resolve(-1), stdin, stdout, stderr, wait: () => done, kill: () => kill?.() };
  }

  /** qcow2 internal snapshots of the root disk, taken live over QMP or offline with qemu-img. */
  readonly snapshots = {
    create: async (snap: string, opts: { stateful: boolean }): Promise<void> => {
      const st = await this.state();
      const running = st.state === 'running' || st.state === 'frozen';
      if (opts.stateful) {
        if (!running) throw new AppError('INVALID_STATE', `Cannot take a stateful snapshot of VM "${this.record.name}": it is not running`);
        await this.job((q, id) => q.snapshotSave(id, snap, QEMU_NODES.root, [QEMU_NODES.root]));
      } else if (running) {
        // This command wants the root of the block graph: the throttle filter, which passes the snapshot down to the qcow2 node.
        await (await this.mon()).qmp.execute('blockdev-snapshot-internal-sync', { device: QEMU_NODES.top(QEMU_NODES.root), name: snap });
      } else {
        await this.host.exec(['qemu-img', 'snapshot', '-c', snap, this.rootDisk]);
      }
    },
    restore: async (snap: string, opts: { stateful: boolean }): Promise<void> => {
      const st = await this.state();
      const running = st.state === 'running' || st.state === 'frozen';
      if (opts.stateful) {
        if (!running) await this.start();
        const m = await this.mon();
        await this.job((q, id) => q.snapshotLoad(id, snap, QEMU_NODES.root, [QEMU_NODES.root]));
        if (!m.running || !(await m.qmp.queryStatus()).running) await m.qmp.cont();
      } else {
        if (running) throw new AppError('INVALID_STATE', `Cannot restore disk snapshot "${snap}" of VM "${this.record.name}" while it runs`);
        await this.host.exec(['qemu-img', 'snapshot', '-a', snap, this.rootDisk]);
      }
    },
    delete: async (snap: string): Promise<void> => {
      const st = await this.state();
      if (st.state === 'running' || st.state === 'frozen') {
        await this.job((q, id) => q.snapshotDelete(id, snap, [QEMU_NODES.root]));
      } else {
        await this.host.exec(['qemu-img', 'snapshot', '-d', snap, this.rootDisk]);
      }
    },
  };

  /** Runs one QMP job to its end (matched by its own id, then dismissed). */
  private async job(start: (qmp: QmpClient, id: string) => Promise<void>): Promise<void> {
    const m = await this.mon();
    const id = `hangar-${this.record.name}-${Date.now().toString(36)}`;
    await start(m.qmp, id);
    await m.qmp.waitJob(id, { timeoutMs: 600_000 });
  }

  /** Machine type, accelerator, boot path and firmware, hot-plug ports in use, and (running) the guest RAM the balloon leaves. */
  async details(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    const facts = this.q;
    const pinned = (await this.host.fs.readTextIfExists(this.machineFile))?.trim();
    out.machine = pinned ?? `${qemuMachineType(facts?.version ?? null, machineFamilyOf(this.record.imageProps))} (pinned at first start)`;
    const st = await this.state();
    const live = st.state !== 'stopped' && st.state !== 'unknown';
    const run = live ? await this.readJson<RunRecord>(this.runFile) : undefined;
    if (run) {
      out.accelerator = `${run.choice.accel} (${run.choice.requested === 'auto' ? '' : `asked for ${run.choice.requested}; `}${run.choice.reason})`;
      if (run.fallback) out['accelerator fallback'] = `restarted with software emulation after a KVM fault at ${run.fallback.at}: ${run.fallback.reason}`;
    } else if (facts.accel) {
      const c = facts.accel.choose(this.record.config['boot.accel'] as AccelMode | undefined);
      out.accelerator = c === null ? `decided at start (${facts.accel.verdict().reason})` : 'accel' in c ? `${c.accel} at the next start (${c.reason})` : `none: ${c.refused}`;
    }
    if (st.state === 'error' && st.error) out.fault = `${st.error.reason} (since ${st.error.since})`;
    const boot = bootOf(this.record, facts?.uefi?.code ?? '(OVMF missing)');
    out.boot = boot.kind === 'kernel' ? `kernel ${boot.kernel}${this.record.config['boot.kernel'] ? ' (boot.kernel)' : ' (image)'}` : `disk, ${boot.firmware ? 'UEFI (OVMF)' : 'BIOS (SeaBIOS)'}`;
    const ports = Object.entries(await this.readPorts()).map(([dev, port]) => `${dev} on ${port}`);
    if (ports.length) out.disks = ports.join(', ');
    if (st.state === 'running' || st.state === 'frozen') {
      const b = await (await this.mon()).qmp.queryBalloon().catch(() => undefined);
      if (b) out['guest memory'] = `${Math.round(b.actual / 1024 ** 2)} MiB (balloon)`;
    }
    return out;
  }

  /** One QMP command on the daemon's own connection (QEMU serves one QMP client at a time). */
  async monitor(command: string, args?: Record<string, unknown>): Promise<unknown> {
    return (await this.mon()).qmp.execute(command, args);
  }

  /** The graphical console: QEMU's VNC server on its unix socket (RFB bytes, for a websocket relay to noVNC). */
  async openGraphicalConsole(): Promise<Duplex> {
    return this.host.connectUnix(this.paths.vnc);
  }

  /** The serial console: a connection to QEMU's console socket (its output is also logged by QEMU). */
  attachConsole(): HostProcess {
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    let closeSock: (() => void) | undefined;
    const done = (async () => {
      const sock = await this.host.connectUnix(this.paths.console);
      closeSock = () => sock.destroy();
      stdin.pipe(sock);
      sock.pipe(stdout);
      await new Promise<void>((r) => { sock.on('close', () => r()); sock.on('error', () => r()); });
      return { code: 0, signal: null };
    })();
    return { pid: Promise.resolve(-1), stdin, stdout, stderr: null, wait: () => done.catch(() => ({ code: 1, signal: null })), kill: () => closeSock?.() };
  }

  async usage(): Promise<Usage> {
    const pid = await this.livePid();
    if (pid === null) return {};
    const [stat, status, rx, tx] = await Promise.all([
      this.host.fs.readTextIfExists(`/proc/${pid}/stat`),
      this.host.fs.readTextIfExists(`/proc/${pid}/status`),
      this.host.fs.readTextIfExists(`/sys/class/net/${this.tap}/statistics/tx_bytes`),
      this.host.fs.readTextIfExists(`/sys/class/net/${this.tap}/statistics/rx_bytes`),
    ]);
    const out: Usage = {};
    if (stat) {
      // utime + stime (fields 14 and 15), in clock ticks of 10 ms.
      out.cpuTimeNs = ((procStatField(stat, 14) ?? 0) + (procStatField(stat, 15) ?? 0)) * 10_000_000;
    }
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status ?? '')?.[1] ?? NaN) * 1024;
    if (!Number.isNaN(kb('VmRSS'))) out.memoryBytes = kb('VmRSS');
    if (!Number.isNaN(kb('VmHWM'))) out.memoryPeakBytes = kb('VmHWM');
    // The host side of the tap sends what the guest receives.
    if (rx !== undefined) out.rxBytes = Number(rx.trim());
    if (tx !== undefined) out.txBytes = Number(tx.trim());
    return out;
  }

  /** Creates or grows the qcow2 file of one disk device (devices.<name>.*); answers its path and whether it was created. */
  private async ensureDiskFile(dev: DiskDevice): Promise<{ path: string; created: boolean }> {
    const path = this.diskPath(dev.name);
    if (!(await this.host.fs.stat(path))) {
      await this.host.exec(['qemu-img', 'create', '-q', '-f', 'qcow2', path, String(dev.sizeBytes)]);
      return { path, created: true };
    }
    await this.growDiskFile(path, dev.sizeBytes, `Disk "${dev.name}"`);
    return { path, created: false };
  }

  /**
   * Refuses a config whose root disk or extra disks would be smaller than their files (disks only grow); answers the
   * root disk's current virtual size when it was read. `changed` limits the check (one qemu-img fork per disk) to the
   * size keys a change touches.
   */
  private async checkNoShrink(config: InstanceConfig, changed?: readonly string[]): Promise<number | undefined> {
    const disks: [string, number | undefined, string, string][] = [[this.rootDisk, resourcesOf(config).diskBytes, 'The root disk', 'limits.disk']];
    for (const d of devicesOf(config)) disks.push([this.diskPath(d.name), d.sizeBytes, `Disk "${d.name}"`, `devices.${d.name}.size`]);
    let root: number | undefined;
    for (const [path, bytes, what, key] of disks) {
      if (bytes === undefined || (changed && !changed.includes(key)) || !(await this.host.fs.stat(path))) continue;
      const current = await this.virtualSize(path);
      if (path === this.rootDisk) root = current;
      if (bytes < current) throw new AppError('INVALID_SIZE', `${what} of instance "${this.record.name}" cannot shrink from ${current} to ${bytes} bytes; disks only grow`);
    }
    return root;
  }

  /** Grows a qcow2 file of a stopped VM to bytes (virtual size); a smaller size is refused: disks only grow. */
  private async growDiskFile(path: string, bytes: number, what: string): Promise<void> {
    const current = await this.virtualSize(path);
    if (bytes < current) throw new AppError('INVALID_SIZE', `${what} of instance "${this.record.name}" cannot shrink from ${current} to ${bytes} bytes; disks only grow`);
    if (bytes > current) await this.host.exec(['qemu-img', 'resize', '-q', path, String(bytes)]);
  }

  /** Virtual size of a disk file in bytes (-U: also while QEMU holds it). */
  private async virtualSize(path: string): Promise<number> {
    const info = JSON.parse((await this.host.exec(['qemu-img', 'info', '--output=json', '-U', path])).stdout) as { 'virtual-size'?: number };
    return Number(info['virtual-size'] ?? 0);
  }

  /**
   * Every disk device's qcow2 (the guest sees each with its name as serial). On Q35 each sits on its own PCIe root port,
   * kept across starts, so it can be unplugged live and a saved state always finds it where it was.
   */
  private async prepareDisks(machine: string): Promise<QemuDisk[]> {
    const devs = devicesOf(this.record.config);
    const ports = isQ35(machine) ? await this.assignPorts(devs.map((d) => d.name)) : {};
    const out: QemuDisk[] = [];
    for (const dev of devs) {
      const { path } = await this.ensureDiskFile(dev);
      out.push({ path, format: 'qcow2', serial: dev.name, node: QEMU_NODES.device(dev.name), ...(ports[dev.name] ? { bus: ports[dev.name] } : {}) });
    }
    return out;
  }

  /** The port map (device name → hot-plug port) without devices that are gone, plus a free port for each new one. */
  private async assignPorts(names: string[]): Promise<Record<string, string>> {
    const old = await this.readPorts();
    const ports: Record<string, string> = {};
    for (const n of names) if (old[n]) ports[n] = old[n]!;
    for (const n of names) {
      if (ports[n]) continue;
      const free = freePort(ports);
      if (!free) throw new AppError('INVALID_CONFIG', `Instance "${this.record.name}" has more than ${HOTPLUG_PORTS} extra disks`);
      ports[n] = free;
    }
    await this.host.fs.writeAtomic(this.portsFile, `${JSON.stringify(ports)}\n`);
    return ports;
  }

  private async readPorts(): Promise<Record<string, string>> {
    const text = await this.host.fs.readTextIfExists(this.portsFile);
    try {
      return text ? (JSON.parse(text) as Record<string, string>) : {};
    } catch {
      return {};
    }
  }

  /** Applies added, removed and grown disk devices to the running VM; answers the keys it applied (the rest waits for a restart). */
  private async applyDevices(prev: InstanceConfig, next: InstanceConfig): Promise<string[]> {
    const machine = (await this.host.fs.readTextIfExists(this.machineFile))?.trim() ?? '';
    // i440FX has no hot-plug ports here, and a VM started by an older Hangar has its disks on the root bus.
    if (!isQ35(machine)) return [];
    const before = new Map(devicesOf(prev).map((d) => [d.name, d]));
    const after = new Map(devicesOf(next).map((d) => [d.name, d]));
    const keysOf = (n: string) => [`devices.${n}.type`, `devices.${n}.size`];
    const live: string[] = [];
    for (const [n, dev] of after) {
      const was = before.get(n);
      if (!was) {
        if (await this.plugDisk(dev)) live.push(...keysOf(n));
      } else if (dev.sizeBytes > was.sizeBytes) {
        // The guest sees the new capacity at once (virtio config change); growing its file system is the guest's call.
        // Resized through the filter on top: only the device's own root node tells the device (and the guest) its new size.
        await (await this.mon()).qmp.execute('block_resize', { 'node-name': QEMU_NODES.top(QEMU_NODES.device(n)), size: dev.sizeBytes });
        live.push(`devices.${n}.size`);
      }
    }
    for (const n of before.keys()) {
      if (!after.has(n) && (await this.unplugDisk(n))) live.push(...keysOf(n));
    }
    return live;
  }

  /** Plugs a new disk into a free hot-plug port: file, format and throttle nodes, then the device; undone step by step on failure. */
  private async plugDisk(dev: DiskDevice): Promise<boolean> {
    const ports = await this.readPorts();
    const port = freePort(ports);
    if (!port) return false;
    const qmp = (await this.mon()).qmp;
    const node = QEMU_NODES.device(dev.name);
    const [fileNode, fmtNode, topNode] = QEMU_NODES.chain(node) as [string, string, string];
    await new Reverter().run(async (r) => {
      const { path, created } = await this.ensureDiskFile(dev);
      if (created) r.add(`remove ${path}`, () => this.host.fs.rm(path, { force: true }));
      await qmp.execute('blockdev-add', { driver: 'file', 'node-name': fileNode, filename: path, discard: 'unmap' });
      r.add(`blockdev-del ${fileNode}`, () => qmp.execute('blockdev-del', { 'node-name': fileNode }));
      await qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': fmtNode, file: fileNode, discard: 'unmap' });
      r.add(`blockdev-del ${fmtNode}`, () => qmp.execute('blockdev-del', { 'node-name': fmtNode }));
      await qmp.execute('blockdev-add', { driver: 'throttle', 'node-name': topNode, 'throttle-group': QEMU_NODES.throttleGroup, file: fmtNode });
      r.add(`blockdev-del ${topNode}`, () => qmp.execute('blockdev-del', { 'node-name': topNode }));
      await qmp.execute('device_add', { driver: 'virtio-blk-pci', id: QEMU_NODES.deviceId(node), drive: topNode, serial: dev.name, bus: port });
      r.add(`device_del ${QEMU_NODES.deviceId(node)}`, () => qmp.execute('device_del', { id: QEMU_NODES.deviceId(node) }));
      await this.host.fs.writeAtomic(this.portsFile, `${JSON.stringify({ ...ports, [dev.name]: port })}\n`);
    }).catch((err: unknown) => {
      throw new AppError('BACKEND_FAILED', `Failed to plug disk "${dev.name}" into instance "${this.record.name}"`, { cause: err });
    });
    return true;
  }

  /** Asks the guest to release a disk (PCIe attention button) and removes its nodes once it did; false when it did not in time. */
  private async unplugDisk(name: string): Promise<boolean> {
    const ports = await this.readPorts();
    if (!ports[name]) return false;
    const qmp = (await this.mon()).qmp;
    const node = QEMU_NODES.device(name);
    const id = QEMU_NODES.deviceId(node);
    try {
      await qmp.executeAndWaitEvent('device_del', { id }, 'DEVICE_DELETED', (ev) => ev.data?.device === id, { timeoutMs: UNPLUG_WAIT_MS });
    } catch (err) {
      // The guest may still release it later (QEMU keeps the request); until then the key stays pending.
      if (isAppError(err) && err.code === 'TIMEOUT') return false;
      throw new AppError('BACKEND_FAILED', `Failed to unplug disk "${name}" from instance "${this.record.name}"`, { cause: err });
    }
    for (const n of [...QEMU_NODES.chain(node)].reverse()) await qmp.execute('blockdev-del', { 'node-name': n });
    const rest = { ...ports };
    delete rest[name];
    await this.host.fs.writeAtomic(this.portsFile, `${JSON.stringify(rest)}\n`);
    return true;
  }

  /** For images that run cloud-init: a NoCloud seed (identity, address, user-data, SSH keys), rebuilt at every start. */
  private async cloudInitSeed(): Promise<QemuDisk | undefined> {
    if (this.record.imageProps.cloudInit !== 'nocloud') {
      if (this.record.config['cloud-init.user-data'] || this.record.config['cloud-init.ssh-keys']) {
        throw new AppError('UNSUPPORTED', `Image "${this.record.image}" of instance "${this.record.name}" does not run cloud-init`);
      }
      return undefined;
    }
    const nic = this.record.nic;
    const keys = (this.record.config['cloud-init.ssh-keys'] ?? '').split('\n').map((k) => k.trim()).filter(Boolean);
    const files = renderNoCloudSeed({
      // The MAC is new for every instance created, so a re-created one runs its first-boot steps again.
      instanceId: `${this.record.name}-${nic.mac.replaceAll(':', '')}`,
      hostname: this.record.name,
      ipv4: nic.ipv4,
      prefixLength: nic.prefixLength,
      gateway: nic.gateway,
      dns: [nic.gateway],
      mac: nic.mac,
      ...(this.record.config['cloud-init.user-data'] ? { userData: this.record.config['cloud-init.user-data'] } : {}),
      ...(keys.length ? { sshKeys: keys } : {}),
    });
    const dir = posix.join(this.record.instanceDir, 'cloud-init');
    await this.host.fs.rm(dir, { recursive: true, force: true });
    await this.host.fs.mkdir(dir, { recursive: true });
    return { path: await buildSeedIso(this.host, dir, files), format: 'raw', readOnly: true, serial: 'cidata' };
  }

  /** The RAM QEMU was started with (its -m argument), in bytes. */
  private async bootMemory(pid: number | null): Promise<number | undefined> {
    if (pid === null) return undefined;
    const args = (await this.host.fs.readTextIfExists(`/proc/${pid}/cmdline`))?.split('\0') ?? [];
    const m = /^(\d+)M$/.exec(args[args.indexOf('-m') + 1] ?? '');
    return m ? Number(m[1]) * 1024 ** 2 : undefined;
  }

  private async livePid(): Promise<number | null> {
    const text = await this.host.fs.readTextIfExists(this.paths.pid);
    const pid = Number(text?.trim());
    if (!Number.isInteger(pid) || pid <= 0) return null;
    const cmdline = await this.host.fs.readTextIfExists(`/proc/${pid}/cmdline`);
    if (!cmdline || !cmdline.split('\0').some((a) => a.startsWith(`guest=${this.record.name},`) || a === `guest=${this.record.name}`)) return null;
    return pid;
  }

  private async waitExit(pid: number | null, timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (pid === null || (await this.livePid()) === null) return true;
      if (Date.now() >= until) return false;
      await sleep(POLL_MS);
    }
  }

  /** Ends QEMU at once: QMP quit, then SIGTERM, then SIGKILL. */
  private async kill(): Promise<void> {
    const pid = await this.livePid();
    if (pid === null) { this.forget(); return; }
    try {
      const m = await Promise.race([this.mon(), sleep(1_000).then(() => undefined)]);
      await m?.qmp.quit({ timeoutMs: 1_000 });
    } catch { /* fall back to signals */ }
    if (!(await this.waitExit(pid, QUIT_WAIT_MS))) await this.host.kill(pid, 'SIGTERM');
    if (!(await this.waitExit(pid, QUIT_WAIT_MS))) await this.host.kill(pid, 'SIGKILL');
    await this.waitExit(pid, QUIT_WAIT_MS);
    this.forget();
  }

  private forget(): void {
    dropMonitor(this.paths.qmp);
    dropAgent(this.paths.qga);
  }

  /** The VM's cpu cgroup (weight and cap apply to every QEMU thread), or null when the controller is not mounted. */
  private async cgroupDir(): Promise<string | null> {
    const root = await cpuControllerRoot(this.host, this.q.env.facts.cgroupLayout);
    return root ? vmCgroupDir(root, this.q.env.prefix, this.record.name) : null;
  }

  private async placeInCgroup(pid: number): Promise<void> {
    const dir = await this.cgroupDir();
    if (dir) await placeVm(this.host, this.q.env.facts.cgroupLayout, dir, this.record.config, pid);
  }

  /** Removes what a running VM holds on the host: its tap and (once QEMU is gone) its cgroup. */
  private async releaseHostResources(): Promise<void> {
    const dir = await this.cgroupDir();
    if (dir && (await this.livePid()) === null) await removeVmCgroup(this.host, dir);
    if (await this.host.fs.stat(`/sys/class/net/${this.tap}`)) await this.host.exec(['ip', 'link', 'del', 'dev', this.tap], { allowFailure: true });
  }
}

/** Problems with a config for QEMU VMs on this host: values out of range, and what this host's QEMU cannot do. */
function validateQemu(config: InstanceConfig, q: QemuHost, facts: HostFacts): string[] {
  const problems: string[] = [];
  for (const key of ['boot.initrd', 'boot.cmdline']) {
    if (config[key] !== undefined && config['boot.kernel'] === undefined) problems.push(`${key} needs boot.kernel (it applies to a directly booted kernel)`);
  }
  if (devicesOf(config).length > HOTPLUG_PORTS) problems.push(`a VM has at most ${HOTPLUG_PORTS} extra disks (devices.*)`);
  // Refused before anything is created; while the host's check still runs, the start decides (and undoes the launch).
  const accel = q.accel?.choose(config['boot.accel'] as AccelMode | undefined);
  if (accel && 'refused' in accel) problems.push(accel.refused);
  if (config['boot.firmware'] === 'uefi') {
    if (config['boot.kernel'] !== undefined) problems.push('boot.firmware=uefi applies to booting from the disk; boot.kernel boots its kernel directly, without firmware');
    if (q.accel && !q.uefi) problems.push('boot.firmware=uefi needs UEFI firmware (OVMF), which is not installed on this host (install the ovmf package)');
  }
  let r: ReturnType<typeof resourcesOf>;
  try {
    r = resourcesOf(config);
  } catch (e) {
    return [...problems, e instanceof Error ? e.message : String(e)];
  }
  problems.push(...hostFitProblems(config, r, facts, { name: 'qemu', minMemoryBytes: QEMU_MIN_MEMORY, why: 'a guest kernel and its initramfs must fit' }));
  return problems;
}

const QEMU_TECHNOLOGY = { kernel: 'own', memory: 'dedicated', isolation: 'hardware virtualization (KVM) or software emulation (TCG)' } as const;

/** HANGAR_ACCEL of the daemon's environment: auto (default), kvm or tcg. */
export function accelModeOf(settings: Readonly<Record<string, string | undefined>>): AccelMode {
  const v = settings.HANGAR_ACCEL ?? 'auto';
  if (!(ACCEL_MODES as readonly string[]).includes(v)) throw new AppError('INVALID_CONFIG', `Invalid HANGAR_ACCEL ${JSON.stringify(v)}: expected auto, kvm or tcg`);
  return v as AccelMode;
}

/** The QEMU driver on one host, from what was probed there (tests build the QemuHost directly). */
export function qemuOnHost(q: QemuHost): HostDriver {
  const env = q.env;
  return {
    driver: qemuDriver,
    probe: q.probe,
    details: () => ({
      ...(q.accel ? { accelerator: `${q.accel.info().default ?? 'checking'} (${q.accel.info().reason})` } : {}),
      uefi: q.uefi ? `OVMF (${q.uefi.code})` : 'not installed (install the ovmf package)',
    }),
    ...(q.accel ? { accelerator: () => q.accel!.info() } : {}),
    technology: (config) => {
      if (!q.accel) return QEMU_TECHNOLOGY;
      const c = q.accel.choose(config['boot.accel'] as AccelMode | undefined);
      const isolation = c === null ? `decided at start: ${q.accel.verdict().reason}` : 'refused' in c ? `none: ${c.refused}` : c.accel === 'kvm' ? 'hardware virtualization (KVM)' : `software emulation (TCG): ${c.reason}`;
      return { ...QEMU_TECHNOLOGY, isolation };
    },
    validate: (config) => validateQemu(config, q, env.facts),
    idmap: () => 'none',
    load: (record) => new QemuInstance(record, q),
    // The Linux boot check (when the ROM probe left KVM's verdict open) runs after start-up; VM starts wait for it.
    background: async () => { await q.accel?.confirm(); },
  };
}

/** The QEMU/KVM backend. */
export const qemuDriver: Driver = {
  name: 'qemu',
  type: 'vm',
  features: { freeze: true, snapshots: true, statefulStop: true, console: true, execTty: false, liveCopy: false, graphicalConsole: true, monitor: true },
  technology: QEMU_TECHNOLOGY,
  keys: [
    'limits.memory', 'limits.memory.guarantee', 'limits.cpu', 'limits.cpu.weight', 'limits.cpu.cap', 'limits.disk', 'limits.disk.read', 'limits.disk.write',
    'devices.*', 'cloud-init.user-data', 'cloud-init.ssh-keys', 'boot.firmware', 'boot.accel', 'boot.kernel', 'boot.initrd', 'boot.cmdline',
  ],
  storage: 'image',
  async open(env) {
    const mode = accelModeOf(env.settings);
    const p = await probeQemu(env.host);
    const q: QemuHost = { env, probe: { available: p.available, version: p.version, reason: p.reason }, version: p.version, accel: null, uefi: null };
    if (p.available) {
      // Cached per host boot, kernel and QEMU build: only the first start after one of them changed runs the test guests.
      q.accel = await QemuAccel.open(env.host, {
        binary: p.binary, qemuBuild: p.build ?? p.version ?? 'unknown', mode, cacheFile: posix.join(env.cacheDir, 'accel.json'),
        ...(env.services.linuxTestGuest ? { linuxGuest: env.services.linuxTestGuest } : {}), log: env.log,
      });
      q.uefi = await findUefiFirmware(env.host);
      env.log(`qemu ${p.version}: ${q.accel.info().reason}`);
    }
    return qemuOnHost(q);
  },
};

