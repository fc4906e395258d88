// The openvz7 driver: containers of a real OpenVZ 7 / Virtuozzo 7 node (its own vzkernel, ploop disks and templates), one CT per instance, driven over the node's Host through prlctl, vzlist, vzpkg and vzctl.
import { posix } from 'node:path';
import { resourcesOf, type InstanceConfig } from '../../shared/config.js';
import { AppError, isAppError } from '../../shared/errors.js';
import type { Beancounter, Usage } from '../../shared/schemas.js';
import type { HostProcess } from '../../host/host.js';
import { Reverter } from '../../host/reverter.js';
import type { ConfigApplyResult, Driver, DriverEnv, DriverProbe, ExecSpec, ForeignInstance, HostDriver, InstanceHandle, InstanceRecord, ObservedState, StopOptions } from '../driver.js';
import { hostFitProblems } from '../host-fit.js';
import { IMPORT_FIELDS, translateCt, usageOfVzlist } from './parse.js';
import { ENV_NAME, execCommandLine, renderCreateArgs, renderSetArgs, vz7Settings, type Vz7Settings } from './render-args.js';
import { PRLCTL, VZCTL, Vz7Tools } from './vz7-tools.js';

/** Config keys the openvz7 backend honours (besides user.* and the daemon's). */
export const VZ7_CONFIG_KEYS: readonly string[] = [
  'limits.memory', 'limits.memory.guarantee', 'limits.memory.swap', 'limits.cpu', 'limits.cpu.weight', 'limits.cpu.cap', 'limits.processes',
  'limits.disk', 'limits.disk.inodes', 'openvz.ctid', 'openvz.ipadd', 'openvz.hostname', 'openvz.nameserver', 'openvz.searchdomain', 'openvz.ostemplate',
];

/** The origin kind of an instance adopted from a CT already on the node (`hangar import openvz7`). */
export const IMPORT_ORIGIN = 'openvz7-import';

/** The lowest CTID the driver chooses: vzctl(8) reserves CT IDs up to 100 for OpenVZ's own use. */
export const CTID_MIN = 101;
/** The highest CTID vzctl takes (its VZCTL_VEID_MAX). */
export const CTID_MAX = 2147483644;
/** The file in an instance's directory on the node that records its CT: its CTID and the settings last given to it. */
export const STATE_FILE = 'openvz7.json';

const MIB = 1024 ** 2;
// A systemd-based template does not get through its boot in less.
const VZ7_MIN_MEMORY = 64 * MIB;

/** What the driver records about an instance's CT (in STATE_FILE on the node). */
export interface Vz7CtState {
  ctid: string;
  uuid: string | null;
  applied: Vz7Settings;
}

/** The CT an adopted instance's origin names (its CTID, and its UUID when read), or null for an instance Hangar made. */
export function importedCt(record: InstanceRecord): { ctid: string; uuid: string | null } | null {
  const o = record.origin;
  if (!o || o.kind !== IMPORT_ORIGIN || typeof o.ctid !== 'string') return null;
  return { ctid: o.ctid, uuid: typeof o.uuid === 'string' ? o.uuid : null };
}

/** What the driver keeps per node: its tools and versions, its OS templates, the CTs it knows, the queue creates wait in. */
interface Vz7Node {
  env: DriverEnv;
  tools: Vz7Tools;
  probe: DriverProbe;
  vzctlVersion: string | null;
  /** The node's OS templates (vzpkg list -O), read at open and again when a create names one not in it; null: vzpkg could not tell. */
  templates: string[] | null;
  /** Each instance's CT once read (instance name → state): exec and console need its CTID without a read. */
  cts: Map<string, Vz7CtState>;
  /** When a CT was first seen missing (instance name → ISO time). */
  vanished: Map<string, string>;
  /** Creates one at a time: choosing a free CTID and making the CT must not interleave. */
  queue: Promise<unknown>;
}

