// Test helper: boots the Xen test host (test/xen-host) in QEMU (TCG) with its SSH port on 127.0.0.1, shared by the tests of one vitest run.
import { spawn } from 'node:child_process';
import { closeSync, createReadStream, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { freePort } from './sshd.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { LocalHost } from '../../src/host/local.js';
import { buildXenHost, XEN_HOST_READY_MARKER, type XenHostArtifacts } from '../xen-host/build.js';

// HANGAR_TEST_ID (one digit) keeps the shared host of one test run apart from another's.
const TEST_ID = /^[0-9]$/.test(process.env.HANGAR_TEST_ID ?? '') ? process.env.HANGAR_TEST_ID! : '';
const STATE_DIR = `/run/hangar-xen-host${TEST_ID}`;

/** Xen's command line: serial console, a fixed 1280 MiB single-vCPU Dom0 (its tmpfs holds images, disks and saved RAM; the rest is for domUs). */
export const XEN_CMDLINE = 'console=com1 com1=115200,8n1 dom0_mem=1280M,max:1280M dom0_max_vcpus=1 loglvl=warning guest_loglvl=warning';
/** Dom0 kernel's command line (no commas: QEMU's -initrd splits modules on them). */
export const DOM0_CMDLINE = 'console=hvc0 earlyprintk=xen mitigations=off cryptomgr.notests no_timer_check';

/** Result of one command run over SSH. */
export interface SshResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A running Xen test host. */
export interface XenHost {
  /** The forwarded SSH port on 127.0.0.1. */
  sshPort: number;
  user: 'root';
  /** Private key authorised for root (mode 0600). */
  identityFile: string;
  /** Dom0's pinned host key (`ssh-ed25519 AAAA...`) and its fingerprint (`SHA256:...`). */
  hostKey: string;
  hostKeyFingerprint: string;
  /** known_hosts file holding only the pinned key for [127.0.0.1]:sshPort. */
  knownHostsFile: string;
  /** QEMU's pid (a process this helper started). */
  pid: number;
  /** Serial console log: Xen's and Dom0's messages. */
  serialLog: string;
  /** Milliseconds from QEMU's start to `xl list` answering over SSH (of the boot that made this host). */
  bootMs: number;
  /** True when this handle reused a host another test file of the run booted. */
  reused: boolean;
  artifacts: XenHostArtifacts;
  /** The OpenSSH client options this helper uses (identity, port, pinned key, connection sharing), for callers running ssh, scp or sftp themselves. */
  sshArgs: string[];
  /** Runs one command in Dom0 (each argument quoted for the remote shell); bounded by timeoutMs (default 120 s). */
  ssh(argv: readonly string[], opts?: { input?: string | Buffer; timeoutMs?: number }): Promise<SshResult>;
  /** Like ssh, throwing with the output unless the command exits 0; returns stdout. */
  sshOk(argv: readonly string[], opts?: { input?: string | Buffer; timeoutMs?: number }): Promise<string>;
  /** Copies a local file into Dom0 (ssh + cat: dropbear needs no scp binary for it). */
  copyTo(localPath: string, remotePath: string): Promise<void>;
  /** Last lines of the serial log. */
  serialTail(lines?: number): string;
  /** Stops QEMU (SIGTERM, then SIGKILL) and removes the host's temp files. */
  stop(): Promise<void>;
}

/** Options for startXenHost. */
export interface StartXenHostOptions {
  /** Default true: reuse (or boot and publish) the one host of this vitest run; false: a private host only this caller uses. */
  shared?: boolean;
  /** Bound for QEMU start → `xl list` answers (default 120 s). */
  timeoutMs?: number;
  /** Guest RAM in MiB (default 3584; Dom0 gets 1280 of it). */
  memoryMiB?: number;
  /** Build cache root (default /var/cache/hangar/xen-host). */
  cacheRoot?: string;
  onProgress?: (msg: string) => void;
}

// Exit of each QEMU this process spawned, so stop() can wait until it is reaped.
const children = new Map<number, Promise<void>>();

interface SharedState {
  pid: number;
  sshPort: number;
  workDir: string;
  serialLog: string;
  knownHostsFile: string;
  artifactsDir: string;
  bootMs: number;
}

/** Quotes argv for a POSIX shell (what the SSH server hands the command to). */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Starts (or, shared, finds) the Xen test host: builds it if needed, boots QEMU, waits until `xl list` answers over SSH. */
export async function startXenHost(opts: StartXenHostOptions = {}): Promise<XenHost> {
  const shared = opts.shared ?? true;
  const art = await buildXenHost(new LocalHost(), { cacheRoot: opts.cacheRoot, onProgress: opts.onProgress });
  if (!shared) return boot(art, opts, process.pid, undefined);
  // The vitest run (the workers' parent) owns the shared host: it ends when that run ends, whichever file booted it.
  const owner = process.env.VITEST ? process.ppid : process.pid;
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
  const stateFile = join(STATE_DIR, `shared-${owner}.json`);
  const unlock = await lock(join(STATE_DIR, `shared-${owner}.lock`), (opts.timeoutMs ?? 120_000) + 300_000);
  try {
    if (existsSync(stateFile)) {
      const st = JSON.parse(readFileSync(stateFile, 'utf8')) as SharedState;
      if (st.artifactsDir === art.dir && isOurQemu(st.pid, st.serialLog)) {
        const h = handle(art, st, true);
        if ((await h.ssh(['true'], { timeoutMs: 30_000 }).catch(() => ({ code: -1 }))).code === 0) return h;
        await h.stop();
      }
      rmSync(stateFile, { force: true });
    }
    return await boot(art, opts, owner, stateFile);
  } finally {
    unlock();
  }
}

async function boot(art: XenHostArtifacts, opts: StartXenHostOptions, owner: number, stateFile: string | undefined): Promise<XenHost> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const workDir = mkdtempSync(join(tmpdir(), `hangar-xen-host${TEST_ID}-`));
  const serialLog = join(workDir, 'serial.log');
  const knownHostsFile = join(workDir, 'known_hosts');
  let lastError = '';
  // A port picked free can be taken before QEMU binds it: then QEMU exits at once and another port is tried.
  for (let attempt = 0; attempt < 3; attempt++) {
    const sshPort = await freePort();
    writeFileSync(knownHostsFile, `[127.0.0.1]:${sshPort} ${art.hostKey}\n`, { mode: 0o600 });
    const argv = [
      '-machine', 'pc', '-accel', 'tcg',
      // -cpu max alone crashes Dom0 (TCG's SMAP); without SMAP and RDTSCP it offers SVM with nested paging, i.e. HAP for PVH.
      // Without AVX: a PVH domU's glibc picks AVX2 string functions, and under TCG's nested SVM they now and then raise #UD
      // (busybox init died of SIGILL on vpxor at boot in 1 of ~10 CI runs).
      '-cpu', 'max,-smap,-rdtscp,-avx,-avx2', '-smp', '2', '-m', String(opts.memoryMiB ?? 3584),
      '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none',
      // A Xen or Dom0 panic reboots; -no-reboot turns that into QEMU exiting, so a broken boot fails fast.
      '-no-reboot',
      '-kernel', art.xenElf, '-append', XEN_CMDLINE,
      '-initrd', `${art.kernel} ${DOM0_CMDLINE},${art.initrd}`,
      '-serial', `file:${serialLog}`,
      // virtio-net works in the PV Dom0 and has carrier at once; e1000's link took ~4 s of TCG time (boot ~15 s vs ~7 s).
      '-netdev', `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${sshPort}-:22`, '-device', 'virtio-net-pci,netdev=n0',
    ];
    const errFile = join(workDir, 'qemu.stderr');
    const errFd = openSync(errFile, 'w');
    const t0 = Date.now();
    // Own session: signals to the test runner's group never reach QEMU, and vice versa.
    const child = spawn('qemu-system-x86_64', argv, { detached: true, stdio: ['ignore', 'ignore', errFd] });
    closeSync(errFd);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new Error('Failed to start qemu-system-x86_64');
    let exited: string | undefined;
    children.set(pid, new Promise((resolve) => child.once('exit', (code, sig) => { exited = `exited with ${code ?? sig}`; children.delete(pid); resolve(); })));
    reaper(owner, pid, serialLog, workDir, stateFile);
    const st: SharedState = { pid, sshPort, workDir, serialLog, knownHostsFile, artifactsDir: art.dir, bootMs: 0 };
    const h = handle(art, st, false);
    try {
      await waitReady(h, t0, timeoutMs, () => exited);
    } catch (e) {
      await h.stop();
      lastError = (e as Error).message;
      const stderr = existsSync(errFile) ? readFileSync(errFile, 'utf8') : '';
      if (/hostfwd|Could not set up host forwarding/i.test(stderr)) continue;
      throw e;
    }
    st.bootMs = Date.now() - t0;
    h.bootMs = st.bootMs;
    if (stateFile) writeFileSync(stateFile, JSON.stringify(st), { mode: 0o600 });
    return h;
  }
  throw new Error(`Failed to boot the Xen test host: ${lastError}`);
}

