// The LXC driver: system containers run by the lxc-* tools, configured by a rendered config file and cgroup v1/v2 limits.
import { posix } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { resourcesOf, type InstanceConfig } from '../../shared/config.js';
import { AppError } from '../../shared/errors.js';
import type { Usage } from '../../shared/schemas.js';
import type { Host, HostProcess } from '../../host/host.js';
import { Reverter } from '../../host/reverter.js';
import { readCgroupFacts, type HostFacts } from '../../host/facts.js';
import { readCgroupMounts, type CgroupMounts } from '../../host/mounts.js';
import { procStartTime, readProcStartTime } from '../../host/procfs.js';
import type {
  ConfigApplyResult, Driver, DriverEnv, ExecSpec, HostDriver, InstanceHandle, InstanceRecord, ObservedState, StopOptions,
} from '../driver.js';
import { ensureLxcfs } from './lxcfs.js';
import { shiftIds } from './shift.js';
import { hostFitProblems } from '../host-fit.js';
import {
  lxcAttachArgv, lxcConsoleArgv, lxcFreeze, lxcInfo, lxcStart, lxcStop, lxcUnfreeze, lxcVersion, type LxcTarget,
} from './lxc-tools.js';
import { lxcStateToInstanceState, parseCgroupNumber, parseFlatKeyed, parseProcCgroup, tailLines } from './parse.js';
import { cgroupDirs, cgroupSettings, INSTANCE_FILES, renderLxcConfig, type LxcRenderInput } from './render-config.js';
import { cgroupDefault, firstCpus, type CgroupSetting } from '../common/cgroup-math.js';
import { renderSeccompProfile, SECCOMP_FILE } from './render-seccomp.js';

/** The least limits.memory a container starts with: LXC runs its setup inside the limit. */
export const LXC_MIN_MEMORY = 16 * 1024 ** 2;

const POLL_MS = 50;
const TEARDOWN_WAIT_MS = 10_000;
// How long one graceful stop attempt waits before the halt signal is sent again.
const HALT_RESEND_S = 3;
// After a failed start the monitor exits within a few hundred ms; empty leftovers after that are LXC's bug, not work in progress.
const FAILED_START_WAIT_MS = 2_000;

/** Config keys that only take effect when the container starts again. */
const RESTART_KEYS = new Set(['security.privileged']);

/** Keys the driver does not handle (the storage pool does). */
const NOT_OURS = new Set(['limits.disk']);

/** Cgroup mount points of a host (readCgroupMounts), by the name the integration tests import. */
export const cgroupMounts = readCgroupMounts;

/** The cgroup facts the LXC driver needs (readCgroupFacts: layout and swap accounting), for whoever builds HostFacts. */
export const detectLxcCgroupFacts = readCgroupFacts;

/** The cgroup directory of one setting's controller: v1 controller hierarchy, or the v2 hierarchy. */
function settingDir(mounts: CgroupMounts, controller: string, rel: { v1: Record<string, string>; v2: string | null }): string | null {
  if (controller === '') return mounts.v2 && rel.v2 !== null ? posix.join(mounts.v2, rel.v2) : null;
  const mount = mounts.v1[controller];
  const path = rel.v1[controller];
  return mount && path !== undefined ? posix.join(mount, path) : null;
}

/** What the LXC driver keeps per host: the daemon's environment there, its lxc path and the lxcfs mount (null without lxcfs). */
export interface LxcHost {
  env: DriverEnv;
  lxcPath: string;
  lxcfsDir: string | null;
}

/** How a container built on this driver (OpenVZ's) is networked and named, from its record: render-config's routed and hostname. */
export type LxcVariant = (record: InstanceRecord) => Pick<LxcRenderInput, 'hostname' | 'routed'>;

/** One LXC container; other container backends (openvz) run theirs through it, with their own variant. */
export class LxcInstance implements InstanceHandle {
  private record: InstanceRecord;
  private readonly target: LxcTarget;
  private readonly ctx: { host: Host; facts: HostFacts; prefix: string; lxcPath: string; lxcfsDir: string | null };

