// The xl toolstack of one Xen host, through Host.exec argv only: create, list, info, shutdown/destroy, pause, save/restore, live memory and vCPUs, scheduler, console.
import { AppError, causeChain, isAppError } from '../../shared/errors.js';
import type { ExecResult, Host, HostProcess } from '../../host/host.js';
import {
  isNoSuchDomain, parseXlInfo, parseXlList, parseXlListLong, parseXlSched, parseXlVcpuList, xlMessage,
  type XlInfo, type XlListEntry, type XlLongDomain, type XlSchedParams, type XlVcpu,
} from './parse.js';

/** Where xenconsole takes its per-domain lock (Xen's XEN_LOCK_DIR on Debian). */
export const XENCONSOLE_LOCK_DIR = '/var/lock';
/** The xl binary (on PATH in Dom0). */
export const XL = 'xl';

// xl create builds the domain and runs the hotplug scripts; nested under TCG that takes seconds.
const CREATE_TIMEOUT_MS = 180_000;
// A save or restore streams all of the domain's RAM.
const SAVE_TIMEOUT_MS = 600_000;
const COMMAND_TIMEOUT_MS = 60_000;
const POLL_MS = 200;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** How a graceful shutdown ended: the guest powered off, or it did not within the time and was destroyed. */
export type ShutdownOutcome = 'shutdown' | 'destroyed';

/** Options of Xl.shutdown. */
export interface ShutdownOptions {
  /** Wait for the domain to be gone (polling `xl list`), destroying it when timeoutMs passes; false returns once asked. */
  wait: boolean;
  timeoutMs: number;
  /** HVM without PV drivers: fall back to the ACPI power button (-F). */
  acpiFallback?: boolean;
}

// The innermost cause (ENOENT, the remote's words) says what went wrong.
const errorText = (e: unknown) => [e instanceof Error ? e.message : String(e), ...causeChain(e)].join(': ');

/** The xl commands of one host; every failure is BACKEND_FAILED naming the command and the domain, with xl's own words in the cause. */
export class Xl {
  constructor(readonly host: Host, readonly binary: string = XL) {}

  private fail(what: string, res: ExecResult | null, err?: unknown): AppError {
    const said = res ? xlMessage(res.stderr) || xlMessage(res.stdout) || (res.signal ? `killed by ${res.signal}` : `exit code ${res.code}`) : errorText(err);
    // Missing xl: the local spawn fails with ENOENT, a remote shell exits 127.
    const notFound = res ? res.code === 127 : /ENOENT/.test(said);
    return new AppError('BACKEND_FAILED', `${what} failed`, { cause: new Error(said), details: { xlNotFound: notFound } });
  }

  /**
   * Runs `xl ARGS`; answers the result (allowFailure) or throws BACKEND_FAILED with xl's message. A read (changes
   * nothing) whose connection to the host dropped is asked once more, after the reconnection the host waits for.
   */
  private async run(args: readonly string[], what: string, opts: { timeoutMs?: number; allowFailure?: boolean; read?: boolean } = {}): Promise<ExecResult> {
    let res: ExecResult;
    for (let tries = 0; ; tries++) {
      try {
        res = await this.host.exec([this.binary, ...args], { allowFailure: true, timeoutMs: opts.timeoutMs ?? COMMAND_TIMEOUT_MS });
        break;
      } catch (err) {
        if (opts.read && tries === 0 && isAppError(err, 'HOST_UNREACHABLE')) continue;
        throw this.fail(what, null, err);
      }
    }
    if (res.code !== 0 && !opts.allowFailure) throw this.fail(what, res);
    return res;
  }

  /** `xl create FILE`: builds and starts the domain (xl's own daemon then watches it for on_poweroff/on_reboot/on_crash). */
  async create(cfgPath: string, name: string): Promise<void> {
    await this.run(['create', cfgPath], `xl create of domain "${name}"`, { timeoutMs: CREATE_TIMEOUT_MS });
  }

