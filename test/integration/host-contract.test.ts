// Integration: the Host contract, the same checks against LocalHost and against SshHost through a private sshd on 127.0.0.1; then what only SSH has (keys, reconnection, round trips).
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Host, HostProcess } from '../../src/host/host.js';
import { baseEnvFrom, LocalHost } from '../../src/host/local.js';
import { probeHostKey, SshHost, type SshHostOptions } from '../../src/host/ssh.js';
import { AppError, isAppError } from '../../src/shared/errors.js';
import { freePort, startSshd, type TestSshd } from '../helpers/sshd.js';

const dir = mkdtempSync(join(tmpdir(), 'hangar-host-contract-'));
let sshd: TestSshd;
let ssh: SshHost;
const local = new LocalHost();
// Processes the tests started and must not leave behind (killed in afterAll if a test failed half-way).
const started = new Set<number>();

const sshOptions = (over: Partial<SshHostOptions> = {}): SshHostOptions => ({
  name: 'contract', host: '127.0.0.1', port: sshd.port, identityFile: sshd.identityFile, hostKeyFingerprint: sshd.hostKeyFingerprint,
  reconnect: { initialMs: 100, maxMs: 1000 }, ...over,
});

beforeAll(async () => {
  sshd = await startSshd();
  ssh = await SshHost.connect(sshOptions());
});

afterAll(async () => {
  try {
    ssh?.close();
    for (const pid of started) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  } finally {
    try { await sshd?.stop(); } finally { rmSync(dir, { recursive: true, force: true }); }
  }
});

const errorOf = async (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e);

/** Pids whose command line holds word (this machine's /proc: the SSH host is this machine too). */
function pidsWith(word: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').includes(word)) out.push(Number(e));
    } catch { /* gone */ }
  }
  return out;
}

