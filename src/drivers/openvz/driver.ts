// The OpenVZ driver on a mainline kernel: numbered containers run through the LXC machinery, with an image-backed private area, vSwap limits and venet routing.
import { posix } from 'node:path';
import { resourcesOf, type InstanceConfig } from '../../shared/config.js';
import { AppError, isAppError } from '../../shared/errors.js';
import type { Beancounter, Usage } from '../../shared/schemas.js';
import { readCgroupMounts } from '../../host/mounts.js';
import { cgroupDirs, venetHostIf } from '../lxc/render-config.js';
import { readBeancounters } from './beancounters.js';
import { VzConf } from './conf.js';
import { renderCtConf } from './render-conf.js';
import type { Host, HostProcess } from '../../host/host.js';
import { Reverter } from '../../host/reverter.js';
import type {
  ConfigApplyResult, Driver, DriverEnv, ExecSpec, HostDriver, InstanceHandle, InstanceRecord, ObservedState, StopOptions,
} from '../driver.js';
import { LxcInstance, lxcDriver, validateLxc, type LxcHost } from '../lxc/driver.js';
import { ensureLxcfs } from '../lxc/lxcfs.js';
import { lxcVersion } from '../lxc/lxc-tools.js';
import {
  isMounted, makePrivate, mountPrivate, PRIVATE_IMAGE, PRIVATE_MIN_BYTES, privateBytes, privateUsage, resizePrivate, rootsDir, umountPrivate, type PrivateArea,
} from './private-area.js';

/** The disk space of a CT that sets none: vzctl's basic sample gives 2 GiB (the image is sparse: unused space costs nothing). */
export const VZ_DEFAULT_DISK_BYTES = 2 * 1024 ** 3;

/** The mark (in the CT's volume, beside its image) of an identity initRoot left for the first mount. */
const IDENTITY_PENDING = '.identity-pending';

/** The container-side interface: OpenVZ's name for it. */
export const VENET_IF = 'venet0';

/** What the driver keeps per host: the LXC machinery it runs on and where private areas mount. */
interface OpenvzHost {
  env: DriverEnv;
  lxc: LxcHost;
  rootsDir: string;
  /** Where the CTs' CTID.conf files are. */
  confDir: string;
}

/** Refuses a private area Hangar cannot make a CT from: missing, not a directory, a ploop layout, or stored with shifted ids. */
export async function checkSimfsPrivate(host: Host, dir: string, name: string): Promise<void> {
  const st = await host.fs.stat(dir);
  const refuse = (why: string) => new AppError('INVALID_ARCHIVE', `Cannot import the private area ${dir} of "${name}": ${why}`);
  if (!st) throw new AppError('NOT_FOUND', `Cannot import the private area ${dir} of "${name}": it does not exist`);
  if (!st.isDirectory) throw refuse('it is not a directory');
  if ((await host.fs.stat(posix.join(dir, 'root.hdd')))?.isDirectory || (await host.fs.stat(posix.join(dir, 'root.hdd', 'DiskDescriptor.xml')))) {
    throw refuse('it is a ploop image (root.hdd), which this kernel cannot read (no ploop driver); convert it to simfs on the OpenVZ host (vzctl convert) or copy its files into a directory');
  }
  if (st.uid !== 0) throw refuse(`its root directory is owned by uid ${st.uid}: the tree is stored shifted (an OpenVZ 7 LOCAL_UID map), and Hangar keeps container ids 0-based`);
  if (!(await host.fs.stat(posix.join(dir, 'sbin', 'init'))) && !(await host.fs.stat(posix.join(dir, 'bin', 'sh')))) throw refuse('it holds no /sbin/init or /bin/sh: not a container\'s root');
}

/** The venet addresses of a record: its own address first (unless a --netif_add veth carries it), then openvz.ipadd's. */
export function venetAddresses(record: Pick<InstanceRecord, 'nic' | 'config'>): string[] {
  const extra = (record.config['openvz.ipadd'] ?? '').split(' ').filter(Boolean).filter((a) => a !== record.nic.ipv4);
  return record.config['openvz.netif'] !== undefined ? extra : [record.nic.ipv4, ...extra];
}