  constructor(record: InstanceRecord, lxc: LxcHost, private readonly variant: LxcVariant = () => ({})) {
    if (!posix.isAbsolute(lxc.lxcPath)) throw new AppError('INVALID_CONFIG', `Invalid LXC path ${JSON.stringify(lxc.lxcPath)}: must be absolute`);
    this.record = record;
    this.ctx = { host: lxc.env.host, facts: lxc.env.facts, prefix: lxc.env.prefix, lxcPath: lxc.lxcPath, lxcfsDir: lxc.lxcfsDir };
    this.target = { lxcPath: lxc.lxcPath, name: record.name };
  }

  private get host(): Host { return this.ctx.host; }
  private get containerDir(): string { return posix.join(this.ctx.lxcPath, this.record.name); }
  private get configPath(): string { return posix.join(this.containerDir, 'config'); }
  private get lxcLog(): string { return posix.join(this.record.instanceDir, INSTANCE_FILES.lxcLog); }

  consoleLogPath(): string {
    return posix.join(this.record.instanceDir, INSTANCE_FILES.consoleLog);
  }

  /** Writes the container's LXC config and seccomp profile (what create does, without looking at the tree). */
  async writeConfig(): Promise<void> {
    const seccompProfile = posix.join(this.containerDir, SECCOMP_FILE);
    const text = renderLxcConfig({
      record: this.record, facts: this.ctx.facts, prefix: this.ctx.prefix, lxcfsDir: this.ctx.lxcfsDir, seccompProfile,
      ...(this.record.cpuset ? { cpuset: this.record.cpuset } : {}), ...this.variant(this.record),
    });
    await this.host.fs.mkdir(this.containerDir, { recursive: true, mode: 0o755 });
    await this.host.fs.mkdir(this.record.instanceDir, { recursive: true });
    // Rewritten on every start too, so that containers created before a profile change get the current one.
    await this.host.fs.writeAtomic(seccompProfile, renderSeccompProfile(), 0o644);
    await this.host.fs.writeAtomic(this.configPath, text, 0o644);
  }

  /** Writes (or rewrites, e.g. before a start with changed limits) the container's config; shifts a legacy tree back. */
  async create(): Promise<void> {
    await this.ensureOwnership();
    await this.writeConfig();
  }

  /**
   * Trees are stored with the container's own ids (0-based): unprivileged containers see them through an idmapped
   * mount. A tree from an older Hangar, stored shifted to the shared map, is shifted back here, once.
   */
  private async ensureOwnership(): Promise<void> {
    const current = (await this.host.fs.stat(this.record.rootPath))?.uid;
    if (current === undefined) throw new AppError('NOT_FOUND', `Root file system of instance "${this.record.name}" is missing`);
    if (current === 0) return;
    await shiftIds(this.host, this.record.rootPath, -current, { base: current, limit: this.ctx.facts.idmap.count });
  }

  /** Writes the instance's identity into its new root: hostname, hosts, resolver, and an empty machine-id so it gets its own. */
  async initRoot(): Promise<void> {
    const root = this.record.rootPath;
    // Files get the owner of the root directory: a tree stored by an older Hangar (shifted) is shifted back as a whole.
    const owner = (await this.host.fs.stat(root))?.uid ?? 0;
    const gw = this.record.nic.gateway;
    const hostname = this.variant(this.record).hostname ?? this.record.name;
    const files: [string, string][] = [
      ['etc/hostname', `${hostname}\n`],
      ['etc/hosts', `127.0.0.1 localhost\n127.0.1.1 ${hostname}\n::1 localhost ip6-localhost ip6-loopback\n`],
      ['etc/resolv.conf', `nameserver ${gw}\n`],
    ];
    if ((await this.host.fs.stat(posix.join(root, 'etc/machine-id')))?.isFile) files.push(['etc/machine-id', '']);
    for (const [rel, content] of files) {
      const dst = posix.join(root, rel);
      // Never follow a symlink from an image's tree out of the root.
      const dirStat = await this.host.fs.stat(posix.dirname(dst));
      if (!dirStat?.isDirectory) continue;
      const st = await this.host.fs.stat(dst);
      if (st?.isSymbolicLink) continue;
      await this.host.fs.writeAtomic(dst, content, 0o644);
      await this.host.fs.chown(dst, owner, owner);
    }
  }

  // init.pid caches the container's init pid (learnt from lxc-info once per start); monitor.pid is lxc-start's own.
  private get pidFile(): string { return posix.join(this.record.instanceDir, 'init.pid'); }
  private get monitorPidFile(): string { return posix.join(this.record.instanceDir, 'monitor.pid'); }

