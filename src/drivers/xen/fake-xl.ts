// FakeXl: a scripted Xen Dom0 for unit tests: xl (create, list, shutdown, destroy, pause, save/restore, mem-set, vcpu-set, sched) over a ScriptedHost, answering as Xen 4.17's xl does.
import { gunzipSync } from 'node:zlib';
import { ScriptedHost } from '../../host/scripted.js';
import type { ExecResult } from '../../host/host.js';
import { parseXlConfig, xlNumber, xlString } from './xl-cfg.js';

/** One domain of the fake hypervisor. */
export interface FakeDomain {
  name: string;
  domid: number;
  uuid: string;
  type: string;
  targetKiB: number;
  maxKiB: number;
  vcpus: number;
  maxvcpus: number;
  paused: boolean;
  /** The guest ignores xl shutdown (no PV control, or it hangs). */
  ignoresShutdown: boolean;
  weight: number;
  cap: number;
  cfg: string;
  startTime: number;
  cpuSeconds: number;
}

/** What `xl info` of the fake prints (Xen 4.17 on a 2-CPU, 2 GiB machine with PV, HVM and HAP). */
export function fakeXlInfo(over: { virtCaps?: string; freeMiB?: number; totalMiB?: number; cpus?: number; scheduler?: string } = {}): string {
  return [
    ['host', 'xenhost'], ['release', '6.1.0-28-amd64'], ['machine', 'x86_64'], ['nr_cpus', String(over.cpus ?? 2)], ['nr_nodes', '1'],
    ['virt_caps', over.virtCaps ?? 'pv hvm hap gnttab-v1 gnttab-v2'], ['total_memory', String(over.totalMiB ?? 2047)], ['free_memory', String(over.freeMiB ?? 1460)],
    ['xen_major', '4'], ['xen_minor', '17'], ['xen_extra', '.5'], ['xen_version', '4.17.5'], ['xen_caps', 'xen-3.0-x86_64 hvm-3.0-x86_64'],
    ['xen_scheduler', over.scheduler ?? 'credit2'], ['xen_commandline', 'placeholder console=com1 dom0_mem=512M,max:512M'], ['xend_config_format', '4'],
  ].map(([k, v]) => `${k!.padEnd(23)}: ${v}`).join('\n') + '\n';
}

const HEADER = 'Name                                        ID   Mem VCPUs\tState\tTime(s)   UUID                            Reason-Code\tSecurity Label';
const invalid = (name: string): Partial<ExecResult> => ({ code: 1, stderr: `${name} is an invalid domain identifier (rc=-6)\n` });

/** A Dom0: /proc/xen/capabilities, xl and xenstore-read scripted over a ScriptedHost; cp, truncate, gunzip and qemu-img act on its files. */
export class FakeXl {
  readonly host: ScriptedHost;
  readonly domains = new Map<string, FakeDomain>();
  /** A command (argv joined by spaces) to fail once with this stderr. */
  readonly failNext = new Map<string, string>();
  info = fakeXlInfo();
  /** Dom0's memory as `xl list Domain-0` shows it. */
  dom0MiB = 512;
  private nextDomid = 1;

  constructor(opts: { name?: string; dom0?: boolean; files?: Record<string, string | Buffer> } = {}) {
    this.host = new ScriptedHost((argv) => this.run(argv), { name: opts.name ?? 'xenhost', files: { ...(opts.dom0 === false ? {} : { '/proc/xen/capabilities': 'control_d\n' }), ...opts.files } });
  }

  /** The xl commands run so far (without the leading "xl"). */
  xlCalls(): string[][] {
    return this.host.commands('xl').map((a) => a.slice(1));
  }

  private row(d: FakeDomain): string {
    const flags = d.paused ? '--p---' : '-b----';
    return `${d.name.padEnd(40)} ${String(d.domid).padStart(5)} ${String(Math.floor(d.targetKiB / 1024)).padStart(5)} ${String(d.vcpus).padStart(5)}     ${flags}  ${d.cpuSeconds.toFixed(1).padStart(8)} ${d.uuid}        -                -`;
  }

