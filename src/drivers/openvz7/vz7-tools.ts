// The tools of one OpenVZ 7 / Virtuozzo 7 node, through Host.exec argv only: prlctl (CT info), vzlist (CTIDs, usage, an import's limits), vzpkg (OS templates) and vzctl (create, set, start, stop, destroy, exec2, console).
import { AppError, causeChain, isAppError } from '../../shared/errors.js';
import type { Beancounter } from '../../shared/schemas.js';
import type { ExecResult, Host, HostProcess } from '../../host/host.js';
import { parsePrlctlElements, parseToolVersion, parseUserBeancounters, parseVzlistCtids, parseVzlistJson, parseVzpkgList, type Vz7Ct, type Vz7CtElement, type VzlistRow } from './parse.js';

/** prlctl (on PATH of a VZ7 node): what only an OpenVZ 7 / Virtuozzo node has. */
export const PRLCTL = 'prlctl';
/** vzctl: creates, sets, starts, stops and destroys CTs. */
export const VZCTL = 'vzctl';
/** vzlist: CTIDs and resource use. */
export const VZLIST = 'vzlist';
/** vzpkg (vztt): the node's OS templates. */
export const VZPKG = 'vzpkg';

/** Where the node's kernel shows every running CT's beancounters. */
export const USER_BEANCOUNTERS = '/proc/user_beancounters';

/** The vzlist fields usage() asks for. */
export const USAGE_FIELDS = ['ctid', 'status', 'physpages', 'numproc', 'diskspace', 'laverage', 'uptime'] as const;

// A first create from a template builds its cache (a whole OS install) before the CT: that can take many minutes.
const CREATE_TIMEOUT_MS = 1_800_000;
// Start and set may mount, check or resize the ploop image.
const SLOW_TIMEOUT_MS = 300_000;
const COMMAND_TIMEOUT_MS = 60_000;

// prlctl's words for a CT it has no record of (the SDK's "virtual machine could not be found", or a CTID it does not know).
const NO_SUCH_CT = /could not be found|not found|does not exist|no such|unknown (?:ve|ct|container|virtual)/i;

// The innermost cause (ENOENT, the remote's words) says what went wrong.
const errorText = (e: unknown) => [e instanceof Error ? e.message : String(e), ...causeChain(e)].join(': ');
const said = (res: ExecResult) => res.stderr.trim() || res.stdout.trim() || (res.signal ? `killed by ${res.signal}` : `exit code ${res.code}`);

/** What probing one tool found: its version, or why it cannot be run (missing: not installed at all). */
export interface ToolProbe {
  version: string | null;
  missing: boolean;
  reason: string | null;
}

/** The tools of one node; every failure is BACKEND_FAILED naming the command, with the tool's own words (its stderr) as the cause. */
export class Vz7Tools {
  constructor(readonly host: Host) {}

  private fail(what: string, res: ExecResult | null, err?: unknown): AppError {
    const words = res ? said(res) : errorText(err);
    return new AppError('BACKEND_FAILED', `${what} failed`, { cause: new Error(words), details: { exitCode: res?.code ?? null } });
  }

  /** Runs argv; answers the result (allowFailure) or throws BACKEND_FAILED with the tool's message. */
  private async run(argv: readonly string[], what: string, opts: { timeoutMs?: number; allowFailure?: boolean } = {}): Promise<ExecResult> {
    let res: ExecResult;
    try {
      res = await this.host.exec(argv, { allowFailure: true, timeoutMs: opts.timeoutMs ?? COMMAND_TIMEOUT_MS });
    } catch (err) {
      // A command that outlived its time is a timeout, whatever the host reports it as.
      if (isAppError(err, 'TIMEOUT')) throw new AppError('TIMEOUT', `${what} took more than ${Math.round((opts.timeoutMs ?? COMMAND_TIMEOUT_MS) / 1000)} s`, { cause: err });
      throw this.fail(what, null, err);
    }
    if (res.code !== 0 && !opts.allowFailure) throw this.fail(what, res);
    return res;
  }

  /** `TOOL --version`: its version, or why there is none (missing when the host cannot find it: ENOENT here, exit 127 over SSH). */
  async version(tool: string): Promise<ToolProbe> {
    let res: ExecResult;
    try {
      res = await this.host.exec([tool, '--version'], { allowFailure: true, timeoutMs: COMMAND_TIMEOUT_MS });
    } catch (err) {
      const text = errorText(err);
      return { version: null, missing: /ENOENT|not found/i.test(text), reason: text };
    }
    if (res.code === 127) return { version: null, missing: true, reason: said(res) };
    if (res.code !== 0) return { version: null, missing: false, reason: `${tool} --version failed: ${said(res)}` };
    const version = parseToolVersion(`${res.stdout}\n${res.stderr}`);
    return { version: version ?? (res.stdout.trim() || 'unknown'), missing: false, reason: null };
  }