/** /etc/resolv.conf for openvz.nameserver and openvz.searchdomain, or undefined when neither is set. */
export function renderResolvConf(config: InstanceConfig): string | undefined {
  const ns = (config['openvz.nameserver'] ?? '').split(' ').filter(Boolean);
  const search = (config['openvz.searchdomain'] ?? '').split(' ').filter(Boolean);
  if (ns.length === 0 && search.length === 0) return undefined;
  return [...(search.length ? [`search ${search.join(' ')}`] : []), ...ns.map((n) => `nameserver ${n}`)].join('\n') + '\n';
}

class OpenvzInstance implements InstanceHandle {
  private record: InstanceRecord;
  private lxc: LxcInstance;
  private readonly area: PrivateArea;

  constructor(record: InstanceRecord, private readonly ov: OpenvzHost) {
    this.record = record;
    this.area = { host: ov.env.host, image: posix.join(record.rootPath, PRIVATE_IMAGE), root: posix.join(ov.rootsDir, record.name), label: record.name };
    this.lxc = this.lxcFor(record);
  }

  private get host(): Host { return this.ov.env.host; }

  /** The LXC container of this CT: its root is VE_ROOT, its network venet, its host name the CT's. */
  private lxcFor(record: InstanceRecord): LxcInstance {
    return new LxcInstance({ ...record, rootPath: this.area.root }, this.ov.lxc, (r) => ({
      ...(r.config['openvz.hostname'] ? { hostname: r.config['openvz.hostname'] } : {}),
      routed: { name: VENET_IF, addresses: venetAddresses(r), ...(r.config['openvz.netif'] !== undefined ? { bridged: r.config['openvz.netif'] } : {}) },
    }));
  }

  consoleLogPath(): string {
    return this.lxc.consoleLogPath();
  }

  /** Makes the private area from the template when there is none yet (a launch; a copy brings its own). */
  private async ensurePrivate(): Promise<void> {
    if (await this.host.fs.stat(this.area.image)) return;
    // An imported CT's area is made from its OpenVZ private directory (simfs), a new one's from its template.
    const imported = typeof this.record.origin?.private === 'string' ? this.record.origin.private : undefined;
    const from = imported ?? this.record.imagePath;
    if (!from) throw new AppError('NOT_FOUND', `Instance "${this.record.name}" has no template to make its private area from`);
    if (imported) await checkSimfsPrivate(this.host, imported, this.record.name);
    await this.host.fs.mkdir(this.record.rootPath, { recursive: true });
    const r = resourcesOf(this.record.config);
    const inodes = this.record.config['limits.disk.inodes'];
    await makePrivate(this.area, from, r.diskBytes ?? VZ_DEFAULT_DISK_BYTES, inodes === undefined ? undefined : Number(inodes));
  }

  private async ensureRootsDir(): Promise<void> {
    await this.host.fs.mkdir(this.ov.rootsDir, { recursive: true, mode: 0o700 });
    await this.host.fs.chmod(this.ov.rootsDir, 0o700);
  }

  /** Marks the identity (hostname, hosts, machine-id) as due at the first mount: one mount fewer on the launch path (a loop umount flushes the journal, ~20 ms). */
  async initRoot(): Promise<void> {
    await this.ensurePrivate();
    await this.host.fs.writeAtomic(this.identityPending, '', 0o600);
  }

  /** Where the mark of an identity still to be written is: beside the image, outside what the CT sees. */
  private get identityPending(): string {
    return posix.join(this.record.rootPath, IDENTITY_PENDING);
  }

  /** Writes the identity into the just mounted area of a CT that has never run, once. */
  private async writeIdentityIfPending(): Promise<void> {
    if (!(await this.host.fs.stat(this.identityPending))) return;
    await this.lxc.initRoot();
    await this.host.fs.rm(this.identityPending, { force: true });
  }

  async create(): Promise<void> {
    await this.ensurePrivate();
    // The private area's root is owned by 0 (mkfs root_owner): no tree to look at, so no mount for the LXC files.
    await this.lxc.writeConfig();
    await this.writeCtConf(this.record);
  }

  /** Where its CTID.conf is: OpenVZ's /etc/vz/conf, in the driver's directory. */
  private get confPath(): string {
    return posix.join(this.ov.confDir, `${this.record.config['openvz.ctid'] ?? this.record.name}.conf`);
  }