const VZ7_TECHNOLOGY = { kernel: 'shared', memory: 'burstable', isolation: 'OpenVZ 7 / Virtuozzo 7 container: the node\'s vzkernel, a ploop disk, venet, beancounters' } as const;

class Vz7Instance implements InstanceHandle {
  constructor(readonly record: InstanceRecord, readonly node: Vz7Node) {}

  private get tools(): Vz7Tools { return this.node.tools; }
  private get name(): string { return this.record.name; }
  private get stateFile(): string { return posix.join(this.record.instanceDir, STATE_FILE); }

  consoleLogPath(): string {
    return posix.join(this.record.instanceDir, 'console.log');
  }

  /** The error of an action on this instance: a tool's failure (BACKEND_FAILED, TIMEOUT) keeps its code, with the tool's words below. */
  private failed(what: string, err: unknown): AppError {
    return new AppError(isAppError(err) ? err.code : 'BACKEND_FAILED', `Failed to ${what} instance "${this.name}"`, { cause: err });
  }

  private async step<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.failed(what, err);
    }
  }

  private unavailable(what: string): AppError {
    return new AppError('UNSUPPORTED', `Failed to ${what} instance "${this.name}": the openvz7 driver is not available on host ${this.node.env.host.name} (${this.node.probe.reason})`);
  }

  /** Its CT as recorded (the node's file, read once per daemon), or undefined before create made one. */
  private async saved(): Promise<Vz7CtState | undefined> {
    const known = this.node.cts.get(this.name);
    if (known) return known;
    const text = await this.node.env.host.fs.readTextIfExists(this.stateFile);
    if (text === undefined) return undefined;
    let st: Vz7CtState;
    try {
      st = JSON.parse(text) as Vz7CtState;
    } catch (err) {
      throw new AppError('BACKEND_FAILED', `The record of instance "${this.name}"'s CT (${this.stateFile} on host ${this.node.env.host.name}) is no JSON`, { cause: err });
    }
    this.node.cts.set(this.name, st);
    return st;
  }

  private async remember(st: Vz7CtState): Promise<void> {
    await this.node.env.host.fs.writeAtomic(this.stateFile, `${JSON.stringify(st)}\n`, 0o600);
    this.node.cts.set(this.name, st);
  }

  /** The CTID exec and console address (read by the state check before them); a CT not made yet has none. */
  private knownCtid(what: string): string {
    const ctid = this.node.cts.get(this.name)?.ctid;
    if (ctid === undefined) throw new AppError('INVALID_STATE', `Cannot ${what} instance "${this.name}": it has no CT on host ${this.node.env.host.name} yet`);
    return ctid;
  }

  private settings(config: InstanceConfig): Vz7Settings {
    return vz7Settings(config, this.name, this.record.nic.ipv4);
  }

  /** Refuses what a CT cannot change once made: its CTID, and the inode count of its ploop file system. */
  private checkFixed(st: Vz7CtState, config: InstanceConfig, want: Vz7Settings, what: string): void {
    const ctid = config['openvz.ctid'];
    if (ctid !== undefined && ctid !== st.ctid) throw new AppError('UNSUPPORTED', `Failed to ${what} instance "${this.name}": its CT is ${st.ctid} on host ${this.node.env.host.name}; a CT keeps its CTID (openvz.ctid)`);
    if (want.diskInodes !== st.applied.diskInodes) {
      throw new AppError('UNSUPPORTED', `Failed to ${what} instance "${this.name}": limits.disk.inodes is fixed when its ploop image is made (vzctl create --diskinodes)`);
    }
  }

  /** A free CTID: the lowest from CTID_MIN that no CT on the node (vzlist -a) and no CT Hangar knows there has. */
  private async freeCtid(): Promise<string> {
    const taken = new Set([...(await this.tools.ctids()), ...[...this.node.cts.values()].map((c) => c.ctid)]);
    for (let id = CTID_MIN; id <= CTID_MAX; id++) if (!taken.has(String(id))) return String(id);
    throw new AppError('INSUFFICIENT_RESOURCES', `No free CTID is left on host ${this.node.env.host.name}`);
  }

  /** The OS template a launch names, if the node has it (its list read again once when it is not in it). */
  private async checkTemplate(template: string): Promise<void> {
    // vzctl would take a name that starts with "-" for an option.
    if (!/^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(template)) throw new AppError('INVALID_ARGUMENT', `Failed to create instance "${this.name}": ${JSON.stringify(template)} is no OS template name (letters, digits, ".", "_", "+", "-")`);
    if (this.node.templates === null || this.node.templates.includes(template)) return;
    this.node.templates = await this.tools.templates();
    if (this.node.templates === null || this.node.templates.includes(template)) return;
    throw new AppError('NOT_FOUND', `Failed to create instance "${this.name}": OS template "${template}" is not on host ${this.node.env.host.name} (vzpkg list -O: ${this.node.templates.join(', ') || 'none'}; install one with "vzpkg install template NAME")`);
  }

  /**
   * Makes the CT when it has none (`vzctl create`, then `vzctl set` of every setting), else gives it what changed since
   * the last call (a config changed while it was stopped); idempotent. The template is the launch's image name. An
   * adopted instance's CT exists already: it is recorded, not made (adopt).
   */
  async create(): Promise<void> {
    if (!this.node.probe.available) throw this.unavailable('create');
    const host = this.node.env.host;
    await host.fs.mkdir(this.record.instanceDir, { recursive: true, mode: 0o700 });
    const want = this.settings(this.record.config);
    const st = await this.saved();
    if (st) {
      this.checkFixed(st, this.record.config, want, 'configure');
      const args = renderSetArgs(st.ctid, want, st.applied);
      if (args) await this.step('configure', () => this.tools.vzctl(args));
      await this.remember({ ...st, applied: want });
      return;
    }
    const imported = importedCt(this.record);
    if (imported) return this.adopt(imported, want);
    await this.serial(async () => {
      const rev = new Reverter();
      await rev.run(async () => {
        const ctid = this.record.config['openvz.ctid'] ?? await this.step('create', () => this.freeCtid());
        const ct = await this.step('create', () => this.tools.info(ctid));
        if (ct && ct.name !== this.name) {
          throw new AppError('CONFLICT', `Failed to create instance "${this.name}": CT ${ctid} on host ${host.name} is "${ct.name}", which Hangar did not make (choose another openvz.ctid)`);
        }
        // A CT of this name and CTID whose record is missing is one a create that was cut short made: it gets every setting again.
        if (!ct) {
          await this.checkTemplate(this.record.image);
          await this.step('create', () => this.tools.vzctl(renderCreateArgs(ctid, this.record.image, this.name, want)));
          rev.add(`destroy CT ${ctid}`, () => this.tools.vzctl(['destroy', ctid]));
        }
        const args = renderSetArgs(ctid, want, null);
        if (args) await this.step('create', () => this.tools.vzctl(args));
        const made = ct ?? await this.step('create', () => this.tools.info(ctid));
        await this.remember({ ctid, uuid: made?.uuid ?? null, applied: want });
      });
    });
  }

  /**
   * Records an imported CT instead of making one: read again (it must still be the CT the import read, by UUID), its
   * settings now in Hangar's terms become the record's applied ones, so the first config change sends only what differs.
   * What the config differs in already (the CT changed since the import was checked) is given it now in one vzctl set;
   * a translated CT needs none. Nothing is made, so nothing is destroyed when this fails.
   */
  private async adopt(imported: { ctid: string; uuid: string | null }, want: Vz7Settings): Promise<void> {
    const where = `host ${this.node.env.host.name}`;
    const found = await this.step('import', () => this.tools.describe(imported.ctid));
    if (!found || found.ct.ctid !== imported.ctid) throw new AppError('NOT_FOUND', `Failed to import instance "${this.name}": CT ${imported.ctid} is no longer on ${where}`);
    if (imported.uuid !== null && found.ct.uuid !== imported.uuid) {
      throw new AppError('CONFLICT', `Failed to import instance "${this.name}": CT ${imported.ctid} on ${where} is not the CT the import read (UUID ${found.ct.uuid}, not ${imported.uuid}); import it again`);
    }
    const row = await this.step('import', () => this.tools.row(imported.ctid, IMPORT_FIELDS));
    const now = translateCt(found, row);
    const applied: Vz7Settings = { ...vz7Settings(now.config, this.name, now.addresses[0] ?? this.record.nic.ipv4), addresses: now.addresses };
    const st: Vz7CtState = { ctid: imported.ctid, uuid: found.ct.uuid, applied };
    this.checkFixed(st, this.record.config, want, 'import');
    const args = renderSetArgs(st.ctid, want, applied);
    if (args) await this.step('import', () => this.tools.vzctl(args));
    await this.remember({ ...st, applied: want });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.node.queue.then(fn, fn);
    this.node.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * One `prlctl list -i -j CTID`: prlctl's state in Hangar's terms (a paused CT is frozen; a suspended or mounted one
   * runs nothing: stopped). Before create made the CT it is stopped; a CT gone from the node is an error naming why,
   * so that the instance can be deleted (nothing of it is left to stop).
   */
  async state(): Promise<ObservedState> {
    const st = await this.saved();
    if (!st) return { state: 'stopped', pid: null, startTime: null };
    if (!this.node.probe.available) return { state: 'unknown', pid: null, startTime: null, error: { reason: `the openvz7 driver is not available on host ${this.node.env.host.name}: ${this.node.probe.reason}`, since: new Date().toISOString() } };
    const ct = await this.step('read the state of', () => this.tools.info(st.ctid));
    if (!ct) {
      const since = this.node.vanished.get(this.name) ?? new Date().toISOString();
      this.node.vanished.set(this.name, since);
      return { state: 'error', pid: null, startTime: null, error: { reason: `CT ${st.ctid} no longer exists on host ${this.node.env.host.name} (destroyed outside Hangar?); delete the instance to forget it`, since } };
    }
    this.node.vanished.delete(this.name);
    return { state: ct.state, pid: null, startTime: null };
  }

  /** `vzctl start CTID` (which restores a suspended CT from its dump); answers running, which is what a successful start leaves. */
  async start(known?: ObservedState): Promise<ObservedState> {
    const st = known ?? await this.state();
    if (st.state === 'running' || st.state === 'frozen') return st;
    if (st.state !== 'stopped') throw new AppError('INVALID_STATE', `Failed to start instance "${this.name}": it is ${st.state}${st.error ? ` (${st.error.reason})` : ''}`);
    const saved = await this.saved();
    if (!saved) throw new AppError('NOT_FOUND', `Failed to start instance "${this.name}": it has no CT on host ${this.node.env.host.name} (create it first)`);
    await this.step('start', () => this.tools.vzctl(['start', saved.ctid]));
    return { state: 'running', pid: null, startTime: null };
  }

  /** `vzctl stop CTID` (halt inside, within timeoutMs) or with force `vzctl stop CTID --fast` (the reboot syscall); a CT that is gone or stopped needs nothing. */
  async stop(opts: StopOptions): Promise<void> {
    if (opts.stateful) throw new AppError('UNSUPPORTED', `Failed to stop instance "${this.name}" statefully: the openvz7 driver does not checkpoint CTs (vzctl suspend)`);
    const st = await this.state();
    if (st.state === 'stopped' || st.state === 'error') return;
    const saved = (await this.saved())!;
    try {
      await this.tools.vzctl(['stop', saved.ctid, ...(opts.force ? ['--fast'] : [])], opts.force ? {} : { timeoutMs: opts.timeoutMs });
    } catch (err) {
      if (isAppError(err, 'TIMEOUT')) throw new AppError('TIMEOUT', `Failed to stop instance "${this.name}" within ${Math.round(opts.timeoutMs / 1000)} s`, { cause: err });
      throw this.failed('stop', err);
    }
  }

  /** Unsupported: VZ7's vzctl suspend checkpoints a CT to disk and stops it (CRIU), which is no freeze. */
  async freeze(): Promise<void> {
    throw new AppError('UNSUPPORTED', `Failed to freeze instance "${this.name}": the openvz7 driver cannot freeze a CT (vzctl suspend on OpenVZ 7 checkpoints it to disk and stops it)`);
  }

  async unfreeze(): Promise<void> {
    throw new AppError('UNSUPPORTED', `Failed to unfreeze instance "${this.name}": the openvz7 driver cannot freeze or unfreeze a CT`);
  }

  /** `vzctl destroy CTID` (its private area and config on the node go with it), then Hangar's record of it. */
  async delete(): Promise<void> {
    const st = await this.saved();
    if (st) {
      const ct = await this.step('delete', () => this.tools.info(st.ctid));
      if (ct) await this.step('delete', () => this.tools.vzctl(['destroy', st.ctid]));
    }
    await this.node.env.host.fs.rm(this.stateFile, { force: true });
    this.node.cts.delete(this.name);
    this.node.vanished.delete(this.name);
  }

  /** Drops the record of the CT and leaves the CT on the node: an import that failed after adopt() must not destroy the user's CT. */
  async forget(): Promise<void> {
    await this.node.env.host.fs.rm(this.stateFile, { force: true });
    this.node.cts.delete(this.name);
    this.node.vanished.delete(this.name);
  }

  /** One `vzctl set CTID <what changed> --save`: VZ7 gives a running CT new RAM, swap, guarantee, CPUs, weight, cap, process limit, disk size, addresses and name service at once. */
  async applyConfig(next: InstanceConfig, prev: InstanceConfig): Promise<ConfigApplyResult> {
    const changed = [...new Set([...Object.keys(next), ...Object.keys(prev)])].filter((k) => next[k] !== prev[k]).sort();
    const st = await this.saved();
    if (!st) throw new AppError('INVALID_STATE', `Failed to apply config to instance "${this.name}": it has no CT on host ${this.node.env.host.name}`);
    const want = this.settings(next);
    this.checkFixed(st, next, want, 'apply config to');
    const args = renderSetArgs(st.ctid, want, st.applied);
    if (args) await this.step('apply config to', () => this.tools.vzctl(args));
    await this.remember({ ...st, applied: want });
    // Every key this backend honours is a vzctl set option VZ7 applies to a running CT; user.* and the daemon's keys need nothing of it.
    return { live: changed, pending: [] };
  }

  /** `vzctl exec2 CTID LINE` with the command quoted into LINE for the CT's shell; with a tty on a pseudo-terminal of the node. */
  exec(spec: ExecSpec): HostProcess {
    const bad = Object.keys(spec.env ?? {}).find((k) => !ENV_NAME.test(k));
    if (bad !== undefined) throw new AppError('INVALID_ARGUMENT', `Cannot run a command in instance "${this.name}": ${JSON.stringify(bad)} is no environment variable name the CT's shell can export`);
    return this.tools.exec2(this.knownCtid('run a command in'), execCommandLine(spec), spec.tty);
  }

  /** `vzctl console CTID 1` (the CT's system console) under a pty; vzctl's escape to leave it is Esc then ".". */
  attachConsole(size: { cols: number; rows: number }): HostProcess {
    return this.tools.console(this.knownCtid('attach to the console of'), size);
  }

  /** RAM held and its peak, processes and disk used, from one `vzlist -j` row. */
  async usage(): Promise<Usage> {
    const st = await this.saved();
    if (!st) return {};
    const row = await this.step('read the usage of', () => this.tools.usage(st.ctid));
    return row ? usageOfVzlist(row) : {};
  }

  /** The CT's beancounters as the node's kernel counts them (/proc/user_beancounters). */
  async beancounters(): Promise<Beancounter[]> {
    const ctid = (await this.saved())?.ctid;
    if (ctid === undefined) return [];
    return (await this.step('read the beancounters of', () => this.tools.beancounters(ctid))) ?? [];
  }

  /** The CT as prlctl shows it: CTID and UUID, template, private area, state, addresses, host name. */
  async details(): Promise<Record<string, string>> {
    const st = await this.saved();
    if (!st) return { ct: `none yet on host ${this.node.env.host.name}` };
    const ct = await this.tools.info(st.ctid).catch(() => null);
    if (!ct) return { ct: `${st.ctid} (not found on host ${this.node.env.host.name})` };
    return {
      ct: `${ct.ctid} (uuid ${ct.uuid}, name ${ct.name})`,
      // An adopted CT was not made from an image of Hangar's: its template is what the import read.
      'os template': this.record.image || this.record.config['openvz.ostemplate'] || 'unknown',
      state: `${ct.rawState} (prlctl)`,
      ...(ct.home ? { private: ct.home } : {}),
      ...(ct.hostname ? { hostname: ct.hostname } : {}),
      venet: ct.ips.join(' ') || '(no addresses)',
    };
  }
}

