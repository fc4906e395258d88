// FakeVz7: a scripted OpenVZ 7 node for unit tests: an in-memory model of its CTs behind prlctl, vzlist, vzpkg and vzctl over a ScriptedHost, answering in the tools' recorded formats.
import { PassThrough } from 'node:stream';
import { ScriptedHost } from '../../host/scripted.js';
import type { ExecResult, HostProcess, SpawnOptions } from '../../host/host.js';

/** One CT of the fake node. */
export interface FakeCt {
  ctid: string;
  uuid: string;
  name: string;
  /** prlctl's word: running, stopped, suspended, paused, mounted. */
  state: string;
  ostemplate: string;
  hostname: string;
  ramBytes: number;
  swapBytes: number;
  /** --memguarantee: auto or a percentage. */
  guarantee: 'auto' | number;
  cpus: number;
  cpuunits: number;
  cpulimit: number;
  numproc: number | null;
  diskKiB: number;
  diskInodes: number;
  ips: string[];
  nameservers: string[];
  searchdomains: string[];
  /** prlctl's Autostart: whether the node starts it at its own boot. */
  autostart: boolean;
  description: string;
  /** Further elements of its prlctl Hardware (a veth NIC, a second disk) that the driver does not manage. */
  extraHardware: Record<string, Record<string, unknown>>;
  /** What it holds while it runs: RAM pages, processes, disk KiB used. */
  physpagesHeld: number;
  numprocHeld: number;
  diskUsedKiB: number;
}

/** One spawn of the node: its argv and options (the pty of a tty exec or a console). */
export interface FakeSpawn {
  argv: string[];
  opts: SpawnOptions;
}

const LONG_MAX = '9223372036854775807';
const MIB = 1024 ** 2;
const PAGE = 4096;

/** A ScriptedHost that records each spawn's options and answers `vzctl exec2` with a scripted exit code and output. */
class NodeHost extends ScriptedHost {
  readonly spawns: FakeSpawn[] = [];
  exec2: { code: number; stdout: string } = { code: 0, stdout: '' };

  override spawn(argv: readonly string[], opts: SpawnOptions = {}): HostProcess {
    this.calls.push({ argv: [...argv], opts: {} });
    this.spawns.push({ argv: [...argv], opts });
    const out = new PassThrough();
    const { code, stdout } = argv[1] === 'exec2' ? this.exec2 : { code: 0, stdout: '' };
    out.end(stdout);
    const stdin = new PassThrough();
    stdin.resume();
    return { pid: Promise.resolve(4242), stdin, stdout: out, stderr: opts.pty ? null : new PassThrough().end() as PassThrough, wait: async () => ({ code, signal: null }), kill: () => undefined };
  }
}

/** vzctl's size argument in bytes: K/M/G/T suffixes (binary), plain bytes. */
function bytesOf(v: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(v);
  if (!m) return NaN;
  const mult = { '': 1, k: 1024, m: MIB, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as ''];
  return Number(m[1]) * mult;
}

/** --diskspace: a bare number is 1 KiB blocks. */
function kibOf(v: string): number {
  return /^\d+$/.test(v) ? Number(v) : bytesOf(v) / 1024;
}

/** An OpenVZ 7 node: prlctl, vzlist, vzpkg and vzctl scripted over a ScriptedHost, /proc/user_beancounters kept in step with the CTs. */
export class FakeVz7 {
  readonly host: NodeHost;
  readonly cts = new Map<string, FakeCt>();
  /** OS templates vzpkg list -O names (the first one cached). */
  templates = ['centos-7-x86_64', 'debian-11-x86_64', 'ubuntu-20.04-x86_64'];
  /** A command (its first three words joined by spaces) to fail once with this exit code and stderr. */
  readonly failNext = new Map<string, { code: number; stderr: string }>();
  private nextUuid = 1;

  constructor(opts: { name?: string; installed?: boolean; vzpkg?: boolean } = {}) {
    const installed = opts.installed ?? true;
    const vzpkg = opts.vzpkg ?? true;
    this.host = new NodeHost((argv) => (installed ? this.run(argv, vzpkg) : new Error(`spawn ${argv[0]} ENOENT`)), { name: opts.name ?? 'vz7node' });
    this.syncProc();
  }

  /** The argv of every exec of tool (without the tool's name). */
  calls(tool: string): string[][] {
    return this.host.commands(tool).map((a) => a.slice(1));
  }

