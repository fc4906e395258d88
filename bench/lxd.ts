// LXD subject: Debian's lxd started by hand with a private LXD_DIR, a preseeded dir pool and bridge, and an imported busybox image.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { haveCommand, pidAlive, run, until, waitPidExit, type Subject } from './util.js';

/** Where the LXD subject works. */
export interface LxdOptions {
  /** Bench state directory, e.g. /var/lib/hangar-bench. */
  stateDir: string;
  /** Install the lxd package with apt-get when it is missing. */
  install: boolean;
}

const BRIDGE = 'hbnlxd0';
const ALIAS = 'hbn-busybox';
const NAME_PREFIX = 'hbnlxd-r';

// Explicit subnet: `lxd init --auto` cannot find a free one here. raw.lxc makes busybox init's halt signal usable for graceful stops.
const PRESEED = `networks:
- name: ${BRIDGE}
  type: bridge
  config:
    ipv4.address: 10.126.0.1/24
    ipv4.nat: "true"
    ipv6.address: none
storage_pools:
- name: default
  driver: dir
profiles:
- name: default
  config:
    raw.lxc: "lxc.signal.halt=SIGUSR1"
  devices:
    root: {path: /, pool: default, type: disk}
    eth0: {name: eth0, network: ${BRIDGE}, type: nic}
`;

/** The LXD subject. */
export class Lxd implements Subject {
  readonly id = 'lxd';
  label = 'LXD (Debian lxd, dir pool)';
  private readonly lxdDir: string;
  private readonly confDir: string;
  private readonly cacheDir: string;
  private readonly env: NodeJS.ProcessEnv;
  private daemon: ChildProcess | null = null;
  private nftTableExisted = true;
  /** Set once setup has checked that no other LXD owns our bridge and directories. */
  private owned = false;
  private readonly live = new Set<string>();

  constructor(private readonly opts: LxdOptions) {
    this.lxdDir = join(opts.stateDir, 'lxd');
    this.confDir = join(opts.stateDir, 'lxd-conf');
    this.cacheDir = join(opts.stateDir, 'bench-cache');
    this.env = { ...process.env, LXD_DIR: this.lxdDir, LXD_CONF: this.confDir };
  }

  private lxc(...args: string[]): string[] {
    return ['lxc', ...args];
  }