  /**
   * State from files only (no fork, so exec and list stay fast): the init pid lxc-start wrote, confirmed by that
   * process sitting in this container's cgroup, and the freezer. Falls back to lxc-info when the files disagree.
   */
  async state(): Promise<ObservedState> {
    const fast = await this.fastState();
    if (fast) return fast;
    if (!(await this.host.fs.stat(this.configPath))) return { state: 'stopped', pid: null, startTime: null };
    return this.slowState();
  }

  private async fastState(): Promise<ObservedState | undefined> {
    const dirs = cgroupDirs(this.ctx.prefix, this.record.name);
    const pidText = await this.host.fs.readTextIfExists(this.pidFile);
    const pid = pidText === undefined ? NaN : Number(pidText.trim());
    if (Number.isInteger(pid) && pid > 0) {
      // One batched read (one round trip on a remote host): the init's cgroup and stat, and both freezers.
      const freezers = await this.freezerFiles();
      const [cg, stat, ...freeze] = await this.host.fs.readMany([`/proc/${pid}/cgroup`, `/proc/${pid}/stat`, ...freezers.map((f) => f.path)]);
      const inCgroup = cg !== undefined && cg.split('\n').some((l) => l.endsWith(`:/${dirs.container}`) || l.includes(`:/${dirs.container}/`));
      if (inCgroup && stat !== undefined) {
        const frozen = freezers.some((f, i) => freeze[i] !== undefined && f.frozen(freeze[i]!));
        return { state: frozen ? 'frozen' : 'running', pid, startTime: procStartTime(stat) };
      }
    }
    // No live init: stopped, unless the container's cgroup still exists (starting, stopping, or started without our pidfile).
    const mounts = await readCgroupMounts(this.host);
    const probe = mounts.v1.memory ?? mounts.v1.pids ?? mounts.v2;
    if (!probe) return undefined;
    if (await this.host.fs.stat(posix.join(probe, dirs.container))) return undefined;
    return { state: 'stopped', pid: null, startTime: null };
  }

  /** The freezer files of the container (v1 freezer.state, v2 cgroup.freeze) and how each says "frozen". */
  private async freezerFiles(): Promise<{ path: string; frozen: (text: string) => boolean }[]> {
    const mounts = await readCgroupMounts(this.host);
    const dir = cgroupDirs(this.ctx.prefix, this.record.name).container;
    const out: { path: string; frozen: (text: string) => boolean }[] = [];
    if (mounts.v1.freezer) out.push({ path: posix.join(mounts.v1.freezer, dir, 'freezer.state'), frozen: (t) => t.trim() !== 'THAWED' });
    if (mounts.v2) out.push({ path: posix.join(mounts.v2, dir, 'cgroup.freeze'), frozen: (t) => t.trim() === '1' });
    return out;
  }

  private async slowState(): Promise<ObservedState> {
    const info = await lxcInfo(this.host, this.target);
    const state = lxcStateToInstanceState(info.state);
    const pid = state === 'stopped' ? null : info.pid;
    const startTime = pid === null ? null : await readProcStartTime(this.host, pid);
    if (pid !== null && (state === 'running' || state === 'frozen')) {
      await this.host.fs.writeAtomic(this.pidFile, `${pid}\n`).catch(() => undefined);
    }
    return { state, pid, startTime };
  }

  /** Expected cgroup paths of the container (and its monitor) in every mounted hierarchy. */
  private async cgroupLeftovers(): Promise<string[]> {
    const mounts = await readCgroupMounts(this.host);
    const dirs = cgroupDirs(this.ctx.prefix, this.record.name);
    const roots = [...new Set([...Object.values(mounts.v1), ...(mounts.v2 ? [mounts.v2] : [])])];
    const out: string[] = [];
    for (const root of roots) {
      for (const rel of [dirs.container, dirs.monitor]) {
        const p = posix.join(root, rel);
        if (await this.host.fs.stat(p)) out.push(p);
      }
    }
    return out;
  }

