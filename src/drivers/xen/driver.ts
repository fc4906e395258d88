// The Xen driver: PV, PVH and HVM domains created and driven through xl in Dom0, on any Host (the daemon's machine, or a Dom0 over SSH).
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import { devicesOf, resourcesOf, type InstanceConfig } from '../../shared/config.js';
import { parseSize } from '../../shared/units.js';
import type { Usage } from '../../shared/schemas.js';
import type { Host, HostProcess } from '../../host/host.js';
import { Reverter } from '../../host/reverter.js';
import type { ConfigApplyResult, Driver, DriverEnv, ExecSpec, HostDriver, InstanceHandle, InstanceRecord, ObservedState, StopOptions } from '../driver.js';
import { attachXenConsole } from './console.js';
import { DomainWatch } from './watch.js';
import { domainName, domainUuid, extraDiskPath, guestTypeOf, importedOf, xenFiles, xenState, type XenFiles, type XenHost, type XenImported, type XenRun } from './domain.js';
import { ensureRawDisk, placeImage, type XenImageSource } from './images.js';
import { applyLive, changedKeys, LIVE_KEYS } from './live.js';
import { probeXen } from './probe.js';
import { renderXlConfig, XEN_CONFIG_KEYS, xlConfigFor, type XenDomainPlan, type XenGuestType } from './render-config.js';
import { renderFacts, validateXen } from './validate.js';
import { XL_DEFAULT_RATE_INTERVAL_US } from './vif-spec.js';
import { Xl } from './xl.js';

const MIB = 1024 ** 2;
// A domain shutting down (xl's daemon destroying it, a save finishing) is waited for this long before a start gives up.
const SETTLE_MS = 30_000;

const TYPE_WORDS: Record<XenGuestType, string> = {
  pv: 'paravirtualized (PV)',
  pvh: 'hardware-assisted (PVH: paravirtualized devices, no device model)',
  hvm: 'hardware-assisted (HVM, with an emulated platform)',
};

/** A JSON file the driver wrote, or undefined when it is missing or unreadable. */
async function readJson<T>(host: Host, path: string): Promise<T | undefined> {
  const text = await host.fs.readTextIfExists(path);
  try {
    return text ? (JSON.parse(text) as T) : undefined;
  } catch {
    return undefined;
  }
}

class XenInstance implements InstanceHandle {
  readonly files: XenFiles;
  readonly name: string;
  /** The UUID it is created with: Hangar's own, or an imported domain's. */
  readonly uuid: string;
  /** What an imported domain keeps (its disks; its UUID, which a running domain must have unless the import named none). */
  readonly imported: XenImported | null;

  constructor(readonly record: InstanceRecord, readonly x: XenHost) {
    this.files = xenFiles(record);
    this.name = domainName(record);
    this.imported = importedOf(record);
    this.uuid = this.imported?.uuid ?? domainUuid(x.env.prefix, record);
  }

  get host(): Host { return this.x.env.host; }
  get xl(): Xl { return this.x.xl; }
  get type(): XenGuestType { return guestTypeOf(this.record.config, this.x.facts); }

  consoleLogPath(): string { return this.files.consoleLog; }

  private unavailable(what: string): AppError {
    return new AppError('UNSUPPORTED', `Failed to ${what} instance "${this.record.name}": Xen is not available on host ${this.host.name} (${this.x.probe.reason})`);
  }

  /** Copies the image's disk (and, from another machine, its kernel and initrd) to the Xen host and makes the domain's disks; idempotent, grows disks for a changed limits.disk. */
  async create(): Promise<void> {
    const { record, host } = this;
    await host.fs.mkdir(record.instanceDir, { recursive: true, mode: 0o700 });
    const image = await this.image();
    const r = resourcesOf(record.config);
    const rev = new Reverter();
    await rev.run(async () => {
      if (image.rawDisk) {
        const made = await ensureRawDisk(host, this.files.rootDisk, { base: image.rawDisk, sizeBytes: r.diskBytes, what: `The root disk of instance "${record.name}"` });
        if (made.created) rev.add('root disk', () => host.fs.rm(this.files.rootDisk, { force: true }));
      }
      for (const dev of devicesOf(record.config)) {
        const path = extraDiskPath(record, dev.name);
        const made = await ensureRawDisk(host, path, { sizeBytes: dev.sizeBytes, what: `Disk "${dev.name}" of instance "${record.name}"` });
        if (made.created) rev.add(`disk ${dev.name}`, () => host.fs.rm(path, { force: true }));
      }
    });
  }

