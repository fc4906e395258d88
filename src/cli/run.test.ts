// In-process tests of the hangar CLI against the fake daemon: output formats, exit codes, error printing, local validation.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeDaemon, type FakeDaemon } from '../../test/helpers/fake-daemon.js';
import { detachFilter } from './commands/exec.js';
import { renderUnit } from './commands/daemon.js';
import { run, type CliIo } from './run.js';
import { sink } from '../../test/helpers/sink.js';

let fake: FakeDaemon;
beforeAll(async () => {
  fake = await startFakeDaemon();
});
afterAll(async () => {
  await fake.close();
});

/** Runs the CLI in-process; answers exit code and captured output. */
async function cli(argv: string[], opts: { stdin?: Readable; env?: Record<string, string>; cwd?: string; io?: Partial<CliIo> } = {}): Promise<{ code: number; out: string; err: string }> {
  const stdout = sink();
  const stderr = sink();
  const code = await run(argv, {
    stdin: opts.stdin ?? Readable.from([]),
    stdout,
    stderr,
    env: { HANGAR_SOCKET: fake.socketPath, ...opts.env },
    cwd: opts.cwd ?? '/tmp',
    ...opts.io,
  });
  return { code, out: stdout.text(), err: stderr.text() };
}

describe('hangar CLI', () => {
  it('list --format csv prints the columns with CSV quoting', async () => {
    const r = await cli(['list', '--format', 'csv']);
    expect(r.code).toBe(0);
    expect(r.out).toBe('NAME,TYPE,DRIVER,STATE,IPV4,IMAGE,HOST\nweb1,container,lxc,RUNNING,10.99.0.2,busybox,local\ndb1,container,lxc,STOPPED,,"debian, ""bookworm""",local\ndom1,vm,xen,UNKNOWN,10.99.0.7,,dom0\n');
  });

  it('list --format json prints full instances', async () => {
    const r = await cli(['list', '--format', 'json']);
    const list = JSON.parse(r.out) as Array<{ name: string; technology: { kernel: string } }>;
    expect(list.map((i) => i.name)).toEqual(['web1', 'db1', 'dom1']);
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

  it('exec --disconnect-signal sends the signal asked for; an unknown one is refused before any request', async () => {
    const r = await cli(['exec', 'web1', '--disconnect-signal', 'term', '--', 'env']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ command: ['env'], disconnectSignal: 'SIGTERM' });
    const before = fake.requests.length;
    const bad = await cli(['exec', 'web1', '--disconnect-signal', 'SIGSTOP', '--', 'env']);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('Invalid signal "SIGSTOP": expected one of SIGHUP, SIGINT, SIGQUIT, SIGKILL, SIGTERM');
    expect(fake.requests.length).toBe(before);
  });

  it('execs lists the running execs in every format; exec-signal sends a signal by id and reports an unknown id', async () => {
    const table = await cli(['execs', 'web1']);
    expect(table.out).toBe('ID      COMMAND   TTY  STARTED                   ON DISCONNECT\ne1f00d  sleep 99  no   2026-01-02T03:04:05.000Z  SIGTERM\n');
    expect(JSON.parse((await cli(['execs', 'web1', '--format', 'json'])).out)).toEqual([{ id: 'e1f00d', command: ['sleep', '99'], tty: false, startedAt: '2026-01-02T03:04:05.000Z', disconnectSignal: 'SIGTERM' }]);
    const ok = await cli(['exec-signal', 'web1', 'e1f00d', 'INT']);
    expect(ok.code).toBe(0);
    expect(fake.requests.at(-1)).toEqual({ method: 'POST', path: '/1.0/instances/web1/execs/e1f00d/signal', body: { signal: 'SIGINT' } });
    const missing = await cli(['exec-signal', 'web1', 'nope', 'SIGTERM']);
    expect(missing.code).not.toBe(0);
    expect(missing.err).toContain('No running exec "nope" in instance "web1"');
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

  it('list shows a HOST column, --host filters, and an instance of a host that is down is UNKNOWN', async () => {
    const r = await cli(['list']);
    expect(r.code).toBe(0);
    expect(r.out).toBe([
      'NAME  TYPE       DRIVER  STATE    IPV4       IMAGE               HOST',
      'web1  container  lxc     RUNNING  10.99.0.2  busybox             local',
      'db1   container  lxc     STOPPED  -          debian, "bookworm"  local',
      'dom1  vm         xen     UNKNOWN  10.99.0.7  -                   dom0',
      '',
    ].join('\n'));
    const only = await cli(['list', '--host', 'dom0', '--format', 'csv']);
    expect(only.out).toBe('NAME,TYPE,DRIVER,STATE,IPV4,IMAGE,HOST\ndom1,vm,xen,UNKNOWN,10.99.0.7,,dom0\n');
    expect(fake.requests.at(-1)?.path).toBe('/1.0/instances?host=dom0');
    const bad = await cli(['list', '--host', 'No_Such']);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('Invalid host name "No_Such"');
    expect(await cli(['list', '--host', 'nope'])).toMatchObject({ code: 1, err: 'Error: Host "nope" not found\n' });
  });

  it('launch --host sends the host and says where it went', async () => {
    const r = await cli(['launch', 'busybox', 'c4', '--host', 'spare']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('Launched c4 (10.99.0.2) on host spare\n');
    expect(fake.requests.filter((q) => q.method === 'POST' && q.path === '/1.0/instances').at(-1)?.body).toEqual({ name: 'c4', image: 'busybox', host: 'spare', start: true });
    expect((await cli(['create', 'busybox', 'c5', '--host', 'Bad Host'])).err).toContain('Invalid host name "Bad Host"');
  });

  it('host list: state, URL, instances, pinned key and why a host is down', async () => {
    const r = await cli(['host', 'list']);
    expect(r.code).toBe(0);
    const key = 'ssh-ed25519 SHA256:AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFake0';
    expect(r.out).toBe([
      'NAME   STATE  URL                         INSTANCES  HOST KEY                                                           REASON',
      'local  UP     (local)                     2          -                                                                  -',
      `dom0   DOWN   ssh://root@192.0.2.10:2222  1          ${key}  Host "dom0" is unreachable (root@192.0.2.10:2222): connect ECONNREFUSED 192.0.2.10:2222`,
      `spare  UP     ssh://admin@192.0.2.11      0          ${key}  -`,
      '',
    ].join('\n'));
    const json = JSON.parse((await cli(['host', 'list', '--format', 'json'])).out) as Array<{ name: string; state: string }>;
    expect(json.map((h) => [h.name, h.state])).toEqual([['local', 'up'], ['dom0', 'down'], ['spare', 'up']]);
    expect((await cli(['host', 'list', '--format', 'csv'])).out.split('\n')[0]).toBe('NAME,STATE,URL,INSTANCES,HOST KEY,REASON');
  });

  it('host add prints the pinned key and fingerprint; bad URLs and names are refused before anything is sent', async () => {
    const before = fake.requests.length;
    const cases: Array<[string[], string]> = [
      [['host', 'add', 'new1', 'http://192.0.2.20'], 'only ssh:// URLs are supported'],
      [['host', 'add', 'new1', 'ssh://192.0.2.20'], 'the user is missing'],
      [['host', 'add', 'new1', 'ssh://root:secret@192.0.2.20'], 'a password does not belong in the URL'],
      [['host', 'add', 'new1', 'ssh://root@192.0.2.20:0'], 'port "0" is not a number from 1 to 65535'],
      [['host', 'add', 'new1', 'ssh://root@bad_host!'], 'is not a host name or IP address'],
      [['host', 'add', 'new1', 'ssh://root@192.0.2.20/srv'], 'it has a path, a query or stray characters'],
      [['host', 'add', 'local', 'ssh://root@192.0.2.20'], 'Invalid host name "local"'],
      [['host', 'add', 'New1', 'ssh://root@192.0.2.20'], 'Invalid host name "New1"'],
    ];
    for (const [args, msg] of cases) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.err, args.join(' ')).toContain(msg);
    }
    expect(fake.requests.length).toBe(before);
    const ok = await cli(['host', 'add', 'new1', 'ssh://root@[2001:db8::5]:2200', '--identity', 'keys/id_ed25519'], { cwd: '/srv' });
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toBe([
      'Added host new1 (ssh://root@[2001:db8::5]:2200)',
      'Host key: ssh-ed25519 SHA256:NewHostKeyNewHostKeyNewHostKeyNewHostKey123 (pinned: a different key is refused until "hangar host trust new1")',
      'Drivers: lxc (5.0.2)',
      'Network: bridge hgrbr0, subnet 10.99.0.0/24, gateway 10.99.0.1 (managed by Hangar: DHCP and NAT)',
      '',
    ].join('\n'));
    expect(fake.requests.find((q) => q.method === 'POST' && q.path === '/1.0/hosts')?.body).toEqual({ name: 'new1', url: 'ssh://root@[2001:db8::5]:2200', identityFile: '/srv/keys/id_ed25519' });
    // --bridge goes in the request; a name no interface can have is refused before anything is sent.
    expect((await cli(['host', 'add', 'new2', 'ssh://root@192.0.2.11', '--bridge', 'xenbr0'])).code).toBe(0);
    expect(fake.requests.find((q) => q.method === 'POST' && q.path === '/1.0/hosts' && (q.body as { name: string }).name === 'new2')?.body).toMatchObject({ bridge: 'xenbr0' });
    const sent = fake.requests.length;
    expect(await cli(['host', 'add', 'new3', 'ssh://root@192.0.2.12', '--bridge', 'xen/br0'])).toMatchObject({ code: 1, err: expect.stringContaining('Invalid bridge name "xen/br0"') });
    expect(fake.requests.length).toBe(sent);
    expect(await cli(['host', 'add', 'dom0', 'ssh://root@192.0.2.10'])).toMatchObject({ code: 1, err: 'Error: Host "dom0" already exists\n' });
  });

  it('host info NAME: the record (state, key, why it is down) and, when up, the facts; remove and trust', async () => {
    const down = await cli(['host', 'info', 'dom0']);
    expect(down.code).toBe(0);
    expect(down.out).toMatch(/^Host: +dom0$/m);
    expect(down.out).toMatch(/^State: +down — Host "dom0" is unreachable \(root@192\.0\.2\.10:2222\): connect ECONNREFUSED 192\.0\.2\.10:2222 \(since 2024-01-02T00:00:00Z\)$/m);
    expect(down.out).toMatch(/^Host key: +ssh-ed25519 SHA256:AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFake0 \(pinned\)$/m);
    expect(down.out).toContain('Drivers (as last opened there):');
    expect(JSON.parse((await cli(['host', 'info', 'dom0', '--format', 'json'])).out)).toEqual({ host: expect.objectContaining({ name: 'dom0', state: 'down' }) });
    const up = await cli(['host', 'info', '--host', 'spare']);
    expect(up.out).toMatch(/^URL: +ssh:\/\/admin@192\.0\.2\.11$/m);
    expect(up.out).toMatch(/^Hostname: +spare$/m);
    expect(up.out).toMatch(/^ +lxc +container +yes +yes +5\.0\.2/m);
    expect(JSON.parse((await cli(['host', 'info', 'spare', '--format', 'json'])).out)).toMatchObject({ hostname: 'spare', host: { name: 'spare', state: 'up' } });
    expect(await cli(['host', 'info', 'nope'])).toMatchObject({ code: 1, err: 'Error: Host "nope" not found\n' });

    expect(await cli(['host', 'remove', 'dom0'])).toMatchObject({ code: 1, err: 'Error: Host "dom0" cannot be removed: 1 instance lives there (dom1); delete them first\n' });
    expect(await cli(['host', 'remove', 'spare'])).toMatchObject({ code: 0, out: 'Removed host spare\n' });
    expect(await cli(['host', 'trust', 'dom0'])).toMatchObject({
      code: 0, out: 'Host dom0: host key ssh-ed25519 SHA256:ReinstalledReinstalledReinstalledReinstall1 pinned (was ssh-ed25519 SHA256:AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFake0)\n',
    });
    expect(fake.requests.find((q) => q.path === '/1.0/hosts/dom0/trust')?.body).toEqual({});
    expect((await cli(['host', 'trust', 'nope'])).err).toBe('Error: Host "nope" not found\n');
  });

  it('import xen --dry-run prints the translation: keys, disks and NICs with what happens to each, every key not kept with why', async () => {
    const file = join(import.meta.dirname, '../../test/fixtures/xen/xlexample.hvm');
    const r = await cli(['import', 'xen', file, '--dry-run']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^Instance: +example-hvm \(vm, driver xen, HVM guest\)$/m);
    expect(r.out).toMatch(/^Hangar config:\n(?: {2}.*\n)* {2}limits\.cpu=2\n(?: {2}.*\n)* {2}limits\.memory=128MiB\n/m);
    expect(r.out).toMatch(/^Disks:\n +# +TARGET +FORMAT +VDEV +ACCESS +USE +WHAT HAPPENS\n +0 +\/dev\/vg\/guest-volume +raw +xvda +rw +root +the root disk/m);
    expect(r.out).toMatch(/^NICs:\n +# +SPEC +MAC +IPV4 +USE +WHAT HAPPENS\n +0 +'' +- +- +primary /m);
    expect(r.out).toMatch(/^Not translated \(not kept\):\n +KEY +VALUE +REASON\n(?: .*\n)* +sdl +1 +Hangar sets up the consoles itself/m);
    expect(fake.requests.at(-1)).toMatchObject({ method: 'POST', path: '/1.0/imports/translate', body: { kind: 'xen', source: file } });
    const json = JSON.parse((await cli(['import', 'xen', file, '--dry-run', '--format', 'json', '--name', 'web9'])).out) as { name: string; untranslated: Array<{ key: string }> };
    expect(json.name).toBe('web9');
    expect(json.untranslated.map((u) => u.key)).toContain('sdl');
    expect((await cli(['import', 'xen', file, '--dry-run', '--format', 'csv'])).code).not.toBe(0);
  });

  it('import openvz --dry-run prints the CT\'s translation and every pair read; a real import and a garbage line are refused', async () => {
    const file = join(import.meta.dirname, '../../test/fixtures/openvz/101.conf');
    const r = await cli(['import', 'openvz', file, '--dry-run']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^Instance: +web101 \(CT 101, container, driver openvz\)$/m);
    expect(r.out).toMatch(/^Addresses: +192\.0\.2\.101 192\.0\.2\.102$/m);
    expect(r.out).toMatch(/^Private area: +\/vz\/private\/101$/m);
    expect(r.out).toContain('  limits.cpu.weight=200\n  limits.disk=11GiB\n  limits.disk.inodes=720896\n  limits.memory=512MiB\n  limits.memory.swap=1GiB\n');
    expect(r.out).toMatch(/^Resource pairs read:\n +PARAMETER +UNIT +BARRIER +LIMIT\n +PHYSPAGES +4 KiB pages +0 +131072$/m);
    expect(r.out).toMatch(/^ +KMEMSIZE +bytes +unlimited +unlimited$/m);
    expect(r.out).toMatch(/^Not translated \(not kept\):\n(?: .*\n)* +KMEMSIZE +unlimited +a beancounter of OpenVZ kernels/m);
    expect(fake.requests.at(-1)).toMatchObject({ method: 'POST', path: '/1.0/imports/translate', body: { kind: 'openvz', source: file } });
    const json = JSON.parse((await cli(['import', 'openvz', file, '--dry-run', '--format', 'json'])).out) as { ctid: number; ubc: unknown[] };
    expect(json.ctid).toBe(101);
    expect(json.ubc).toHaveLength(6);
    const real = await cli(['import', 'openvz', file]);
    expect(real.code).toBe(1);
    expect(real.err).toContain('Cannot import container 101 ("web101") on host local: the openvz driver is not available there: it is not enabled');
    const dir = mkdtempSync(join(tmpdir(), 'hangar-import-'));
    try {
      writeFileSync(join(dir, '102.conf'), 'PHYSPAGES="0:512M"\nnot a setting\n');
      expect((await cli(['import', 'openvz', '102.conf', '--dry-run'], { cwd: dir })).err).toMatch(/^Error: 102\.conf:2: not a KEY="value" line: "not a setting"\n/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('import openvz7 --dry-run reads the CT on its node and prints its translation; --host is required, an unknown CT is named', async () => {
    const r = await cli(['import', 'openvz7', '201', '--host', 'vz1', '--dry-run']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^Instance: +web201 \(container, driver openvz7, on host vz1\)$/m);
    expect(r.out).toMatch(/^CT: +201 "web201" \(uuid 5f0c3a52-1b7e-4c0d-9a44-000000000201\), running$/m);
    expect(r.out).toContain('Hangar config:\n  limits.memory=2GiB\n  openvz.ctid=201\n');
    expect(r.out).toMatch(/Hardware\.cpu\.cpulimit +150Mhz +not a percentage of one CPU/);
    expect(fake.requests.at(-1)).toMatchObject({ method: 'POST', path: '/1.0/imports/translate', body: { kind: 'openvz7', host: 'vz1', ctid: '201' } });
    expect(JSON.parse((await cli(['import', 'openvz7', 'web201', '--host', 'vz1', '--name', 'legacy', '--dry-run', '--format', 'json'])).out)).toMatchObject({ name: 'legacy', ctid: '201' });
    const noHost = await cli(['import', 'openvz7', '201', '--dry-run']);
    expect(noHost.code).not.toBe(0);
    expect(noHost.err).toContain("required option '--host <name>' not specified");
    const unknown = await cli(['import', 'openvz7', '999', '--host', 'vz1', '--dry-run']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain('CT "999" not found on host vz1');
  });

  it('import xen: bad syntax with its position, a missing file, a host without Xen, and an adoption', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hangar-import-'));
    try {
      writeFileSync(join(dir, 'bad.cfg'), 'name = "x"\nmemory = = 3\n');
      const bad = await cli(['import', 'xen', 'bad.cfg', '--dry-run'], { cwd: dir });
      expect(bad.code).toBe(1);
      expect(bad.err).toMatch(/^Error: bad\.cfg:2:\d+: /);
      expect((await cli(['import', 'xen', 'none.cfg', '--dry-run'], { cwd: dir })).err).toMatch(/^Error: Cannot read none\.cfg\n  caused by: ENOENT/);
      const fixture = join(import.meta.dirname, '../../test/fixtures/xen/xlexample.pvlinux');
      const local = await cli(['import', 'xen', fixture]);
      expect(local.code).toBe(1);
      expect(local.err).toContain('the xen driver is not available on host local: it is not enabled there');
      const ok = await cli(['import', 'xen', fixture, '--host', 'dom0']);
      expect(ok.code, ok.err).toBe(0);
      expect(ok.out).toContain(`Imported example-pvlinux (xen) on host dom0 from ${fixture}`);
      expect(fake.requests.filter((q) => q.path === '/1.0/instances/import').at(-1)?.body).toMatchObject({ kind: 'xen', host: 'dom0', source: fixture });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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
      const r = await cli(['daemon', 'install', '--output', 'hangard.service', '--tools-dir', 'sbin'], { cwd: dir, env: { HANGAR_STORAGE: '/var/lib/x y', OTHER: 'no', PATH: '/nonexistent' } });
      expect(r.code).toBe(0);
      // vzctl, vzlist and vzmigrate are linked to the package's launchers where no real vzctl is on PATH.
      for (const tool of ['vzctl', 'vzlist', 'vzmigrate']) expect(readlinkSync(join(dir, 'sbin', tool))).toMatch(new RegExp(`/bin/${tool}$`));
      const again = await cli(['daemon', 'install', '--output', 'again.service', '--tools-dir', 'sbin'], { cwd: dir, env: { PATH: '/nonexistent' } });
      expect(again.out).toContain('(already there)');
      // A real vzctl on PATH keeps its place: nothing is linked.
      mkdirSync(join(dir, 'real'));
      writeFileSync(join(dir, 'real', 'vzctl'), '#!/bin/sh\n', { mode: 0o755 });
      const real = await cli(['daemon', 'install', '--output', 'again.service', '--tools-dir', 'sbin2'], { cwd: dir, env: { PATH: join(dir, 'real') } });
      expect(real.out).toContain(`${join(dir, 'real', 'vzctl')} is a real vzctl`);
      expect(existsSync(join(dir, 'sbin2', 'vzctl'))).toBe(false);
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

  it('exec with an empty stdin goes as one POST, its signals by the exec id; a streamed stdin opens the websocket', async () => {
    let send: ((signal: string) => void) | undefined;
    const onSignal = (_signals: string[], handler: (signal: string) => void): (() => void) => {
      send = handler;
      return () => (send = undefined);
    };
    const before = fake.requests.length;
    const pending = cli(['exec', 'web1', '--', 'wait-signal'], { stdin: new PassThrough(), io: { stdinIsEmpty: () => true, onSignal } });
    while (!fake.requests.slice(before).some((r) => r.method === 'POST' && r.path === '/1.0/instances/web1/exec')) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    send!('SIGINT');
    const r = await pending;
    expect(r.code).toBe(130);
    expect(send).toBeUndefined();
    const seen = fake.requests.slice(before).map((q) => `${q.method} ${q.path}`);
    expect(seen).toEqual(['POST /1.0/instances/web1/exec', 'POST /1.0/instances/web1/execs/waiting/signal']);
    expect(fake.requests.at(-1)!.body).toEqual({ signal: 'SIGINT' });
    const streamed = fake.requests.length;
    expect((await cli(['exec', 'web1', '--', 'cat'], { stdin: Readable.from([Buffer.from('in')]), io: { stdinIsEmpty: () => false, onSignal } })).out).toBe('in');
    expect(fake.requests.slice(streamed).map((q) => q.method)).toEqual(['WS']);
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
