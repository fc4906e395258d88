// The QEMU/KVM driver: VMs started directly (no libvirt), daemonized in their own session, driven over QMP and the guest agent.
import { posix } from 'node:path';
import type { Duplex } from 'node:stream';
import { AppError } from '../../shared/errors.js';
import type { InstanceConfig } from '../../shared/config.js';
import type { EventType, Usage } from '../../shared/schemas.js';
import type { Host, HostProcess } from '../../host/host.js';
import type { ConfigApplyResult, Driver, ExecSpec, HostDriver, InstanceHandle, InstanceRecord, ObservedState, StopOptions } from '../driver.js';
import { QemuAccel } from './accel-check.js';
import type { AccelMode } from './accel.js';
import { findUefiFirmware, probeQemu } from './probe.js';
import { bootOf, chooseAccel, pinnedMachine, prepareBoot } from './boot.js';
import { createRootDisk, readPorts, removeDiskFiles } from './disks.js';
import { onFault } from './faults.js';
import { attachSerialConsole, endGuestProcess, execInGuest, openVncConsole } from './guest-io.js';
import { applyLiveConfig } from './hotplug.js';
import { killQemu, launchQemu, livePid, qemuUsage, removeRunFiles, startTimeOf, waitExit } from './process.js';
import { machineFamilyOf, qemuMachineType } from './render-argv.js';
import { addTap, attachTap, placeInCgroup, releaseHostResources } from './resources.js';
import { clearVmCgroup, vmCgroupNames } from './cgroup.js';
import { dropSessions, openMonitor, type Monitor } from './sessions.js';
import { vmSnapshots } from './snapshots.js';
import { accelModeOf, validateQemu } from './validate.js';
import { readJson, vmFiles, type QemuHost, type RunRecord, type Vm, type VmFiles } from './vm.js';

// What code outside the driver (bench/vm-choices.ts) builds VMs from.
export { bootOf } from './boot.js';
export { ROOT_DISK } from './vm.js';

const POWERDOWN_REPEAT_MS = 3_000;

class QemuInstance implements InstanceHandle, Vm {
  readonly files: VmFiles;
  readonly snapshots: NonNullable<InstanceHandle['snapshots']>;

  constructor(readonly record: InstanceRecord, readonly q: QemuHost) {
    this.files = vmFiles(record);
    this.snapshots = vmSnapshots(this, this);
  }

  get host(): Host { return this.q.env.host; }

  consoleLogPath(): string { return this.files.consoleLog; }

  mon(): Promise<Monitor> {
    const notify = this.q.env.onBackendEvent;
    const name = this.record.name;
    return openMonitor(this.host, this.files.qmp, {
      ...(notify ? { event: (type: EventType, data: Record<string, unknown>) => notify(name, { type, data }) } : {}),
      fault: (m) => onFault(this, m),
    });
  }

  async settledMon(): Promise<Monitor> {
    const m = await this.mon();
    await m.settled;
    return m;
  }

  /** Creates the root disk (a qcow2 overlay on the image's disk), or grows it for a config change of the stopped VM. */
  async create(): Promise<void> {
    await createRootDisk(this);
  }

  async start(): Promise<void> {
    const name = this.record.name;
    const st = await this.state();
    if (st.state === 'running' || st.state === 'frozen') return;
    if (st.state === 'error') throw new AppError('INVALID_STATE', `Failed to start instance "${name}": it is in error (${st.error?.reason ?? 'faulted'}); stop it first`);
    const facts = this.q;
    if (!facts.accel) throw new AppError('UNSUPPORTED', `Failed to start instance "${name}": QEMU is not available on this host`);
    // No implicit create(): a deleted instance must not come back from its image.
    if (!(await this.host.fs.stat(this.files.rootDisk))) throw new AppError('NOT_FOUND', `Failed to start instance "${name}": its root disk ${this.files.rootDisk} does not exist (create it first)`);
    const resume = (await this.host.fs.stat(this.files.state)) !== undefined;
    const choice = await chooseAccel(this, facts.accel, resume);
    await releaseHostResources(this);
    await addTap(this);
    try {
      await attachTap(this);
      await removeRunFiles(this);
      await launchQemu(this, await prepareBoot(this, choice, resume));
      const pid = await livePid(this);
      if (pid !== null) await placeInCgroup(this, pid);
      const m = await this.mon();
      if (resume) {
        // Stateful start: load the RAM saved by stop --stateful; the guest continues where it was.
        await m.qmp.migrateIncoming(`exec:cat ${this.files.state}`);
        await m.qmp.waitMigration({ timeoutMs: 300_000 });
        if (!(await m.qmp.queryStatus()).running) await m.qmp.cont();
        await this.host.fs.rm(this.files.state, { force: true });
      }
    } catch (err) {
      await killQemu(this);
      await releaseHostResources(this);
      await this.host.fs.rm(this.files.pid, { force: true });
      throw err;
    }
  }

