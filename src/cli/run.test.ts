// In-process tests of the hangar CLI against the fake daemon: output formats, exit codes, error printing, local validation.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeDaemon, type FakeDaemon } from '../../test/helpers/fake-daemon.js';
import { detachFilter } from './commands/exec.js';
import { renderUnit } from './commands/daemon.js';
import { run } from './run.js';

/** A writable collecting text. */
function sink(): Writable & { text: () => string } {
  const chunks: Buffer[] = [];
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  });
  return Object.assign(w, { text: () => Buffer.concat(chunks).toString('utf8') });
}

let fake: FakeDaemon;
beforeAll(async () => {
  fake = await startFakeDaemon();
});
afterAll(async () => {
  await fake.close();
});

/** Runs the CLI in-process; answers exit code and captured output. */
async function cli(argv: string[], opts: { stdin?: Readable; env?: Record<string, string>; cwd?: string } = {}): Promise<{ code: number; out: string; err: string }> {
  const stdout = sink();
  const stderr = sink();
  const code = await run(argv, {
    stdin: opts.stdin ?? Readable.from([]),
    stdout,
    stderr,
    env: { HANGAR_SOCKET: fake.socketPath, ...opts.env },
    cwd: opts.cwd ?? '/tmp',
  });
  return { code, out: stdout.text(), err: stderr.text() };
}