  /** Puts a CT on the node as if made there before (outside Hangar). */
  addCt(ct: Partial<FakeCt> & { ctid: string }): FakeCt {
    const full: FakeCt = {
      uuid: `5f0c3a52-1b7e-4c0d-9a44-${String(this.nextUuid++).padStart(12, '0')}`, name: ct.ctid, state: 'stopped', ostemplate: 'centos-7-x86_64', hostname: '',
      ramBytes: 512 * MIB, swapBytes: 0, guarantee: 'auto', cpus: 0, cpuunits: 1000, cpulimit: 0, numproc: null, diskKiB: 10 * 1024 * 1024, diskInodes: 655360,
      ips: [], nameservers: [], searchdomains: [], autostart: false, description: '', extraHardware: {}, physpagesHeld: 0, numprocHeld: 0, diskUsedKiB: 0, ...ct,
    };
    this.cts.set(full.ctid, full);
    this.syncProc();
    return full;
  }

  /** prlctl list -i -j's element for a CT, with the keys and value forms of a VZ7 node's. */
  infoElement(ct: FakeCt): Record<string, unknown> {
    return {
      ID: ct.uuid, EnvID: ct.ctid, Name: ct.name, Description: ct.description, Type: 'CT', State: ct.state, OS: ct.ostemplate.split('-').slice(0, 2).join(''),
      Template: 'no', Uptime: ct.state === 'running' ? '3600' : '0', Home: `/vz/private/${ct.ctid}`, Owner: 'root', Autostart: ct.autostart ? 'on' : 'off', Autostop: 'suspend', Autocompact: 'on',
      Hardware: {
        cpu: { sockets: 1, cpus: ct.cpus, cores: 1, 'VT-x': true, hotplug: true, accl: 'high', mode: '64', cpuunits: ct.cpuunits, ...(ct.cpulimit ? { cpulimit: `${ct.cpulimit}%` } : {}), ioprio: 4 },
        memory: { size: `${Math.round(ct.ramBytes / MIB)}Mb`, hotplug: true },
        video: { size: '0Mb', '3d acceleration': 'off', 'vertical sync': 'yes' },
        memory_guarantee: ct.guarantee === 'auto' ? { auto: true } : { auto: false, value: `${ct.guarantee}%` },
        hdd0: { enabled: true, port: 'scsi:0', image: `/vz/private/${ct.ctid}/root.hdd`, type: 'expanded', size: `${Math.round(ct.diskKiB / 1024)}Mb`, mnt: '/', subtype: 'virtio-scsi' },
        venet0: { enabled: true, type: 'routed', ips: ct.ips.map((a) => `${a} `).join('') },
        ...ct.extraHardware,
      },
      Features: '', 'Disabled Windows logo': 'on', 'Nested virtualization': 'off', 'Offline management': { enabled: false },
      Hostname: ct.hostname, 'DNS Servers': ct.nameservers.join(' '), 'Search Domains': ct.searchdomains.join(' '),
    };
  }

  private ubc(ct: FakeCt, held: number, limit: string | number): Record<string, number> {
    const running = ct.state === 'running';
    return { held: running ? held : 0, maxheld: running ? held + 128 : 0, barrier: 0, limit: Number(limit), failcnt: 0 };
  }

  /** The vzlist -j row of a CT with the fields asked for (UBC objects carry 0 held for a CT that does not run, as vzlist prints them). */
  private vzlistRow(ct: FakeCt, fields: string[]): Record<string, unknown> {
    const running = ct.state === 'running';
    const all: Record<string, unknown> = {
      ctid: ct.ctid, status: ct.state === 'paused' ? 'running' : ct.state, hostname: ct.hostname || null, ip: ct.ips, name: ct.name, ostemplate: ct.ostemplate,
      physpages: this.ubc(ct, ct.physpagesHeld, ct.ramBytes / PAGE),
      swappages: this.ubc(ct, 0, ct.swapBytes / PAGE),
      diskinodes: { usage: 24_576, softlimit: ct.diskInodes, hardlimit: ct.diskInodes },
      numproc: this.ubc(ct, ct.numprocHeld, ct.numproc ?? LONG_MAX),
      diskspace: { usage: ct.diskUsedKiB, softlimit: ct.diskKiB, hardlimit: ct.diskKiB },
      laverage: running ? [0.12, 0.08, 0.01] : null,
      uptime: running ? 3600.25 : 0,
    };
    return Object.fromEntries(fields.map((f) => [f, all[f] ?? null]));
  }