  /** The node's OS templates (`vzpkg list -O`), or null when vzpkg cannot tell (not installed, failing): vzctl create is then the judge. */
  async templates(): Promise<string[] | null> {
    const res = await this.run([VZPKG, 'list', '-O'], 'vzpkg list -O', { allowFailure: true }).catch(() => null);
    return res && res.code === 0 ? parseVzpkgList(res.stdout) : null;
  }

  /** The CTs `prlctl list -i -j REF` prints (none when prlctl knows no such CT). */
  private async listInfo(ref: string): Promise<Vz7CtElement[]> {
    const what = `prlctl list -i -j ${ref}`;
    const res = await this.run([PRLCTL, 'list', '-i', '-j', ref], what, { allowFailure: true });
    if (res.code !== 0) {
      if (NO_SUCH_CT.test(res.stderr) || NO_SUCH_CT.test(res.stdout)) return [];
      throw this.fail(what, res);
    }
    return parsePrlctlElements(res.stdout);
  }

  /** One CT as `prlctl list -i -j CTID` describes it, or null when the node has no such CT. */
  async info(ctid: string): Promise<Vz7Ct | null> {
    return (await this.listInfo(ctid)).find((e) => e.ct.ctid === ctid)?.ct ?? null;
  }

  /** The CT a CTID, else a name or UUID, names (`prlctl list -i -j REF`, which takes any of them), with its element; null when the node has none. */
  async describe(ref: string): Promise<Vz7CtElement | null> {
    const all = await this.listInfo(ref);
    const uuid = ref.replace(/^\{(.*)\}$/, '$1');
    return all.find((e) => e.ct.ctid === ref) ?? all.find((e) => e.ct.name === ref || e.ct.uuid.replace(/^\{(.*)\}$/, '$1') === uuid) ?? null;
  }

  /** The CTIDs of every CT on the node (`vzlist -a -j -o ctid`). */
  async ctids(): Promise<string[]> {
    return parseVzlistCtids((await this.run([VZLIST, '-a', '-j', '-o', 'ctid'], 'vzlist -a -j -o ctid')).stdout);
  }

  /** One CT's usage row (`vzlist -a -j -o FIELDS CTID`), or null when vzlist lists none. */
  async usage(ctid: string): Promise<VzlistRow | null> {
    return this.row(ctid, USAGE_FIELDS);
  }

  /** One CT's row of these fields (`vzlist -a -j -o FIELDS CTID`), or null when vzlist lists none. */
  async row(ctid: string, fields: readonly string[]): Promise<VzlistRow | null> {
    const res = await this.run([VZLIST, '-a', '-j', '-o', fields.join(','), ctid], `vzlist of CT ${ctid}`, { allowFailure: true });
    if (res.code !== 0) return null;
    return parseVzlistJson(res.stdout).find((r) => String(r.ctid) === ctid) ?? null;
  }

  /** `vzctl ARGS`; what names it in errors ("vzctl start 101"). */
  async vzctl(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? (args[0] === 'create' ? CREATE_TIMEOUT_MS : SLOW_TIMEOUT_MS);
    const res = await this.run([VZCTL, ...args], `vzctl ${args.slice(0, 2).join(' ')}`, { timeoutMs, allowFailure: true });
    // Killed at its time (the local host's timeout signals it): a timeout, not the tool's failure.
    if (res.signal !== null && res.code !== 0) throw new AppError('TIMEOUT', `vzctl ${args.slice(0, 2).join(' ')} took more than ${Math.round(timeoutMs / 1000)} s`);
    if (res.code !== 0) throw this.fail(`vzctl ${args.slice(0, 2).join(' ')}`, res);
  }

  /** A running CT's beancounters from the node's /proc/user_beancounters, or null when the kernel shows none for it. */
  async beancounters(ctid: string): Promise<Beancounter[] | null> {
    const text = await this.host.fs.readTextIfExists(USER_BEANCOUNTERS);
    return text === undefined ? null : parseUserBeancounters(text, ctid);
  }

  /** `vzctl exec2 CTID LINE`: the line runs in the CT's shell, its exit code comes back; with pty on a pseudo-terminal of the node. */
  exec2(ctid: string, line: string, pty?: { cols: number; rows: number }): HostProcess {
    return this.host.spawn([VZCTL, 'exec2', ctid, line], pty ? { pty } : {});
  }

  /** `vzctl console CTID 1`: the CT's system console (tty1, where init logs), on a pseudo-terminal of the node. */
  console(ctid: string, size: { cols: number; rows: number }): HostProcess {
    return this.host.spawn([VZCTL, 'console', ctid, '1'], { pty: size });
  }
}