// Waits for the ready marker on the serial console, then for `xl list` over SSH; fails fast when QEMU exits or something panics.
async function waitReady(h: XenHost, t0: number, timeoutMs: number, exited: () => string | undefined): Promise<void> {
  const deadline = t0 + timeoutMs;
  const fail = (why: string) => new Error(`Xen test host ${why} after ${Date.now() - t0} ms; serial log tail:\n${h.serialTail(40)}`);
  for (;;) {
    const ex = exited();
    if (ex) throw fail(`QEMU ${ex}`);
    const log = existsSync(h.serialLog) ? readFileSync(h.serialLog, 'latin1') : '';
    if (/Kernel panic|Panic on CPU/.test(log)) throw fail('panicked');
    if (log.includes(XEN_HOST_READY_MARKER)) break;
    if (Date.now() > deadline) throw fail(`printed no ${XEN_HOST_READY_MARKER}`);
    await sleep(100);
  }
  let last = '';
  for (;;) {
    const ex = exited();
    if (ex) throw fail(`QEMU ${ex}`);
    const r = await h.ssh(['xl', 'list'], { timeoutMs: Math.max(1000, Math.min(20_000, deadline - Date.now())) }).catch((e: unknown) => ({ code: -1, stdout: '', stderr: String(e) }));
    if (r.code === 0 && r.stdout.includes('Domain-0')) return;
    last = `${r.code}: ${r.stderr.trim()}`;
    if (Date.now() > deadline) throw fail(`did not answer xl list over SSH (last: ${last})`);
    await sleep(250);
  }
}