  async stop(opts: StopOptions): Promise<void> {
    const name = this.record.name;
    const st = await this.state();
    if (st.state === 'stopped') { dropSessions(this.files); await releaseHostResources(this); return; }
    if (st.state === 'error') {
      // A faulted guest can neither shut down nor be saved: whatever was asked, QEMU is ended.
      if (opts.stateful) throw new AppError('INVALID_STATE', `Cannot save the state of instance "${name}": it is in error (${st.error?.reason ?? 'faulted'})`);
      await killQemu(this);
    } else if (opts.stateful) {
      await this.saveState(opts.timeoutMs);
      await killQemu(this);
    } else if (opts.force) {
      await killQemu(this);
    } else {
      await this.powerDown(st.pid, opts.timeoutMs);
    }
    dropSessions(this.files);
    await releaseHostResources(this);
  }

  /** Pauses the VM and streams its RAM and device state to the state file (QEMU 7.2 has no file: URI; exec: runs cat). */
  private async saveState(timeoutMs: number): Promise<void> {
    const m = await this.mon();
    if (m.running) await m.qmp.stop();
    await this.host.fs.rm(this.files.state, { force: true });
    try {
      await m.qmp.migrate(`exec:cat > ${this.files.state}`);
      await m.qmp.waitMigration({ timeoutMs: Math.max(timeoutMs, 60_000) });
    } catch (err) {
      await this.host.fs.rm(this.files.state, { force: true });
      await m.qmp.cont().catch(() => undefined);
      throw new AppError('BACKEND_FAILED', `Failed to save the state of instance "${this.record.name}"`, { cause: err });
    }
    const run = await readJson<RunRecord>(this.host, this.files.run);
    await this.host.fs.writeAtomic(this.files.stateAccel, `${run?.choice.accel ?? 'tcg'}\n`);
  }

  /**
   * ACPI power button: the guest shuts itself down; QEMU then exits. Pressed again every few seconds: a guest still
   * booting (its ACPI daemon not yet listening) would otherwise miss the only press it gets.
   */
  private async powerDown(pid: number | null, timeoutMs: number): Promise<void> {
    const m = await this.mon();
    if (!m.running) await m.qmp.cont();
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    while (!exited && Date.now() < deadline) {
      await m.qmp.systemPowerdown().catch(() => undefined);
      exited = await waitExit(this, pid, Math.min(POWERDOWN_REPEAT_MS, Math.max(0, deadline - Date.now())));
    }
    if (!exited) {
      throw new AppError('TIMEOUT', `Failed to stop instance "${this.record.name}" within ${Math.round(timeoutMs / 1000)} s`, { cause: new Error('the guest did not power off after the ACPI power button was pressed') });
    }
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
    dropSessions(this.files);
    await releaseHostResources(this);
    await removeDiskFiles(this);
    await this.host.fs.rm(this.record.instanceDir, { recursive: true, force: true });
  }

  /** Running when the pidfile names a live QEMU of this instance; frozen when its vCPUs are paused; error after a guest fault. */
  async state(): Promise<ObservedState> {
    const pid = await livePid(this);
    if (pid === null) return { state: 'stopped', pid: null, startTime: null };
    const startTime = await startTimeOf(this, pid);
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
    const live = st.state === 'running' || st.state === 'frozen' ? await applyLiveConfig(this, next, prev, keys, st.pid) : [];
    return { live, pending: keys.filter((k) => !live.includes(k)) };
  }

  exec(spec: ExecSpec): HostProcess {
    return execInGuest(this, spec);
  }

  endGuestProcess(pid: number): Promise<boolean> {
    return endGuestProcess(this, pid);
  }

  /** Machine type, accelerator, boot path and firmware, hot-plug ports in use, and (running) the guest RAM the balloon leaves. */
  async details(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    const facts = this.q;
    const pinned = await pinnedMachine(this);
    out.machine = pinned ?? `${qemuMachineType(facts?.version ?? null, machineFamilyOf(this.record.imageProps))} (pinned at first start)`;
    const st = await this.state();
    const live = st.state !== 'stopped' && st.state !== 'unknown';
    const run = live ? await readJson<RunRecord>(this.host, this.files.run) : undefined;
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
    const ports = Object.entries(await readPorts(this)).map(([dev, port]) => `${dev} on ${port}`);
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

  openGraphicalConsole(): Promise<Duplex> {
    return openVncConsole(this);
  }

  attachConsole(): HostProcess {
    return attachSerialConsole(this);
  }

  usage(): Promise<Usage> {
    return qemuUsage(this);
  }
}

const QEMU_TECHNOLOGY = { kernel: 'own', memory: 'dedicated', isolation: 'hardware virtualization (KVM) or software emulation (TCG)' } as const;

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
    leftovers: () => vmCgroupNames(env.host, env.facts.cgroupLayout, env.prefix),
    clearLeftovers: (name) => clearVmCgroup(env.host, env.facts.cgroupLayout, env.prefix, name),
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
  // state().pid is QEMU's own: its end is the VM's end, whoever caused it.
  pidIsInit: true,
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