  private long(d: FakeDomain): string {
    const cfg = parseXlConfig(d.cfg);
    return JSON.stringify([{
      domid: d.domid,
      config: {
        c_info: { type: d.type, name: d.name, uuid: d.uuid },
        b_info: {
          max_vcpus: d.maxvcpus, avail_vcpus: [...Array(d.vcpus).keys()], max_memkb: d.maxKiB, target_memkb: d.targetKiB,
          sched_params: { sched: 'credit2', weight: d.weight, cap: d.cap }, kernel: xlString(cfg, 'kernel'), ramdisk: xlString(cfg, 'ramdisk'),
        },
        disks: [], nics: [],
      },
    }], null, 4);
  }

  private create(text: string, paused: boolean): Partial<ExecResult> {
    const cfg = parseXlConfig(text);
    const name = xlString(cfg, 'name')!;
    if (this.domains.has(name)) return { code: 1, stderr: `libxl: error: libxl_create.c:667:libxl__domain_make: domain with name "${name}" already exists\n` };
    const memory = xlNumber(cfg, 'memory') ?? 512;
    const domid = this.nextDomid++;
    this.domains.set(name, {
      name, domid, uuid: xlString(cfg, 'uuid') ?? '00000000-0000-4000-8000-000000000000', type: xlString(cfg, 'type') ?? 'pv',
      targetKiB: memory * 1024, maxKiB: (xlNumber(cfg, 'maxmem') ?? memory) * 1024, vcpus: xlNumber(cfg, 'vcpus') ?? 1, maxvcpus: xlNumber(cfg, 'maxvcpus') ?? xlNumber(cfg, 'vcpus') ?? 1,
      paused, ignoresShutdown: false, weight: xlNumber(cfg, 'cpu_weight') ?? 256, cap: xlNumber(cfg, 'cap') ?? 0, cfg: text, startTime: 1764740000 + domid, cpuSeconds: 0.3,
    });
    return { stderr: 'Parsing config from the file\n' };
  }