  /** /proc/user_beancounters of the node: one block per running CT, in the kernel's layout. */
  private syncProc(): void {
    const lines = ['Version: 2.5', '       uid  resource                     held              maxheld              barrier                limit              failcnt'];
    const row = (id: string, res: string, held: number, max: number, bar: string | number, lim: string | number, fail: number) =>
      `${id.padStart(11)}  ${res.padEnd(24)}${String(held).padStart(12)}${String(max).padStart(21)}${String(bar).padStart(21)}${String(lim).padStart(21)}${String(fail).padStart(21)}`;
    for (const ct of this.cts.values()) {
      if (ct.state !== 'running') continue;
      lines.push(row(`${ct.ctid}:`, 'kmemsize', 8_650_752, 9_437_184, LONG_MAX, LONG_MAX, 0));
      lines.push(row('', 'numproc', ct.numprocHeld, ct.numprocHeld + 4, ct.numproc ?? LONG_MAX, ct.numproc ?? LONG_MAX, 0));
      lines.push(row('', 'physpages', ct.physpagesHeld, ct.physpagesHeld + 128, 0, ct.ramBytes / PAGE, 2));
      lines.push(row('', 'swappages', 0, 0, 0, ct.swapBytes / PAGE, 0));
      lines.push(row('', 'dummy', 0, 0, 0, 0, 0));
    }
    this.host.put('/proc/user_beancounters', `${lines.join('\n')}\n`, 0o444);
  }

  private run(argv: readonly string[], vzpkg: boolean): Partial<ExecResult> | Error {
    const key = argv.slice(0, 3).join(' ');
    const fail = this.failNext.get(key);
    if (fail) {
      this.failNext.delete(key);
      return { code: fail.code, stderr: fail.stderr };
    }
    const res = this.answer(argv, vzpkg);
    this.syncProc();
    return res;
  }

  private answer(argv: readonly string[], vzpkg: boolean): Partial<ExecResult> | Error {
    const [cmd, sub, ...rest] = argv;
    if (cmd === 'prlctl') {
      if (sub === '--version') return { stdout: 'prlctl version 7.0.301\n' };
      if (sub === 'list' && rest[0] === '-i' && rest[1] === '-j') {
        // prlctl takes a CTID, a name or a UUID.
        const ref = rest[2]!;
        const ct = this.cts.get(ref) ?? [...this.cts.values()].find((c) => c.name === ref || c.uuid === ref);
        if (!ct) return { code: 1, stderr: 'Failed to get VM config: The virtual machine could not be found.\n' };
        return { stdout: `${JSON.stringify([this.infoElement(ct)], null, 4)}\n` };
      }
      return { code: 1, stderr: `prlctl: the fake does not know "${argv.join(' ')}"\n` };
    }
    if (cmd === 'vzlist') return this.vzlist(argv.slice(1));
    if (cmd === 'vzpkg') {
      if (!vzpkg) return new Error('spawn vzpkg ENOENT');
      if (sub === 'list' && rest[0] === '-O') return { stdout: this.templates.map((t, i) => `${t.padEnd(40)}${i === 0 ? '2024-03-01 10:12:44' : ''}`.trimEnd()).join('\n') + '\n' };
      return { code: 35, stderr: 'Bad argument\n' };
    }
    if (cmd === 'vzctl') return this.vzctl(sub, rest);
    return new Error(`spawn ${cmd} ENOENT`);
  }

  private vzlist(args: string[]): Partial<ExecResult> {
    const o = args.indexOf('-o');
    const fields = o >= 0 ? args[o + 1]!.split(',') : ['ctid', 'status'];
    const ids = args.filter((a, i) => !a.startsWith('-') && i !== o + 1);
    const cts = ids.length ? ids.map((id) => this.cts.get(id)) : [...this.cts.values()];
    if (cts.some((c) => c === undefined)) return { code: 1, stderr: 'Container(s) not found\n' };
    return { stdout: `${JSON.stringify(cts.map((c) => this.vzlistRow(c!, fields)), null, 4)}\n` };
  }

