// Xen benchmark subjects: Hangar (API client, a remote Dom0 host) and `xl create` typed by hand over one persistent SSH session to the same Dom0.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { cpSync, existsSync, readdirSync } from 'node:fs';
import { join, posix } from 'node:path';
import { randomUUID } from 'node:crypto';
import { HangarClient, type EventStream } from '../src/client/client.js';
import type { HangarEvent } from '../src/shared/schemas.js';
import { shellQuote, type XenHost } from '../test/helpers/xen-host.js';
import { BenchDaemon, type BenchDaemonOptions } from './bench-daemon.js';
import { msSince, sleep } from './util.js';

/** The line the busybox VM prints on its console once booted (VM_READY_MARKER + hostname). */
export const MARKER = 'HANGAR-READY';
/** Pause between two looks at the console log, for both subjects. */
export const POLL_MS = 50;
const HANGAR_IMAGE = 'busybox';
/** Bound for create → marker (nested TCG is slow, but not this slow). */
const BOOT_TIMEOUT_MS = 300_000;

/** `HANGAR-READY <name>` ending a line. */
function markerRe(name: string): RegExp {
  return new RegExp(`${MARKER} ${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\r?\\n`);
}

/** One timed create → marker: the total and named points in between (ms since the request), in the order reached. */
export interface BootTiming {
  total: number;
  /** Point name → ms since the start of the clock. */
  marks: Map<string, number>;
}

// ---------------------------------------------------------------------------------------------------------------------
// Hangar

/** Where the Hangar subject works, and the Dom0 host it adds. */
export interface HangarXenOptions extends BenchDaemonOptions {
  /** Hangar's name of the Xen host. */
  hostName: string;
  /** A daemon cache to seed our empty one from (the Debian kernel package the VM image is built with), or null. */
  seedCacheFrom: string | null;
}

/** Hangar through its in-process API client, with a bench-started hangard (HANGAR_DRIVERS with xen) and the Dom0 as a remote host. */
export class HangarXen {
  label = 'Hangar (API client, in-process)';
  imageInfo = '';
  imageFingerprint = '';
  private client: HangarClient | null = null;
  private readonly daemon: BenchDaemon;
  private readonly live = new Set<string>();
  private events: EventStream | null = null;
  private hostAdded = false;
  // Events of the launch being timed, with when they arrived.
  private watching: { name: string; seen: { ev: HangarEvent; at: bigint }[] } | null = null;

  constructor(private readonly opts: HangarXenOptions) {
    this.daemon = new BenchDaemon(opts);
  }

  private get api(): HangarClient {
    if (!this.client) throw new Error('Hangar subject not set up');
    return this.client;
  }

  /** The daemon's state directory (also the Dom0's: a remote host keeps its state under the same path). */
  get dir(): string {
    return this.opts.daemonEnv.HANGAR_DIR ?? '/var/lib/hangar';
  }

  /** Where an instance's directory is on the Dom0. */
  instanceDir(name: string): string {
    return posix.join(this.dir, 'instances', name);
  }

  /** Where the Dom0's copy of the image lives (the remote host's directory pool). */
  remoteImageDir(): string {
    return posix.join(this.dir, 'hosts', this.opts.hostName, 'pool', 'images', this.imageFingerprint);
  }

  /** The local image directory (kernel, initrd, qcow2 disk). */
  localImageDir(): string {
    return join(this.dir, 'pool', 'images', this.imageFingerprint);
  }

  async setup(): Promise<void> {
    this.seedCache();
    await this.daemon.ensure();
    this.client = new HangarClient({ socketPath: this.opts.socket });
    const info = await this.api.serverInfo();
    this.label = `Hangar ${info.serverVersion} (API client, in-process${this.daemon.started ? ', bench-started hangard' : ''}; Dom0 added with \`host add --bridge\`)`;
    let img = (await this.api.listImages()).find((i) => i.type === 'vm' && i.alias === HANGAR_IMAGE);
    if (!img) {
      console.error('hangar: building the busybox VM image (once)');
      await this.api.waitOperation(await this.api.buildImage({ kind: 'busybox', vm: true }));
      img = (await this.api.listImages()).find((i) => i.type === 'vm' && i.alias === HANGAR_IMAGE);
      if (!img) throw new Error('hangard has no busybox VM image even after building it');
    }
    this.imageInfo = `${img.description} (fingerprint ${img.fingerprint.slice(0, 12)})`;
    this.imageFingerprint = img.fingerprint;
    // Leftovers of an interrupted run: its instances, then its host (a new Dom0 has another port and key).
    for (const i of await this.api.listInstances()) if (i.name.startsWith('hbx')) await this.remove(i.name).catch(() => undefined);
    if ((await this.api.listHosts()).some((h) => h.name === this.opts.hostName)) await this.api.removeHost(this.opts.hostName);
    this.events = this.api.events({
      types: ['operation-progress', 'instance-created', 'instance-starting', 'instance-started'],
      onEvent: (ev) => this.watching?.seen.push({ ev, at: process.hrtime.bigint() }),
    });
    await this.events.ready;
  }