  /** True while this container's LXC monitor process ("[lxc monitor] <lxcPath> <name>") exists. */
  private async monitorAlive(): Promise<boolean> {
    const want = `[lxc monitor] ${this.ctx.lxcPath} ${this.record.name}`;
    for (const pid of await this.host.fs.readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const cmd = await this.host.fs.readTextIfExists(`/proc/${pid}/cmdline`).catch(() => undefined);
      if (cmd !== undefined && cmd.replace(/\0/g, ' ').trim() === want) return true;
    }
    return false;
  }

  /** Waits until LXC has torn the container down (cgroups removed, monitor exited); true when gone. */
  private async waitTornDown(ms: number, thorough = false): Promise<boolean> {
    const until = Date.now() + ms;
    for (;;) {
      // The monitor removes its cgroups as it exits, so that check suffices on the hot path; the /proc scan
      // (tens of file reads) only runs after failures, and only once the cheap cgroup check passes.
      if ((await this.cgroupLeftovers()).length === 0 && (!thorough || !(await this.monitorAlive()))) return true;
      if (Date.now() >= until) return false;
      await sleep(POLL_MS);
    }
  }

  async start(): Promise<void> {
    const name = this.record.name;
    const st = await this.state();
    if (st.state === 'running') return;
    if (st.state === 'frozen') throw new AppError('INVALID_STATE', `Failed to start instance "${name}": it is frozen`);
    if (!(await this.host.fs.stat(this.configPath))) throw new AppError('NOT_FOUND', `Failed to start instance "${name}": it has not been created (no ${this.configPath})`);
    // A previous run may still be tearing down (monitor exiting): starting now would race with it.
    if (!(await this.waitTornDown(TEARDOWN_WAIT_MS))) await this.removeStaleCgroups();
    await this.writeConfig();
    const logBefore = (await this.host.fs.stat(this.lxcLog))?.size ?? 0;
    await this.host.fs.rm(this.pidFile, { force: true });
    const res = await lxcStart(this.host, this.target, { logFile: this.lxcLog, logLevel: 'ERROR', pidFile: this.monitorPidFile });
    if (res.code === 0) {
      // The init is the monitor's only child: learning it from /proc saves an lxc-info fork on every start.
      const monitor = Number((await this.host.fs.readTextIfExists(this.monitorPidFile))?.trim());
      const child = Number.isInteger(monitor) && monitor > 0
        ? Number((await this.host.fs.readTextIfExists(`/proc/${monitor}/task/${monitor}/children`))?.trim().split(/\s+/)[0])
        : NaN;
      if (Number.isInteger(child) && child > 0) await this.host.fs.writeAtomic(this.pidFile, `${child}\n`);
      const now = await this.state();
      if (now.state === 'running') return;
    }
    // Failed: make sure nothing is left running, then report what LXC logged for this attempt.
    if (!(await this.waitTornDown(FAILED_START_WAIT_MS, true))) {
      if (await this.monitorAlive()) await lxcStop(this.host, this.target, { kill: true });
      // LXC 5.0.2 sometimes leaves an empty monitor cgroup after a failed start; it would make every later start fail.
      if (!(await this.waitTornDown(FAILED_START_WAIT_MS, true))) await this.removeStaleCgroups();
    }
    const log = await this.host.fs.readFile(this.lxcLog).catch(() => Buffer.alloc(0));
    const logLines = tailLines(log.subarray(logBefore).toString('utf8'), 200);
    // The first error of this attempt is the cause; the ones after it are consequences.
    const first = logLines.map((l) => /\bERROR\s+\S+\s+-\s+\S+\s+-\s+(.*)$/.exec(l)?.[1]).find((m) => m !== undefined);
    const lines = [...logLines.slice(-12), ...tailLines(res.stderr, 4)];
    const leftovers = await this.cgroupLeftovers();
    throw new AppError('BACKEND_FAILED', `Failed to start instance "${name}"${first ? `: ${first}` : ''}`, {
      cause: new Error(lines.join('\n') || `lxc-start exited with code ${res.code}`),
      details: { log: lines, ...(leftovers.length ? { leftoverCgroups: leftovers } : {}) },
    });
  }

