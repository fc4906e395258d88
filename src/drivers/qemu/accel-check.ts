// Runs the accelerator test guests on a host and keeps their evidence, cached per host boot, kernel release and QEMU build.
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import type { AcceleratorInfo } from '../../shared/schemas.js';
import {
  chooseAccel, judgeKvm, linuxCheckArgv, parseLinuxRun, parseRomRun, probeRom, romProbeArgv,
  type Accel, type AccelChoice, type AccelEvidence, type AccelMode, type GuestRun, type KvmVerdict, type LinuxTestGuest,
} from './accel.js';

/** The accelerator state of a host's VMs: the KVM verdict from real test guests, and the choice per VM. */
export interface VmAccelerator {
  /** The daemon's default (HANGAR_ACCEL). */
  readonly mode: AccelMode;
  /** usable: true/false, or null while the Linux boot check is pending; with the reason in a user's words. */
  verdict(): KvmVerdict;
  /** What host info shows. */
  info(): AcceleratorInfo;
  /** The choice for a VM asking for `requested` (undefined: the daemon's mode) as it stands; null while pending. */
  choose(requested: AccelMode | undefined): AccelChoice | null;
  /** The choice for a VM about to start (waits for a pending check); throws UNSUPPORTED when refused. */
  forStart(requested: AccelMode | undefined, instance: string): Promise<{ accel: Accel; reason: string }>;
  /** Runs a pending check. */
  confirm(): Promise<void>;
  /** Records that a VM faulted under KVM before its guest did anything. */
  markBroken(fault: { instance: string; reason: string; at: string }): Promise<void>;
}

/** The KVM device node. */
export const KVM_DEVICE = '/dev/kvm';

// Character device bits of st_mode (S_IFMT / S_IFCHR).
const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;

/** Deadlines of the test guests: QEMU starts in ~50 ms and the ROM guest runs in microseconds; Linux boots in ~2 s with TCG. */
export const CHECK_TIMEOUTS = { romMs: 5_000, linuxKvmMs: 15_000, linuxTcgMs: 90_000 } as const;

/** What the evidence is valid for: it is measured again when the host reboots or its kernel or QEMU changes. */
export interface AccelCacheKey {
  bootId: string;
  kernel: string;
  qemu: string;
}

/** Options of QemuAccel.open. */
export interface AccelCheckOptions {
  binary: string;
  /** The first line of `<binary> --version` (the build, not only the version number). */
  qemuBuild: string;
  /** The daemon's HANGAR_ACCEL. */
  mode: AccelMode;
  /** JSON file holding the evidence; its directory also holds the probe ROM. */
  cacheFile: string;
  /** Prepares the Linux test guest (the Debian kernel Hangar's VM images use); absent: no Linux boot check. */
  linuxGuest?: () => Promise<LinuxTestGuest>;
  timeouts?: Partial<typeof CHECK_TIMEOUTS>;
  log?: (msg: string) => void;
}

// Bumped whenever what the cache holds (or how its messages are read) changes: older files are measured again.
const CACHE_FORMAT = 2;

interface CacheFile extends AccelEvidence {
  format: number;
  key: AccelCacheKey;
  checkedAt: string;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** The key of this host as it is now. */
export async function accelCacheKey(host: Host, qemuBuild: string): Promise<AccelCacheKey> {
  const [bootId, kernel] = await Promise.all([
    host.fs.readTextIfExists('/proc/sys/kernel/random/boot_id'),
    host.fs.readTextIfExists('/proc/sys/kernel/osrelease'),
  ]);
  return { bootId: (bootId ?? '').trim(), kernel: (kernel ?? '').trim(), qemu: qemuBuild };
}

/** What /dev/kvm is. */
async function deviceState(host: Host): Promise<AccelEvidence['device']> {
  try {
    const st = await host.fs.stat(KVM_DEVICE);
    if (!st) return { state: 'missing' };
    return (st.mode & S_IFMT) === S_IFCHR ? { state: 'present' } : { state: 'not-char' };
  } catch (e) {
    return { state: 'unreadable', detail: message(e) };
  }
}

/** Runs argv until it exits or the deadline; answers its output, exit code and time. */
async function runTimed(host: Host, argv: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string; code: number; timedOut: boolean; elapsedMs: number }> {
  const t0 = Date.now();
  try {
    const r = await host.exec(argv, { allowFailure: true, timeoutMs });
    const elapsedMs = Date.now() - t0;
    // A test guest ends QEMU itself. The deadline sends SIGTERM, which QEMU catches and exits 0 on: the clock tells.
    return { stdout: r.stdout, stderr: r.stderr, code: r.code, timedOut: r.signal === 'SIGTERM' || elapsedMs >= timeoutMs, elapsedMs };
  } catch (e) {
    return { stdout: '', stderr: `could not run ${argv[0]}: ${message(e)}`, code: -1, timedOut: false, elapsedMs: Date.now() - t0 };
  }
}

/** What every accelerator state shares: the choice per VM and what host info shows, from verdict() and the daemon's mode. */
abstract class AcceleratorState implements VmAccelerator {
  constructor(readonly mode: AccelMode) {}