describe('hangar CLI', () => {
  it('list --format csv prints the columns with CSV quoting', async () => {
    const r = await cli(['list', '--format', 'csv']);
    expect(r.code).toBe(0);
    expect(r.out).toBe('NAME,TYPE,DRIVER,STATE,IPV4,IMAGE\nweb1,container,lxc,RUNNING,10.99.0.2,busybox\ndb1,container,lxc,STOPPED,,"debian, ""bookworm"""\n');
  });

  it('list --format json prints full instances', async () => {
    const r = await cli(['list', '--format', 'json']);
    const list = JSON.parse(r.out) as Array<{ name: string; technology: { kernel: string } }>;
    expect(list.map((i) => i.name)).toEqual(['web1', 'db1']);
    expect(list[0]!.technology.kernel).toBe('shared');
  });

  it('rejects an unknown format before talking to the daemon', async () => {
    const before = fake.requests.length;
    const r = await cli(['list', '--format', 'xml']);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('xml');
    expect(fake.requests.length).toBe(before);
  });

  it('info shows technology and usage in the human view', async () => {
    const r = await cli(['info', 'web1']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('shared kernel, burstable memory');
    expect(r.out).toMatch(/CPU time:\s+1\.50s/);
    expect(r.out).toMatch(/Memory:\s+1MiB/);
  });

  it('prints Error and each cause, exit 1', async () => {
    const r = await cli(['info', 'missing']);
    expect(r.code).toBe(1);
    expect(r.err).toBe('Error: Instance "missing" not found\n  caused by: no row in instances\n  caused by: lookup by name\n');
  });

  it('prints a failed operation with its causes', async () => {
    const r = await cli(['start', 'web1']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('Error: Failed to start instance "web1"\n  caused by: lxc-start exited with status 1\n  caused by: cgroup memory controller missing\n');
  });

  it('reports an unreachable daemon with the socket and a hint', async () => {
    const r = await cli(['list'], { env: { HANGAR_SOCKET: '/nonexistent/hangar.sock' } });
    expect(r.code).toBe(1);
    expect(r.err).toContain('Error: Cannot reach hangard at /nonexistent/hangar.sock');
    expect(r.err).toContain('npm start');
  });

  it('exec passes the remote exit code through and streams stdin/stdout/stderr', async () => {
    const r = await cli(['exec', 'web1', '--', 'cat'], { stdin: Readable.from([Buffer.from('ping')]) });
    expect(r.code).toBe(3);
    expect(r.out).toBe('ping');
    expect(r.err).toBe('warn\n');
  });

  it('exec sends --env, --cwd and arguments after --', async () => {
    const r = await cli(['exec', 'web1', '--env', 'A=1', '--cwd', '/srv', '--', 'env', '-x', '--y']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ command: ['env', '-x', '--y'], env: { A: '1' }, cwd: '/srv' });
  });

  it('launch validates locally and maps the sugar options to config keys', async () => {
    const bad = await cli(['launch', 'busybox', 'Bad_Name']);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('Invalid instance name "Bad_Name"');
    const badSize = await cli(['launch', 'busybox', 'c3', '--memory', 'lots']);
    expect(badSize.code).toBe(1);
    expect(badSize.err).toContain('Invalid limits.memory');
    expect(fake.requests.some((q) => (q.body as { name?: string } | undefined)?.name === 'c3')).toBe(false);

    const ok = await cli(['launch', 'busybox', 'c3', '--memory', '512MiB', '--cpus', '2', '-c', 'user.role=web', '--ip', '10.99.0.9']);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('Launched c3');
    const post = fake.requests.filter((q) => q.method === 'POST' && q.path === '/1.0/instances').at(-1);
    expect(post?.body).toEqual({ name: 'c3', image: 'busybox', config: { 'user.role': 'web', 'limits.memory': '512MiB', 'limits.cpu': '2' }, ipv4: '10.99.0.9', start: true });
  });

  it('config set prints live and pending keys', async () => {
    const r = await cli(['config', 'set', 'web1', 'limits.memory=1GiB', 'limits.cpu=2']);
    expect(r.code).toBe(0);
    expect(r.out).toBe('Applied live: limits.memory\nPending until restart: limits.cpu (run: hangar restart web1)\n');
  });

  it('config set refuses unknown keys locally', async () => {
    const r = await cli(['config', 'set', 'web1', 'limits.bogus=1']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('Unknown config key "limits.bogus"');
  });

  it('daemon install writes a unit with ExecStart, HANGAR_* environment and KillMode=process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hangar-unit-'));
    try {
      const r = await cli(['daemon', 'install', '--output', 'hangard.service'], { cwd: dir, env: { HANGAR_STORAGE: '/var/lib/x y', OTHER: 'no' } });
      expect(r.code).toBe(0);
      const unit = readFileSync(join(dir, 'hangard.service'), 'utf8');
      expect(unit).toMatch(new RegExp(`^ExecStart=${process.execPath} /\\S+/dist/hangard\\.mjs$`, 'm'));
      expect(unit).toContain('Environment="HANGAR_STORAGE=/var/lib/x y"');
      expect(unit).toContain(`Environment="HANGAR_SOCKET=${fake.socketPath}"`);
      expect(unit).not.toContain('OTHER');
      expect(unit).toContain('KillMode=process');
      expect(unit).toContain('Restart=on-failure');
      expect(r.out).toContain('systemctl daemon-reload && systemctl enable --now hangard');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--version prints the version', async () => {
    const r = await cli(['--version']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('helpers', () => {
  it('renderUnit escapes quotes, backslashes and percent signs', () => {
    expect(renderUnit('/usr/bin/node', '/opt/h/dist/hangard.mjs', { HANGAR_X: 'a"b\\c%d' })).toContain('Environment="HANGAR_X=a\\"b\\\\c%%d"');
  });

  it('detachFilter spots Ctrl-a q, passes other bytes, and turns Ctrl-a Ctrl-a into one Ctrl-a', () => {
    let detached = 0;
    const f = detachFilter(() => detached++);
    expect([...f(Buffer.from('ab\x01\x01c'))]).toEqual([0x61, 0x62, 0x01, 0x63]);
    expect([...f(Buffer.from('\x01x'))]).toEqual([0x01, 0x78]);
    expect(detached).toBe(0);
    expect([...f(Buffer.from('z\x01'))]).toEqual([0x7a]);
    expect([...f(Buffer.from('q after'))]).toEqual([]);
    expect(detached).toBe(1);
  });

  it('exec with a PassThrough stdin that stays open until written still completes', async () => {
    const stdin = new PassThrough();
    const pending = cli(['exec', 'web1', '--', 'cat'], { stdin });
    stdin.end('late');
    const r = await pending;
    expect(r.code).toBe(3);
    expect(r.out).toBe('late');
  });
});