  private image() {
    return placeImage({ host: this.host, cacheDir: posix.join(this.x.env.dataDir, 'xen', 'images'), source: this.x.imageSource, qemuImg: this.x.facts?.qemuImg ?? null }, this.record);
  }

  /** The domain for a config: the resource model mapped by xlConfigFor, the image's boot files on the Xen host, its disks, the NIC's rate. */
  private async plan(config: InstanceConfig, bootDir: string | undefined): Promise<XenDomainPlan> {
    const record = { ...this.record, config, imagePath: bootDir };
    const egress = config['limits.network.egress'];
    const cpus = this.x.facts?.info.nrCpus ?? undefined;
    const hasRoot = !!this.record.imageProps.disk;
    return xlConfigFor(record, renderFacts(this.x.facts), {
      type: guestTypeOf(config, this.x.facts),
      uuid: this.uuid,
      rootDisk: hasRoot ? { path: this.files.rootDisk, format: 'raw' } : null,
      extraDisks: devicesOf(config).map((d) => ({ path: extraDiskPath(this.record, d.name), format: 'raw' as const })),
      // An imported domain's disks stay where they are, as its xl.cfg had them.
      ...(this.imported ? { keptDisks: this.imported.disks } : {}),
      // vCPUs can be added live up to the host's CPU count.
      ...(cpus ? { maxVcpus: cpus } : {}),
      ...(egress ? { vifRate: { bytesPerSecond: parseSize(egress.replace(/\/s\s*$/, ''), 'limits.network.egress'), intervalUs: XL_DEFAULT_RATE_INTERVAL_US } } : {}),
    });
  }

  /** Starts the domain (restores it after a stateful stop); answers its state from the `xl list -l` that records the run. */
  async start(known?: ObservedState): Promise<ObservedState> {
    const name = this.record.name;
    let st = known ?? await this.state();
    if (st.state === 'stopping') {
      await this.xl.waitGone(this.name, SETTLE_MS);
      st = await this.state();
    }
    if (st.state === 'running' || st.state === 'frozen') return st;
    if (st.state !== 'stopped') throw new AppError('INVALID_STATE', `Failed to start instance "${name}": it is ${st.state}${st.error ? ` (${st.error.reason})` : ''}`);
    if (!this.x.facts) throw this.unavailable('start');
    // No implicit create(): a deleted instance must not come back from its image.
    if (!(await this.host.fs.stat(this.record.instanceDir))) throw new AppError('NOT_FOUND', `Failed to start instance "${name}": its directory ${this.record.instanceDir} does not exist on host ${this.host.name} (create it first)`);
    if (this.record.imageProps.disk && !(await this.host.fs.stat(this.files.rootDisk))) throw new AppError('NOT_FOUND', `Failed to start instance "${name}": its root disk ${this.files.rootDisk} does not exist (create it first)`);
    const rev = new Reverter();
    return rev.run(async () => {
      if (await this.host.fs.stat(this.files.save)) {
        // Stateful start: the saved domain comes back with the config it was saved with, where it was.
        await this.xl.restore(this.files.save, this.name);
        rev.add('restored domain', () => this.xl.destroy(this.name));
        // The saved domain's own config came back with it: what it got is read from it.
        const now = await this.recordRun();
        await this.host.fs.rm(this.files.save, { force: true });
        return now;
      }
      const image = await this.image();
      const plan = await this.plan(this.record.config, image.bootDir);
      await this.host.fs.writeAtomic(this.files.cfg, renderXlConfig(plan.xl), 0o600);
      await this.xl.create(this.files.cfg, this.name);
      rev.add('created domain', () => this.xl.destroy(this.name));
      return this.recordRun({ type: plan.xl.type, maxmemMiB: plan.xl.maxmemMiB, maxvcpus: plan.xl.maxvcpus });
    });
  }

