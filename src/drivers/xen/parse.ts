// Pure parsers of xl's outputs: `xl info`, `xl list [-v]`, `xl list -l` (JSON), `xl sched-credit[2]`, `xl vcpu-list`, and its messages on stderr.

/** The facts `xl info` prints that the driver uses (memory in MiB, as xl prints it). */
export interface XlInfo {
  host: string | null;
  release: string | null;
  /** "4.17.6-pre" (xen_major.xen_minor + xen_extra). */
  xenVersion: string | null;
  /** virt_caps words: pv, hvm, hvm_directio, pv_directio, hap, shadow, iommu_hap_pt_share, vmtrace, vpmu, gnttab-v1, gnttab-v2. */
  virtCaps: string[];
  /** xen_caps words, e.g. xen-3.0-x86_64 hvm-3.0-x86_32 ... */
  xenCaps: string[];
  totalMemoryMiB: number | null;
  freeMemoryMiB: number | null;
  nrCpus: number | null;
  /** credit, credit2, rtds, arinc653, null. */
  scheduler: string | null;
  /** The hypervisor's command line (dom0_mem=..., console=...). */
  commandLine: string | null;
  /** Every "key : value" line, as printed. */
  fields: Record<string, string>;
}

const num = (v: string | undefined): number | null => {
  if (v === undefined || !/^\d+$/.test(v.trim())) return null;
  return Number(v.trim());
};

/** Parses `xl info` ("key                    : value" per line; virt_caps may be empty). */
export function parseXlInfo(text: string): XlInfo {
  const fields: Record<string, string> = {};
  for (const line of text.split('\n')) {
    // The key is padded with spaces before the colon; values (xen_commandline) may hold colons of their own.
    const m = /^([a-z_][a-z0-9_]*)\s*:(.*)$/.exec(line);
    if (m) fields[m[1]!] = m[2]!.trim();
  }
  const words = (k: string) => (fields[k] ?? '').split(/\s+/).filter(Boolean);
  return {
    host: fields.host ?? null,
    release: fields.release ?? null,
    xenVersion: fields.xen_version || null,
    virtCaps: words('virt_caps'),
    xenCaps: words('xen_caps'),
    totalMemoryMiB: num(fields.total_memory),
    freeMemoryMiB: num(fields.free_memory),
    nrCpus: num(fields.nr_cpus),
    scheduler: fields.xen_scheduler || null,
    commandLine: fields.xen_commandline ?? null,
    fields,
  };
}

/** Why a domain shut down, from the fifth state flag of `xl list` (xl's "-rscwS"). */
export type XlShutdownReason = 'poweroff' | 'reboot' | 'suspend' | 'crash' | 'watchdog' | 'soft_reset' | 'unknown';

/** The six state flags of `xl list` ("r-----", "-b----", "--p---", "---s--", "---sc-", "-----d"). */
export interface XlStateFlags {
  running: boolean;
  blocked: boolean;
  paused: boolean;
  shutdown: boolean;
  /** With shutdown: why. */
  reason: XlShutdownReason | null;
  dying: boolean;
}

const REASONS: Record<string, XlShutdownReason> = { '-': 'poweroff', r: 'reboot', s: 'suspend', c: 'crash', w: 'watchdog', S: 'soft_reset' };

/** Parses the State column of `xl list`; null when it is not six flag characters. */
export function parseXlState(flags: string): XlStateFlags | null {
  if (!/^[r-][b-][p-][s-][-rscwS?][d-]$/.test(flags)) return null;
  const shutdown = flags[3] === 's';
  return {
    running: flags[0] === 'r',
    blocked: flags[1] === 'b',
    paused: flags[2] === 'p',
    shutdown,
    reason: shutdown ? REASONS[flags[4]!] ?? 'unknown' : null,
    dying: flags[5] === 'd',
  };
}