function handle(art: XenHostArtifacts, st: SharedState, reused: boolean): XenHost {
  const sshArgs = [
    // -o Port rather than -p: scp and sftp take the same options (their -p/-P mean other things).
    '-F', '/dev/null', '-i', art.identityFile, '-o', `Port=${st.sshPort}`,
    '-o', `UserKnownHostsFile=${st.knownHostsFile}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
    '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR',
    // One kept-alive connection per host: a fresh handshake with dropbear in a TCG Dom0 costs far more than a channel.
    '-o', 'ControlMaster=auto', '-o', `ControlPath=${join(st.workDir, 'cm')}`, '-o', 'ControlPersist=120',
  ];
  const h: XenHost = {
    sshPort: st.sshPort, user: 'root', identityFile: art.identityFile, hostKey: art.hostKey, hostKeyFingerprint: art.hostKeyFingerprint,
    knownHostsFile: st.knownHostsFile, pid: st.pid, serialLog: st.serialLog, bootMs: st.bootMs, reused, artifacts: art, sshArgs,
    ssh: (argv, o = {}) => runSsh(sshArgs, shellQuote(argv), o.input, o.timeoutMs ?? 120_000),
    sshOk: async (argv, o = {}) => {
      const r = await h.ssh(argv, o);
      if (r.code !== 0) throw new Error(`ssh ${shellQuote(argv)} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      return r.stdout;
    },
    copyTo: async (localPath, remotePath) => {
      const r = await runSsh(sshArgs, `cat > ${shellQuote([remotePath])}`, createReadStream(localPath), 600_000);
      if (r.code !== 0) throw new Error(`Failed to copy ${localPath} to ${remotePath}: ${r.stderr.trim()}`);
    },
    serialTail: (lines = 40) => (existsSync(st.serialLog) ? readFileSync(st.serialLog, 'latin1').split('\n').slice(-lines).join('\n') : '(no serial log)'),
    stop: async () => {
      // The control master goes first, so that no ssh process outlives the host.
      await runSsh([...sshArgs, '-O', 'exit'], '', undefined, 5000).catch(() => undefined);
      if (isOurQemu(st.pid, st.serialLog)) {
        process.kill(st.pid, 'SIGTERM');
        for (let i = 0; i < 40 && isOurQemu(st.pid, st.serialLog); i++) await sleep(50);
        if (isOurQemu(st.pid, st.serialLog)) process.kill(st.pid, 'SIGKILL');
      }
      // Our own child is gone only once reaped (a zombie has no cmdline left, but its pid still answers kill 0).
      await Promise.race([children.get(st.pid), sleep(5000)]);
      rmSync(st.workDir, { recursive: true, force: true });
    },
  };
  return h;
}

