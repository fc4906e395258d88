// VM benchmark subjects: Hangar (API client), raw QEMU with Hangar's own argv, and a hand-started libvirtd (QEMU driver only).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { HangarClient } from '../src/client/client.js';
import { LocalHost } from '../src/host/local.js';
import { QmpClient } from '../src/drivers/qemu/qmp/client.js';
import { BenchDaemon, type BenchDaemonOptions } from './bench-daemon.js';
import { msSince, pidAlive, run, sleep, until, waitPidExit } from './util.js';

/** The line the busybox VM prints on its serial console once booted. */
export const MARKER = 'HANGAR-READY';
/** Bench-owned bridge for the raw QEMU and libvirt guests (never Hangar's). */
export const BENCH_BRIDGE = 'hbvbr0';
/** Subnet (first three octets) of the bench bridge; the gateway is .1. */
export const BENCH_NET = '10.126.77';
const HANGAR_IMAGE = 'busybox';

/** Result of an asynchronous command. */
interface AsyncResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs argv without blocking the event loop; throws on a non-zero exit unless allowFail. */
export function runAsync(argv: string[], opts: { env?: NodeJS.ProcessEnv; allowFail?: boolean } = {}): Promise<AsyncResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) return reject(new Error('runAsync: empty argv'));
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0 && !opts.allowFail) reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr.trim() || stdout.trim()}`));
      else resolve({ code, stdout, stderr });
    });
  });
}

/** Current size of a file, 0 when it does not exist (the offset to search a marker from). */
export function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/**
 * Polls a serial log every ~1 ms from byte offset `from` until `HANGAR-READY <name>` ends a line; resolves then.
 * `abort` rejects early (e.g. the operation that should boot the guest failed).
 */
export async function waitMarker(file: string, name: string, from: number, timeoutMs = 60_000, abort?: Promise<unknown>): Promise<void> {
  const re = new RegExp(`${MARKER} ${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\r?\\n`);
  let failed: unknown = null;
  abort?.catch((e: unknown) => (failed = e ?? new Error('aborted')));
  const deadline = Date.now() + timeoutMs;
  let fd: number | null = null;
  let pos = from;
  let text = '';
  const buf = Buffer.alloc(64 * 1024);
  try {
    for (;;) {
      if (failed) throw failed instanceof Error ? failed : new Error(String(failed));
      if (fd === null) {
        try {
          fd = openSync(file, 'r');
        } catch {
          /* not created yet */
        }
      }
      if (fd !== null) {
        const size = fstatSync(fd).size;
        if (size < pos) pos = 0; // truncated / recreated
        while (pos < size) {
          const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
          if (n <= 0) break;
          pos += n;
          text = (text + buf.toString('latin1', 0, n)).slice(-8192);
        }
        if (re.test(text)) return;
      }
      if (Date.now() > deadline) throw new Error(`no "${MARKER} ${name}" in ${file} within ${timeoutMs} ms; tail: ${JSON.stringify(text.slice(-300))}`);
      await sleep(1);
    }
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

/** Polls a pid every ~1 ms until it is gone (or a zombie); throws after timeoutMs. */
export async function waitGone(pid: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pidAlive(pid)) {
    if (Date.now() > deadline) throw new Error(`pid ${pid} still alive after ${timeoutMs} ms`);
    await sleep(1);
  }
}

/** The pid in a pidfile when that process is alive and its cmdline contains `mustContain`; else null. */
function livePidFrom(file: string, mustContain: string): number | null {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1 || !pidAlive(pid)) return null;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(mustContain) ? pid : null;
  } catch {
    return null;
  }
}

/** The argv of a running process. */
function cmdlineOf(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
}

/** The QEMU process whose -name is guest=<name> (libvirt's guests), or null. */
function qemuPidByGuest(name: string): number | null {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.startsWith(`guest=${name},`)) && argv.some((a) => a.includes('qemu-system'))) return Number(d);
    } catch {
      /* gone */
    }
  }
  return null;
}

function linkExists(ifname: string): boolean {
  return existsSync(`/sys/class/net/${ifname}`);
}

/** Creates the bench bridge (once) with a gateway address; traffic stays inside it (no NAT, no forwarding rules). */
export function ensureBenchBridge(): boolean {
  if (linkExists(BENCH_BRIDGE)) return false;
  run(['ip', 'link', 'add', BENCH_BRIDGE, 'type', 'bridge']);
  run(['ip', 'addr', 'add', `${BENCH_NET}.1/24`, 'dev', BENCH_BRIDGE]);
  run(['ip', 'link', 'set', BENCH_BRIDGE, 'up']);
  return true;
}

export function removeBenchBridge(): void {
  if (linkExists(BENCH_BRIDGE)) run(['ip', 'link', 'del', BENCH_BRIDGE], { allowFail: true });
}

/** What the raw and libvirt subjects copy from Hangar's VM: its argv and the values inside it. */
export interface VmTemplate {
  argv: string[];
  hangarName: string;
  instanceDir: string;
  rootDisk: string;
  tap: string;
  kernel: string;
  initrd: string | null;
  cmdline: string;
  /** Backing image disk of the root overlay. */
  imageDisk: string;
  machine: string;
  accel: string;
  cpu: string;
  memoryMiB: number;
  cpus: number;
}

function argAfter(argv: string[], flag: string): string | null {
  const i = argv.indexOf(flag);
  return i >= 0 ? (argv[i + 1] ?? null) : null;
}

/** Parses the argv Hangar rendered (read from /proc) into a template. */
export function parseTemplate(argv: string[], hangarName: string, instanceDir: string): VmTemplate {
  const need = (flag: string): string => {
    const v = argAfter(argv, flag);
    if (v === null) throw new Error(`Hangar's QEMU argv has no ${flag}`);
    return v;
  };
  const rootArg = argv.find((a) => a.includes('node-name=root-file,'));
  const rootDisk = /filename=((?:[^,]|,,)+)/.exec(rootArg ?? '')?.[1]?.replaceAll(',,', ',');
  if (!rootDisk) throw new Error("Hangar's QEMU argv has no root disk (node-name=root-file)");
  const tap = /ifname=((?:[^,]|,,)+)/.exec(argv.find((a) => a.startsWith('tap,')) ?? '')?.[1];
  if (!tap) throw new Error("Hangar's QEMU argv has no tap netdev");
  const kernel = need('-kernel');
  const mem = /^(\d+)M$/.exec(need('-m'));
  if (!mem) throw new Error(`unexpected -m ${need('-m')}`);
  const info = JSON.parse(run(['qemu-img', 'info', '--output=json', '-U', rootDisk]).stdout) as { 'full-backing-filename'?: string; 'backing-filename'?: string };
  const imageDisk = info['full-backing-filename'] ?? info['backing-filename'] ?? join(dirname(kernel), 'disk.qcow2');
  return {
    argv,
    hangarName,
    instanceDir,
    rootDisk,
    tap,
    kernel,
    initrd: argAfter(argv, '-initrd'),
    cmdline: argAfter(argv, '-append') ?? '',
    imageDisk,
    machine: need('-machine').split(',')[0] as string,
    accel: need('-accel'),
    cpu: need('-cpu'),
    memoryMiB: Number(mem[1]),
    cpus: Number(/cpus=(\d+)/.exec(need('-smp'))?.[1] ?? '1'),
  };
}