/** One row of `xl list` (and `xl list -v`). */
export interface XlListEntry {
  name: string;
  domid: number;
  memMiB: number;
  vcpus: number;
  state: XlStateFlags;
  /** CPU time used, seconds (xl prints one decimal). */
  cpuSeconds: number;
  /** With -v: the domain's UUID. */
  uuid?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Parses the rows of `xl list` or `xl list -v` (the header is skipped). Columns are read from the right: ID, Mem,
 * VCPUs, State and Time(s) follow the name (padded to 40 characters), and -v adds UUID, reason code and security label.
 */
export function parseXlList(text: string): XlListEntry[] {
  const out: XlListEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim() || /^Name\s+ID\s+Mem/.test(line)) continue;
    const t = line.trim().split(/\s+/);
    // The verbose form ends in "<uuid> <reason> <label>"; find the State column by its shape either way.
    const verbose = t.length >= 9 && UUID.test(t[t.length - 3]!);
    const end = verbose ? t.length - 3 : t.length;
    if (end < 6) continue;
    const [domid, mem, vcpus, flags, time] = t.slice(end - 5, end);
    const state = parseXlState(flags!);
    if (!state || num(domid) === null || num(mem) === null || num(vcpus) === null || !/^\d+(\.\d+)?$/.test(time!)) continue;
    out.push({
      name: t.slice(0, end - 5).join(' '),
      domid: Number(domid),
      memMiB: Number(mem),
      vcpus: Number(vcpus),
      state,
      cpuSeconds: Number(time),
      ...(verbose ? { uuid: t[t.length - 3]! } : {}),
    });
  }
  return out;
}

/** A disk as `xl list -l` reports it. */
export interface XlLongDisk {
  target: string | null;
  vdev: string | null;
  format: string | null;
  backend: string | null;
  readwrite: boolean;
}

/** A NIC as `xl list -l` reports it. */
export interface XlLongNic {
  mac: string | null;
  bridge: string | null;
  ifname: string | null;
  /** Bytes per credit interval and the interval (µs), when the vif has a rate. */
  rate: { bytesPerInterval: number; intervalUs: number } | null;
}

/** What `xl list -l` says a domain really got (libxl's domain configuration, memory as current target and static max). */
export interface XlLongDomain {
  domid: number | null;
  name: string | null;
  uuid: string | null;
  type: string | null;
  maxMemKiB: number | null;
  targetMemKiB: number | null;
  maxVcpus: number | null;
  /** vCPUs online (the avail_vcpus bitmap, or all of max_vcpus when it is absent). */
  availVcpus: number | null;
  weight: number | null;
  cap: number | null;
  kernel: string | null;
  ramdisk: string | null;
  cmdline: string | null;
  disks: XlLongDisk[];
  nics: XlLongNic[];
  onPoweroff: string | null;
  onReboot: string | null;
  onCrash: string | null;
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const int = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : null);

/** Parses `xl list -l` (a JSON array of {domid, config}); throws when the text is not that JSON. */
export function parseXlListLong(text: string): XlLongDomain[] {
  const data: unknown = JSON.parse(text.trim() === '' ? '[]' : text);
  if (!Array.isArray(data)) throw new Error('xl list -l did not print a JSON array');
  return data.map((entry) => {
    const e = obj(entry);
    const config = obj(e.config);
    const c = obj(config.c_info);
    const b = obj(config.b_info);
    const sched = obj(b.sched_params);
    const typed = obj(b[`type.${str(c.type) ?? 'pv'}`]);
    const maxVcpus = int(b.max_vcpus);
    // libxl writes a bitmap as the list of its set bits.
    const avail = Array.isArray(b.avail_vcpus) ? b.avail_vcpus.length : maxVcpus;
    // Scheduler parameters left at their default are -1 (or absent) in libxl's JSON.
    const param = (v: unknown) => { const n = int(v); return n === null || n < 0 ? null : n; };
    return {
      domid: int(e.domid),
      name: str(c.name),
      uuid: str(c.uuid),
      type: str(c.type),
      maxMemKiB: int(b.max_memkb),
      targetMemKiB: int(b.target_memkb),
      maxVcpus,
      availVcpus: avail,
      weight: param(sched.weight),
      cap: param(sched.cap),
      kernel: str(b.kernel) ?? str(typed.kernel),
      ramdisk: str(b.ramdisk) ?? str(typed.ramdisk),
      cmdline: str(b.cmdline) ?? str(typed.cmdline),
      disks: (Array.isArray(config.disks) ? config.disks : []).map((d): XlLongDisk => {
        const x = obj(d);
        return { target: str(x.pdev_path), vdev: str(x.vdev), format: str(x.format), backend: str(x.backend), readwrite: int(x.readwrite) === 1 };
      }),
      nics: (Array.isArray(config.nics) ? config.nics : []).map((n): XlLongNic => {
        const x = obj(n);
        const bytes = int(x.rate_bytes_per_interval);
        const us = int(x.rate_interval_usecs);
        return { mac: str(x.mac), bridge: str(x.bridge), ifname: str(x.ifname), rate: bytes && us ? { bytesPerInterval: bytes, intervalUs: us } : null };
      }),
      onPoweroff: str(config.on_poweroff),
      onReboot: str(config.on_reboot),
      onCrash: str(config.on_crash),
    };
  });
}