  /** Writes the CT's CTID.conf from its config, into the file as the user left it (a file that no longer parses is written anew, and said). */
  private async writeCtConf(record: InstanceRecord): Promise<void> {
    const text = await this.host.fs.readTextIfExists(this.confPath);
    let existing: VzConf | undefined;
    try {
      existing = text === undefined ? undefined : VzConf.parse(text, this.confPath);
    } catch (e) {
      this.ov.env.log(`openvz ${record.name}: ${this.confPath} is rewritten: ${e instanceof Error ? e.message : String(e)}`);
    }
    const netif = record.config['openvz.netif'];
    const out = renderCtConf({
      name: record.name, ctid: record.config['openvz.ctid'] ?? record.name, config: record.config, venet: venetAddresses(record),
      ...(netif !== undefined ? { netif: { ifname: netif, mac: record.nic.mac, hostIf: record.nic.hostIfName, bridge: record.nic.bridge } } : {}),
      ostemplate: record.config['openvz.ostemplate'] ?? record.image, root: this.area.root, private: record.rootPath,
    }, existing);
    if (out === text) return;
    await this.host.fs.mkdir(this.ov.confDir, { recursive: true, mode: 0o755 });
    await this.host.fs.writeAtomic(this.confPath, out, 0o644);
  }

  async state(): Promise<ObservedState> {
    return this.lxc.state();
  }

  async start(known?: ObservedState): Promise<ObservedState | void> {
    const st = known ?? (await this.lxc.state());
    if (st.state === 'running') return st;
    const r = new Reverter();
    return r.run(async () => {
      // A disk space changed while stopped (a shrink, or a grow made then) is applied before the mount.
      const want = resourcesOf(this.record.config).diskBytes ?? VZ_DEFAULT_DISK_BYTES;
      // One mount table read for the start path: mounted already (vzctl mount) or not.
      const was = await isMounted(this.area);
      if (!was && (await privateBytes(this.area)) !== Math.floor(want / 4096) * 4096) {
        // A shrink accepted while it ran, whose data grew since, does not keep the CT from starting: it keeps its size.
        await resizePrivate(this.area, want).catch((e: unknown) => {
          if (!isAppError(e) || e.code !== 'INVALID_SIZE') throw e;
          this.ov.env.log(`openvz ${this.record.name}: private area kept its size: ${e.message}`);
        });
      }
      await this.ensureRootsDir();
      if (!was) {
        await mountPrivate(this.area);
        r.add('unmount the private area', () => umountPrivate(this.area));
      }
      await this.writeIdentityIfPending();
      await this.writeResolvConf();
      await this.proxyArpOnBridge();
      await this.lxc.start();
      return undefined;
    });
  }

  /** Resolvers from openvz.nameserver/searchdomain into the mounted root (never through a symlink out of it). */
  private async writeResolvConf(): Promise<void> {
    const text = renderResolvConf(this.record.config);
    if (text === undefined) return;
    const etc = posix.join(this.area.root, 'etc');
    if (!(await this.host.fs.stat(etc))?.isDirectory) return;
    const dst = posix.join(etc, 'resolv.conf');
    if ((await this.host.fs.stat(dst))?.isSymbolicLink) await this.host.fs.rm(dst, { force: true });
    await this.host.fs.writeAtomic(dst, text, 0o644);
  }

  /** Bridged neighbours ARP for a venet address on the bridge: the host answers for what it routes elsewhere. */
  private async proxyArpOnBridge(): Promise<void> {
    const file = `/proc/sys/net/ipv4/conf/${this.record.nic.bridge}/proxy_arp`;
    if ((await this.host.fs.readTextIfExists(file))?.trim() === '0') await this.host.fs.appendFile(file, '1');
  }

  async stop(opts: StopOptions): Promise<void> {
    await this.lxc.stop(opts);
    await umountPrivate(this.area);
  }

  async freeze(): Promise<void> {
    await this.lxc.freeze();
  }

  async unfreeze(): Promise<void> {
    await this.lxc.unfreeze();
  }

  async delete(): Promise<void> {
    await this.lxc.delete();
    await umountPrivate(this.area);
    await this.host.fs.rm(this.area.image, { force: true });
    await this.host.fs.rm(this.confPath, { force: true });
  }