  /**
   * Records what the domain was created with (the ceilings live changes stay within): `created`, the xl.cfg it was just
   * created from (xl refuses what it cannot give), else what `xl list -l` says a restored one has. Answers its state:
   * `xl create` and `xl restore` return once the domain runs unpaused, so its domid and start time say it all.
   */
  private async recordRun(created?: Pick<XenRun, 'type' | 'maxmemMiB' | 'maxvcpus'>): Promise<ObservedState> {
    // The reads at once: over SSH their round trips overlap. `xl domid` is a fraction of `xl list -l`'s JSON dump.
    const [d, secs] = await Promise.all([
      created ? this.xl.domid(this.name).then((domid) => (domid === null ? null : { domid, ...created })) : this.xl.listLong(this.name).then((l) => (!l || l.domid === null ? null : {
        domid: l.domid, type: (l.type as XenGuestType | null) ?? this.type, maxmemMiB: Math.floor((l.maxMemKiB ?? 0) / 1024), maxvcpus: l.maxVcpus ?? 1,
      })),
      this.readStartTime(),
    ]);
    if (!d) throw new AppError('BACKEND_FAILED', `Domain "${this.name}" is gone right after it was started`, { cause: new Error(`see ${this.files.logs[0]} on host ${this.host.name}`) });
    const run: XenRun = { ...d, startedAt: new Date().toISOString() };
    await this.host.fs.writeAtomic(this.files.run, `${JSON.stringify(run)}\n`, 0o600);
    const startTime = secs ?? d.domid;
    this.x.startTimes.set(d.domid, startTime);
    return { state: 'running', pid: d.domid, startTime };
  }

  /** Refuses to act on a domain of this name that Hangar did not create. */
  private mustBeOurs(st: ObservedState, what: string): void {
    if (st.state === 'error' && st.error?.reason.includes('that Hangar did not create')) {
      throw new AppError('CONFLICT', `Failed to ${what} instance "${this.record.name}": ${st.error.reason}`);
    }
  }

  async stop(opts: StopOptions): Promise<void> {
    const st = await this.state();
    this.mustBeOurs(st, 'stop');
    if (st.state === 'stopped') return;
    if (opts.stateful) {
      if (st.state === 'error' || st.state === 'stopping') throw new AppError('INVALID_STATE', `Cannot save the state of instance "${this.record.name}": it is ${st.state}${st.error ? ` (${st.error.reason})` : ''}`);
      // A paused guest cannot answer the suspend request a save makes.
      if (st.state === 'frozen') await this.xl.unpause(this.name);
      await this.host.fs.rm(this.files.save, { force: true });
      try {
        await this.xl.save(this.name, this.files.save);
      } catch (err) {
        await this.host.fs.rm(this.files.save, { force: true });
        throw new AppError('BACKEND_FAILED', `Failed to save the state of instance "${this.record.name}"`, { cause: err });
      }
      await this.xl.waitGone(this.name, SETTLE_MS);
      return;
    }
    if (opts.force || st.state === 'error') {
      await this.xl.destroy(this.name);
      await this.xl.waitGone(this.name, SETTLE_MS);
      return;
    }
    if (st.state === 'frozen') await this.xl.unpause(this.name);
    const outcome = await this.xl.shutdown(this.name, { wait: true, timeoutMs: opts.timeoutMs, acpiFallback: this.type === 'hvm' });
    if (outcome === 'destroyed') this.x.env.log(`xen: instance "${this.record.name}" did not shut down within ${Math.round(opts.timeoutMs / 1000)} s and was destroyed`);
    await this.xl.waitGone(this.name, SETTLE_MS);
  }

  async freeze(): Promise<void> {
    const st = await this.state();
    if (st.state === 'frozen') return;
    if (st.state !== 'running') throw new AppError('INVALID_STATE', `Failed to freeze instance "${this.record.name}": it is ${st.state}`);
    await this.xl.pause(this.name);
  }