  abstract verdict(): KvmVerdict;
  abstract confirm(): Promise<void>;
  abstract markBroken(fault: { instance: string; reason: string; at: string }): Promise<void>;
  /** When the verdict was last measured. */
  protected abstract get checkedAt(): string;

  /** What `host info` shows. */
  info(): AcceleratorInfo {
    const kvm = this.verdict();
    const choice = this.choose(undefined);
    const vmDefault = choice === null ? null : 'accel' in choice ? choice.accel : null;
    const reason = choice === null ? kvm.reason : 'accel' in choice ? choice.reason : choice.refused;
    return { mode: this.mode, default: vmDefault, reason, kvmUsable: kvm.usable, checking: kvm.usable === null, checkedAt: this.checkedAt };
  }

  /** The choice for a VM asking for `requested` (its boot.accel, else the daemon's mode) as it stands now; null while pending. */
  choose(requested: AccelMode | undefined): AccelChoice | null {
    return chooseAccel(requested ?? this.mode, requested ? 'boot.accel' : 'HANGAR_ACCEL', this.verdict());
  }

  /** The choice for a VM about to start: waits for a pending check first; throws UNSUPPORTED when refused. */
  async forStart(requested: AccelMode | undefined, instance: string): Promise<{ accel: Accel; reason: string }> {
    if (this.verdict().usable === null) await this.confirm();
    const c = this.choose(requested) ?? { accel: 'tcg' as const, reason: `${this.verdict().reason}; using software emulation (TCG) until the check ends` };
    if ('refused' in c) throw new AppError('UNSUPPORTED', `Failed to start instance "${instance}": ${c.refused}`);
    return c;
  }
}

/**
 * The accelerator state of one host. Opening it answers at once from the cache or after the ROM probe (~0.1 s); the Linux
 * boot check, which needs a kernel, runs once in the background (confirm) and VM starts wait for it.
 */
export class QemuAccel extends AcceleratorState {
  private evidence: AccelEvidence;
  private measuredAt: string;
  private linuxCheck: Promise<void> | null = null;

  private constructor(private readonly host: Host, private readonly opts: AccelCheckOptions, private readonly key: AccelCacheKey, cached: CacheFile | null) {
    super(opts.mode);
    const { key: _key, format: _format, checkedAt, ...evidence } = cached ?? { format: CACHE_FORMAT, key, checkedAt: new Date().toISOString(), device: { state: 'missing' } };
    this.evidence = evidence;
    this.measuredAt = checkedAt;
  }

  protected get checkedAt(): string {
    return this.measuredAt;
  }

  /** Reads the cached evidence when it is for this boot, kernel and QEMU; otherwise looks at /dev/kvm and runs the ROM probe. */
  static async open(host: Host, opts: AccelCheckOptions): Promise<QemuAccel> {
    const key = await accelCacheKey(host, opts.qemuBuild);
    const cached = await readCache(host, opts.cacheFile, key);
    const accel = new QemuAccel(host, opts, key, cached);
    if (!cached) await accel.measure();
    return accel;
  }

  /** What the evidence says about KVM now. */
  verdict(): KvmVerdict {
    return judgeKvm(this.evidence);
  }

  /** The evidence as measured (for tests and diagnosis). */
  get measured(): Readonly<AccelEvidence> {
    return this.evidence;
  }

  /** Runs the Linux boot check once when the verdict is pending (concurrent callers share the run). */
  confirm(): Promise<void> {
    if (this.verdict().usable !== null) return Promise.resolve();
    this.linuxCheck ??= this.checkLinux().finally(() => { this.linuxCheck = null; });
    return this.linuxCheck;
  }