  /** The domid of a domain (`xl domid NAME`: one number, far cheaper than a listing), or null when there is no such domain. */
  async domid(name: string): Promise<number | null> {
    const res = await this.run(['domid', name], `xl domid of domain "${name}"`, { allowFailure: true, read: true });
    if (res.code !== 0) {
      if (isNoSuchDomain(res.stderr)) return null;
      throw this.fail(`xl domid of domain "${name}"`, res);
    }
    const id = Number(res.stdout.trim());
    if (!Number.isInteger(id) || id < 0) throw new AppError('BACKEND_FAILED', `xl domid of domain "${name}" printed ${JSON.stringify(res.stdout.trim())}, not a domid`);
    return id;
  }

  /** Every domain (`xl list -v`), Domain-0 included. */
  async list(): Promise<XlListEntry[]> {
    return parseXlList((await this.run(['list', '-v'], 'xl list', { read: true })).stdout);
  }

  /** One domain's row (`xl list -v NAME`: state flags, memory, vCPUs, CPU time and UUID), or null when there is no such domain. */
  async find(name: string): Promise<XlListEntry | null> {
    const res = await this.run(['list', '-v', name], `xl list of domain "${name}"`, { allowFailure: true, read: true });
    if (res.code !== 0) {
      if (isNoSuchDomain(res.stderr)) return null;
      throw this.fail(`xl list of domain "${name}"`, res);
    }
    return parseXlList(res.stdout).find((e) => e.name === name) ?? null;
  }

  /** What the domain really got (`xl list -l NAME`, libxl's JSON), or null when there is no such domain. */
  async listLong(name: string): Promise<XlLongDomain | null> {
    const res = await this.run(['list', '-l', name], `xl list -l of domain "${name}"`, { allowFailure: true, read: true });
    if (res.code !== 0) {
      if (isNoSuchDomain(res.stderr)) return null;
      throw this.fail(`xl list -l of domain "${name}"`, res);
    }
    try {
      return parseXlListLong(res.stdout)[0] ?? null;
    } catch (err) {
      throw new AppError('BACKEND_FAILED', `xl list -l of domain "${name}" printed no JSON (is output_format=json in xl.conf?)`, { cause: err });
    }
  }

  /** The hypervisor's and host's facts (`xl info`). */
  async info(): Promise<XlInfo> {
    return parseXlInfo((await this.run(['info'], 'xl info', { read: true })).stdout);
  }

  /**
   * Asks the guest to shut down (`xl shutdown`, through its PV control node). With wait, polls until the domain is gone
   * and destroys it once timeoutMs has passed.
   */
  async shutdown(name: string, opts: ShutdownOptions): Promise<ShutdownOutcome> {
    const asked = await this.run(['shutdown', ...(opts.acpiFallback ? ['-F'] : []), name], `xl shutdown of domain "${name}"`, { allowFailure: true });
    if (asked.code !== 0) {
      if (isNoSuchDomain(asked.stderr)) return 'shutdown';
      // A guest without a PV control interface cannot be asked: it is ended instead.
      if (!opts.wait) throw this.fail(`xl shutdown of domain "${name}"`, asked);
      await this.destroy(name);
      return 'destroyed';
    }
    if (!opts.wait) return 'shutdown';
    if (await this.waitGone(name, opts.timeoutMs)) return 'shutdown';
    await this.destroy(name);
    return 'destroyed';
  }