  /** Mounts the private area at VE_ROOT (vzctl mount); the CT must not be running for umount. */
  async mount(): Promise<void> {
    await this.ensureRootsDir();
    await mountPrivate(this.area);
    await this.writeIdentityIfPending();
  }

  /** Unmounts a stopped CT's private area (vzctl umount). */
  async umount(): Promise<void> {
    const st = await this.lxc.state();
    if (st.state !== 'stopped') throw new AppError('INVALID_STATE', `Failed to unmount the private area of "${this.record.name}": it is ${st.state}`);
    await umountPrivate(this.area);
  }

  async applyConfig(next: InstanceConfig, prev: InstanceConfig): Promise<ConfigApplyResult> {
    const changed = [...new Set([...Object.keys(next), ...Object.keys(prev)])].filter((k) => next[k] !== prev[k]).sort();
    if (changed.includes('limits.disk.inodes')) {
      throw new AppError('UNSUPPORTED', `Failed to change limits.disk.inodes of "${this.record.name}": the inode count of its ext4 private area is fixed when the area is made`);
    }
    const st = await this.lxc.state();
    const running = st.state === 'running' || st.state === 'frozen';
    const live: string[] = [];
    const pending: string[] = [];
    const r = new Reverter();
    await r.run(async () => {
      if (changed.includes('limits.disk')) {
        const want = resourcesOf(next).diskBytes ?? VZ_DEFAULT_DISK_BYTES;
        const had = resourcesOf(prev).diskBytes ?? VZ_DEFAULT_DISK_BYTES;
        // Grown now (online when mounted and the kernel allows it); otherwise applied at the next start, unmounted.
        if ((await resizePrivate(this.area, want)) === 'done') {
          r.add('resize the private area back', async () => { await resizePrivate(this.area, had); });
          live.push('limits.disk');
        } else pending.push('limits.disk');
      }
      // A veth added or removed changes which interface carries which address: that waits for the next start.
      const netifChanged = changed.includes('openvz.netif');
      if (running && st.pid !== null) {
        if (changed.includes('openvz.ipadd') && !netifChanged) await this.applyAddresses(st.pid, venetAddresses({ ...this.record, config: next }), venetAddresses({ ...this.record, config: prev }), r);
        if (changed.includes('openvz.hostname')) {
          const name = next['openvz.hostname'] ?? this.record.name;
          await this.host.exec(['nsenter', '-t', String(st.pid), '-u', 'hostname', name]);
          r.add('restore the host name', () => this.host.exec(['nsenter', '-t', String(st.pid), '-u', 'hostname', prev['openvz.hostname'] ?? this.record.name]).then(() => undefined));
        }
      }
      // The LXC side applies the cgroup limits live and rewrites its config (addresses, host name) for the next start.
      const res = await this.lxc.applyConfig(next, prev);
      const waits = (k: string) => running && netifChanged && (k === 'openvz.netif' || k === 'openvz.ipadd');
      live.push(...res.live.filter((k) => !waits(k)));
      pending.push(...res.pending, ...res.live.filter(waits));
    });
    this.record = { ...this.record, config: next };
    await this.writeCtConf(this.record);
    // A running CT gets its resolvers and /etc/hostname written from inside, as its own root: the host never follows
    // paths in a tree the CT can change under it.
    if (running) {
      const resolv = renderResolvConf(next);
      if (resolv !== undefined && (changed.includes('openvz.nameserver') || changed.includes('openvz.searchdomain'))) await this.writeInside('/etc/resolv.conf', resolv);
      if (changed.includes('openvz.hostname')) await this.writeInside('/etc/hostname', `${next['openvz.hostname'] ?? this.record.name}\n`);
    }
    return { live: [...new Set(live)].sort(), pending: [...new Set(pending)].sort() };
  }

  /** Writes a file inside the running CT through its own shell (best effort: a CT without one keeps its file). */
  private async writeInside(path: string, text: string): Promise<void> {
    const p = this.lxc.exec({ command: ['/bin/sh', '-c', 'cat > "$1"', 'sh', path] });
    p.stdout?.resume();
    p.stderr?.resume();
    p.stdin?.end(text);
    const { code } = await p.wait();
    if (code !== 0) this.ov.env.log(`openvz ${this.record.name}: could not write ${path} inside (exit ${code})`);
  }