/** The guest kernel command line with another identity and address (on the bench bridge). */
function rewriteCmdline(cmdline: string, name: string, ipLast: number): string {
  return cmdline
    .replace(/hangar\.hostname=\S+/, `hangar.hostname=${name}`)
    .replace(/hangar\.ip=\S+/, `hangar.ip=${BENCH_NET}.${ipLast}/24`)
    .replace(/hangar\.gw=\S+/, `hangar.gw=${BENCH_NET}.1`);
}

const mac = (kind: number, r: number): string => `52:54:00:7e:${kind.toString(16).padStart(2, '0')}:${(r % 256).toString(16).padStart(2, '0')}`;

// ---------------------------------------------------------------------------------------------------------------------
// Hangar

/** Where the Hangar subject works. */
export type HangarVmOptions = BenchDaemonOptions;

/** Hangar through its in-process API client, with a bench-started hangard when none answers on the socket. */
export class HangarVms {
  label = 'Hangar (API client, in-process)';
  private client: HangarClient | null = null;
  private readonly daemon: BenchDaemon;
  private readonly live = new Set<string>();
  imageInfo = '';

  constructor(private readonly opts: HangarVmOptions) {
    this.daemon = new BenchDaemon(opts);
  }

  private get api(): HangarClient {
    if (!this.client) throw new Error('Hangar subject not set up');
    return this.client;
  }