  async unfreeze(): Promise<void> {
    const st = await this.state();
    if (st.state === 'running') return;
    if (st.state !== 'frozen') throw new AppError('INVALID_STATE', `Failed to unfreeze instance "${this.record.name}": it is ${st.state}`);
    await this.xl.unpause(this.name);
  }

  /** Destroys the domain if it still runs, then removes its disks (the volume itself is the pool's), its instance directory (config, saved state) and its logs on the Xen host. */
  async delete(): Promise<void> {
    const st = await this.state();
    this.mustBeOurs(st, 'delete');
    if (st.state !== 'stopped') {
      await this.xl.destroy(this.name);
      await this.xl.waitGone(this.name, SETTLE_MS);
    }
    for (const f of await this.host.fs.readdir(this.record.rootPath).catch(() => [] as string[])) {
      if (f === posix.basename(this.files.rootDisk) || /^disk-.+\.raw$/.test(f)) await this.host.fs.rm(posix.join(this.record.rootPath, f), { force: true });
    }
    await this.host.fs.rm(this.record.instanceDir, { recursive: true, force: true });
    for (const f of [this.files.consoleLog, ...this.files.logs]) await this.host.fs.rm(f, { force: true });
  }

  /** One `xl list -v NAME`: stopped when there is no such domain; the domid is the pid, the domain's start time (xenstore, once per domid) the start time. */
  async state(): Promise<ObservedState> {
    if (!this.x.facts) return { state: 'stopped', pid: null, startTime: null };
    const entry = await this.xl.find(this.name);
    return xenState(entry, this.imported && this.imported.uuid === null ? null : this.uuid, this.host.name, entry ? await this.startTime(entry.domid) : null);
  }

  private async startTime(domid: number): Promise<number> {
    const known = this.x.startTimes.get(domid);
    if (known !== undefined) return known;
    // Without it, the domid tells one domain from the next just as well until Xen restarts.
    const t = (await this.readStartTime()) ?? domid;
    this.x.startTimes.set(domid, t);
    return t;
  }

  /** The domain's start time in hundredths of a second, from the /vm entry where libxl keeps it; undefined when unreadable. */
  private async readStartTime(): Promise<number | undefined> {
    const res = await this.host.exec(['xenstore-read', `/vm/${this.uuid}/start_time`], { allowFailure: true, timeoutMs: 10_000 }).catch(() => undefined);
    const secs = Number(res?.code === 0 ? res.stdout.trim() : NaN);
    return Number.isFinite(secs) && secs > 0 ? Math.round(secs * 100) : undefined;
  }

  async applyConfig(next: InstanceConfig, prev: InstanceConfig): Promise<ConfigApplyResult> {
    const keys = changedKeys(next, prev);
    const st = await this.state();
    let live: string[] = [];
    const liveKeys = keys.filter((k) => LIVE_KEYS.has(k));
    if ((st.state === 'running' || st.state === 'frozen') && liveKeys.length) {
      const run = await readJson<XenRun>(this.host, this.files.run);
      if (run) {
        const [a, b] = await Promise.all([this.plan(next, this.record.imagePath), this.plan(prev, this.record.imagePath)]);
        live = (await applyLive(this.xl, this.name, run, this.x.facts?.info.scheduler ?? null, a.xl, b.xl, liveKeys)).live;
      }
    }
    return { live, pending: keys.filter((k) => !live.includes(k)) };
  }

  exec(spec: ExecSpec): HostProcess {
    void spec;
    throw new AppError('UNSUPPORTED', `Cannot run a command in instance "${this.record.name}": exec needs a guest agent, and a Xen domain has no channel to one here (the QEMU guest agent talks over virtio-serial, which Xen PV and PVH domains lack); use "hangar console ${this.record.name}"`);
  }

  /** The text console: `xl console NAME` on a pseudo-terminal of the Xen host (xenconsoled also logs it). */
  attachConsole(size: { cols: number; rows: number }): HostProcess {
    return attachXenConsole(this.xl, this.name, size, this.x.consoles);
  }