  /** Records that a VM faulted under KVM before its guest did anything: KVM is not usable on this host until the key changes. */
  async markBroken(fault: { instance: string; reason: string; at: string }): Promise<void> {
    this.evidence = { ...this.evidence, fault };
    await this.save();
    this.opts.log?.(`KVM marked broken: ${this.verdict().reason}`);
  }

  private async measure(): Promise<void> {
    const device = await deviceState(this.host);
    this.evidence = { device };
    if (device.state === 'present') {
      const romPath = posix.join(posix.dirname(this.opts.cacheFile), 'accel-probe.rom');
      await this.host.fs.mkdir(posix.dirname(romPath), { recursive: true });
      await this.host.fs.writeAtomic(romPath, probeRom(), 0o644);
      const t = { ...CHECK_TIMEOUTS, ...this.opts.timeouts };
      const run = async (accel: Accel): Promise<GuestRun> => parseRomRun(accel, await runTimed(this.host, romProbeArgv(this.opts.binary, accel, romPath), t.romMs));
      const [kvm, tcg] = await Promise.all([run('kvm'), run('tcg')]);
      this.evidence = { device, rom: { kvm, tcg } };
      if (!this.opts.linuxGuest && kvm.ok && tcg.ok) this.evidence.linux = { error: 'no Linux test guest is configured' };
    }
    await this.save();
  }

  private async checkLinux(): Promise<void> {
    const t = { ...CHECK_TIMEOUTS, ...this.opts.timeouts };
    let guest: LinuxTestGuest;
    try {
      if (!this.opts.linuxGuest) throw new Error('no Linux test guest is configured');
      guest = await this.opts.linuxGuest();
    } catch (e) {
      this.evidence = { ...this.evidence, linux: { error: message(e) } };
      await this.save();
      return;
    }
    // Both at once: the software run is the yardstick, and the KVM deadline is generous next to it.
    const run = async (accel: Accel, timeoutMs: number): Promise<GuestRun> => parseLinuxRun(accel, guest.marker, await runTimed(this.host, linuxCheckArgv(this.opts.binary, accel, guest), timeoutMs));
    const [kvm, tcg] = await Promise.all([run('kvm', t.linuxKvmMs), run('tcg', t.linuxTcgMs)]);
    this.evidence = { ...this.evidence, linux: { kvm, tcg, kvmDeadlineMs: t.linuxKvmMs } };
    await this.save();
    this.opts.log?.(`accelerator: ${this.info().reason}`);
  }

  private async save(): Promise<void> {
    this.measuredAt = new Date().toISOString();
    const file: CacheFile = { format: CACHE_FORMAT, key: this.key, checkedAt: this.measuredAt, ...this.evidence };
    await this.host.fs.mkdir(posix.dirname(this.opts.cacheFile), { recursive: true });
    await this.host.fs.writeAtomic(this.opts.cacheFile, `${JSON.stringify(file, null, 2)}\n`, 0o600);
  }
}

/** The cached evidence when its key matches; null when missing, unreadable or stale. */
async function readCache(host: Host, path: string, key: AccelCacheKey): Promise<CacheFile | null> {
  const text = await host.fs.readTextIfExists(path).catch(() => undefined);
  if (!text) return null;
  try {
    const c = JSON.parse(text) as CacheFile;
    if (c.format !== CACHE_FORMAT || c.key?.bootId !== key.bootId || c.key.kernel !== key.kernel || c.key.qemu !== key.qemu || !c.device?.state) return null;
    // A pending Linux check is not a result: measure again.
    if (c.device.state === 'present' && !c.rom) return null;
    return c;
  } catch {
    return null;
  }
}

/** An accelerator state with a given verdict and no checks to run (unit tests); markBroken records the fault and turns the verdict. */
export class FixedAccelerator extends AcceleratorState {
  /** Every fault markBroken was told of. */
  readonly broken: { instance: string; reason: string; at: string }[] = [];

  constructor(private kvm: KvmVerdict, mode: AccelMode = 'auto') {
    super(mode);
  }

  protected get checkedAt(): string {
    return new Date(0).toISOString();
  }

  verdict(): KvmVerdict {
    return this.kvm;
  }

  async confirm(): Promise<void> {}

  async markBroken(fault: { instance: string; reason: string; at: string }): Promise<void> {
    this.broken.push(fault);
    this.kvm = { usable: false, reason: `VM "${fault.instance}" faulted under KVM: ${fault.reason}` };
  }
}