/** Pure checks of a config for a CT of this node: what vzctl refuses, and sizes the node cannot give. */
export function validateVz7(config: InstanceConfig, env: DriverEnv): string[] {
  let r: ReturnType<typeof resourcesOf>;
  try { r = resourcesOf(config); } catch (e) { return [e instanceof Error ? e.message : String(e)]; }
  const problems = hostFitProblems(config, r, env.facts, { name: 'openvz7', minMemoryBytes: VZ7_MIN_MEMORY, why: 'a CT boots its template\'s init within it' });
  if (r.memoryGuarantee !== undefined && r.memoryMax === undefined) {
    problems.push('limits.memory.guarantee needs limits.memory on openvz7: vzctl --memguarantee is a percentage of the CT\'s RAM');
  }
  const ctid = config['openvz.ctid'];
  if (ctid !== undefined && (Number(ctid) < CTID_MIN || Number(ctid) > CTID_MAX)) {
    problems.push(`openvz.ctid=${ctid}: vzctl takes CTIDs from ${CTID_MIN} to ${CTID_MAX} (up to 100 are reserved for OpenVZ itself)`);
  }
  return problems;
}

/** The openvz7 driver on one node, from what was probed there (tests build it directly). */
export function vz7OnHost(env: DriverEnv, tools: Vz7Tools, found: { probe: DriverProbe; vzctlVersion: string | null; templates: string[] | null }): HostDriver {
  const node: Vz7Node = { env, tools, probe: found.probe, vzctlVersion: found.vzctlVersion, templates: found.templates, cts: new Map(), vanished: new Map(), queue: Promise.resolve() };
  return {
    driver: openvz7Driver,
    probe: node.probe,
    details: (): Record<string, string> => {
      if (!node.probe.available) return { openvz7: `not available: ${node.probe.reason}` };
      return {
        prlctl: node.probe.version ?? 'unknown',
        vzctl: node.vzctlVersion ?? 'unknown',
        'os templates': node.templates === null ? 'unknown (vzpkg list -O did not answer; vzctl create checks the name)' : node.templates.join(', ') || '(none installed: vzpkg install template NAME)',
        ctids: `openvz.ctid, else the lowest free from ${CTID_MIN}`,
      };
    },
    technology: () => ({ ...VZ7_TECHNOLOGY, isolation: `${VZ7_TECHNOLOGY.isolation}, on node ${env.host.name}` }),
    validate: (config) => validateVz7(config, env),
    idmap: () => 'none',
    load: (record) => new Vz7Instance(record, node),
    inspectForeign: (ref) => inspectCt(node, ref),
  };
}