  async stop(opts: StopOptions): Promise<void> {
    const name = this.record.name;
    const st = await this.state();
    if (st.state === 'stopped') return;
    if (opts.force) {
      const res = await lxcStop(this.host, this.target, { kill: true });
      const after = await this.slowState();
      if (after.state !== 'stopped') {
        throw new AppError('BACKEND_FAILED', `Failed to stop instance "${name}"`, { cause: new Error(res.stderr.trim() || `lxc-stop exited with code ${res.code}`) });
      }
      await this.waitTornDown(TEARDOWN_WAIT_MS);
      return;
    }
    // A frozen container cannot act on its halt signal.
    if (st.state === 'frozen') await lxcUnfreeze(this.host, this.target);
    const secs = Math.max(1, Math.ceil(opts.timeoutMs / 1000));
    // The halt signal is sent again every few seconds: an init that is still starting up (stop right after start)
    // may not have installed its handler yet and would otherwise ignore the only signal it gets.
    const deadline = Date.now() + secs * 1000;
    let res = await lxcStop(this.host, this.target, { timeoutS: Math.min(secs, HALT_RESEND_S) });
    let after = await lxcInfo(this.host, this.target);
    while (after.state !== 'STOPPED' && Date.now() < deadline) {
      const left = Math.ceil((deadline - Date.now()) / 1000);
      res = await lxcStop(this.host, this.target, { timeoutS: Math.max(1, Math.min(left, HALT_RESEND_S)) });
      after = await lxcInfo(this.host, this.target);
    }
    if (after.state !== 'STOPPED') {
      throw new AppError('TIMEOUT', `Failed to stop instance "${name}" within ${secs} s`, { cause: new Error(res.stderr.trim() || 'the container did not act on its halt signal in time') });
    }
    await this.waitTornDown(TEARDOWN_WAIT_MS);
  }

  async freeze(): Promise<void> {
    await lxcFreeze(this.host, this.target);
  }

  async unfreeze(): Promise<void> {
    await lxcUnfreeze(this.host, this.target);
  }

  /** Removes this container's cgroup directories once nothing runs in them (only empty cgroups can be removed). */
  private async removeStaleCgroups(): Promise<void> {
    if (await this.monitorAlive()) return;
    // Deepest first: LXC may have created sub-cgroups (e.g. the payload's inner ones).
    for (const dir of (await this.cgroupLeftovers()).sort((a, b) => b.length - a.length)) {
      await this.host.fs.rmdir(dir).catch(() => undefined);
    }
  }

  async delete(): Promise<void> {
    const st = await this.state();
    if (st.state !== 'stopped') throw new AppError('INVALID_STATE', `Failed to delete instance "${this.record.name}": it is ${st.state}`);
    if ((await this.cgroupLeftovers()).length > 0) await this.removeStaleCgroups();
    await this.host.fs.rm(this.containerDir, { recursive: true, force: true });
    const consoleLog = this.consoleLogPath();
    for (const f of [this.lxcLog, consoleLog, `${consoleLog}.1`]) await this.host.fs.rm(f, { force: true });
  }

  async applyConfig(next: InstanceConfig, prev: InstanceConfig): Promise<ConfigApplyResult> {
    const keys = [...new Set([...Object.keys(next), ...Object.keys(prev)])].filter((k) => next[k] !== prev[k] && !NOT_OURS.has(k)).sort();
    const st = await this.state();
    const running = st.state === 'running' || st.state === 'frozen';
    if (running && st.pid !== null && keys.some((k) => k.startsWith('limits.'))) await this.applyCgroups(next, prev, st.pid);
    this.record = { ...this.record, config: next };
    await this.writeConfig();
    const live: string[] = [];
    const pending: string[] = [];
    for (const k of keys) (running && RESTART_KEYS.has(k) ? pending : live).push(k);
    return { live, pending };
  }