  instanceDir(name: string): string {
    return join(this.opts.daemonEnv.HANGAR_DIR ?? '/var/lib/hangar', 'instances', name);
  }

  async setup(): Promise<void> {
    await this.daemon.ensure();
    this.client = new HangarClient({ socketPath: this.opts.socket });
    const info = await this.api.serverInfo();
    this.label = `Hangar ${info.serverVersion} (API client, in-process${this.daemon.started ? ', bench-started hangard' : ''})`;
    let img = (await this.api.listImages()).find((i) => i.type === 'vm' && i.alias === HANGAR_IMAGE);
    if (!img) {
      console.error('hangar: building the busybox VM image (once)');
      await this.api.waitOperation(await this.api.buildImage({ kind: 'busybox', vm: true }));
      img = (await this.api.listImages()).find((i) => i.type === 'vm' && i.alias === HANGAR_IMAGE);
      if (!img) throw new Error('hangard has no busybox VM image even after building it');
    }
    this.imageInfo = `${img.description} (fingerprint ${img.fingerprint.slice(0, 12)})`;
    for (const i of await this.api.listInstances()) if (i.name.startsWith('hbnvm-')) await this.remove(i.name).catch(() => undefined);
  }

  /** Create + start through the API; resolves at the marker on the serial log. */
  async launch(name: string): Promise<void> {
    this.live.add(name);
    const log = join(this.instanceDir(name), 'console.log');
    const op = this.api.createInstance({ name, image: HANGAR_IMAGE, type: 'vm', start: true }).then((o) => this.api.waitOperation(o));
    await waitMarker(log, name, 0, 60_000, op);
    await op;
  }

  async start(name: string): Promise<void> {
    const log = join(this.instanceDir(name), 'console.log');
    const from = sizeOf(log);
    const op = this.api.changeState(name, { action: 'start' }).then((o) => this.api.waitOperation(o));
    await waitMarker(log, name, from, 60_000, op);
    await op;
  }

  async stop(name: string, force: boolean): Promise<void> {
    await this.api.waitOperation(await this.api.changeState(name, { action: 'stop', force, ...(force ? {} : { timeout: 60 }) }));
  }

  async remove(name: string): Promise<void> {
    await this.api.waitOperation(await this.api.deleteInstance(name, { force: true }));
    this.live.delete(name);
  }

  /** The argv of the running QEMU of name, from /proc. */
  qemuArgv(name: string): string[] {
    const pid = livePidFrom(join(this.instanceDir(name), 'qemu.pid'), `guest=${name},`);
    if (pid === null) throw new Error(`no live QEMU for Hangar VM ${name}`);
    return cmdlineOf(pid);
  }