  private vzctl(sub: string | undefined, rest: string[]): Partial<ExecResult> {
    if (sub === '--version') return { stdout: 'vzctl v.7.0.271\n' };
    const ctid = rest[0]!;
    const ct = this.cts.get(ctid);
    const noConf = { code: 14, stderr: 'Container configuration file does not exist\n' };
    const opt = (name: string) => { const i = rest.indexOf(name); return i >= 0 ? rest[i + 1] : undefined; };
    switch (sub) {
      case 'create': {
        if (ct) return { code: 44, stderr: 'Container private area already exists\n' };
        const t = opt('--ostemplate')!;
        if (!this.templates.includes(t)) return { code: 91, stderr: `OS template ${t} is not found\n` };
        const made = this.addCt({ ctid, name: opt('--name') ?? ctid, hostname: opt('--hostname') ?? '', ostemplate: t });
        if (opt('--diskspace')) made.diskKiB = kibOf(opt('--diskspace')!);
        if (opt('--diskinodes')) made.diskInodes = Number(opt('--diskinodes'));
        made.diskUsedKiB = 612_352;
        return { stdout: `Creating Container private area (${t})\nContainer was successfully created\n` };
      }
      case 'set': {
        if (!ct) return noConf;
        if (rest[rest.length - 1] !== '--save') return { code: 20, stderr: 'WARNING: Settings were not saved\n' };
        for (let i = 1; i < rest.length - 1; i += 2) {
          const [o, v] = [rest[i]!, rest[i + 1]!];
          if (!this.setOne(ct, o, v)) return { code: 21, stderr: `Bad parameter for ${o}: ${v}\n` };
        }
        if (rest.includes('--nameserver')) ct.nameservers = rest.filter((_, i) => rest[i - 1] === '--nameserver');
        if (rest.includes('--searchdomain')) ct.searchdomains = rest.filter((_, i) => rest[i - 1] === '--searchdomain');
        return { stdout: `Saved parameters for Container ${ctid}\n` };
      }
      case 'start': {
        if (!ct) return noConf;
        if (ct.state === 'running') return { code: 32, stderr: 'Container is already running\n' };
        ct.state = 'running';
        ct.physpagesHeld = 51_200;
        ct.numprocHeld = 37;
        return { stdout: `Starting Container ...\nContainer ${ctid} is started\n` };
      }
      case 'stop': {
        if (!ct) return noConf;
        if (ct.state !== 'running' && ct.state !== 'paused') return { stdout: 'Container is not running\n' };
        ct.state = 'stopped';
        return { stdout: `Stopping Container ...\nContainer was stopped\n` };
      }
      case 'destroy': {
        if (!ct) return noConf;
        if (ct.state === 'running') return { code: 32, stderr: 'Container is currently running. Stop it first.\n' };
        this.cts.delete(ctid);
        return { stdout: 'Destroying Container private area: /vz/private/' + ctid + '\nContainer private area was destroyed\n' };
      }
      default: return { code: 20, stderr: `Bad command: ${sub}\n` };
    }
  }

  /** One `vzctl set` option on the model; false for a value vzctl would refuse. */
  private setOne(ct: FakeCt, o: string, v: string): boolean {
    const n = Number(v);
    switch (o) {
      case '--ram': ct.ramBytes = bytesOf(v); return Number.isFinite(ct.ramBytes) && ct.ramBytes > 0;
      case '--swap': ct.swapBytes = bytesOf(v); return Number.isFinite(ct.swapBytes);
      case '--memguarantee': ct.guarantee = v === 'auto' ? 'auto' : n; return v === 'auto' || (n >= 0 && n <= 100);
      case '--cpus': ct.cpus = n; return Number.isInteger(n) && n >= 0;
      case '--cpuunits': ct.cpuunits = n; return n >= 8 && n <= 500000;
      case '--cpulimit': ct.cpulimit = n; return Number.isInteger(n) && n >= 0;
      case '--numproc': ct.numproc = v === 'unlimited' ? null : n; return v === 'unlimited' || n > 0;
      case '--diskspace': ct.diskKiB = kibOf(v); return Number.isFinite(ct.diskKiB);
      case '--diskinodes': ct.diskInodes = n; return n > 0;
      case '--hostname': ct.hostname = v; return true;
      case '--ipadd': if (!ct.ips.includes(v)) ct.ips.push(v); return true;
      case '--ipdel': ct.ips = v === 'all' ? [] : ct.ips.filter((a) => a !== v); return true;
      case '--nameserver': case '--searchdomain': return true;
      default: return false;
    }
  }
}