  /** What the domain really got (xl list -l): type, domid, memory and its ceiling, vCPUs, scheduler, boot, disks, NIC; and how it is stored. */
  async details(): Promise<Record<string, string>> {
    const out: Record<string, string> = { domain: `${this.name} (uuid ${this.uuid})`, type: TYPE_WORDS[this.type] };
    if (!this.x.facts) return { ...out, xen: `not available on host ${this.host.name}: ${this.x.probe.reason}` };
    const saved = await this.host.fs.stat(this.files.save);
    if (saved) out['saved state'] = `${this.files.save} (${Math.round(saved.size / MIB)} MiB; the next start restores it)`;
    const d = await this.xl.listLong(this.name).catch(() => null);
    if (!d) return out;
    if (d.type) out.type = TYPE_WORDS[d.type as XenGuestType] ?? d.type;
    if (d.domid !== null) out.domid = String(d.domid);
    if (d.targetMemKiB !== null && d.maxMemKiB !== null) out.memory = `${Math.round(d.targetMemKiB / 1024)} MiB (balloon target), up to ${Math.round(d.maxMemKiB / 1024)} MiB (maxmem)`;
    if (d.maxVcpus !== null) out.vcpus = `${d.availVcpus ?? d.maxVcpus} online of ${d.maxVcpus} (maxvcpus)`;
    const scheduler = this.x.facts.info.scheduler;
    if (scheduler === 'credit' || scheduler === 'credit2') {
      const s = await this.xl.sched(scheduler, this.name).catch(() => null);
      if (s) out.scheduler = `${scheduler}: weight ${s.weight}, cap ${s.cap === 0 ? 'none' : `${s.cap}%`}`;
    }
    if (d.kernel) out.boot = `kernel ${d.kernel}${d.ramdisk ? `, initrd ${d.ramdisk}` : ''}`;
    if (d.disks.length) out.disks = d.disks.map((k) => `${k.vdev} ${k.target} (${k.format ?? '?'}, ${k.backend ?? '?'}${k.readwrite ? '' : ', ro'})`).join('; ');
    const nic = d.nics[0];
    if (nic) out.nic = `${nic.ifname ?? '?'} on ${nic.bridge ?? '?'} (${nic.mac ?? '?'})${nic.rate ? `, ${Math.round((nic.rate.bytesPerInterval * 1e6) / nic.rate.intervalUs)} B/s` : ''}`;
    return out;
  }

  /** CPU time and memory from `xl list` (one round trip), NIC traffic from the vif's counters on the Xen host. */
  async usage(): Promise<Usage> {
    if (!this.x.facts) return {};
    const entry = await this.xl.find(this.name);
    if (!entry) return {};
    const vif = this.record.nic.hostIfName;
    const [rx, tx] = await this.host.fs.readMany([`/sys/class/net/${vif}/statistics/tx_bytes`, `/sys/class/net/${vif}/statistics/rx_bytes`]);
    const out: Usage = { cpuTimeNs: Math.round(entry.cpuSeconds * 1e9), memoryBytes: entry.memMiB * MIB };
    // The host side of the vif sends what the guest receives.
    if (rx !== undefined) out.rxBytes = Number(rx.trim());
    if (tx !== undefined) out.txBytes = Number(tx.trim());
    return out;
  }
}

const XEN_TECHNOLOGY = { kernel: 'own', memory: 'dedicated', isolation: 'Xen hypervisor: paravirtualized (PV) or hardware-assisted (PVH/HVM) domains' } as const;

/** Options of xenOnHost besides what was probed. */
export interface XenHostOptions {
  /** The machine holding image directories when it is not the Xen host (the daemon's, with the Xen host over SSH). */
  imageSource?: XenImageSource;
}