  async cleanup(): Promise<void> {
    if (this.client) {
      for (const n of [...this.live]) await this.remove(n).catch((e: unknown) => console.error(`cleanup: could not delete ${n}: ${String(e)}`));
      this.client.close();
      this.client = null;
    }
    await this.daemon.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Raw QEMU

/** Raw QEMU: Hangar's argv with its per-instance paths, tap, name, MAC and guest address rewritten. */
export class RawQemu {
  readonly label = `raw QEMU (${run(['qemu-system-x86_64', '--version']).stdout.split('\n')[0]?.replace(/^QEMU emulator version /, '') ?? '?'}, Hangar's argv, -daemonize)`;
  private readonly live = new Map<string, { dir: string; tap: string; argv: string[] }>();

  constructor(private readonly baseDir: string, private readonly tpl: VmTemplate) {}

  private dir(name: string): string {
    return join(this.baseDir, name);
  }

  /** Prepares name's directory, overlay and tap (untimed); answers the rewritten argv. */
  prepare(name: string, r: number): string[] {
    const dir = this.dir(name);
    const tap = `hbvr${r}`;
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const disk = join(dir, 'root.qcow2');
    run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', this.tpl.imageDisk, disk]);
    if (linkExists(tap)) run(['ip', 'link', 'del', tap], { allowFail: true });
    run(['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    run(['ip', 'link', 'set', 'dev', tap, 'master', BENCH_BRIDGE, 'up']);
    const t = this.tpl;
    const argv = t.argv.map((a, i) => {
      if (t.argv[i - 1] === '-append') return rewriteCmdline(a, name, 100 + r);
      return a
        .replaceAll(t.rootDisk.replaceAll(',', ',,'), disk.replaceAll(',', ',,'))
        .replaceAll(t.instanceDir, dir)
        .replace(`ifname=${t.tap},`, `ifname=${tap},`)
        .replace(`guest=${t.hangarName},`, `guest=${name},`)
        .replace(/mac=[0-9a-f:]{17}/i, `mac=${mac(1, r)}`);
    });
    const left = argv.filter((a) => a.includes(t.hangarName) || a.includes(t.tap));
    if (left.length) throw new Error(`raw argv still names the Hangar VM: ${left.join(' ')}`);
    this.live.set(name, { dir, tap, argv });
    return argv;
  }

  /** Spawns QEMU (it daemonizes) and resolves at the marker; `from` = log offset. */
  async boot(name: string): Promise<void> {
    const v = this.live.get(name);
    if (!v) throw new Error(`raw VM ${name} not prepared`);
    const log = join(v.dir, 'console.log');
    const from = sizeOf(log);
    for (const f of ['qmp.sock', 'console.sock', 'qga.sock', 'vnc.sock', 'qemu.pid']) rmSync(join(v.dir, f), { force: true });
    const spawned = runAsync(v.argv);
    await waitMarker(log, name, from, 60_000, spawned);
    await spawned;
  }

  pid(name: string): number {
    const v = this.live.get(name);
    const pid = v ? livePidFrom(join(v.dir, 'qemu.pid'), `guest=${name},`) : null;
    if (pid === null) throw new Error(`raw VM ${name} is not running`);
    return pid;
  }

  qmpPath(name: string): string {
    return join(this.dir(name), 'qmp.sock');
  }

  /** ACPI power button (graceful) or quit (force) over a QMP connection opened beforehand; resolves when QEMU is gone. */
  async stop(name: string, force: boolean): Promise<number> {
    const pid = this.pid(name);
    const qmp = await QmpClient.connect(new LocalHost(), this.qmpPath(name), { retryForMs: 5000 });
    try {
      const t0 = process.hrtime.bigint();
      if (force) await qmp.quit({ timeoutMs: 5000 });
      else await qmp.systemPowerdown();
      await waitGone(pid, 60_000);
      return msSince(t0);
    } finally {
      await qmp.close().catch(() => undefined);
    }
  }

  /** n query-status round trips through Hangar's QmpClient and through a bare socket; ms each. */
  async qmpLatency(name: string, n: number): Promise<{ client: number[]; bare: number[] }> {
    const out = { client: [] as number[], bare: [] as number[] };
    const qmp = await QmpClient.connect(new LocalHost(), this.qmpPath(name), { retryForMs: 5000 });
    try {
      for (let i = 0; i < 5; i++) await qmp.queryStatus();
      for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint();
        await qmp.queryStatus();
        out.client.push(msSince(t0));
      }
    } finally {
      await qmp.close().catch(() => undefined);
    }
    out.bare = await bareQmp(this.qmpPath(name), n);
    return out;
  }

  async remove(name: string): Promise<void> {
    const v = this.live.get(name);
    if (!v) return;
    const pid = livePidFrom(join(v.dir, 'qemu.pid'), `guest=${name},`);
    if (pid !== null) {
      process.kill(pid, 'SIGKILL');
      await waitGone(pid, 10_000).catch(() => undefined);
    }
    if (linkExists(v.tap)) run(['ip', 'link', 'del', v.tap], { allowFail: true });
    rmSync(v.dir, { recursive: true, force: true });
    this.live.delete(name);
  }

  async cleanup(): Promise<void> {
    for (const n of [...this.live.keys()]) await this.remove(n).catch((e: unknown) => console.error(`cleanup raw ${n}: ${String(e)}`));
  }
}

/** A minimal QMP peer on a plain socket: greeting, qmp_capabilities, then n query-status round trips (ms each). */
function bareQmp(path: string, n: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    const times: number[] = [];
    let buf = '';
    let phase = 0; // 0 greeting, 1 capabilities, 2 samples (5 warm-up first)
    let t0 = process.hrtime.bigint();
    let done = 0;
    const send = (cmd: string): void => {
      t0 = process.hrtime.bigint();
      sock.write(`{"execute":"${cmd}"}\n`);
    };
    sock.setEncoding('utf8');
    sock.on('error', reject);
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('event' in msg) continue;
        if (phase === 0 && 'QMP' in msg) {
          phase = 1;
          send('qmp_capabilities');
        } else if (phase === 1 && 'return' in msg) {
          phase = 2;
          send('query-status');
        } else if (phase === 2 && ('return' in msg || 'error' in msg)) {
          const ms = msSince(t0);
          if (done++ >= 5) times.push(ms);
          if (times.length >= n) {
            sock.end();
            resolve(times);
          } else send('query-status');
        }
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// libvirt

const LIBVIRT_DRIVERS = '/usr/lib/x86_64-linux-gnu/libvirt/connection-driver';

/** libvirt 9 (Debian), libvirtd started by hand in a private mount namespace with only the QEMU driver module. */
export class Libvirt {
  label = 'libvirt (virsh create, transient domain)';
  private launcher: ChildProcess | null = null;
  private daemonPid: number | null = null;
  private readonly live = new Map<string, { dir: string }>();
  private readonly uri: string;
  installed = false;

  constructor(private readonly baseDir: string, private readonly tpl: VmTemplate, private readonly install: boolean) {
    this.uri = `qemu:///system?socket=${join(baseDir, 'sock', 'libvirt-sock')}`;
  }

  private virsh(args: string[], allowFail = false): Promise<AsyncResult> {
    return runAsync(['virsh', '-q', '-c', this.uri, ...args], { allowFail });
  }

  async setup(): Promise<void> {
    const have = (): boolean => existsSync('/usr/sbin/libvirtd') && existsSync('/usr/bin/virsh') && existsSync(join(LIBVIRT_DRIVERS, 'libvirt_driver_qemu.so'));
    if (!have()) {
      if (!this.install) throw new Error('libvirt is not installed (and --no-install was given)');
      console.error('libvirt: installing libvirt-daemon-system libvirt-clients');
      run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'libvirt-daemon-system', 'libvirt-clients'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 900_000 });
      this.installed = true;
      if (!have()) throw new Error('libvirt still missing after apt-get install');
    }
    // libvirt's QEMU driver refuses to start without this user (created by libvirt-daemon-system's postinst).
    if (run(['id', 'libvirt-qemu'], { allowFail: true }).status !== 0) throw new Error('no libvirt-qemu user (libvirt-daemon-system postinst did not run?)');
    const b = this.baseDir;
    for (const d of ['etc', 'lib', 'cache', 'log', 'sock', 'drivers', 'domains']) mkdirSync(join(b, d), { recursive: true });
    writeFileSync(
      join(b, 'etc', 'libvirtd.conf'),
      [`unix_sock_dir = "${join(b, 'sock')}"`, 'unix_sock_rw_perms = "0700"', 'unix_sock_ro_perms = "0700"', 'auth_unix_rw = "none"', 'auth_unix_ro = "none"', 'log_outputs = "3:stderr"', ''].join('\n'),
    );
    writeFileSync(join(b, 'etc', 'qemu.conf'), ['user = "root"', 'group = "root"', 'security_driver = "none"', 'stdio_handler = "file"', ''].join('\n'));
    const link = join(b, 'drivers', 'libvirt_driver_qemu.so');
    if (!existsSync(link)) symlinkSync(join(LIBVIRT_DRIVERS, 'libvirt_driver_qemu.so'), link);
    for (const f of readdirSync(join(b, 'sock'))) rmSync(join(b, 'sock', f), { force: true });
    const log = openSync(join(b, 'libvirtd.log'), 'w');
    // Own /run (tmpfs), /etc/libvirt, /var/{lib,cache,log}/libvirt inside a private mount namespace; only the QEMU driver is loadable.
    const script = [
      'set -e',
      'mount -t tmpfs -o mode=0755 hbvrun /run',
      `mount --bind ${join(b, 'etc')} /etc/libvirt`,
      `mount --bind ${join(b, 'lib')} /var/lib/libvirt`,
      `mount --bind ${join(b, 'cache')} /var/cache/libvirt`,
      `mount --bind ${join(b, 'log')} /var/log/libvirt`,
      `exec libvirtd --pid-file ${join(b, 'libvirtd.pid')}`,
    ].join('\n');
    this.launcher = spawn('unshare', ['-m', '--propagation', 'private', '--', 'sh', '-c', script], {
      env: { ...process.env, LIBVIRT_DRIVER_DIR: join(b, 'drivers') },
      detached: true,
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    this.launcher.on('error', () => undefined);
    this.daemonPid = this.launcher.pid ?? null;
    const pid = this.daemonPid;
    await until(
      `libvirtd socket (log: ${join(b, 'libvirtd.log')})`,
      () => {
        if (pid === null || !pidAlive(pid)) throw new Error(`libvirtd exited early: ${readFileSync(join(b, 'libvirtd.log'), 'utf8').trim().split('\n').slice(-3).join(' | ')}`);
        return existsSync(join(b, 'sock', 'libvirt-sock'));
      },
      60_000,
      50,
    );
    // The first connection waits for the QEMU capabilities probe (cached in <baseDir>/cache across runs).
    const v = await this.virsh(['version']);
    const hyp = /Running hypervisor: (.*)/.exec(v.stdout)?.[1] ?? '?';
    const lib = /Using library: libvirt (.*)/.exec(v.stdout)?.[1] ?? '?';
    this.label = `libvirt ${lib} (libvirtd by hand, QEMU driver only, ${hyp}; \`virsh create\` of a transient domain)`;
    for (const line of (await this.virsh(['list', '--name'], true)).stdout.split('\n')) {
      const n = line.trim();
      if (n.startsWith('hbvlv-')) await this.virsh(['destroy', n], true);
    }
  }

  /** Writes name's domain XML, overlay and directory (untimed). */
  prepare(name: string, r: number): string {
    const dir = join(this.baseDir, 'domains', name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const disk = join(dir, 'root.qcow2');
    run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', this.tpl.imageDisk, disk]);
    const t = this.tpl;
    const x = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;');
    const xml = `<domain type='${t.accel === 'kvm' ? 'kvm' : 'qemu'}'>
  <name>${name}</name>
  <memory unit='MiB'>${t.memoryMiB}</memory>
  <vcpu>${t.cpus}</vcpu>
  <os>
    <type arch='x86_64' machine='${x(t.machine)}'>hvm</type>
    <kernel>${x(t.kernel)}</kernel>
    ${t.initrd ? `<initrd>${x(t.initrd)}</initrd>` : ''}
    <cmdline>${x(rewriteCmdline(t.cmdline, name, 200 + r))}</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>${x(t.cpu)}</model></cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='${x(disk)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <interface type='bridge'>
      <source bridge='${BENCH_BRIDGE}'/>
      <target dev='hbvl${r}'/>
      <mac address='${mac(2, r)}'/>
      <model type='virtio'/>
    </interface>
    <serial type='unix'>
      <source mode='bind' path='${x(join(dir, 'console.sock'))}'/>
      <log file='${x(join(dir, 'console.log'))}' append='on'/>
      <target port='0'/>
    </serial>
    <console type='unix'>
      <source mode='bind' path='${x(join(dir, 'console.sock'))}'/>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <source mode='bind' path='${x(join(dir, 'qga.sock'))}'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <graphics type='vnc' socket='${x(join(dir, 'vnc.sock'))}'/>
    <video><model type='vga'/></video>
    <memballoon model='virtio' autodeflate='on' freePageReporting='on'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <panic model='isa'/>
  </devices>
</domain>
`;
    writeFileSync(join(dir, 'domain.xml'), xml);
    this.live.set(name, { dir });
    return xml;
  }

  /** `virsh create` and wait for the marker. */
  async boot(name: string): Promise<void> {
    const v = this.live.get(name);
    if (!v) throw new Error(`libvirt domain ${name} not prepared`);
    const log = join(v.dir, 'console.log');
    const from = sizeOf(log);
    const created = this.virsh(['create', join(v.dir, 'domain.xml')]);
    await waitMarker(log, name, from, 60_000, created);
    await created;
  }

  /** The QEMU argv libvirt ran for name (for the report). */
  qemuArgv(name: string): string[] | null {
    const pid = qemuPidByGuest(name);
    return pid === null ? null : cmdlineOf(pid);
  }

  /** `virsh shutdown` (ACPI) until QEMU is gone, or `virsh destroy` (returns once libvirt cleaned up). */
  async stop(name: string, force: boolean): Promise<number> {
    const pid = qemuPidByGuest(name);
    if (pid === null) throw new Error(`libvirt domain ${name} has no QEMU`);
    const t0 = process.hrtime.bigint();
    if (force) {
      await this.virsh(['destroy', name]);
    } else {
      await this.virsh(['shutdown', '--mode', 'acpi', name]);
      await waitGone(pid, 60_000).catch((e: unknown) => {
        const log = join(this.live.get(name)?.dir ?? '', 'console.log');
        throw new Error(`${String(e)}; console tail: ${JSON.stringify(existsSync(log) ? readFileSync(log, 'latin1').slice(-400) : '')}`);
      });
      // Stopped for libvirt only once it has reaped QEMU and dropped the transient domain (until then `virsh create` refuses the name).
      await until(`libvirt to drop domain ${name}`, async () => (await this.virsh(['domstate', name], true)).code !== 0, 30_000, 1);
    }
    return msSince(t0);
  }

  async remove(name: string): Promise<void> {
    const v = this.live.get(name);
    if (!v) return;
    if (qemuPidByGuest(name) !== null) await this.virsh(['destroy', name], true);
    rmSync(v.dir, { recursive: true, force: true });
    this.live.delete(name);
  }

  async cleanup(): Promise<void> {
    for (const n of [...this.live.keys()]) await this.remove(n).catch((e: unknown) => console.error(`cleanup libvirt ${n}: ${String(e)}`));
    const pid = this.daemonPid;
    this.daemonPid = null;
    this.launcher = null;
    if (pid !== null && pidAlive(pid)) {
      // Only the libvirtd we exec'd (the pid of our unshare launcher).
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('libvirtd')) {
        process.kill(pid, 'SIGTERM');
        if (!(await waitPidExit(pid, 15_000))) process.kill(pid, 'SIGKILL');
      }
    }
    for (let r = 0; r < 100; r++) if (linkExists(`hbvl${r}`)) run(['ip', 'link', 'del', `hbvl${r}`], { allowFail: true });
  }
}