  private async run(argv: readonly string[]): Promise<Partial<ExecResult> | Error | undefined> {
    const key = argv.join(' ');
    const fail = this.failNext.get(key);
    if (fail !== undefined) {
      this.failNext.delete(key);
      return { code: 1, stderr: fail };
    }
    const [cmd, sub, ...rest] = argv;
    if (cmd === 'xenstore-read') {
      const m = /^\/vm\/([^/]+)\/start_time$/.exec(sub ?? '');
      const d = [...this.domains.values()].find((x) => x.uuid === m?.[1]);
      return d ? { stdout: `${d.startTime}.25\n` } : { code: 1, stderr: `xenstore-read: couldn't read path ${sub}\n` };
    }
    if (cmd === 'xenstore-exists') {
      // A domain's home, /local/domain/DOMID, is there while the domain is.
      const m = /^\/local\/domain\/(\d+)$/.exec(sub ?? '');
      return m && [...this.domains.values()].some((x) => x.domid === Number(m[1])) ? undefined : { code: 1 };
    }
    if (cmd === 'cp') { this.host.put(rest[0] ?? argv[2]!, this.host.text(sub!) ?? ''); return undefined; }
    if (cmd === 'truncate') { const f = rest[1]!; const size = Number(rest[0]); const old = Buffer.from(this.host.text(f) ?? ''); this.host.put(f, Buffer.concat([old, Buffer.alloc(Math.max(0, size - old.length))])); return undefined; }
    if (cmd === 'gunzip' && rest.length === 1 && sub === '-f' && rest[0]!.endsWith('.gz')) {
      const packed = rest[0]!;
      this.host.put(packed.slice(0, -3), gunzipSync(await this.host.fs.readFile(packed)));
      await this.host.fs.rm(packed);
      return undefined;
    }
    if (cmd === 'qemu-img' || cmd?.endsWith('/qemu-img')) { this.host.put(argv[argv.length - 1]!, `raw of ${argv[argv.length - 2]}`); return undefined; }
    if (cmd !== 'xl') return new Error(`spawn ${cmd} ENOENT`);
    const d = (n: string | undefined) => (n === undefined ? undefined : this.domains.get(n));
    switch (sub) {
      case 'info': return { stdout: this.info };
      case 'domid': {
        const dom = d(rest[0]);
        return dom ? { stdout: `${dom.domid}\n` } : { code: 1, stderr: `Can't get domid of domain name '${rest[0]}', maybe this domain does not exist.\n` };
      }
      case 'list': {
        const long = rest[0] === '-l';
        const name = rest[1];
        if (name === 'Domain-0' && !long) return { stdout: `${HEADER}\n${'Domain-0'.padEnd(40)}     0 ${String(this.dom0MiB).padStart(5)}     1     r-----      12.0 00000000-0000-0000-0000-000000000000        -                -\n` };
        if (name !== undefined && !d(name)) return invalid(name);
        const doms = name !== undefined ? [d(name)!] : [...this.domains.values()];
        return { stdout: long ? this.long(doms[0]!) : `${HEADER}\n${doms.map((x) => this.row(x)).join('\n')}\n` };
      }
      case 'create': {
        const text = this.host.text(rest[rest.length - 1]!);
        return text === undefined ? { code: 1, stderr: `Failed to read config file: ${rest[rest.length - 1]}: No such file or directory\n` } : this.create(text, rest.includes('-p'));
      }
      case 'shutdown': {
        const name = rest[rest.length - 1]!;
        const dom = d(name);
        if (!dom) return invalid(name);
        if (!dom.ignoresShutdown) this.domains.delete(name);
        return undefined;
      }
      case 'destroy': {
        if (!d(rest[0])) return invalid(rest[0]!);
        this.domains.delete(rest[0]!);
        return undefined;
      }
      case 'pause': case 'unpause': {
        const dom = d(rest[0]);
        if (!dom) return invalid(rest[0]!);
        dom.paused = sub === 'pause';
        return undefined;
      }
      case 'save': {
        const dom = d(rest[0]);
        if (!dom) return invalid(rest[0]!);
        this.host.put(rest[1]!, `XenSavedDomain\n${dom.cfg}`);
        this.domains.delete(dom.name);
        return { stderr: `Saving to ${rest[1]} new xl format (info 0x3/0x0/1287)\n` };
      }
      case 'restore': {
        const text = this.host.text(rest[rest.length - 1]!);
        if (!text?.startsWith('XenSavedDomain\n')) return { code: 1, stderr: 'xl: error: restore: savefile has wrong magic number\n' };
        return this.create(text.slice('XenSavedDomain\n'.length), rest.includes('-p'));
      }
      case 'mem-set': case 'mem-max': {
        const dom = d(rest[0]);
        if (!dom) return invalid(rest[0]!);
        const kib = Number(/^(\d+)k$/.exec(rest[1]!)?.[1]);
        if (sub === 'mem-max') {
          if (kib < dom.targetKiB) return { code: 1, stderr: 'libxl: error: libxl_mem.c:157:libxl_domain_setmaxmem: memory_static_max must be greater than or or equal to memory_dynamic_max\n' };
          dom.maxKiB = kib;
        } else {
          if (kib > dom.maxKiB) return { code: 1, stderr: 'libxl: error: libxl_mem.c:300:libxl_set_memory_target: memory_dynamic_max must be less than or equal to memory_static_max\n' };
          dom.targetKiB = kib;
        }
        return undefined;
      }
      case 'vcpu-set': {
        const dom = d(rest[0]);
        if (!dom) return invalid(rest[0]!);
        const n = Number(rest[1]);
        if (n > dom.maxvcpus) return { code: 1, stderr: `You have requested ${n} vcpus but the domain has only ${dom.maxvcpus} vcpus allocated\n` };
        dom.vcpus = n;
        return undefined;
      }
      case 'sched-credit2': case 'sched-credit': {
        const dom = d(rest[1]);
        if (!dom) return invalid(rest[1]!);
        const w = rest.indexOf('-w');
        const c = rest.indexOf('-c');
        if (w >= 0) dom.weight = Number(rest[w + 1]);
        if (c >= 0) dom.cap = Number(rest[c + 1]);
        return { stdout: `Cpupool Pool-0: ratelimit=1000us\nName                                ID Weight  Cap\n${dom.name.padEnd(32)} ${String(dom.domid).padStart(5)} ${String(dom.weight).padStart(6)} ${String(dom.cap).padStart(4)}\n` };
      }
      default: return { code: 1, stderr: `command not implemented by the fake: ${sub}\n` };
    }
  }
}