/** A CT already on the node by CTID, name or UUID, in Hangar's terms (what `hangar import openvz7` adopts); NOT_FOUND naming the node when it has none. */
async function inspectCt(node: Vz7Node, ref: string): Promise<ForeignInstance> {
  const where = `host ${node.env.host.name}`;
  if (!node.probe.available) throw new AppError('UNSUPPORTED', `Failed to read CT "${ref}": the openvz7 driver is not available on ${where} (${node.probe.reason})`);
  // prlctl would take a reference that starts with "-" for an option.
  if (ref === '' || ref.startsWith('-') || /[\x00-\x1f\x7f]/.test(ref)) {
    throw new AppError('INVALID_ARGUMENT', `Invalid CT ${JSON.stringify(ref)}: a CTID, CT name or UUID, not starting with "-"`);
  }
  let found: Awaited<ReturnType<Vz7Tools['describe']>>;
  let row: Awaited<ReturnType<Vz7Tools['row']>> = null;
  try {
    found = await node.tools.describe(ref);
    if (found) row = await node.tools.row(found.ct.ctid, IMPORT_FIELDS);
  } catch (err) {
    throw new AppError(isAppError(err) ? err.code : 'BACKEND_FAILED', `Failed to read CT "${ref}" on ${where}`, { cause: err });
  }
  if (!found) throw new AppError('NOT_FOUND', `CT "${ref}" not found on ${where}: no CT there has that CTID, name or UUID (prlctl list -i -j ${ref})`);
  return translateCt(found, row);
}

