// Raw LXC subject: a busybox-template container cloned copy-on-write (lxc-copy -s -B overlay) and driven by lxc-* commands.
import { appendFileSync, chmodSync, existsSync, lchownSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { haveCommand, run, until, type Subject } from './util.js';

/** Where and how the raw-lxc subject works. */
export interface RawLxcOptions {
  /** Bench state directory, e.g. /var/lib/hangar-bench. */
  stateDir: string;
  /** Unprivileged (user namespace, like Hangar's and LXD's default) or privileged. */
  privileged: boolean;
}

const BRIDGE = 'hbnraw0';
const GATEWAY = '10.125.0.1';
const NAME_PREFIX = 'hbnraw-r';
const READY_MARK = '.hbn-bench-ready-v2';
// busybox init halts on SIGUSR1 (the template sets it); with udhcpc gone from rcS nothing blocks it.
const RCS = '#!/bin/sh\n# Hangar bench: no udhcpc (it flushes the static address and blocks halt)\n/bin/mount -a 2>/dev/null\nexit 0\n';

/** Reads root's first subordinate id range from /etc/subuid or /etc/subgid. */
function subRange(file: string): { start: number; count: number } {
  const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith('root:'));
  if (!line) throw new Error(`No root entry in ${file}: unprivileged containers need one (e.g. root:100000:65536)`);
  const [, start, count] = line.split(':');
  return { start: Number(start), count: Math.min(Number(count), 65536) };
}

/** Shifts ownership of a tree by (du, dg), not following symlinks. */
function shiftTree(path: string, du: number, dg: number): void {
  const st = lstatSync(path);
  lchownSync(path, st.uid + du, st.gid + dg);
  if (st.isDirectory()) for (const e of readdirSync(path)) shiftTree(join(path, e), du, dg);
}

/** The raw-lxc subject. */
export class RawLxc implements Subject {
  readonly id = 'raw-lxc';
  readonly label: string;
  private readonly lxcPath: string;
  private readonly base: string;
  private bridgeCreated = false;
  private readonly live = new Set<string>();

  constructor(private readonly opts: RawLxcOptions) {
    this.lxcPath = join(opts.stateDir, 'rawlxc');
    this.base = opts.privileged ? 'hbnraw-base' : 'hbnraw-ubase';
    this.label = `raw LXC (lxc-* CLI, ${opts.privileged ? 'privileged' : 'unprivileged'}, overlay clone)`;
  }

  private lxc(tool: string, ...args: string[]): string[] {
    return [tool, '-P', this.lxcPath, ...args];
  }

  async setup(): Promise<void> {
    for (const c of ['lxc-create', 'lxc-copy', 'lxc-start', 'lxc-attach', 'lxc-stop', 'lxc-destroy', 'ip']) {
      if (!haveCommand(c)) throw new Error(`${c} not found (apt-get install lxc)`);
    }
    if (!existsSync('/usr/share/lxc/templates/lxc-busybox')) throw new Error('lxc busybox template missing (apt-get install lxc-templates)');
    mkdirSync(this.lxcPath, { recursive: true });
    // Leftovers from an interrupted run.
    this.removeLeftovers();
    if (run(['ip', 'link', 'show', BRIDGE], { allowFail: true }).status !== 0) {
      run(['ip', 'link', 'add', BRIDGE, 'type', 'bridge']);
      this.bridgeCreated = true;
      run(['ip', 'addr', 'add', `${GATEWAY}/24`, 'dev', BRIDGE]);
      run(['ip', 'link', 'set', BRIDGE, 'up']);
    } else {
      // Ours from an interrupted run (the name is bench-specific): take it over so it is removed at the end.
      this.bridgeCreated = true;
    }
    this.ensureBase();
  }

