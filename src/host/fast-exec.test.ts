// Unit tests of LocalHost.exec on both paths, the fast-exec addon and child_process: the same results for output, input, exit codes, signals, cwd, env, timeouts and commands that cannot start.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { causeChain, isAppError } from '../shared/errors.js';
import { fastExecAddon, resolveCommand } from './fast-exec.js';
import { LocalHost } from './local.js';

const dir = mkdtempSync(join(tmpdir(), 'hangar-fast-exec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the fast-exec addon', () => {
  it('is built wherever Node\'s headers are (the bootstrap builds it), so the fast path is what these tests run', () => {
    if (existsSync('/usr/include/node/node_api.h')) expect(fastExecAddon()).not.toBeNull();
  });

  it('resolves a command name in PATH as execvp does, and takes a path as it is', () => {
    expect(resolveCommand('sh', '/nonexistent:/usr/bin:/bin')).toMatch(/^\/(usr\/)?bin\/sh$/);
    expect(resolveCommand('no-such-command-hangar', '/usr/bin:/bin')).toBeNull();
    expect(resolveCommand('./x', '/bin')).toBe('./x');
    // A directory named like the command is not it.
    expect(resolveCommand('tmp', '/')).toBeNull();
  });

  it('finds a command again when the file it found before is gone', async () => {
    const bin1 = join(dir, 'bin1');
    const bin2 = join(dir, 'bin2');
    mkdirSync(bin1);
    mkdirSync(bin2);
    writeFileSync(join(bin1, 'hangar-t'), '#!/bin/sh\necho one\n', { mode: 0o755 });
    writeFileSync(join(bin2, 'hangar-t'), '#!/bin/sh\necho two\n', { mode: 0o755 });
    const host = new LocalHost({ env: { PATH: `${bin1}:${bin2}:/usr/bin:/bin` } });
    expect((await host.exec(['hangar-t'])).stdout).toBe('one\n');
    rmSync(join(bin1, 'hangar-t'));
    expect((await host.exec(['hangar-t'])).stdout).toBe('two\n');
  });
});

describe('LocalHost.watchExit', () => {
  const host = new LocalHost();
  const sleeper = () => { const c = spawn('sleep', ['30'], { stdio: 'ignore' }); return c; };

  it.skipIf(!fastExecAddon())('calls back once a process that is not its child ends, and not after a cancel (skipped only where the addon is not built)', async () => {
    const a = sleeper();
    const b = sleeper();
    const ended: string[] = [];
    const onA = new Promise<void>((res) => { expect(host.watchExit(a.pid!, () => { ended.push('a'); res(); })).toBeTypeOf('function'); });
    const cancelB = host.watchExit(b.pid!, () => ended.push('b'))!;
    cancelB();
    b.kill('SIGKILL');
    a.kill('SIGKILL');
    await onA;
    await new Promise((r) => setTimeout(r, 50));
    expect(ended).toEqual(['a']);
  });

  it('answers undefined for a pid that is no process, and where the addon is not used', () => {
    expect(host.watchExit(2 ** 22 + 12345, () => undefined)).toBeUndefined();
    expect(new LocalHost({ fastExec: false }).watchExit(process.pid, () => undefined)).toBeUndefined();
  });
});

const caught = async (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e);

for (const fast of [true, false]) {
  describe(`LocalHost.exec through ${fast ? 'the fast-exec addon' : 'child_process'}`, () => {
    const host = new LocalHost({ fastExec: fast });

    it('returns stdout and stderr, feeds input, and keeps output past a pipe buffer', async () => {
      expect(await host.exec(['sh', '-c', 'echo out; echo err >&2'])).toEqual({ code: 0, signal: null, stdout: 'out\n', stderr: 'err\n' });
      expect((await host.exec(['cat'], { input: 'fed\n' })).stdout).toBe('fed\n');
      const big = 'x'.repeat(3 * 1024 * 1024);
      expect((await host.exec(['wc', '-c'], { input: big })).stdout.trim()).toBe(String(big.length));
      expect((await host.exec(['head', '-c', '1000000', '/dev/zero'])).stdout.length).toBe(1_000_000);
      // Without input, stdin is /dev/null: a reader sees EOF at once.
      expect((await host.exec(['cat'])).stdout).toBe('');
    });

    it('runs in cwd with the host\'s base environment plus the call\'s, nothing of the daemon\'s own', async () => {
      process.env.HANGAR_FAST_EXEC_LEAK = 'leaked';
      try {
        const r = await host.exec(['sh', '-c', 'pwd; echo "$PATH|$HANGAR_X|${HANGAR_FAST_EXEC_LEAK:-none}"'], { cwd: dir, env: { HANGAR_X: 'given' } });
        expect(r.stdout).toBe(`${dir}\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|given|none\n`);
      } finally {
        delete process.env.HANGAR_FAST_EXEC_LEAK;
      }
    });

    it('gives the command default signal handling (Node ignores SIGPIPE; a child must not)', async () => {
      // yes dies of SIGPIPE when head stops reading; with SIGPIPE ignored it would loop on EPIPE errors instead.
      const r = await host.exec(['sh', '-c', 'yes | head -c 10 >/dev/null'], { allowFailure: true });
      expect(r).toMatchObject({ code: 0, stderr: '' });
      const status = (await host.exec(['grep', '-E', '^(SigIgn|SigBlk):', '/proc/self/status'])).stdout;
      const mask = (k: string) => BigInt(`0x${new RegExp(`^${k}:\\s+([0-9a-f]+)$`, 'm').exec(status)![1]}`);
      expect(mask('SigBlk')).toBe(0n);
      // The classic signals 1-31; glibc keeps its two internal real-time signals (32, 33) to itself.
      expect(mask('SigIgn') & 0x7fffffffn).toBe(0n);
    });

    it('throws HOST_FAILED with the exit code and what the command said, or returns it with allowFailure', async () => {
      const err = await caught(host.exec(['sh', '-c', 'echo bad input >&2; exit 3']));
      expect(isAppError(err, 'HOST_FAILED') && err.details).toEqual({ code: 3 });
      expect((err as Error).message).toBe('Command failed: sh -c "echo bad input >&2; exit 3"');
      expect(causeChain(err)).toEqual(['bad input']);
      expect(await host.exec(['sh', '-c', 'exit 4'], { allowFailure: true })).toMatchObject({ code: 4, signal: null });
    });

    it('reports a command a signal ended with code -1 and the signal\'s name', async () => {
      expect(await host.exec(['sh', '-c', 'kill -KILL $$'], { allowFailure: true })).toMatchObject({ code: -1, signal: 'SIGKILL' });
      const err = await caught(host.exec(['sh', '-c', 'kill -USR1 $$']));
      expect(causeChain(err).at(-1)).toBe('killed by SIGUSR1');
    });

    it('ends a command at its timeout with SIGTERM', async () => {
      expect(await host.exec(['sleep', '30'], { timeoutMs: 100, allowFailure: true })).toMatchObject({ code: -1, signal: 'SIGTERM' });
    });

    it('refuses a command that cannot start: not found (ENOENT), not executable (EACCES)', async () => {
      const missing = await caught(host.exec(['no-such-command-hangar']));
      expect(isAppError(missing, 'HOST_FAILED') && missing.message).toBe('Failed to run no-such-command-hangar');
      expect((missing as { cause?: NodeJS.ErrnoException }).cause?.code).toBe('ENOENT');
      const file = join(dir, 'not-executable');
      writeFileSync(file, '#!/bin/sh\n', { mode: 0o644 });
      const denied = await caught(host.exec([file]));
      expect((denied as { cause?: NodeJS.ErrnoException }).cause?.code).toBe('EACCES');
      await expect(host.exec([])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    });

    it('spawns a streaming process: stdin to stdout, stderr apart, its exit code once its output closed', async () => {
      const p = host.spawn(['sh', '-c', 'cat; echo gone >&2; exit 5']);
      expect(await p.pid).toBeGreaterThan(1);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      p.stdout!.on('data', (d: Buffer) => out.push(d));
      p.stderr!.on('data', (d: Buffer) => err.push(d));
      p.stdin!.write('line 1\n');
      p.stdin!.end('line 2\n');
      expect(await p.wait()).toEqual({ code: 5, signal: null });
      expect(Buffer.concat(out).toString()).toBe('line 1\nline 2\n');
      expect(Buffer.concat(err).toString()).toBe('gone\n');
    });

    it('kills a spawned process with the signal asked for (SIGTERM by default), and a kill after its exit is a no-op', async () => {
      const p = host.spawn(['sleep', '30']);
      p.stdout!.resume();
      p.stderr!.resume();
      p.kill('SIGKILL');
      expect(await p.wait()).toEqual({ code: null, signal: 'SIGKILL' });
      p.kill();
      const q = host.spawn(['sleep', '30']);
      q.stdout!.resume();
      q.stderr!.resume();
      q.kill();
      expect(await q.wait()).toEqual({ code: null, signal: 'SIGTERM' });
    });

    it('kills what a group leader started with it (group: true), and only that', async () => {
      const mark = `hangar-group-${process.pid}-${fast ? 'fast' : 'cp'}`;
      const p = host.spawn(['sh', '-c', `sleep 1000 & sleep 1001 & echo started; wait # ${mark}`], { group: true });
      p.stderr!.resume();
      await new Promise<void>((res) => p.stdout!.once('data', () => res()));
      const leader = await p.pid;
      const members = () => readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((e) => {
        // Zombies count as gone: who reaps an orphan here is the machine's init's business.
        try { const f = readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1]!.split(' '); return f[2] === String(leader) && f[0] !== 'Z'; } catch { return false; }
      });
      expect(members().length).toBe(3);
      // Not the test process's own group: a kill of the group never reaches the caller.
      expect(readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')[2]).not.toBe(String(leader));
      p.kill('SIGKILL');
      await p.wait();
      await new Promise((r) => setTimeout(r, 100));
      expect(members()).toEqual([]);
    });

    it('spawns in cwd, with the host\'s environment', async () => {
      const p = host.spawn(['sh', '-c', 'pwd; echo "$HANGAR_Y"'], { cwd: dir, env: { HANGAR_Y: 'y' } });
      const out: Buffer[] = [];
      p.stdout!.on('data', (d: Buffer) => out.push(d));
      p.stderr!.resume();
      expect(await p.wait()).toEqual({ code: 0, signal: null });
      expect(Buffer.concat(out).toString()).toBe(`${dir}\ny\n`);
    });

    it('leaves no descriptor of its pipes behind, and no zombie', async () => {
      const fds = () => readdirSync('/proc/self/fd').length;
      await host.exec(['true']);
      const before = fds();
      for (let i = 0; i < 20; i++) {
        await host.exec(['sh', '-c', 'echo x'], { input: 'in' });
        const p = host.spawn(['cat']);
        p.stdout!.resume();
        p.stderr!.resume();
        p.stdin!.end('y');
        await p.wait();
      }
      // Sockets are closed on the next tick after 'close'.
      await new Promise((r) => setTimeout(r, 50));
      expect(fds()).toBe(before);
      const zombies = (await host.exec(['ps', '-o', 'stat=', '--ppid', String(process.pid)], { allowFailure: true })).stdout.split('\n').filter((l) => l.startsWith('Z'));
      expect(zombies).toEqual([]);
    });

    it('runs many at once, each with its own result', async () => {
      const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => host.exec(['sh', '-c', `echo ${i}; exit ${i % 3}`], { allowFailure: true })));
      expect(rs.map((r) => [r.stdout, r.code])).toEqual(Array.from({ length: 40 }, (_, i) => [`${i}\n`, i % 3]));
    });
  });
}