/** Probes a node: prlctl first (it is what only an OpenVZ 7 / Virtuozzo node has: Hangar itself installs a vzctl elsewhere), then vzctl and the templates together. */
export async function probeVz7(env: DriverEnv, tools: Vz7Tools): Promise<{ probe: DriverProbe; vzctlVersion: string | null; templates: string[] | null }> {
  const where = `host ${env.host.name}`;
  const prl = await tools.version(PRLCTL);
  if (prl.version === null) {
    const reason = prl.missing ? `${PRLCTL} is not installed on ${where}: not an OpenVZ 7 / Virtuozzo host` : `${PRLCTL} does not work on ${where}: ${prl.reason}`;
    return { probe: { available: false, version: null, reason }, vzctlVersion: null, templates: null };
  }
  const [vz, templates] = await Promise.all([tools.version(VZCTL), tools.templates()]);
  if (vz.version === null) {
    const reason = vz.missing ? `${VZCTL} is not installed on ${where} (prlctl is): an incomplete OpenVZ 7 / Virtuozzo node` : `${VZCTL} does not work on ${where}: ${vz.reason}`;
    return { probe: { available: false, version: prl.version, reason }, vzctlVersion: null, templates };
  }
  return { probe: { available: true, version: prl.version, reason: null }, vzctlVersion: vz.version, templates };
}

/** The openvz7 backend (HANGAR_DRIVERS=...,openvz7): CTs of an OpenVZ 7 / Virtuozzo 7 node, which keeps their disks itself; elsewhere unavailable with why. */
export const openvz7Driver: Driver = {
  name: 'openvz7',
  type: 'container',
  features: { freeze: false, snapshots: false, statefulStop: false, console: true, execTty: true, liveCopy: false, graphicalConsole: false, monitor: false },
  technology: VZ7_TECHNOLOGY,
  keys: VZ7_CONFIG_KEYS,
  storage: 'backend',
  async open(env) {
    const tools = new Vz7Tools(env.host);
    const found = await probeVz7(env, tools);
    env.log(found.probe.available ? `openvz7: prlctl ${found.probe.version}, vzctl ${found.vzctlVersion} on ${env.host.name}` : `openvz7 unavailable: ${found.probe.reason}`);
    return vz7OnHost(env, tools, found);
  },
};