function runSsh(sshArgs: readonly string[], command: string, input: string | Buffer | Readable | undefined, timeoutMs: number): Promise<SshResult> {
  return new Promise((resolve, reject) => {
    const args = sshArgs.includes('-O') ? [...sshArgs, 'root@127.0.0.1'] : [...sshArgs, 'root@127.0.0.1', '--', command];
    const child = spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      stderr += `\n(ssh killed after ${timeoutMs} ms)`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString('utf8'); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString('utf8'); });
    child.stdin.on('error', () => undefined);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
    if (input === undefined || typeof input === 'string' || Buffer.isBuffer(input)) child.stdin.end(input ?? '');
    else input.on('error', (e) => { stderr += String(e); child.stdin.end(); }).pipe(child.stdin);
  });
}

// A small watcher that ends our QEMU when the owner (the vitest run, or the caller) goes away, even on a crash.
function reaper(owner: number, qemu: number, serialLog: string, workDir: string, stateFile: string | undefined): void {
  const script = [
    'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done',
    // Only the QEMU this helper started: the pid must still carry our serial log argument.
    'ours() { tr "\\000" "\\n" < "/proc/$2/cmdline" 2>/dev/null | grep -qxF -- "file:$3"; }',
    'if ours "$@"; then kill -TERM "$2"; sleep 2; ours "$@" && kill -KILL "$2"; fi',
    'rm -rf "$4"; [ -n "$5" ] && rm -f "$5"',
  ].join('\n');
  spawn('sh', ['-c', script, 'hangar-xen-host-reaper', String(owner), String(qemu), serialLog, workDir, stateFile ?? ''], { detached: true, stdio: 'ignore' }).unref();
}

function isOurQemu(pid: number, serialLog: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(`file:${serialLog}`);
  } catch {
    return false;
  }
}

// An exclusive lock file holding its owner's pid; a lock whose owner died is taken over.
async function lock(path: string, timeoutMs: number): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // An empty file is a lock being taken right now: its pid follows.
      const holder = Number(readFileSync(path, 'utf8').trim() || String(process.pid));
      let alive = true;
      try { process.kill(holder, 0); } catch { alive = false; }
      if (!alive) { rmSync(path, { force: true }); continue; }
      if (Date.now() > deadline) throw new Error(`Timed out waiting for the Xen test host lock ${path} (held by pid ${holder})`);
      await sleep(200);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