  // The VM image is built from Debian's kernel package: a copy another bench downloaded saves fetching it again.
  private seedCache(): void {
    const from = this.opts.seedCacheFrom;
    const to = join(this.dir, 'cache');
    if (!from || !existsSync(from)) return;
    for (const d of readdirSync(from)) {
      if (!/^(linux-image-|qemu-guest-agent_)/.test(d) || d.includes('.tmp-') || existsSync(join(to, d))) continue;
      cpSync(join(from, d), join(to, d), { recursive: true, preserveTimestamps: true });
    }
  }

  /** Adds the Dom0 as a remote host on its own bridge, pinning its key. */
  async addHost(xen: XenHost, bridge: string): Promise<void> {
    await this.api.waitOperation(await this.api.addHost({ name: this.opts.hostName, url: `ssh://root@127.0.0.1:${xen.sshPort}`, identityFile: xen.identityFile, fingerprint: xen.hostKeyFingerprint, bridge }));
    this.hostAdded = true;
  }

  /** Create + start on the Xen host through the API; resolves once the operation is done and the marker is in the console log (polled through the API). */
  async launch(name: string): Promise<BootTiming> {
    this.live.add(name);
    this.watching = { name, seen: [] };
    await new Promise((r) => setImmediate(r));
    const t0 = process.hrtime.bigint();
    const marks = new Map<string, number>();
    const op = await this.api.createInstance({ name, image: HANGAR_IMAGE, type: 'vm', driver: 'xen', host: this.opts.hostName, config: { 'limits.memory': '256MiB' }, start: true });
    await this.api.waitOperation(op);
    marks.set('operation done', msSince(t0));
    // The marker cannot come before `xl create`, inside the operation; polling from here sees it as soon as from the request.
    const re = markerRe(name);
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    let log = '';
    for (;;) {
      log = await this.api.consoleLog(name);
      if (re.test(log)) break;
      if (Date.now() > deadline) throw new Error(`no "${MARKER} ${name}" in the console log within ${BOOT_TIMEOUT_MS} ms; tail: ${JSON.stringify(log.slice(-300))}`);
      await sleep(POLL_MS);
    }
    const total = msSince(t0);
    const w = this.watching;
    this.watching = null;
    // Where the operation was when each event arrived (the first of each kind that belongs to this launch).
    for (const { ev, at } of w.seen) {
      const belongs = ev.operation === op.id || ev.instance === name;
      if (!belongs) continue;
      const key = ev.type === 'operation-progress' ? `progress: ${ev.message ?? ''}` : ev.type;
      if (!marks.has(key)) marks.set(key, Number(at - t0) / 1e6);
    }
    marks.set('marker seen', total);
    return { total, marks };
  }

  /** The Xen config file Hangar rendered for a running instance, read from the Dom0. */
  async renderedConfig(xen: XenHost, name: string): Promise<string> {
    return xen.sshOk(['cat', posix.join(this.instanceDir(name), 'domain.cfg')]);
  }

  async remove(name: string): Promise<void> {
    await this.api.waitOperation(await this.api.deleteInstance(name, { force: true }));
    this.live.delete(name);
  }

