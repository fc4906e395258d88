// Unit tests of the remote command line: run through real login shells as sshd would ($SHELL -c LINE), with the pid marker split off.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { NOT_STARTED, PidMarker, remoteCommand, type RemoteCommandSpec } from './remote-command.js';

const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8' };
const LOGIN_SHELLS = [['/bin/bash'], ['/bin/dash'], ...(existsSync('/bin/busybox') ? [['/bin/busybox', 'sh']] : [])];
const dir = mkdtempSync(join(tmpdir(), 'hangar-rc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runAs(shell: string[], spec: Partial<RemoteCommandSpec> & { argv: string[] }) {
  const line = remoteCommand({ env: ENV, mode: 'run', ...spec });
  // A login environment that must not leak into the program.
  const r = spawnSync(shell[0]!, [...shell.slice(1), '-c', line], { env: { ...ENV, SSH_CONNECTION: '10.0.0.1 1 10.0.0.2 22', SECRET: 'leak' } });
  const marker = new PidMarker();
  const out = marker.push(r.stdout);
  return { code: r.status, stdout: out.toString('utf8'), stderr: r.stderr.toString('utf8'), pid: marker.pid };
}

describe('remoteCommand', () => {
  for (const shell of LOGIN_SHELLS) {
    describe(`under ${shell.join(' ')}`, () => {
      it('gives the program exactly the environment asked for', () => {
        const r = runAs(shell, { argv: ['env'], env: { ...ENV, FOO: "a 'b' $(c)\nd" } });
        expect(r.code).toBe(0);
        const got = Object.fromEntries(r.stdout.trim().split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
        expect(Object.keys(got).sort()).toEqual(['FOO', 'HOME', 'LANG', 'PATH']);
        expect(r.stdout).toContain("FOO=a 'b' $(c)\nd\n");
      });

      it('reports the pid of the program itself and passes argv verbatim', () => {
        const argv = ['sh', '-c', 'echo $$; printf "%s|" "$@"', 'x', 'a b', "'", '$(touch /tmp/hangar-rc-pwned)', 'l1\nl2', ''];
        const r = runAs(shell, { argv });
        expect(r.code).toBe(0);
        const [pid, rest] = r.stdout.split('\n', 2);
        expect(r.pid).toBe(Number(pid));
        expect(r.stdout.slice(pid!.length + 1)).toBe("a b|'|$(touch /tmp/hangar-rc-pwned)|l1\nl2||");
        expect(rest).toBe("a b|'|$(touch /tmp/hangar-rc-pwned)|l1");
        expect(existsSync('/tmp/hangar-rc-pwned')).toBe(false);
      });

      it('changes into cwd, and says so when it cannot', () => {
        expect(runAs(shell, { argv: ['pwd'], cwd: '/etc' }).stdout).toBe('/etc\n');
        const bad = runAs(shell, { argv: ['true'], cwd: '/no/such/dir' });
        expect(bad.code).toBe(NOT_STARTED.code);
        expect(bad.stderr).toBe(`${NOT_STARTED.prefix}cannot change directory to /no/such/dir\n`);
        expect(bad.pid).toBeUndefined();
      });

      it('says so when the program does not exist or is no program', () => {
        for (const prog of ['no-such-program-hangar', '/etc/passwd', '/etc']) {
          const r = runAs(shell, { argv: [prog] });
          expect(r.code).toBe(NOT_STARTED.code);
          expect(r.stderr).toBe(`${NOT_STARTED.prefix}cannot run ${prog}: not found\n`);
        }
      });

      it('passes the exit code through', () => {
        expect(runAs(shell, { argv: ['sh', '-c', 'exit 42'] }).code).toBe(42);
      });

      it('detaches: its own session, output to the log, the pid of the running program', async () => {
        const log = join(dir, `detached-${shell.length}-${shell[0]!.replace(/\W/g, '')}.log`);
        const r = runAs(shell, { argv: ['sh', '-c', 'echo started $$; sleep 5'], mode: 'detach', logFile: log });
        expect(r.code).toBe(0);
        expect(r.pid).toBeGreaterThan(0);
        try {
          for (let i = 0; i < 50 && !existsSync(log); i++) await new Promise((res) => setTimeout(res, 20));
          for (let i = 0; i < 50 && !readFileSync(log, 'utf8').includes('started'); i++) await new Promise((res) => setTimeout(res, 20));
          expect(readFileSync(log, 'utf8')).toBe(`started ${r.pid}\n`);
          const stat = readFileSync(`/proc/${r.pid}/stat`, 'utf8');
          const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          // Field 6 of stat is the session id: its own.
          expect(Number(fields[3])).toBe(r.pid);
        } finally {
          try { process.kill(r.pid!, 'SIGKILL'); } catch { /* gone */ }
        }
      });
    });
  }

  it('refuses bad variable names, NUL bytes and empty commands', () => {
    const refused = (spec: RemoteCommandSpec) => { try { remoteCommand(spec); return undefined; } catch (e) { return e; } };
    expect(isAppError(refused({ argv: ['true'], env: { 'A=B': '1' }, mode: 'run' }), 'INVALID_ARGUMENT')).toBe(true);
    expect(isAppError(refused({ argv: ['true'], env: { 'A B': '1' }, mode: 'run' }), 'INVALID_ARGUMENT')).toBe(true);
    expect(isAppError(refused({ argv: ['true'], env: { A: 'x\0y' }, mode: 'run' }), 'INVALID_ARGUMENT')).toBe(true);
    expect(isAppError(refused({ argv: ['a\0'], env: {}, mode: 'run' }), 'INVALID_ARGUMENT')).toBe(true);
    expect(isAppError(refused({ argv: [], env: {}, mode: 'run' }), 'INVALID_ARGUMENT')).toBe(true);
  });
});

describe('PidMarker', () => {
  it('drops what the login shell printed first, takes the pid, passes the rest on, across chunk boundaries', () => {
    const all = Buffer.from('motd noise\n\x1ehangar-pid=4242\nprogram output\n');
    for (let cut = 0; cut <= all.length; cut++) {
      const m = new PidMarker();
      const out = Buffer.concat([m.push(all.subarray(0, cut)), m.push(all.subarray(cut))]).toString();
      expect(m.pid).toBe(4242);
      expect(out).toBe('program output\n');
    }
  });

  it('takes a terminal line ending too', () => {
    const m = new PidMarker();
    expect(m.push(Buffer.from('\x1ehangar-pid=7\r\n$ ')).toString()).toBe('$ ');
    expect(m.pid).toBe(7);
  });
});