  /** Builds the cached base container once: template rootfs, rcS without udhcpc, our bridge, optional id shift. */
  private ensureBase(): void {
    const dir = join(this.lxcPath, this.base);
    if (existsSync(join(dir, READY_MARK))) return;
    if (existsSync(dir)) {
      run(this.lxc('lxc-destroy', '-n', this.base), { allowFail: true });
      rmSync(dir, { recursive: true, force: true });
    }
    run(this.lxc('lxc-create', '-t', 'busybox', '-n', this.base));
    const rootfs = join(dir, 'rootfs');
    writeFileSync(join(rootfs, 'etc/init.d/rcS'), RCS, { mode: 0o755 });
    const cfgFile = join(dir, 'config');
    let cfg = readFileSync(cfgFile, 'utf8');
    // No AppArmor on this host; the template's lxcbr0 does not exist.
    cfg = cfg.replace(/^lxc\.apparmor\..*$/gm, '').replace(/^lxc\.net\.0\.link\s*=.*$/m, `lxc.net.0.link = ${BRIDGE}`);
    cfg += `lxc.net.0.ipv4.gateway = ${GATEWAY}\n`;
    if (!this.opts.privileged) {
      const u = subRange('/etc/subuid');
      const g = subRange('/etc/subgid');
      cfg += `lxc.idmap = u 0 ${u.start} ${u.count}\nlxc.idmap = g 0 ${g.start} ${g.count}\n`;
      shiftTree(rootfs, u.start, g.start);
      // lxc-create makes the directory 0770; the container's root (a mapped uid) must traverse it to the overlay lowerdir.
      chmodSync(dir, 0o755);
    }
    writeFileSync(cfgFile, cfg);
    writeFileSync(join(dir, READY_MARK), new Date().toISOString() + '\n');
  }

  name(round: number): string {
    return `${NAME_PREFIX}${round}`;
  }

  private attachOk(name: string): boolean {
    return run(this.lxc('lxc-attach', '-n', name, '--', 'true'), { allowFail: true }).status === 0;
  }

  async launch(name: string, round: number): Promise<void> {
    this.live.add(name);
    run(this.lxc('lxc-copy', '-n', this.base, '-N', name, '-s', '-B', 'overlay'));
    // A static address per clone, as Hangar assigns one (inside the timed window: it is part of a launch).
    appendFileSync(join(this.lxcPath, name, 'config'), `lxc.net.0.ipv4.address = 10.125.0.${10 + (round % 200)}/24\n`);
    run(this.lxc('lxc-start', '-n', name, '-d'));
    await until(`first lxc-attach into ${name}`, () => this.attachOk(name), 30_000, 1);
  }

  async exec(name: string): Promise<void> {
    run(this.lxc('lxc-attach', '-n', name, '--', 'true'));
  }

  async start(name: string): Promise<void> {
    run(this.lxc('lxc-start', '-n', name, '-d'));
    await until(`first lxc-attach into ${name}`, () => this.attachOk(name), 30_000, 1);
  }

  async stop(name: string, force: boolean): Promise<void> {
    run(this.lxc('lxc-stop', '-n', name, ...(force ? ['-k'] : ['-t', '30'])));
  }

  async remove(name: string): Promise<void> {
    run(this.lxc('lxc-destroy', '-n', name));
    this.live.delete(name);
  }

  private removeLeftovers(): void {
    if (!existsSync(this.lxcPath)) return;
    const names = new Set([...this.live, ...readdirSync(this.lxcPath).filter((n) => n.startsWith(NAME_PREFIX))]);
    for (const n of names) {
      run(this.lxc('lxc-stop', '-n', n, '-k'), { allowFail: true, timeoutMs: 30_000 });
      run(this.lxc('lxc-destroy', '-n', n), { allowFail: true, timeoutMs: 30_000 });
      rmSync(join(this.lxcPath, n), { recursive: true, force: true });
      this.live.delete(n);
    }
  }

  async cleanup(): Promise<void> {
    this.removeLeftovers();
    if (this.bridgeCreated) {
      run(['ip', 'link', 'del', BRIDGE], { allowFail: true });
      this.bridgeCreated = false;
    }
  }
}