  /** Writes changed limits into the running container's cgroup files; restores the old values if one write fails. */
  private async applyCgroups(next: InstanceConfig, prev: InstanceConfig, pid: number): Promise<void> {
    const name = this.record.name;
    const mounts = await readCgroupMounts(this.host);
    const procText = await this.host.fs.readTextIfExists(`/proc/${pid}/cgroup`);
    if (procText === undefined) throw new AppError('INVALID_STATE', `Failed to apply limits to instance "${name}": its init process (${pid}) is gone`);
    const rel = parseProcCgroup(procText);
    const id = (s: Pick<CgroupSetting, 'controller' | 'file'>) => `${s.controller}/${s.file}`;
    const want = cgroupSettings(next, this.ctx.facts, this.record.cpuset);
    const had = new Map(cgroupSettings(prev, this.ctx.facts).map((s) => [id(s), s]));
    const writes: CgroupSetting[] = [];
    for (const s of want) if (had.get(id(s))?.value !== s.value) writes.push(s);
    const wanted = new Set(want.map(id));
    for (const [k, s] of had) if (!wanted.has(k)) writes.push({ ...s, value: cgroupDefault(s, await this.allCpus(mounts)) });

    const r = new Reverter();
    await r.run(async () => {
      let todo = writes;
      // Two passes: memory.limit_in_bytes and memory.memsw.limit_in_bytes must be ordered by direction (memsw >= limit).
      for (let pass = 0; pass < 2 && todo.length > 0; pass++) {
        const failed: { s: CgroupSetting; error: unknown }[] = [];
        for (const s of todo) {
          const dir = settingDir(mounts, s.controller, rel);
          if (!dir) throw new AppError('BACKEND_FAILED', `Failed to apply limits to instance "${name}": no ${s.controller || 'cgroup2'} hierarchy for ${s.file}`);
          const file = posix.join(dir, s.file);
          const old = (await this.host.fs.readText(file)).trim();
          try {
            await this.host.fs.appendFile(file, s.value);
            r.add(`restore ${file}`, () => this.host.fs.appendFile(file, old));
          } catch (error) {
            failed.push({ s, error });
          }
        }
        if (pass === 1 && failed.length > 0) {
          const f = failed[0]!;
          throw new AppError('BACKEND_FAILED', `Failed to apply ${f.s.file}=${f.s.value} to running instance "${name}"`, { cause: f.error });
        }
        todo = failed.map((f) => f.s);
      }
    });
  }

  /** The CPUs a container may use when limits.cpu is lifted: its parent's effective cpuset. */
  private async allCpus(mounts: CgroupMounts): Promise<string> {
    const parent = this.ctx.prefix;
    const candidates = mounts.v1.cpuset
      ? [posix.join(mounts.v1.cpuset, parent, 'cpuset.effective_cpus'), posix.join(mounts.v1.cpuset, parent, 'cpuset.cpus')]
      : mounts.v2 ? [posix.join(mounts.v2, parent, 'cpuset.cpus.effective')] : [];
    for (const c of candidates) {
      const t = (await this.host.fs.readTextIfExists(c))?.trim();
      if (t) return t;
    }
    return firstCpus(this.ctx.facts.cpus);
  }

  exec(spec: ExecSpec): HostProcess {
    const argv = lxcAttachArgv(this.target, { command: spec.command, env: spec.env, cwd: spec.cwd, tty: spec.tty !== undefined });
    // lxc-attach changes into the caller's cwd when that path exists in the container: make it "/" deterministically.
    // A group of its own: a kill (the client went away) reaches the command lxc-attach runs and what that started,
    // which a signal to lxc-attach alone never does.
    return this.host.spawn(argv, { cwd: '/', ...(spec.tty ? { pty: spec.tty } : { group: true }) });
  }

  attachConsole(size: { cols: number; rows: number }): HostProcess {
    return this.host.spawn(lxcConsoleArgv(this.target), { cwd: '/', pty: size });
  }

  async usage(): Promise<Usage> {
    const fs = this.host.fs;
    const mounts = await readCgroupMounts(this.host);
    const dir = cgroupDirs(this.ctx.prefix, this.record.name).container;
    const num = async (root: string | null | undefined, file: string) => (root ? parseCgroupNumber(await fs.readTextIfExists(posix.join(root, dir, file))) : null);
    const out: Usage = {};
    const put = (k: keyof Usage, v: number | null) => { if (v !== null) out[k] = v; };
    if (this.ctx.facts.cgroupLayout !== 'v2') {
      put('cpuTimeNs', await num(mounts.v1.cpuacct, 'cpuacct.usage'));
      put('memoryBytes', await num(mounts.v1.memory, 'memory.usage_in_bytes'));
      put('memoryPeakBytes', await num(mounts.v1.memory, 'memory.max_usage_in_bytes'));
      put('processes', await num(mounts.v1.pids, 'pids.current'));
    } else {
      const cpuStat = mounts.v2 ? await fs.readTextIfExists(posix.join(mounts.v2, dir, 'cpu.stat')) : undefined;
      const usec = cpuStat === undefined ? undefined : parseFlatKeyed(cpuStat).usage_usec;
      put('cpuTimeNs', usec === undefined ? null : usec * 1000);
      put('memoryBytes', await num(mounts.v2, 'memory.current'));
      put('memoryPeakBytes', await num(mounts.v2, 'memory.peak'));
      put('processes', await num(mounts.v2, 'pids.current'));
    }
    if (Object.keys(out).length > 0) {
      // The host end of the veth: what the host transmits, the container receives.
      const stats = posix.join('/sys/class/net', this.record.nic.hostIfName, 'statistics');
      put('rxBytes', parseCgroupNumber(await fs.readTextIfExists(posix.join(stats, 'tx_bytes'))));
      put('txBytes', parseCgroupNumber(await fs.readTextIfExists(posix.join(stats, 'rx_bytes'))));
    }
    return out;
  }
}

