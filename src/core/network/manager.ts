// NetworkManager: the daemon's managed bridge with its subnet, NAT (nftables) and DHCP/DNS (a dnsmasq it starts and adopts).
import { posix } from 'node:path';
import type { Host } from '../../host/host.js';
import { AppError } from '../../shared/errors.js';
import { Reverter } from '../../host/reverter.js';
import { checkAddress, ipToInt, isValidMac, parseSubnet, shortHash, type Subnet } from './ipam.js';
import type { Lease, Network, NetworkInfo } from './network.js';

/** Names and paths of one managed network (from Settings). */
export interface NetworkOptions {
  bridge: string;
  subnet: string;
  nftTable: string;
  dnsmasqDir: string;
  /** Prefix of per-instance host-side interface names (at most 7 characters); default: the bridge name without its "br0" suffix. */
  ifPrefix?: string;
  /** DNS domain dnsmasq gives DHCP clients and answers for locally, e.g. "hangar"; none by default. */
  domain?: string;
}

/** A DHCP reservation (defined with the network contract). */
export type { Lease } from './network.js';

const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const NFT_NAME_RE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const HOSTNAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const DOMAIN_RE = /^[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?$/;

interface IpAddrInfo {
  family?: string;
  local?: string;
  prefixlen?: number;
}
interface IpLink {
  ifname: string;
  flags?: string[];
  linkinfo?: { info_kind?: string };
  addr_info?: IpAddrInfo[];
}

/** Manages one bridge, its nftables table and its dnsmasq through a Host. */
export class NetworkManager implements Network {
  /** The parsed subnet of the bridge. */
  readonly subnet: Subnet;
  private readonly ifPrefix: string;
  private readonly pidFile: string;
  private readonly leaseFile: string;
  private readonly hostsFile: string;
  private readonly logFile: string;
  // Serialises ensure/setLeases/teardown of this manager so they never interleave.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly host: Host,
    private readonly opts: NetworkOptions,
  ) {
    if (!IFNAME_RE.test(opts.bridge)) throw new AppError('INVALID_CONFIG', `Invalid bridge name ${JSON.stringify(opts.bridge)}`);
    if (!NFT_NAME_RE.test(opts.nftTable)) throw new AppError('INVALID_CONFIG', `Invalid nftables table name ${JSON.stringify(opts.nftTable)}`);
    if (!posix.isAbsolute(opts.dnsmasqDir)) throw new AppError('INVALID_CONFIG', `dnsmasq directory must be absolute: ${JSON.stringify(opts.dnsmasqDir)}`);
    if (opts.domain !== undefined && !DOMAIN_RE.test(opts.domain)) throw new AppError('INVALID_CONFIG', `Invalid DNS domain ${JSON.stringify(opts.domain)}`);
    this.subnet = parseSubnet(opts.subnet);
    const prefix = opts.ifPrefix ?? (opts.bridge.replace(/br[0-9]*$/, '') || opts.bridge);
    if (!/^[a-z][a-z0-9]{0,6}$/.test(prefix)) {
      throw new AppError('INVALID_CONFIG', `Invalid interface prefix ${JSON.stringify(prefix)}: 1-7 lower-case letters or digits, starting with a letter`);
    }
    this.ifPrefix = prefix;
    this.pidFile = posix.join(opts.dnsmasqDir, 'dnsmasq.pid');
    this.leaseFile = posix.join(opts.dnsmasqDir, 'leases');
    this.hostsFile = posix.join(opts.dnsmasqDir, 'hosts');
    this.logFile = posix.join(opts.dnsmasqDir, 'dnsmasq.log');
  }

  /** Bridge name, subnet in CIDR form and gateway address. */
  info(): NetworkInfo {
    return { bridge: this.opts.bridge, subnet: this.subnet.cidr, gateway: this.subnet.gateway };
  }

  /** Host-side interface name (veth/tap) for an instance: prefix + 8 hex chars of a hash of the name, at most 15 characters. */
  hostIfName(name: string): string {
    return `${this.ifPrefix}${shortHash(name)}`;
  }

  /** Brings the network up (bridge, forwarding, NAT, dnsmasq); idempotent, and only two commands when already up. */
  ensure(): Promise<void> {
    return this.serial(async () => {
      const reverter = new Reverter();
      await reverter.run(async (r) => {
        await this.ensureDnsmasqDir();
        const fresh = await this.ensureBridge(r);
        await this.ensureForwarding();
        await this.ensureNft(r, fresh);
        await this.ensureDnsmasq(fresh);
      });
    });
  }

  /** Pid of this network's dnsmasq (from our pidfile, verified against /proc/PID/cmdline), or null when it is not running. */
  async dnsmasqPid(): Promise<number | null> {
    const text = await this.host.fs.readTextIfExists(this.pidFile);
    const pid = Number(text?.trim());
    if (!Number.isInteger(pid) || pid <= 1) return null;
    const argv = await this.cmdlineOf(pid);
    return argv && this.isOurDnsmasq(argv) ? pid : null;
  }

  /** Writes the DHCP reservations (hostsfile, atomically) and makes a running dnsmasq re-read them (SIGHUP). */
  setLeases(leases: Lease[]): Promise<void> {
    return this.serial(async () => {
      const content = this.renderHosts(leases);
      await this.ensureDnsmasqDir();
      const current = await this.host.fs.readTextIfExists(this.hostsFile);
      if (current === content) return;
      await this.host.fs.writeAtomic(this.hostsFile, content, 0o644);
      const pid = await this.dnsmasqPid();
      if (pid !== null) await this.host.kill(pid, 'SIGHUP');
    });
  }

  /** Stops this network's dnsmasq, deletes the nftables table and the bridge; idempotent. */
  teardown(): Promise<void> {
    return this.serial(async () => {
      const pid = await this.dnsmasqPid();
      if (pid !== null) await this.stopProcess(pid);
      for (const orphan of await this.findOrphans()) await this.stopProcess(orphan);
      await this.host.fs.rm(this.pidFile, { force: true });
      await this.deleteNft();
      await this.deleteBridge();
    });
  }

  /** The dnsmasq argv this network runs (public for tests and diagnostics). */
  dnsmasqArgv(): string[] {
    const s = this.subnet;
    const argv = [
      'dnsmasq',
      '--conf-file=',
      `--pid-file=${this.pidFile}`,
      `--dhcp-leasefile=${this.leaseFile}`,
      `--dhcp-hostsfile=${this.hostsFile}`,
      `--log-facility=${this.logFile}`,
      '--bind-interfaces',
      `--interface=${this.opts.bridge}`,
      '--except-interface=lo',
      `--listen-address=${s.gateway}`,
      '--no-hosts',
      '--strict-order',
      // Static mode: only reserved MACs get an address, so DHCP never hands out one the pool later gives to another instance.
      `--dhcp-range=${s.network},static,${s.netmask},1h`,
      '--dhcp-authoritative',
      '--dhcp-no-override',
      '--dhcp-rapid-commit',
      '--no-ping',
      '--quiet-dhcp',
    ];
    if (this.opts.domain) argv.push(`--domain=${this.opts.domain}`, `--local=/${this.opts.domain}/`);
    return argv;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private renderHosts(leases: Lease[]): string {
    const seenIp = new Map<string, string>();
    const seenMac = new Map<string, string>();
    const seenName = new Set<string>();
    const lines: string[] = [];
    for (const l of [...leases].sort((a, b) => a.name.localeCompare(b.name))) {
      if (!HOSTNAME_RE.test(l.name)) throw new AppError('INVALID_NAME', `Invalid DHCP host name ${JSON.stringify(l.name)}`);
      if (!isValidMac(l.mac)) throw new AppError('INVALID_ADDRESS', `Invalid MAC address ${JSON.stringify(l.mac)} for "${l.name}"`);
      checkAddress(this.subnet, l.ipv4, new Set());
      const mac = l.mac.toLowerCase();
      if (seenName.has(l.name)) throw new AppError('CONFLICT', `Duplicate DHCP reservation for "${l.name}"`);
      const ipOwner = seenIp.get(l.ipv4);
      if (ipOwner) throw new AppError('CONFLICT', `Address ${l.ipv4} is reserved for both "${ipOwner}" and "${l.name}"`);
      const macOwner = seenMac.get(mac);
      if (macOwner) throw new AppError('CONFLICT', `MAC ${mac} is reserved for both "${macOwner}" and "${l.name}"`);
      seenName.add(l.name);
      seenIp.set(l.ipv4, l.name);
      seenMac.set(mac, l.name);
      lines.push(`${mac},${l.ipv4},${l.name}`);
    }
    return lines.map((l) => `${l}\n`).join('');
  }

  private async ensureDnsmasqDir(): Promise<void> {
    const dir = this.opts.dnsmasqDir;
    // Searchable, not listable: dnsmasq reads its hosts file by name after dropping root.
    if (!(await this.host.fs.stat(dir))?.isDirectory) await this.host.fs.mkdir(dir, { recursive: true, mode: 0o711 });
    else await this.host.fs.chmod(dir, 0o711);
    // dnsmasq drops to an unprivileged user and re-reads the hostsfile on SIGHUP, so every directory above it must be searchable.
    for (let d = dir; ; d = posix.dirname(d)) {
      const st = await this.host.fs.stat(d);
      if (st && (st.mode & 0o001) === 0) {
        throw new AppError('INVALID_CONFIG', `dnsmasq (running unprivileged) cannot reach ${this.hostsFile}: directory ${d} is not searchable by others (chmod o+x)`);
      }
      if (d === '/') break;
    }
  }

  // Returns true when the bridge was created now (a first setup, undone as a whole on failure).
  private async ensureBridge(r: Reverter): Promise<boolean> {
    const br = this.opts.bridge;
    const s = this.subnet;
    let link = await this.showLink(br);
    const fresh = !link;
    if (!link) {
      await this.checkSubnetFree();
      await this.run(['ip', 'link', 'add', 'name', br, 'type', 'bridge'], `Failed to create bridge ${br}`);
      r.add(`delete bridge ${br}`, () => this.host.exec(['ip', 'link', 'del', 'dev', br], { allowFailure: true }));
      link = await this.showLink(br);
      if (!link) throw new AppError('HOST_FAILED', `Bridge ${br} vanished right after it was created`);
    }
    if (link.linkinfo?.info_kind !== 'bridge') {
      throw new AppError('CONFLICT', `Interface ${br} exists but is not a bridge (it is ${link.linkinfo?.info_kind ?? 'a physical or unknown device'})`);
    }
    const inet = (link.addr_info ?? []).filter((a) => a.family === 'inet');
    const hasGateway = inet.some((a) => a.local === s.gateway && a.prefixlen === s.prefixLength);
    if (!hasGateway) {
      // The bridge is ours (its name carries our prefix): addresses of an earlier subnet setting go.
      for (const a of inet) {
        await this.run(['ip', 'addr', 'del', `${a.local}/${a.prefixlen}`, 'dev', br], `Failed to remove ${a.local}/${a.prefixlen} from bridge ${br}`);
      }
      await this.checkSubnetFree();
      await this.run(['ip', 'addr', 'add', `${s.gateway}/${s.prefixLength}`, 'broadcast', s.broadcast, 'dev', br], `Failed to add ${s.gateway}/${s.prefixLength} to bridge ${br}`);
    }
    if (!(link.flags ?? []).includes('UP')) {
      await this.run(['ip', 'link', 'set', 'dev', br, 'up'], `Failed to bring bridge ${br} up`);
    }
    return fresh;
  }

  // Refuses a subnet that overlaps an address on any other interface: routing to it would break.
  private async checkSubnetFree(): Promise<void> {
    const res = await this.run(['ip', '-j', '-4', 'addr', 'show'], 'Failed to list host addresses');
    const links = parseIpJson(res.stdout);
    const net = ipToInt(this.subnet.network);
    for (const l of links) {
      if (l.ifname === this.opts.bridge) continue;
      for (const a of l.addr_info ?? []) {
        if (a.family !== 'inet' || !a.local || a.prefixlen === undefined) continue;
        const size = 2 ** (32 - a.prefixlen);
        const start = Math.floor(ipToInt(a.local) / size) * size;
        if (start < net + this.subnet.size && net < start + size) {
          throw new AppError('CONFLICT', `Subnet ${this.subnet.cidr} overlaps ${a.local}/${a.prefixlen} on interface ${l.ifname}`);
        }
      }
    }
  }

  private async ensureForwarding(): Promise<void> {
    const path = '/proc/sys/net/ipv4/ip_forward';
    const cur = await this.host.fs.readText(path);
    // A sysctl file cannot be replaced by rename, so it is written in place.
    if (cur.trim() !== '1') await this.host.fs.appendFile(path, '1\n');
  }

  private nftRuleset(): string {
    const t = this.opts.nftTable;
    const br = this.opts.bridge;
    const cidr = this.subnet.cidr;
    // Declaring then deleting the table makes the load replace it atomically, whether or not it existed.
    return [
      `table inet ${t}`,
      `delete table inet ${t}`,
      `table inet ${t} {`,
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      `    ip saddr ${cidr} ip daddr != ${cidr} oifname != "${br}" masquerade`,
      '  }',
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      `    iifname "${br}" accept`,
      `    oifname "${br}" accept`,
      '  }',
      '}',
      '',
    ].join('\n');
  }

  // Reloading costs one command, the same as checking, and also repairs a table someone edited.
  private async ensureNft(r: Reverter, fresh: boolean): Promise<void> {
    await this.run(['nft', '-f', '-'], `Failed to load nftables table inet ${this.opts.nftTable}`, { input: this.nftRuleset() });
    if (fresh) r.add(`delete nft table ${this.opts.nftTable}`, () => this.deleteNft());
  }

  private async ensureDnsmasq(bridgeIsNew: boolean): Promise<void> {
    const want = this.dnsmasqArgv();
    const pid = await this.dnsmasqPid();
    if (pid !== null) {
      const argv = await this.cmdlineOf(pid);
      // A dnsmasq that outlived its bridge holds sockets bound to the deleted interface, so it is replaced too.
      if (argv && sameArgs(argv, want) && !bridgeIsNew) return;
      // Ours but started with other options (subnet or version changed) or for a bridge since recreated: replace it.
      await this.stopProcess(pid);
    }
    for (const orphan of await this.findOrphans()) await this.stopProcess(orphan);
    if (!(await this.host.fs.stat(this.hostsFile))) await this.host.fs.writeAtomic(this.hostsFile, '', 0o644);
    await this.host.fs.rm(this.pidFile, { force: true });
    // dnsmasq daemonizes itself (so it outlives hangard) and its parent exits only after the child reports success or an error.
    await this.run(want, `Failed to start dnsmasq for bridge ${this.opts.bridge}`, { timeoutMs: 30_000 });
    const started = await this.dnsmasqPid();
    if (started === null) throw new AppError('HOST_FAILED', `dnsmasq for bridge ${this.opts.bridge} exited right after starting (see ${this.logFile})`);
  }

  // dnsmasq processes of this bridge that use our pidfile path but are not the one it names (pidfile lost or overwritten).
  private async findOrphans(): Promise<number[]> {
    const own = await this.dnsmasqPid();
    const out: number[] = [];
    for (const entry of await this.host.fs.readdir('/proc')) {
      if (!/^[0-9]+$/.test(entry)) continue;
      const pid = Number(entry);
      if (pid === own) continue;
      const argv = await this.cmdlineOf(pid);
      if (argv && this.isOurDnsmasq(argv) && argv.includes(`--pid-file=${this.pidFile}`)) out.push(pid);
    }
    return out;
  }

  private isOurDnsmasq(argv: string[]): boolean {
    return posix.basename(argv[0] ?? '') === 'dnsmasq' && argv.includes(`--interface=${this.opts.bridge}`);
  }

  // argv of a live process; null when gone or a zombie (whose cmdline is empty).
  private async cmdlineOf(pid: number): Promise<string[] | null> {
    let raw: string | undefined;
    try {
      raw = await this.host.fs.readTextIfExists(`/proc/${pid}/cmdline`);
    } catch {
      return null;
    }
    if (!raw) return null;
    return raw.replace(/\0$/, '').split('\0');
  }

  private async stopProcess(pid: number): Promise<void> {
    const matches = async () => {
      const argv = await this.cmdlineOf(pid);
      return argv !== null && this.isOurDnsmasq(argv);
    };
    for (const [signal, tries] of [['SIGTERM', 100], ['SIGKILL', 40]] as const) {
      await this.host.kill(pid, signal);
      for (let i = 0; i < tries; i++) {
        if (!(await matches())) return;
        await sleep(50);
      }
    }
    throw new AppError('TIMEOUT', `dnsmasq (pid ${pid}) of bridge ${this.opts.bridge} did not exit`);
  }

  private async deleteNft(): Promise<void> {
    const t = this.opts.nftTable;
    const res = await this.host.exec(['nft', 'delete', 'table', 'inet', t], { allowFailure: true });
    if (res.code === 0) return;
    const still = await this.host.exec(['nft', 'list', 'table', 'inet', t], { allowFailure: true });
    if (still.code === 0) throw new AppError('HOST_FAILED', `Failed to delete nftables table inet ${t}`, { cause: new Error(res.stderr.trim()) });
  }

  private async deleteBridge(): Promise<void> {
    const br = this.opts.bridge;
    const link = await this.showLink(br);
    if (!link) return;
    if (link.linkinfo?.info_kind !== 'bridge') throw new AppError('CONFLICT', `Interface ${br} is not a bridge; not deleting it`);
    await this.run(['ip', 'link', 'del', 'dev', br], `Failed to delete bridge ${br}`);
  }

  private async showLink(name: string): Promise<IpLink | undefined> {
    const res = await this.host.exec(['ip', '-j', '-d', 'addr', 'show', 'dev', name], { allowFailure: true });
    if (res.code !== 0) {
      if (/does not exist/i.test(res.stderr)) return undefined;
      throw new AppError('HOST_FAILED', `Failed to inspect interface ${name}`, { cause: new Error(res.stderr.trim() || `exit code ${res.code}`) });
    }
    return parseIpJson(res.stdout).find((l) => l.ifname === name);
  }

  private async run(argv: string[], message: string, opts: { input?: string; timeoutMs?: number } = {}) {
    try {
      return await this.host.exec(argv, opts);
    } catch (e) {
      throw new AppError('HOST_FAILED', message, { cause: e });
    }
  }
}

function parseIpJson(text: string): IpLink[] {
  try {
    const v: unknown = JSON.parse(text || '[]');
    return Array.isArray(v) ? (v as IpLink[]) : [];
  } catch (e) {
    throw new AppError('HOST_FAILED', 'Unexpected output from ip -j', { cause: e });
  }
}

function sameArgs(actual: string[], want: string[]): boolean {
  return actual.length === want.length && actual.every((a, i) => (i === 0 ? posix.basename(a) === posix.basename(want[0]!) : a === want[i]));
}

function sleep(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}