  async cleanup(): Promise<void> {
    if (this.client) {
      for (const n of [...this.live]) await this.remove(n).catch((e: unknown) => console.error(`cleanup: could not delete ${n}: ${String(e)}`));
      if (this.hostAdded) await this.api.removeHost(this.opts.hostName).catch((e: unknown) => console.error(`cleanup: could not remove host ${this.opts.hostName}: ${String(e)}`));
      this.hostAdded = false;
      this.events?.close();
      this.events = null;
      this.client.close();
      this.client = null;
    }
    await this.daemon.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// One persistent shell over SSH

/** What one block of typed commands printed: its exit code, when each `@@HBX <mark>` line arrived, and its other output. */
export interface ShellResult {
  code: number;
  /** Mark → ms since the block was written. */
  marks: Map<string, number>;
  out: string;
}

/**
 * `ssh ... root@HOST sh`, kept open: blocks of command lines are written to its stdin and end with
 * `echo "@@HBX end <id> $?"`; lines starting with `@@HBX ` are time-stamped when they arrive.
 */
export class ShellSession {
  private buf = '';
  private out = '';
  private errTail = '';
  private current: { id: string; t0: bigint; marks: Map<string, number>; resolve: (r: ShellResult) => void; reject: (e: Error) => void } | null = null;
  private exited: string | null = null;
  private seq = 0;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.setEncoding('utf8').on('data', (d: string) => this.onData(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (this.errTail = (this.errTail + d).slice(-4000)));
    child.stdin.on('error', () => undefined);
    child.on('close', (code, sig) => {
      this.exited = `ssh exited with ${code ?? sig}`;
      this.current?.reject(new Error(`${this.exited}; stderr: ${this.errTail.trim()}`));
      this.current = null;
    });
  }

  /** Opens the session (OpenSSH with the given options) and waits for its shell to answer. */
  static async open(sshArgs: readonly string[], target: string, prelude: string): Promise<ShellSession> {
    const s = new ShellSession(spawn('ssh', [...sshArgs, target, 'sh'], { stdio: ['pipe', 'pipe', 'pipe'] }));
    const r = await s.run(prelude, 60_000);
    if (r.code !== 0) throw new Error(`shell prelude failed (${r.code}): ${r.out.trim()} ${s.errTail.trim()}`);
    return s;
  }

  private onData(d: string): void {
    const at = process.hrtime.bigint();
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const c = this.current;
      if (!c) continue;
      const m = /^@@HBX (\S+)(?: (\S+) (-?\d+))?$/.exec(line);
      if (!m) {
        this.out = (this.out + line + '\n').slice(-16_000);
        continue;
      }
      if (m[1] === 'end' && m[2] === c.id) {
        this.current = null;
        c.resolve({ code: Number(m[3]), marks: c.marks, out: this.out });
        this.out = '';
      } else if (!c.marks.has(m[1]!)) c.marks.set(m[1]!, Number(at - c.t0) / 1e6);
    }
  }

  /** Writes one block (newline-terminated command lines) and resolves when its end line arrives. */
  run(block: string, timeoutMs = 600_000): Promise<ShellResult> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    if (this.current) return Promise.reject(new Error('shell session busy'));
    const id = `b${++this.seq}`;
    return new Promise<ShellResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.current = null;
        reject(new Error(`no answer from the shell within ${timeoutMs} ms; stderr: ${this.errTail.trim()}`));
      }, timeoutMs);
      this.out = '';
      this.current = {
        id, t0: process.hrtime.bigint(), marks: new Map(),
        resolve: (r) => { clearTimeout(timer); resolve(r); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      this.child.stdin.write(`${block.replace(/\n*$/, '')}\necho "@@HBX end ${id} $?"\n`);
    });
  }

  /** Last lines ssh wrote to its stderr. */
  stderrTail(): string {
    return this.errTail.trim();
  }

  /** Ends the shell (exit), then the ssh process if it lingers. */
  async close(): Promise<void> {
    if (this.exited) return;
    this.child.stdin.end('exit\n');
    for (let i = 0; i < 50 && !this.exited; i++) await sleep(100);
    if (!this.exited) this.child.kill('SIGTERM');
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// xl create by hand

/** What the hand-driven domains copy from Hangar's: its xl.cfg and the values in it that name that instance. */
export interface XlTemplate {
  text: string;
  name: string;
  kernel: string;
  ramdisk: string | null;
  /** The per-instance root disk (a raw copy of the image's disk), or null when the domain has none. */
  rootDisk: string | null;
  mac: string | null;
  ip: string | null;
  vifname: string | null;
  uuid: string | null;
}

const cfgValue = (text: string, key: string): string | null => new RegExp(`^${key}\\s*=\\s*"((?:[^"\\\\]|\\\\.)*)"`, 'm').exec(text)?.[1] ?? null;

/** Reads Hangar's rendered xl.cfg into a template. */
export function parseXlTemplate(text: string, name: string): XlTemplate {
  const kernel = cfgValue(text, 'kernel');
  if (!kernel) throw new Error(`Hangar's xl.cfg for ${name} has no kernel=:\n${text}`);
  const disk = /^disk\s*=\s*\[(.*)\]/m.exec(text)?.[1] ?? '';
  const targets = [...disk.matchAll(/target=([^,"]+)/g)].map((m) => m[1]!.trim());
  const vif = /^vif\s*=\s*\[(.*)\]/m.exec(text)?.[1] ?? '';
  return {
    text, name, kernel, ramdisk: cfgValue(text, 'ramdisk'),
    // The root disk is in the instance's volume: .../NAME/root.raw.
    rootDisk: targets.find((t) => t.endsWith(`/${name}/root.raw`)) ?? null,
    mac: /mac=([0-9a-f:]{17})/i.exec(vif)?.[1] ?? null,
    ip: /\bip=([0-9.]+)/.exec(vif)?.[1] ?? null,
    vifname: /vifname=([^,"\s]+)/.exec(vif)?.[1] ?? null,
    uuid: cfgValue(text, 'uuid'),
  };
}

/** `xl create` typed by hand into one SSH session: the image's files copied into the Dom0 once, per domain an xl.cfg equal to Hangar's but for its identity. */
export class HandXl {
  readonly label: string;
  private session: ShellSession | null = null;
  private readonly live = new Set<string>();
  private baseDisk: string | null = null;

  constructor(private readonly xen: XenHost, private readonly dir: string, private readonly tpl: XlTemplate, private readonly subnet: string) {
    this.label = `\`xl create\` by hand: one \`ssh root@Dom0 sh\` session (OpenSSH), commands typed into it`;
  }

  private get sh(): ShellSession {
    if (!this.session) throw new Error('hand subject not set up');
    return this.session;
  }

  /** Copies kernel, initrd and (converted to raw, as Hangar's cache holds it) the disk into the Dom0 once, then opens the session. */
  async setup(localImageDir: string, files: { kernel: string; initrd: string | null; disk: string | null }): Promise<void> {
    const x = this.xen;
    await x.sshOk(['rm', '-rf', this.dir]);
    await x.sshOk(['mkdir', '-p', this.dir]);
    for (const f of [files.kernel, files.initrd]) if (f) await x.copyTo(join(localImageDir, f), posix.join(this.dir, f));
    if (this.tpl.rootDisk && files.disk) {
      const q = posix.join(this.dir, files.disk);
      await x.copyTo(join(localImageDir, files.disk), q);
      this.baseDisk = posix.join(this.dir, 'disk.raw');
      if (/\.(raw|img)$/i.test(files.disk)) await x.sshOk(['mv', q, this.baseDisk]);
      else {
        await x.sshOk(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', q, this.baseDisk], { timeoutMs: 600_000 });
        await x.sshOk(['rm', '-f', q]);
      }
    }
    const prelude = [
      'export PATH=/usr/sbin:/usr/bin:/sbin:/bin',
      // What one would type to wait for the guest: look at its console log every POLL_MS until the marker is there.
      `hbx_wait() { i=0; until grep -qF "$1" "$2" 2>/dev/null; do i=$((i + 1)); if [ $i -ge $3 ]; then echo "no $1 in $2" >&2; return 1; fi; usleep ${POLL_MS * 1000}; done; }`,
      'true',
    ].join('\n');
    this.session = await ShellSession.open(x.sshArgs, 'root@127.0.0.1', prelude);
  }

  private files(name: string): { cfg: string; raw: string; log: string } {
    return { cfg: posix.join(this.dir, `${name}.cfg`), raw: posix.join(this.dir, `${name}.raw`), log: `/var/log/xen/console/guest-${name}.log` };
  }

  /** Hangar's xl.cfg with this domain's name, UUID, boot files, disk, MAC, address, vif name and hostname. */
  configFor(name: string, r: number): string {
    const t = this.tpl;
    const f = this.files(name);
    const ip = `${this.subnet}.${200 + (r % 50)}`;
    const mac = `02:00:00:fb:01:${(r % 256).toString(16).padStart(2, '0')}`;
    let text = t.text
      .replace(/^name\s*=.*$/m, `name = "${name}"`)
      .replace(/^uuid\s*=.*$/m, `uuid = "${randomUUID()}"`)
      .replace(/^kernel\s*=.*$/m, `kernel = "${posix.join(this.dir, posix.basename(t.kernel))}"`);
    if (t.ramdisk) text = text.replace(/^ramdisk\s*=.*$/m, `ramdisk = "${posix.join(this.dir, posix.basename(t.ramdisk))}"`);
    if (t.rootDisk) text = text.replaceAll(t.rootDisk, f.raw);
    if (t.mac) text = text.replaceAll(t.mac, mac);
    if (t.ip) text = text.replace(new RegExp(`\\b${t.ip.replaceAll('.', '\\.')}\\b`, 'g'), ip);
    if (t.vifname) text = text.replaceAll(`vifname=${t.vifname}`, `vifname=hbxhv${r}`);
    text = text.replace(/hangar\.hostname=\S+?(?=[\s"])/, `hangar.hostname=${name}`);
    const left = [t.name, t.uuid, t.vifname, t.rootDisk].filter((v): v is string => !!v && text.includes(v));
    if (left.length) throw new Error(`the hand-driven xl.cfg still names Hangar's domain (${left.join(', ')}):\n${text}`);
    return text;
  }

  /** Types: write the xl.cfg (here-document), copy the root disk, `xl create`, wait for the marker in the console log; all in the one session. */
  async boot(name: string, r: number): Promise<BootTiming> {
    const f = this.files(name);
    const cfg = this.configFor(name, r);
    if (cfg.includes('HBXEOF')) throw new Error('xl.cfg holds the here-document delimiter');
    this.live.add(name);
    const steps = [
      `cat > ${f.cfg} <<'HBXEOF'`,
      ...(this.baseDisk ? [`cp ${this.baseDisk} ${f.raw}`, 'echo "@@HBX cp"'] : []),
      `xl create ${f.cfg} </dev/null`,
      'echo "@@HBX created"',
      `hbx_wait ${shellQuote([`${MARKER} ${name}`])} ${f.log} ${Math.ceil(BOOT_TIMEOUT_MS / POLL_MS)}`,
    ];
    // The here-document's body follows the line that opens it; the commands after it on that line run once it is read.
    const block = `${steps.join(' && ')}\n${cfg.replace(/\n*$/, '\n')}HBXEOF\n`;
    await new Promise((res) => setImmediate(res));
    const t0 = process.hrtime.bigint();
    const res = await this.sh.run(block, BOOT_TIMEOUT_MS + 60_000);
    const total = msSince(t0);
    if (res.code !== 0) throw new Error(`typed xl create of ${name} failed (${res.code}): ${res.out.trim()} ${this.sh.stderrTail()}`);
    const marks = new Map(res.marks);
    marks.set('marker seen', total);
    return { total, marks };
  }

  /** Types one command line into the open session; answers the ms until its end line arrived (throws unless it exits 0). */
  async typed(line: string): Promise<number> {
    const t0 = process.hrtime.bigint();
    const res = await this.sh.run(line, 60_000);
    const ms = msSince(t0);
    if (res.code !== 0) throw new Error(`typed ${line} exited ${res.code}: ${res.out.trim()}`);
    return ms;
  }

  /** Destroys the domain and removes its files (untimed), in the same session. */
  async remove(name: string): Promise<void> {
    const f = this.files(name);
    const res = await this.sh.run(`xl destroy ${name} </dev/null 2>/dev/null; rm -f ${f.cfg} ${f.raw} ${f.log} /var/log/xen/xl-${name}.log*; true`, 120_000);
    if (res.code !== 0) throw new Error(`cleanup of ${name} failed: ${res.out}`);
    this.live.delete(name);
  }

  async cleanup(): Promise<void> {
    if (this.session) {
      for (const n of [...this.live]) await this.remove(n).catch((e: unknown) => console.error(`cleanup hand ${n}: ${String(e)}`));
      await this.session.close();
      this.session = null;
    }
    await this.xen.ssh(['rm', '-rf', this.dir]).catch(() => undefined);
  }
}