  /** Adds and removes venet addresses of a running CT: inside (a /32 on venet0) and the host's /32 route to it. */
  private async applyAddresses(pid: number, next: string[], prev: string[], r: Reverter): Promise<void> {
    const hostIf = venetHostIf(this.record.nic, this.record.config['openvz.netif'] !== undefined);
    const inside = (verb: 'add' | 'del', a: string) => ['nsenter', '-t', String(pid), '-n', 'ip', '-4', 'addr', verb, `${a}/32`, 'dev', VENET_IF];
    const route = (verb: 'replace' | 'del', a: string) => ['ip', '-4', 'route', verb, `${a}/32`, 'dev', hostIf];
    for (const a of next.filter((x) => !prev.includes(x))) {
      await this.host.exec(inside('add', a));
      r.add(`remove ${a} inside`, () => this.host.exec(inside('del', a), { allowFailure: true }).then(() => undefined));
      await this.host.exec(route('replace', a));
      r.add(`remove the route to ${a}`, () => this.host.exec(route('del', a), { allowFailure: true }).then(() => undefined));
    }
    for (const a of prev.filter((x) => !next.includes(x))) {
      await this.host.exec(inside('del', a), { allowFailure: true });
      await this.host.exec(route('del', a), { allowFailure: true });
      r.add(`give ${a} back`, async () => {
        await this.host.exec(inside('add', a), { allowFailure: true });
        await this.host.exec(route('replace', a), { allowFailure: true });
      });
    }
  }

  exec(spec: ExecSpec): HostProcess {
    return this.lxc.exec(spec);
  }

  attachConsole(size: { cols: number; rows: number }): HostProcess {
    return this.lxc.attachConsole(size);
  }

  async beancounters(): Promise<Beancounter[]> {
    const mounts = await readCgroupMounts(this.host);
    return readBeancounters(this.host, mounts, cgroupDirs(this.ov.env.prefix, this.record.name).container, this.ov.env.facts.cgroupLayout === 'v2');
  }

  async usage(): Promise<Usage> {
    const out = await this.lxc.usage();
    const disk = await privateUsage(this.area);
    if (disk) out.diskUsedBytes = disk.usedBytes;
    return out;
  }

  async details(): Promise<Record<string, string>> {
    const disk = await privateUsage(this.area);
    const size = await privateBytes(this.area);
    return {
      'config file': this.confPath,
      'private area': `${this.area.image} (ext4 image${size !== undefined ? `, ${size} bytes` : ''})`,
      root: `${this.area.root} (${disk ? 'mounted' : 'not mounted'})`,
      ...(disk ? { 'disk space': `${disk.usedBytes} of ${disk.sizeBytes} bytes used`, 'disk inodes': `${disk.usedInodes} of ${disk.inodes} used` } : {}),
      venet: venetAddresses(this.record).map((a) => `${a}/32`).join(' ') || '(no addresses)',
      ...(this.record.config['openvz.netif'] !== undefined ? { veth: `${this.record.config['openvz.netif']} on ${this.record.nic.bridge} (${this.record.nic.ipv4}/${this.record.nic.prefixLength}, ${this.record.nic.mac})` } : {}),
    };
  }
}

/** Problems with a config for OpenVZ here: the LXC ones (memory, CPUs, swap accounting) and the private area's size. */
function validateOpenvz(config: InstanceConfig, env: DriverEnv): string[] {
  const problems = validateLxc(config, env.facts).map((p) => p.replace(/\bthe lxc backend\b/g, 'the openvz backend').replace(/\bon lxc\b/g, 'on openvz'));
  try {
    const r = resourcesOf(config);
    if (r.diskBytes !== undefined && r.diskBytes < PRIVATE_MIN_BYTES) problems.push(`limits.disk ${config['limits.disk']} is below the ${PRIVATE_MIN_BYTES / 1024 ** 2} MiB an ext4 private area needs`);
  } catch { /* validateLxc said it */ }
  const inodes = Number(config['limits.disk.inodes'] ?? '0');
  if (config['limits.disk.inodes'] !== undefined && inodes < 64) problems.push(`limits.disk.inodes ${config['limits.disk.inodes']} is below the 64 a root file system needs`);
  return problems;
}

const OPENVZ_TECHNOLOGY = { kernel: 'shared', memory: 'burstable', isolation: 'namespaces + cgroups (OpenVZ style: vSwap, image-backed private area, venet)' } as const;