  /** Polls `xl list NAME` until the domain is gone; true when it went within timeoutMs. */
  async waitGone(name: string, timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if ((await this.find(name)) === null) return true;
      if (Date.now() >= until) return false;
      await sleep(POLL_MS);
    }
  }

  /** `xl destroy NAME`: ends the domain at once; a domain that is already gone is fine. */
  async destroy(name: string): Promise<void> {
    const res = await this.run(['destroy', name], `xl destroy of domain "${name}"`, { allowFailure: true });
    if (res.code !== 0 && !isNoSuchDomain(res.stderr)) throw this.fail(`xl destroy of domain "${name}"`, res);
  }

  /** `xl pause NAME`: takes every vCPU off the scheduler. */
  async pause(name: string): Promise<void> {
    await this.run(['pause', name], `xl pause of domain "${name}"`);
  }

  /** `xl unpause NAME`. */
  async unpause(name: string): Promise<void> {
    await this.run(['unpause', name], `xl unpause of domain "${name}"`);
  }

  /** `xl reboot NAME` (-F: ACPI reset for HVM guests without PV drivers). */
  async reboot(name: string, opts: { acpiFallback?: boolean } = {}): Promise<void> {
    await this.run(['reboot', ...(opts.acpiFallback ? ['-F'] : []), name], `xl reboot of domain "${name}"`);
  }

  /** `xl save NAME FILE`: suspends the guest, writes its RAM and config to file and destroys the domain (xl resumes it when the save fails). */
  async save(name: string, file: string): Promise<void> {
    await this.run(['save', name, file], `xl save of domain "${name}"`, { timeoutMs: SAVE_TIMEOUT_MS });
  }

  /** `xl restore FILE`: recreates the saved domain (with the config in the file) and resumes it; -p leaves it paused. */
  async restore(file: string, name: string, opts: { paused?: boolean } = {}): Promise<void> {
    await this.run(['restore', ...(opts.paused ? ['-p'] : []), file], `xl restore of domain "${name}"`, { timeoutMs: SAVE_TIMEOUT_MS });
  }

  /** `xl mem-set NAME SIZEk`: the balloon target (what the guest holds), within the domain's maximum. */
  async memSet(name: string, bytes: number): Promise<void> {
    await this.run(['mem-set', name, `${Math.ceil(bytes / 1024)}k`], `xl mem-set of domain "${name}"`);
  }

  /** `xl mem-max NAME SIZEk`: the most memory the domain may have (its static maximum). */
  async memMax(name: string, bytes: number): Promise<void> {
    await this.run(['mem-max', name, `${Math.ceil(bytes / 1024)}k`], `xl mem-max of domain "${name}"`);
  }

  /** `xl vcpu-set NAME N`: brings vCPUs on- or offline, up to the maxvcpus the domain was created with. */
  async vcpuSet(name: string, n: number): Promise<void> {
    await this.run(['vcpu-set', name, String(n)], `xl vcpu-set of domain "${name}"`);
  }

  /** The domain's vCPUs (`xl vcpu-list NAME`). */
  async vcpuList(name: string): Promise<XlVcpu[]> {
    return parseXlVcpuList((await this.run(['vcpu-list', name], `xl vcpu-list of domain "${name}"`, { read: true })).stdout);
  }

  /** Sets the domain's weight and cap on the host's credit or credit2 scheduler (`xl sched-credit[2] -d NAME -w W -c C`). */
  async schedSet(scheduler: 'credit' | 'credit2', name: string, p: { weight: number; cap: number }): Promise<void> {
    await this.run([`sched-${scheduler}`, '-d', name, '-w', String(p.weight), '-c', String(p.cap)], `xl sched-${scheduler} of domain "${name}"`);
  }

  /** The domain's weight and cap on the credit or credit2 scheduler, or null when xl lists no row for it. */
  async sched(scheduler: 'credit' | 'credit2', name: string): Promise<XlSchedParams | null> {
    const rows = parseXlSched((await this.run([`sched-${scheduler}`, '-d', name], `xl sched-${scheduler} of domain "${name}"`, { read: true })).stdout);
    return rows.find((r) => r.name === name) ?? null;
  }

  /**
   * Whether a console could attach to the domain now: xenconsole's lock (/var/lock/xenconsole.DOMID, an exclusive flock)
   * is free. Null when that cannot be told (no such domain, no flock on the host).
   */
  async consoleLockFree(name: string): Promise<boolean | null> {
    const d = await this.find(name);
    if (!d || d.domid === null) return null;
    const res = await this.host.exec(['flock', '-n', `${XENCONSOLE_LOCK_DIR}/xenconsole.${d.domid}`, 'true'], { allowFailure: true, timeoutMs: COMMAND_TIMEOUT_MS });
    return res.code === 0 ? true : res.code === 1 ? false : null;
  }

  /** The domain's text console (`xl console NAME`: PV console, or the emulated serial port of an HVM domain) on a pseudo-terminal. */
  console(name: string, size: { cols: number; rows: number }): HostProcess {
    return this.host.spawn([this.binary, 'console', name], { pty: size });
  }
}