/** A live (not zombie) process. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch { return false; }
}

async function until(fn: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
}

function output(p: HostProcess): { text: () => string } {
  let s = '';
  p.stdout?.on('data', (d: Buffer) => { s += d.toString('utf8'); });
  return { text: () => s };
}

const NASTY = ['', ' ', 'two words', "it's", '"q"', '\\', `$(touch ${join(dir, 'pwned1')})`, `\`touch ${join(dir, 'pwned2')}\``, '; touch /tmp/x', '$HOME', 'a\nb', '\t', '*', '-n', '--', 'ünï ✓'];

const HOSTS: [string, () => Host][] = [['LocalHost', () => local], ['SshHost', () => ssh]];

describe.each(HOSTS)('Host contract: %s', (kind, get) => {
  const sub = (name: string) => join(dir, `${kind}-${name}`);

  describe('exec', () => {
    it('returns stdout, stderr and exit codes; throws HOST_FAILED on failure unless allowFailure', async () => {
      const h = get();
      const r = await h.exec(['sh', '-c', 'echo out; echo err >&2']);
      expect(r).toEqual({ code: 0, signal: null, stdout: 'out\n', stderr: 'err\n' });
      expect(await h.exec(['sh', '-c', 'exit 3'], { allowFailure: true })).toMatchObject({ code: 3, signal: null });
      const err = await errorOf(h.exec(['sh', '-c', 'echo why >&2; exit 3']));
      expect(isAppError(err, 'HOST_FAILED')).toBe(true);
      expect((err as AppError).message).toBe("Command failed: sh -c \"echo why >&2; exit 3\"");
      expect(String((err as AppError).cause)).toBe('Error: why');
      expect((err as AppError).details).toEqual({ code: 3 });
    });

    it('feeds input to stdin', async () => {
      expect((await get().exec(['cat'], { input: 'line 1\nline 2' })).stdout).toBe('line 1\nline 2');
      expect((await get().exec(['wc', '-c'], { input: Buffer.alloc(300_000, 1) })).stdout.trim()).toBe('300000');
      // Without input, stdin is at its end at once.
      expect((await get().exec(['cat'])).stdout).toBe('');
    });

    it('gives the base environment plus what is asked, nothing of hangard or of a login', async () => {
      process.env.HANGAR_CONTRACT_OWN = 'must-not-leak';
      try {
        const r = await get().exec(['env'], { env: { FOO: "a 'b' $(c)", LANG: 'C' } });
        const env = Object.fromEntries(r.stdout.trimEnd().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
        expect(env).toEqual({ ...baseEnvFrom(process.env), FOO: "a 'b' $(c)", LANG: 'C' });
      } finally {
        delete process.env.HANGAR_CONTRACT_OWN;
      }
    });

    it('runs in cwd; a missing cwd or program fails to run', async () => {
      expect((await get().exec(['pwd'], { cwd: '/etc' })).stdout).toBe('/etc\n');
      for (const [argv, cwd] of [[['true'], '/no/such/dir'], [['no-such-program-hangar'], undefined]] as const) {
        const err = await errorOf(get().exec(argv, cwd ? { cwd } : {}));
        expect(isAppError(err, 'HOST_FAILED'), String(err)).toBe(true);
        expect((err as Error).message).toBe(`Failed to run ${argv[0]}`);
      }
    });

    it('bounds a hanging command with timeoutMs, and the process is gone afterwards', async () => {
      const word = `100.${randomBytes(3).readUIntBE(0, 3)}`;
      const t0 = Date.now();
      const r = await get().exec(['sleep', word], { timeoutMs: 500, allowFailure: true });
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(r.code).toBe(-1);
      expect(r.signal).toBe('SIGTERM');
      expect(await until(() => pidsWith(word).length === 0, 2000)).toBe(true);
      const err = await errorOf(get().exec(['sleep', word], { timeoutMs: 300 }));
      expect(isAppError(err, 'HOST_FAILED')).toBe(true);
      expect(String((err as Error).cause)).toBe('Error: killed by SIGTERM');
      expect(await until(() => pidsWith(word).length === 0, 2000)).toBe(true);
    });

    it('passes argv verbatim: spaces, quotes, $(), newlines; no injection runs', async () => {
      const r = await get().exec(['printf', '%s\\0', ...NASTY]);
      expect(r.stdout.split('\0').slice(0, -1)).toEqual(NASTY);
      const viaSh = await get().exec(['sh', '-c', 'printf "%s\\0" "$@"', 'sh', ...NASTY]);
      expect(viaSh.stdout.split('\0').slice(0, -1)).toEqual(NASTY);
      expect(existsSync(join(dir, 'pwned1'))).toBe(false);
      expect(existsSync(join(dir, 'pwned2'))).toBe(false);
    });
  });

  describe('spawn', () => {
    it('knows the real pid, streams stdin and stdout, waits for the exit code', async () => {
      const p = get().spawn(['sh', '-c', 'echo $$; cat; echo err >&2; exit 5']);
      const out = output(p);
      let err = '';
      p.stderr!.on('data', (d: Buffer) => { err += d.toString('utf8'); });
      const pid = await p.pid;
      expect(pid).toBeGreaterThan(0);
      expect(await until(() => out.text().includes('\n'), 5000)).toBe(true);
      expect(Number(out.text().split('\n')[0])).toBe(pid);
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]).toBe('sh');
      p.stdin!.end('through stdin\n');
      expect(await p.wait()).toEqual({ code: 5, signal: null });
      expect(out.text()).toBe(`${pid}\nthrough stdin\n`);
      expect(err).toBe('err\n');
    });

    it('kills the process with a signal', async () => {
      const p = get().spawn(['sleep', '100'], { cwd: '/' });
      const pid = await p.pid;
      started.add(pid);
      expect(running(pid)).toBe(true);
      p.kill('SIGKILL');
      expect(await p.wait()).toEqual({ code: null, signal: 'SIGKILL' });
      expect(await until(() => !running(pid), 2000)).toBe(true);
    });

    it('detached: own session, output appended to logFile, the pid of the program', async () => {
      const log = sub('detached.log');
      const p = get().spawn(['sh', '-c', 'echo started $$; exec sleep 60'], { detached: true, logFile: log });
      const pid = await p.pid;
      started.add(pid);
      expect(p.stdout).toBeNull();
      expect(await until(() => existsSync(log) && readFileSync(log, 'utf8') === `started ${pid}\n`, 5000)).toBe(true);
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      expect(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3])).toBe(pid);
      expect(await get().kill(pid, 0)).toBe(true);
      p.kill('SIGKILL');
      expect(await until(() => !running(pid), 3000)).toBe(true);
    });

    it('pty: a terminal of the size asked for, resized live', async () => {
      const p = get().spawn(['sh', '-c', 'tty; stty size; read x; stty size'], { pty: { cols: 91, rows: 27 } });
      const out = output(p);
      await p.pid;
      expect(await until(() => out.text().includes('27 91'), 5000), out.text()).toBe(true);
      expect(out.text()).toMatch(/\/dev\/pts\/\d+/);
      p.resize!(120, 40);
      await new Promise((r) => setTimeout(r, 200));
      p.stdin!.write('\r');
      expect(await p.wait()).toEqual({ code: 0, signal: null });
      expect(out.text()).toContain('40 120');
    });
  });

  it('connectUnix reaches a unix socket server on the host', async () => {
    const path = sub('echo.sock');
    const server: Server = createServer((s: Socket) => s.on('data', (d) => s.write(`echo:${d.toString()}`)));
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const sock = await get().connectUnix(path);
      const answer = new Promise<string>((r) => sock.once('data', (d: Buffer) => r(d.toString())));
      sock.write('ping');
      expect(await answer).toBe('echo:ping');
      sock.destroy();
      const missing = await errorOf(get().connectUnix(sub('missing.sock')));
      expect((missing as NodeJS.ErrnoException).code).toBe('ENOENT');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('kill: true for a live process, false for a missing pid', async () => {
    expect(await get().kill(process.pid, 0)).toBe(true);
    let missing = 4_000_000;
    while (existsSync(`/proc/${missing}`)) missing--;
    expect(await get().kill(missing, 0)).toBe(false);
    expect(await get().kill(missing, 'SIGTERM')).toBe(false);
  });

  describe('fs', () => {
    it('writeAtomic: exact mode, whole content, no temp file left; readFile, readText, readTextIfExists', async () => {
      const fs = get().fs;
      const d = sub('files');
      await fs.mkdir(d);
      const f = join(d, 'a.conf');
      await fs.writeAtomic(f, 'first', 0o640);
      expect(statSync(f).mode & 0o7777).toBe(0o640);
      await fs.writeAtomic(f, Buffer.from('second'));
      expect(statSync(f).mode & 0o7777).toBe(0o644);
      expect(readdirSync(d)).toEqual(['a.conf']);
      expect(await fs.readText(f)).toBe('second');
      expect((await fs.readFile(f)).equals(Buffer.from('second'))).toBe(true);
      const big = randomBytes(700_000);
      await fs.writeAtomic(join(d, 'big'), big);
      expect((await fs.readFile(join(d, 'big'))).equals(big)).toBe(true);
      expect(await fs.readTextIfExists(join(d, 'nope'))).toBeUndefined();
      expect(await fs.readTextIfExists(join(d, 'a.conf', 'below-a-file'))).toBeUndefined();
      expect((await errorOf(fs.readText(join(d, 'nope'))) as NodeJS.ErrnoException).code).toBe('ENOENT');
      // Kernel pseudo-files report size 0 and are read to their end all the same.
      expect(await fs.readText('/proc/self/status')).toMatch(/^Name:/);
      expect((await fs.readText('/proc/cpuinfo')).length).toBeGreaterThan(100);
    });

    it('appendFile, mkdir (recursive by default, exact mode), rm, rmdir, rename over a target', async () => {
      const fs = get().fs;
      const d = sub('tree');
      await fs.mkdir(join(d, 'x/y'), { mode: 0o700 });
      expect(statSync(join(d, 'x/y')).mode & 0o7777).toBe(0o700);
      await fs.mkdir(join(d, 'x/y'), { mode: 0o755 });
      expect(statSync(join(d, 'x/y')).mode & 0o7777).toBe(0o700);
      expect(await errorOf(fs.mkdir(join(d, 'x/y'), { recursive: false }))).toBeInstanceOf(Error);
      expect(await errorOf(fs.mkdir(join(d, 'no/parent'), { recursive: false }))).toBeInstanceOf(Error);
      const f = join(d, 'log');
      await fs.appendFile(f, 'a');
      await fs.appendFile(f, Buffer.from('b'));
      expect(readFileSync(f, 'utf8')).toBe('ab');
      await fs.writeAtomic(join(d, 'other'), 'other');
      await fs.rename(join(d, 'other'), f);
      expect(readFileSync(f, 'utf8')).toBe('other');
      expect(existsSync(join(d, 'other'))).toBe(false);
      await fs.rm(f);
      expect(existsSync(f)).toBe(false);
      await fs.rm(f, { force: true });
      expect(await errorOf(fs.rm(f))).toBeInstanceOf(Error);
      expect(await errorOf(fs.rmdir(join(d, 'x')))).toBeInstanceOf(Error);
      await fs.rmdir(join(d, 'x/y'));
      expect(existsSync(join(d, 'x/y'))).toBe(false);
      await fs.mkdir(join(d, 'x/deep/er'));
      await fs.writeAtomic(join(d, 'x/deep/er/file'), 'f');
      await fs.rm(join(d, 'x'), { recursive: true });
      expect(existsSync(join(d, 'x'))).toBe(false);
      await fs.rm(join(d, 'x'), { recursive: true, force: true });
    });

    it('stat (lstat), readdir, symlink, readlink, chown (the link itself), chmod', async () => {
      const fs = get().fs;
      const d = sub('meta');
      await fs.mkdir(d);
      const f = join(d, 'file');
      await fs.writeAtomic(f, '12345', 0o600);
      const st = (await fs.stat(f))!;
      expect(st).toMatchObject({ size: 5, uid: 0, gid: 0, isFile: true, isDirectory: false, isSymbolicLink: false });
      expect(st.mode).toBe(statSync(f).mode);
      expect(Math.abs(st.mtimeMs - statSync(f).mtimeMs)).toBeLessThan(1000);
      expect((await fs.stat(d))!.isDirectory).toBe(true);
      expect(await fs.stat(join(d, 'missing'))).toBeUndefined();
      expect(await fs.stat(join(f, 'below-a-file'))).toBeUndefined();
      await fs.symlink('file', join(d, 'link'));
      expect(await fs.readlink(join(d, 'link'))).toBe('file');
      expect((await fs.stat(join(d, 'link')))!.isSymbolicLink).toBe(true);
      expect((await fs.readdir(d)).sort()).toEqual(['file', 'link']);
      await fs.chown(join(d, 'link'), 1234, 4321);
      expect([lstatSync(join(d, 'link')).uid, lstatSync(join(d, 'link')).gid]).toEqual([1234, 4321]);
      expect(statSync(f).uid).toBe(0);
      await fs.chown(f, 100000, 100000);
      expect(statSync(f).uid).toBe(100000);
      await fs.chmod(f, 0o4750);
      expect(statSync(f).mode & 0o7777).toBe(0o4750);
    });

    it('readMany: each file in order, undefined where missing', async () => {
      const fs = get().fs;
      const d = sub('many');
      await fs.mkdir(d);
      await fs.writeAtomic(join(d, 'one'), 'one\n');
      await fs.writeAtomic(join(d, 'empty'), '');
      const got = await fs.readMany([join(d, 'one'), join(d, 'missing'), '/proc/self/stat', join(d, 'empty'), `/proc/${4_000_001}/stat`]);
      expect(got[0]).toBe('one\n');
      expect(got[1]).toBeUndefined();
      expect(got[2]).toMatch(/^\d+ \(/);
      expect(got[3]).toBe('');
      expect(got[4]).toBeUndefined();
      expect(await fs.readMany([])).toEqual([]);
    });
  });
});

describe('SshHost only', () => {
  it('pins the host key: probeHostKey tells the key, a different key is refused naming the host and both fingerprints', async () => {
    const probed = await probeHostKey({ host: '127.0.0.1', port: sshd.port });
    expect(probed).toEqual({ type: 'ssh-ed25519', fingerprint: sshd.hostKeyFingerprint });
    const wrong = `SHA256:${randomBytes(32).toString('base64').replace(/=+$/, '')}`;
    const err = await errorOf(SshHost.connect(sshOptions({ name: 'pinned', hostKeyFingerprint: wrong })));
    expect(isAppError(err, 'HOST_UNREACHABLE')).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain('"pinned"');
    expect(msg).toContain(wrong);
    expect(msg).toContain(sshd.hostKeyFingerprint);
    expect((err as AppError).details).toMatchObject({ reason: 'host-key-mismatch', expected: wrong, presented: sshd.hostKeyFingerprint });
    // A pinned key type asks the server for that key only.
    const typed = await SshHost.connect(sshOptions({ name: 'typed', hostKeyType: probed.type }));
    expect((await typed.exec(['true'])).code).toBe(0);
    typed.close();
  });

  it('a server that comes back with another host key (reinstalled, or someone in between) is refused, the connection not made', async () => {
    const other = await startSshd();
    const h = await SshHost.connect({ ...sshOptions({ name: 'rekeyed' }), port: other.port, identityFile: other.identityFile, hostKeyFingerprint: other.hostKeyFingerprint });
    try {
      const pinned = other.hostKeyFingerprint;
      await other.halt();
      const presented = other.replaceHostKey();
      await other.start();
      await new Promise((r) => setTimeout(r, 2500));
      expect(h.connected).toBe(false);
      const err = await errorOf(h.exec(['true']));
      expect(isAppError(err, 'HOST_UNREACHABLE'), String(err)).toBe(true);
      expect((err as AppError).details).toMatchObject({ reason: 'host-key-mismatch', expected: pinned, presented });
      expect((err as Error).message).toContain('"rekeyed"');
    } finally {
      h.close();
      await other.stop();
    }
  });

  it('an unreachable port fails fast with HOST_UNREACHABLE, and so does every call while down', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const err = await errorOf(SshHost.connect(sshOptions({ name: 'nowhere', port })));
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(isAppError(err, 'HOST_UNREACHABLE')).toBe(true);
    expect((err as Error).message).toContain('"nowhere"');
    const down = new SshHost(sshOptions({ name: 'nowhere', port }));
    try {
      await new Promise((r) => setTimeout(r, 100));
      for (const call of [() => down.exec(['true']), () => down.fs.readText('/etc/hostname'), () => down.kill(1, 0), () => down.connectUnix('/run/x.sock')]) {
        const t = Date.now();
        const e = await errorOf(call());
        expect(isAppError(e, 'HOST_UNREACHABLE'), String(e)).toBe(true);
        expect(Date.now() - t).toBeLessThan(100);
      }
      expect(() => down.spawn(['true'])).toThrow(/nowhere/);
    } finally {
      down.close();
    }
  });

  it('reconnects with backoff after the sshd restarts; calls fail fast while it is down', async () => {
    const h = await SshHost.connect(sshOptions({ name: 'restarts' }));
    try {
      expect((await h.exec(['true'])).code).toBe(0);
      await sshd.halt();
      expect(await until(() => !h.connected, 5000)).toBe(true);
      const t = Date.now();
      const e = await errorOf(h.exec(['true']));
      expect(isAppError(e, 'HOST_UNREACHABLE')).toBe(true);
      expect((e as Error).message).toContain('"restarts"');
      expect(Date.now() - t).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 1500));
      await sshd.start();
      await Promise.race([h.ready(), new Promise((_, rej) => setTimeout(() => rej(new Error('no reconnection within 5 s')), 5000))]);
      expect((await h.exec(['echo', 'back'])).stdout).toBe('back\n');
      expect(await h.fs.readText('/proc/self/stat')).toMatch(/^\d+/);
      expect(h.stats.connects).toBe(2);
      // A dropped connection (the server's process for it gone) is noticed and replaced as well.
      await sshd.dropConnections();
      await Promise.race([until(() => h.stats.connects === 3 && h.connected, 5000), new Promise((r) => setTimeout(r, 5000))]);
      expect((await h.exec(['true'])).code).toBe(0);
    } finally {
      h.close();
      if (sshd.pid() < 0 || !running(sshd.pid())) await sshd.start();
    }
    // The shared host reconnects too.
    await ssh.ready();
  });

  it('a call made right after a drop waits for the reconnection that follows it, and runs once', async () => {
    const h = await SshHost.connect(sshOptions({ name: 'rejoin' }));
    try {
      expect((await h.exec(['true'])).code).toBe(0);
      const before = h.stats.connects;
      await sshd.dropConnections();
      // The moment the drop is noticed (the reconnection is under way then: an SSH handshake takes far longer than a turn of the event loop).
      for (let i = 0; i < 200_000 && h.connected; i++) await new Promise((r) => setImmediate(r));
      expect(h.connected).toBe(false);
      const [ran, file] = [h.exec(['sh', '-c', `echo x >> ${join(dir, 'rejoin.log')}; echo after`]), join(dir, 'rejoin.log')];
      expect((await ran).stdout).toBe('after\n');
      expect(readFileSync(file, 'utf8')).toBe('x\n');
      expect(h.stats.connects).toBe(before + 1);
    } finally {
      h.close();
    }
    await ssh.ready();
  });

  it('a detached process outlives the SshHost that started it', async () => {
    const h = await SshHost.connect(sshOptions({ name: 'detach' }));
    const p = h.spawn(['sleep', '61'], { detached: true, logFile: join(dir, 'survivor.log') });
    const pid = await p.pid;
    started.add(pid);
    h.close();
    await sshd.dropConnections();
    await new Promise((r) => setTimeout(r, 300));
    expect(running(pid)).toBe(true);
    // The shared host lost its connection too (every connection was dropped): it is back by itself.
    await ssh.ready();
    expect(await ssh.kill(pid, 'SIGKILL')).toBe(true);
  });

  it('one channel per command; more commands than the server has sessions wait for a free one', async () => {
    const before = ssh.stats.sessions;
    await ssh.exec(['true']);
    expect(ssh.stats.sessions - before).toBe(1);
    const results = await Promise.all(Array.from({ length: 25 }, (_, i) => ssh.exec(['sh', '-c', `sleep 0.2; echo ${i}`])));
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 25 }, (_, i) => `${i}\n`));
  });

  it('readMany is one round trip: no channel, requests pipelined (timed through a 100 ms-latency link)', async () => {
    const delay = 100;
    const proxy = await latencyProxy(sshd.port, delay);
    const far = await SshHost.connect(sshOptions({ name: 'far', port: proxy.port, connectTimeoutMs: 30_000 }));
    try {
      const files = ['/proc/uptime', '/proc/loadavg', '/proc/meminfo', '/proc/self/stat', '/proc/stat', '/proc/version', '/proc/filesystems', '/etc/hostname', '/etc/os-release', '/no/such/file'];
      await far.fs.readText('/proc/uptime');
      const sessions = far.stats.sessions;
      const requests = far.stats.sftpRequests;
      const t0 = Date.now();
      const got = await far.fs.readMany(files);
      const took = Date.now() - t0;
      expect(got.filter((g) => g !== undefined)).toHaveLength(9);
      expect(far.stats.sessions).toBe(sessions);
      // OPEN for each file, READ for each that exists, a CLOSE after each READ.
      expect(far.stats.sftpRequests - requests).toBe(10 + 9 + 9);
      // Two exchanges (every OPEN, then every READ) are 2 round trips of 2 x delay; one file after another would be 20.
      expect(took).toBeLessThan(3 * 2 * delay);
      expect(took).toBeGreaterThanOrEqual(2 * 2 * delay - 20);
    } finally {
      far.close();
      await proxy.close();
    }
  });
});

/** A TCP relay on 127.0.0.1 that holds every chunk for delayMs in each direction: a long link. */
async function latencyProxy(target: number, delayMs: number): Promise<{ port: number; close: () => Promise<void> }> {
  const { connect } = await import('node:net');
  const sockets = new Set<Socket>();
  const relay = (from: Socket, to: Socket) => {
    from.on('data', (d: Buffer) => { setTimeout(() => { if (!to.destroyed) to.write(d); }, delayMs); });
    from.on('end', () => setTimeout(() => to.end(), delayMs));
    from.on('error', () => to.destroy());
  };
  const server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}