/** The CRIU Hangar would need to checkpoint a CT: 3.17 (bookworm's) fails on kernels as new as 6.18 (vDSO bounds). */
export const CRIU_MIN = [4, 1] as const;

/** Why vzctl chkpnt/restore cannot work on a host, from `criu --version`'s output (null when criu is missing). */
export function checkpointVerdict(criuVersion: string | null, kernel: string): string {
  if (criuVersion === null) return `not available: CRIU is not installed (checkpoints need CRIU ${CRIU_MIN.join('.')} or newer on kernel ${kernel})`;
  const m = /Version:\s*(\d+)\.(\d+)/.exec(criuVersion);
  const v = m ? `${m[1]}.${m[2]}` : 'of unknown version';
  if (!m || Number(m[1]) < CRIU_MIN[0] || (Number(m[1]) === CRIU_MIN[0] && Number(m[2]) < CRIU_MIN[1])) {
    return `not available: CRIU ${v} cannot checkpoint on kernel ${kernel} (it needs CRIU ${CRIU_MIN.join('.')} or newer)`;
  }
  return `not available: Hangar does not drive CRIU ${v} yet`;
}

/** The OpenVZ driver on one host, from what was found there (tests build the parts directly). */
export function openvzOnHost(env: DriverEnv, lxc: LxcHost, probe: HostDriver['probe'], checkpoint = 'not probed'): HostDriver {
  const ov: OpenvzHost = { env, lxc, rootsDir: rootsDir(env.dataDir), confDir: posix.join(env.dataDir, 'openvz', 'conf') };
  return {
    driver: openvzDriver,
    probe,
    details: () => ({ 'lxc path': lxc.lxcPath, 'private areas': 'ext4 images on loop devices (ploop needs an OpenVZ kernel)', 'VE_ROOT': posix.join(ov.rootsDir, '<name>'), 'CTID.conf': posix.join(ov.confDir, '<CTID>.conf'), network: 'venet (routed /32 addresses, proxy ARP)', cgroups: env.facts.cgroupLayout, checkpoint }),
    technology: () => OPENVZ_TECHNOLOGY,
    validate: (config) => validateOpenvz(config, env),
    idmap: (config) => (config['security.privileged'] === 'true' ? 'none' : config['security.idmap.isolated'] === 'false' ? 'shared' : 'isolated'),
    load: (record) => new OpenvzInstance(record, ov),
  };
}

/** The OpenVZ backend (mainline kernel). */
export const openvzDriver: Driver = {
  name: 'openvz',
  type: 'container',
  features: { ...lxcDriver.features, liveCopy: false },
  technology: OPENVZ_TECHNOLOGY,
  keys: [...lxcDriver.keys, 'limits.disk.inodes', 'openvz.*'],
  storage: 'image',
  pidIsInit: true,
  async open(env) {
    const v = await lxcVersion(env.host);
    const lxc: LxcHost = { env, lxcPath: posix.join(env.dataDir, 'openvz', 'lxc'), lxcfsDir: null };
    let reason = v.reason;
    if (v.version !== null) {
      lxc.lxcfsDir = await ensureLxcfs(env.host, posix.join(env.dataDir, 'lxcfs'), env.runDir);
      // One fork for all four: which prints the ones it finds.
      const tools = ['mkfs.ext4', 'resize2fs', 'losetup', 'nsenter'];
      const found = (await env.host.exec(['which', ...tools], { allowFailure: true })).stdout.split('\n').map((l) => posix.basename(l.trim()));
      const missing = tools.find((t) => !found.includes(t));
      if (missing) reason = `${missing} is not installed (e2fsprogs, util-linux)`;
    }
    await env.host.fs.mkdir(lxc.lxcPath, { recursive: true, mode: 0o711 });
    const criu = await env.host.exec(['criu', '--version'], { allowFailure: true }).catch(() => ({ code: 127, stdout: '' }));
    const kernel = ((await env.host.fs.readTextIfExists('/proc/sys/kernel/osrelease')) ?? 'unknown').trim();
    const checkpoint = checkpointVerdict(criu.code === 0 ? criu.stdout : null, kernel);
    return openvzOnHost(env, lxc, { available: v.version !== null && reason === v.reason, version: v.version, reason }, checkpoint);
  },
};