/** Problems with a config on this host for LXC: values out of range and what the host cannot do. */
export function validateLxc(config: InstanceConfig, facts: HostFacts): string[] {
  const problems: string[] = [];
  let r: ReturnType<typeof resourcesOf>;
  try {
    r = resourcesOf(config);
  } catch (e) {
    return [e instanceof Error ? e.message : String(e)];
  }
  if (r.memorySwap !== undefined) {
    if (!facts.swapAccounting) {
      problems.push(facts.cgroupLayout === 'v2'
        ? 'limits.memory.swap is not supported by the lxc backend on this host: the kernel does not account swap per cgroup (no memory.swap.max)'
        : 'limits.memory.swap is not supported by the lxc backend on this host: the kernel does not account swap per cgroup (no memory.memsw.* files; boot with swapaccount=1)');
    } else if (facts.cgroupLayout !== 'v2' && r.memoryMax === undefined) {
      problems.push('limits.memory.swap needs limits.memory on the lxc backend with cgroup v1 (memory.memsw.limit_in_bytes limits memory plus swap)');
    }
  }
  problems.push(...hostFitProblems(config, r, facts, { name: 'lxc', minMemoryBytes: LXC_MIN_MEMORY, why: 'LXC sets the container up inside its memory limit' }));
  return problems;
}

const LXC_TECHNOLOGY = { kernel: 'shared', memory: 'burstable', isolation: 'namespaces + cgroups' } as const;

/** The LXC driver on one host, from what was found there (tests build the LxcHost directly). */
export function lxcOnHost(lxc: LxcHost, probe: HostDriver['probe'] = { available: true, version: null, reason: null }): HostDriver {
  const env = lxc.env;
  return {
    driver: lxcDriver,
    probe,
    details: () => ({ 'lxc path': lxc.lxcPath, lxcfs: lxc.lxcfsDir ?? 'not running (free shows host memory)', cgroups: env.facts.cgroupLayout }),
    technology: () => LXC_TECHNOLOGY,
    validate: (config) => validateLxc(config, env.facts),
    idmap: (config) => (config['security.privileged'] === 'true' ? 'none' : config['security.idmap.isolated'] === 'false' ? 'shared' : 'isolated'),
    load: (record) => new LxcInstance(record, lxc),
  };
}

/** The LXC backend. */
export const lxcDriver: Driver = {
  name: 'lxc',
  type: 'container',
  features: { freeze: true, snapshots: false, statefulStop: false, console: true, execTty: true, liveCopy: true, graphicalConsole: false, monitor: false },
  technology: LXC_TECHNOLOGY,
  keys: [
    'limits.memory', 'limits.memory.guarantee', 'limits.memory.swap', 'limits.cpu', 'limits.cpu.weight', 'limits.cpu.cap', 'limits.processes', 'limits.disk',
    'security.privileged', 'security.idmap.isolated', 'security.devices.fuse', 'security.devices.tun',
  ],
  storage: 'tree',
  pidIsInit: true,
  async open(env) {
    const v = await lxcVersion(env.host);
    const lxc: LxcHost = { env, lxcPath: posix.join(env.dataDir, 'lxc'), lxcfsDir: null };
    if (v.version !== null) lxc.lxcfsDir = await ensureLxcfs(env.host, posix.join(env.dataDir, 'lxcfs'), env.runDir);
    return lxcOnHost(lxc, { available: v.version !== null, version: v.version, reason: v.reason });
  },
};