  async setup(): Promise<void> {
    if (!haveCommand('lxd') || !haveCommand('lxc')) {
      if (!this.opts.install) throw new Error('lxd is not installed (run without --no-install to apt-get install it)');
      const r = run(['apt-get', 'install', '-y', 'lxd'], { allowFail: true, timeoutMs: 900_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
      if (r.status !== 0 || !haveCommand('lxd')) throw new Error(`apt-get install -y lxd failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`);
    }
    const version = run(['lxd', '--version'], { allowFail: true }).stdout.trim();
    this.label = `LXD ${version} (Debian lxd, dir pool)`;
    if (run(['ip', 'link', 'show', BRIDGE], { allowFail: true }).status === 0) {
      throw new Error(`${BRIDGE} already exists: another LXD (or an interrupted bench whose lxd still runs) owns it`);
    }
    this.nftTableExisted = run(['nft', 'list', 'table', 'inet', 'lxd'], { allowFail: true }).status === 0;
    this.owned = true;
    // A fresh LXD state each run: nothing of an interrupted run survives.
    rmSync(this.lxdDir, { recursive: true, force: true });
    rmSync(this.confDir, { recursive: true, force: true });
    mkdirSync(this.lxdDir, { recursive: true, mode: 0o711 });
    mkdirSync(this.confDir, { recursive: true });
    const log = openSync(join(this.lxdDir, 'lxd.out'), 'a');
    this.daemon = spawn('lxd', ['--group', 'root', '--logfile', join(this.lxdDir, 'lxd.log')], { env: this.env, detached: true, stdio: ['ignore', log, log] });
    closeSync(log);
    this.daemon.on('error', () => undefined);
    run(['lxd', 'waitready', '--timeout', '60'], { env: this.env, timeoutMs: 70_000 });
    run(['lxd', 'init', '--preseed'], { env: this.env, input: PRESEED });
    const { meta, rootfs } = this.ensureImageTarballs();
    run(this.lxc('image', 'import', meta, rootfs, '--alias', ALIAS), { env: this.env });
  }

  /** Builds (once, cached) a busybox rootfs tarball and its metadata tarball in LXD's split image format. */
  private ensureImageTarballs(): { meta: string; rootfs: string } {
    const meta = join(this.cacheDir, 'lxd-busybox-meta.tar.gz');
    const rootfs = join(this.cacheDir, 'lxd-busybox-rootfs.tar.gz');
    if (existsSync(meta) && existsSync(rootfs)) return { meta, rootfs };
    const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
    if (!busybox) throw new Error('busybox not found (apt-get install busybox-static)');
    const work = join(this.cacheDir, 'lxd-image-work');
    rmSync(work, { recursive: true, force: true });
    const root = join(work, 'rootfs');
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc/init.d', 'dev', 'proc', 'sys', 'tmp', 'root', 'run', 'var/run']) mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, 'bin/busybox'), readFileSync(busybox), { mode: 0o755 });
    const applets = run([join(root, 'bin/busybox'), '--list-full']).stdout.split('\n').filter(Boolean);
    for (const a of applets) if (!existsSync(join(root, a))) symlinkSync('/bin/busybox', join(root, a));
    if (!existsSync(join(root, 'sbin/init'))) symlinkSync('/bin/busybox', join(root, 'sbin/init'));
    writeFileSync(join(root, 'etc/inittab'), '::sysinit:/etc/init.d/rcS\n');
    writeFileSync(join(root, 'etc/init.d/rcS'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
    writeFileSync(join(root, 'etc/hostname'), 'busybox\n');
    chmodSync(join(root, 'tmp'), 0o1777);
    writeFileSync(
      join(work, 'metadata.yaml'),
      `architecture: x86_64\ncreation_date: ${Math.floor(Date.now() / 1000)}\nproperties:\n  description: Hangar bench busybox\n  os: busybox\n  release: "1"\n`,
    );
    mkdirSync(this.cacheDir, { recursive: true });
    run(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', root, '-czf', `${rootfs}.tmp`, '.']);
    run(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', work, '-czf', `${meta}.tmp`, 'metadata.yaml']);
    run(['mv', `${rootfs}.tmp`, rootfs]);
    run(['mv', `${meta}.tmp`, meta]);
    rmSync(work, { recursive: true, force: true });
    return { meta, rootfs };
  }

  name(round: number): string {
    return `${NAME_PREFIX}${round}`;
  }

  private execOk(name: string): boolean {
    return run(this.lxc('exec', name, '--', 'true'), { env: this.env, allowFail: true }).status === 0;
  }

  async launch(name: string): Promise<void> {
    this.live.add(name);
    run(this.lxc('launch', ALIAS, name), { env: this.env });
    await until(`first lxc exec into ${name}`, () => this.execOk(name), 30_000, 1);
  }

  async exec(name: string): Promise<void> {
    run(this.lxc('exec', name, '--', 'true'), { env: this.env });
  }

  async start(name: string): Promise<void> {
    run(this.lxc('start', name), { env: this.env });
    await until(`first lxc exec into ${name}`, () => this.execOk(name), 30_000, 1);
  }

  async stop(name: string, force: boolean): Promise<void> {
    run(this.lxc('stop', name, ...(force ? ['--force'] : ['--timeout', '30'])), { env: this.env });
  }

  async remove(name: string): Promise<void> {
    run(this.lxc('delete', name), { env: this.env });
    this.live.delete(name);
  }

  async cleanup(): Promise<void> {
    const d = this.daemon;
    if (d?.pid !== undefined && pidAlive(d.pid)) {
      for (const n of this.live) run(this.lxc('delete', '--force', n), { env: this.env, allowFail: true, timeoutMs: 60_000 });
      this.live.clear();
      // `lxd shutdown` stops instances, dnsmasq and the bridge; signals only if it does not finish.
      run(['lxd', 'shutdown', '--timeout', '30'], { env: this.env, allowFail: true, timeoutMs: 40_000 });
      if (!(await waitPidExit(d.pid, 10_000))) {
        process.kill(d.pid, 'SIGTERM');
        if (!(await waitPidExit(d.pid, 10_000))) process.kill(d.pid, 'SIGKILL');
      }
    }
    this.daemon = null;
    if (!this.owned) return;
    if (run(['ip', 'link', 'show', BRIDGE], { allowFail: true }).status === 0) run(['ip', 'link', 'del', BRIDGE], { allowFail: true });
    if (!this.nftTableExisted) {
      run(['nft', 'delete', 'table', 'inet', 'lxd'], { allowFail: true });
      this.nftTableExisted = true;
    }
    for (const d2 of [this.lxdDir, this.confDir]) {
      if (run(['sh', '-c', 'grep -q " $0" /proc/self/mountinfo', d2], { allowFail: true }).status === 0) continue; // never rm -rf through a mount
      rmSync(d2, { recursive: true, force: true });
    }
  }
}
