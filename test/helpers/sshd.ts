// A private OpenSSH server for tests: 127.0.0.1 on a free port, its own host key and one authorized key, all in a temp dir.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A running test sshd. */
export interface TestSshd {
  port: number;
  /** Private key (OpenSSH format, no passphrase) that may log in as root. */
  identityFile: string;
  /** The server's host key fingerprint as OpenSSH prints it (SHA256:base64, no padding). */
  hostKeyFingerprint: string;
  /** The temp dir holding config, keys and logs. */
  dir: string;
  /** The listener's pid (started by this helper; -1 while stopped). */
  pid(): number;
  /** Ends every connection's server process, keeping the listener: clients see their connection drop. */
  dropConnections(): Promise<void>;
  /** Stops the listener and its connections (the port stays free for start()). */
  halt(): Promise<void>;
  /** Starts the listener again on the same port with the same keys. */
  start(): Promise<void>;
  /** Replaces the host key (a "reinstalled" server); takes effect at the next start(). */
  replaceHostKey(): string;
  /** Stops everything and removes the temp dir. */
  stop(): Promise<void>;
}

const SSHD = '/usr/sbin/sshd';

// Runs sshd and prints its pid; when the test process dies (its end of our stdin closes), a watcher stops that sshd,
// after checking that the pid is still the sshd of this config. sh waits for sshd, so its exit is sshd's.
const WATCHDOG = [
  'exec 3<&0',
  '"$@" & p=$!',
  `printf '%s\\n' "$p"`,
  `( read -r _ <&3; case $(tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null) in *"$HANGAR_SSHD_CONFIG"*) kill "$p" ;; esac ) &`,
  'wait "$p"',
].join('\n');

function run(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Resolves once something on 127.0.0.1:port sends an SSH banner; rejects after ms. */
async function waitBanner(port: number, ms: number, exited: () => string | null): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const why = exited();
    if (why !== null) throw new Error(`sshd exited during start: ${why}`);
    const ok = await new Promise<boolean>((res) => {
      const s = connect(port, '127.0.0.1');
      s.setTimeout(1000, () => { s.destroy(); res(false); });
      s.once('data', (d) => { s.destroy(); res(d.toString('latin1').startsWith('SSH-')); });
      s.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`sshd on 127.0.0.1:${port} did not answer within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Pids of every live descendant of pid (from /proc: these are processes this helper's sshd started). */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      parent.set(Number(e), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* gone */ }
  }
  const out: number[] = [];
  const walk = (p: number) => { for (const [c, pp] of parent) if (pp === p) { out.push(c); walk(c); } };
  walk(pid);
  return out;
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try { process.kill(pid, signal); } catch { /* already gone */ }
}

/** Starts a private sshd; call stop() in a finally/afterAll. */
export async function startSshd(): Promise<TestSshd> {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-sshd-'));
  // sshd refuses to start without its privilege separation directory.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKey = join(dir, 'host_ed25519');
  const identityFile = join(dir, 'id_ed25519');
  const genHostKey = () => {
    rmSync(hostKey, { force: true });
    rmSync(`${hostKey}.pub`, { force: true });
    run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'hangar-test-host', '-f', hostKey]);
    return run(['ssh-keygen', '-l', '-E', 'sha256', '-f', `${hostKey}.pub`]).split(' ')[1]!;
  };
  let fingerprint = genHostKey();
  run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'hangar-test-client', '-f', identityFile]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${identityFile}.pub`), { mode: 0o600 });
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(config, [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    // The temp dir is not root-owned all the way up the way StrictModes wants.
    'StrictModes no',
    'AllowStreamLocalForwarding yes',
    // OpenSSH lets unix-socket forwards through only where local TCP forwarding is allowed too (connectUnix needs it).
    'AllowTcpForwarding local',
    'X11Forwarding no',
    'PrintMotd no',
    'UseDNS no',
    'Subsystem sftp internal-sftp',
    'LogLevel ERROR',
    // Debian's bash sources ~/.bashrc under sshd unless SHLVL says it is nested: this machine's root .bashrc runs
    // `pyenv init` (~150 ms) before every remote command, which would measure the account, not the transport.
    'SetEnv SHLVL=1',
    '',
  ].join('\n'));

  let child: ChildProcess | undefined;
  let sshdPid = -1;
  let exitedWith: string | null = null;
  let stderr = '';
  const start = async () => {
    exitedWith = null;
    stderr = '';
    sshdPid = -1;
    const c = spawn('/bin/sh', ['-c', WATCHDOG, 'hangar-test-sshd', SSHD, '-D', '-e', '-f', config], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, HANGAR_SSHD_CONFIG: config } });
    child = c;
    c.stdin!.on('error', () => undefined);
    c.stdout!.once('data', (d: Buffer) => { sshdPid = Number(d.toString('utf8').trim()); });
    c.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString('utf8')).slice(-4000); });
    c.once('exit', (code, signal) => {
      exitedWith = `${signal ?? code}: ${stderr.trim()}`;
      c.stdin!.end();
    });
    await waitBanner(port, 10_000, () => exitedWith);
  };
  const dropConnections = async () => {
    if (sshdPid <= 0) return;
    // Paused meanwhile, as in halt(): no session is accepted between the walk and the kills.
    killQuietly(sshdPid, 'SIGSTOP');
    for (const p of descendants(sshdPid)) killQuietly(p, 'SIGKILL');
    killQuietly(sshdPid, 'SIGCONT');
    await new Promise((r) => setTimeout(r, 100));
  };
  const halt = async () => {
    const c = child;
    if (!c || exitedWith !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    if (sshdPid > 0) {
      // Stopped first, so that it forks no session between the walk of its children and its end: a connection
      // accepted in that gap would outlive the halt (with the old host key, say) and the daemon would never see it drop.
      killQuietly(sshdPid, 'SIGSTOP');
      for (const p of descendants(sshdPid)) killQuietly(p, 'SIGKILL');
      killQuietly(sshdPid, 'SIGKILL');
    }
    // The watchdog's stdin at its end: it exits without killing anything once sshd is gone.
    c.stdin!.end();
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    if (exitedWith === null && sshdPid > 0) { killQuietly(sshdPid, 'SIGKILL'); await gone; }
  };

  try {
    await start();
  } catch (e) {
    await halt();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    port, identityFile, dir,
    get hostKeyFingerprint() { return fingerprint; },
    pid: () => (exitedWith === null ? sshdPid : -1),
    dropConnections, halt, start,
    replaceHostKey: () => { fingerprint = genHostKey(); return fingerprint; },
    stop: async () => {
      try { await halt(); } finally { rmSync(dir, { recursive: true, force: true }); }
    },
  };
}