/** The Xen driver on one host, from what was probed there (tests build it directly). */
export function xenOnHost(env: DriverEnv, probed: Awaited<ReturnType<typeof probeXen>>, xl: Xl, opts: XenHostOptions = {}): HostDriver {
  const x: XenHost = { env, probe: probed.probe, facts: probed.facts, xl, imageSource: opts.imageSource, startTimes: new Map(), consoles: new Map() };
  const facts = x.facts;
  const info = facts?.info;
  const watch = new DomainWatch(env.host, xl);
  const checkedAt = new Date().toISOString();
  return {
    driver: xenDriver,
    probe: x.probe,
    details: (): Record<string, string> => {
      if (!info) return { xen: `not available: ${x.probe.reason}` };
      return {
        xen: `${info.xenVersion} (${info.scheduler ?? 'unknown'} scheduler)`,
        'virt caps': info.virtCaps.join(' ') || '(none)',
        'guest types': `pv${info.virtCaps.includes('hvm') && (info.virtCaps.includes('hap') || info.virtCaps.includes('shadow')) ? ', pvh' : ''}${facts!.deviceModel && info.virtCaps.includes('hvm') ? ', hvm' : ''}`,
        memory: `${info.freeMemoryMiB ?? '?'} MiB free of ${info.totalMemoryMiB ?? '?'} MiB`,
        cpus: String(info.nrCpus ?? '?'),
        'device model': facts!.deviceModel ?? 'none (no HVM domains, no qdisk or channel backends)',
        'qemu-img': facts!.qemuImg ?? 'none (qcow2 image disks are converted on the image source)',
      };
    },
    // Domains get their memory from Xen, not from Dom0's RAM: what Xen has beside Dom0.
    memoryCapacityBytes: () => (info?.totalMemoryMiB ? (info.totalMemoryMiB - (facts!.dom0MemoryMiB ?? 0)) * MIB : undefined),
    // The accelerator report is QEMU's shape; a Xen domain runs on the hypervisor, never under KVM or TCG.
    accelerator: () => ({
      mode: 'auto', default: null, kvmUsable: false, checking: false, checkedAt,
      reason: info ? `Xen ${info.xenVersion} runs the domains itself (virt_caps: ${info.virtCaps.join(' ') || 'none'}); KVM and TCG are not used` : `Xen is not available: ${x.probe.reason}`,
    }),
    technology: (config) => {
      const type = guestTypeOf(config, facts);
      const r = (() => { try { return resourcesOf(config); } catch { return {}; } })() as ReturnType<typeof resourcesOf>;
      const max = r.memoryMax !== undefined ? `${Math.ceil(r.memoryMax / MIB)} MiB` : 'maxmem';
      const guaranteed = r.memoryGuarantee !== undefined ? `${Math.ceil(r.memoryGuarantee / MIB)} MiB` : r.memoryMax !== undefined ? max : 'memory';
      const xen = info?.xenVersion ? `Xen ${info.xenVersion}` : 'Xen';
      return { ...XEN_TECHNOLOGY, isolation: `${xen} domain, ${TYPE_WORDS[type]}; memory dedicated up to ${guaranteed} (limits.memory.guarantee, xl memory), balloonable to ${max} (limits.memory, xl maxmem)` };
    },
    validate: (config) => validateXen(config, facts, env.facts),
    idmap: () => 'none',
    load: (record) => new XenInstance(record, x),
    ...(facts ? { watchEnd: (domid: number, onEnd: () => void) => watch.watch(domid, onEnd) } : {}),
  };
}

/** The Xen backend (HANGAR_DRIVERS=...,xen): domains through xl in Dom0; on a host without Xen it reports why it is unavailable. */
export const xenDriver: Driver = {
  name: 'xen',
  type: 'vm',
  features: { freeze: true, snapshots: false, statefulStop: true, console: true, execTty: false, liveCopy: false, graphicalConsole: false, monitor: false },
  technology: XEN_TECHNOLOGY,
  keys: XEN_CONFIG_KEYS,
  storage: 'image',
  async open(env) {
    const xl = new Xl(env.host);
    const probed = await probeXen(env.host, xl);
    env.log(probed.probe.available ? `xen ${probed.probe.version} on ${env.host.name}` : `xen unavailable: ${probed.probe.reason}`);
    return xenOnHost(env, probed, xl);
  },
};