/** One domain's row of `xl sched-credit -d NAME` or `xl sched-credit2 -d NAME` ("Name ID Weight Cap [Rate limit]"). */
export interface XlSchedParams {
  name: string;
  domid: number;
  weight: number;
  /** Percent of one physical CPU; 0 is no cap. */
  cap: number;
}

/** Parses the domain rows of `xl sched-credit[2]` (the "Cpupool" and header lines are skipped). */
export function parseXlSched(text: string): XlSchedParams[] {
  const out: XlSchedParams[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$/.exec(line.trim());
    if (m) out.push({ name: m[1]!, domid: Number(m[2]), weight: Number(m[3]), cap: Number(m[4]) });
  }
  return out;
}

/** One vCPU of `xl vcpu-list NAME`. */
export interface XlVcpu {
  vcpu: number;
  /** The physical CPU it runs on, null when not running ("-"). */
  cpu: number | null;
  /** Three flags as xl prints them: r (running) or -, b (blocked) or -, p (offline: xl's "paused" vCPU) or -. */
  state: string;
  online: boolean;
  cpuSeconds: number;
}

/** Parses `xl vcpu-list NAME` ("Name ID VCPU CPU State Time(s) Affinity (Hard / Soft)"). */
export function parseXlVcpuList(text: string): XlVcpu[] {
  const out: XlVcpu[] = [];
  for (const line of text.split('\n')) {
    if (/^Name\s+ID\s+VCPU/.test(line)) continue;
    const m = /^\S+\s+\d+\s+(\d+)\s+(\d+|-)\s+(\S+)\s+(\d+(?:\.\d+)?)\s/.exec(`${line.trim()} `);
    if (!m) continue;
    const state = m[3]!;
    out.push({ vcpu: Number(m[1]), cpu: m[2] === '-' ? null : Number(m[2]), state, online: state[2] !== 'p', cpuSeconds: Number(m[4]) });
  }
  return out;
}

/** True when xl's stderr says the domain does not exist (find_domain's message, or libxl_domain_info's). */
export function isNoSuchDomain(stderr: string): boolean {
  return /is an invalid domain identifier|does not exist|Domain not found|ERROR_DOMAIN_NOTFOUND/i.test(stderr);
}

/** xl's stderr summarised: progress lines ("Parsing config from", "Saving to ...", libxc's "progress: Frames") left out, libxl's source locations stripped, lines joined with ", ". */
export function xlMessage(stderr: string): string {
  const lines: string[] = [];
  for (const raw of stderr.split('\n')) {
    const l = raw.trim()
      // "libxl: error: libxl_create.c:1234:do_domain_create: Domain 5:message" → "libxl: error: message"
      .replace(/^(libxl: \w+): [\w.-]+\.c:\d+:[\w]+:\s*(Domain \d+:)?\s*/, '$1: ')
      .trim();
    if (!l || /^Parsing config from /.test(l) || /^Saving to .* new xl format/.test(l) || /^Loading new save file /.test(l) || /^Savefile contains xl domain config/.test(l) || /^(xc: )?(info|progress): /.test(l)) continue;
    if (!lines.includes(l)) lines.push(l);
  }
  return lines.join(', ');
}
