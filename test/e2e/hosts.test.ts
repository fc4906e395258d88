// E2e of remote hosts through the CLI and a real test daemon: this machine added over SSH (a private sshd on 127.0.0.1), its key pinned and checked, an LXC container there, the host going away and back, hangard killed; bad input; `import xen --dry-run`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostRecord, Instance, XenImportTranslation } from '../../src/shared/schemas.js';
import { cli, cliAsync, cliOk, ROOT, setSharedDaemon, sharedDaemon, startDaemon, TEST_ENV, uniquePrefix } from '../helpers/daemon.js';
import { alive, collectEvents, findInstance, instanceUntil, listJson, pollUntil, settings } from '../helpers/e2e.js';
import { freePort, startSshd, type TestSshd } from '../helpers/sshd.js';

const P = uniquePrefix('hs');
const H = `${P}h`;
const C = `${P}c`;
// The CTID of this run's OpenVZ CT: a random one, so that runs on one daemon do not meet.
const CT = 900000 + Math.floor(Math.random() * 90000);
let sshd: TestSshd;
let url: string;
let scratch: string;

/** `hangar host info NAME --format json`: the host's record (and its facts while it is up). */
function hostRecord(name: string): HostRecord {
  return (JSON.parse(cliOk(['host', 'info', name, '--format', 'json'])) as { host: HostRecord }).host;
}

/** True while the host is listed. */
function hostListed(name: string): boolean {
  return (JSON.parse(cliOk(['host', 'list', '--format', 'json'])) as HostRecord[]).some((h) => h.name === name);
}

/** Runs the CLI (without blocking the worker), expecting failure; answers stderr. */
async function refused(args: string[]): Promise<string> {
  const r = await cliAsync(args);
  expect(r.code, `hangar ${args.join(' ')}: ${r.stdout}`).not.toBe(0);
  return r.stderr;
}

beforeAll(async () => {
  await sharedDaemon();
  sshd = await startSshd();
  url = `ssh://root@127.0.0.1:${sshd.port}`;
  scratch = mkdtempSync(join(tmpdir(), 'hangar-hosts-e2e-'));
}, 600_000);

afterAll(async () => {
  try {
    // The container lives on the host: the host must be reachable for its delete.
    await sshd?.start().catch(() => undefined);
    if (findInstance(C)) {
      await pollUntil(async () => (await cliAsync(['delete', C, '--force'])).code === 0, 100, 300);
    }
    if (findInstance(`${P}v`)) await pollUntil(async () => (await cliAsync(['delete', `${P}v`, '--force'])).code === 0, 100, 300);
    if (hostListed(H)) cli(['host', 'remove', H]);
  } finally {
    await sshd?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}, 300_000);

describe('remote hosts over SSH', () => {
  it('refuses bad URLs, names, identity files, an unreachable address and an unexpected key; nothing is added', async () => {
    const before = cliOk(['host', 'list', '--format', 'json']);
    const closed = await freePort();
    const cases: Array<[string[], RegExp]> = [
      [['host', 'add', H, 'http://127.0.0.1'], /only ssh:\/\/ URLs are supported/],
      [['host', 'add', H, `ssh://127.0.0.1:${sshd.port}`], /the user is missing/],
      [['host', 'add', H, `ssh://root@127.0.0.1:70000`], /port "70000" is not a number from 1 to 65535/],
      [['host', 'add', H, 'ssh://root@not a host'], /is not a host name or IP address/],
      [['host', 'add', 'local', url], /Invalid host name "local"/],
      [['host', 'add', 'Bad_Name', url], /Invalid host name "Bad_Name"/],
      [['host', 'add', H, url, '--identity', join(scratch, 'no-such-key')], /Identity file .*no-such-key not found on the daemon's machine/],
      [['host', 'add', H, `ssh://root@127.0.0.1:${closed}`, '--identity', sshd.identityFile], new RegExp(`127\\.0\\.0\\.1:${closed} cannot be reached \\(nothing was added\\)`)],
      [['host', 'add', H, url, '--identity', sshd.identityFile, '--fingerprint', 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'], /presents host key ssh-ed25519 SHA256:.*, not the expected SHA256:A{43} \(nothing was added\)/],
      [['host', 'add', H, url, '--identity', sshd.identityFile, '--fingerprint', 'MD5:00'], /Invalid host key fingerprint/],
    ];
    for (const [args, msg] of cases) expect(await refused(args), args.join(' ')).toMatch(msg);
    // A key the server does not authorise: the host key was read, but nothing is pinned or added.
    const stranger = join(scratch, 'stranger');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', stranger]);
    expect(await refused(['host', 'add', H, url, '--identity', stranger])).toMatch(/cannot log in to ssh:\/\/root@127\.0\.0\.1:\d+ \(nothing was added\)/);
    expect(cliOk(['host', 'list', '--format', 'json'])).toBe(before);
    for (const [args, msg] of [
      [['host', 'info', `${P}nope`], /Host "[a-z0-9]+nope" not found/],
      [['host', 'remove', `${P}nope`], /Host "[a-z0-9]+nope" not found/],
      [['host', 'trust', `${P}nope`], /Host "[a-z0-9]+nope" not found/],
      [['host', 'remove', 'local'], /The local host cannot be removed/],
      [['launch', 'busybox', C, '--host', `${P}nope`], /Host "[a-z0-9]+nope" not found/],
      [['list', '--host', `${P}nope`], /Host "[a-z0-9]+nope" not found/],
    ] as Array<[string[], RegExp]>) expect(await refused(args), args.join(' ')).toMatch(msg);
    expect(findInstance(C)).toBeUndefined();
  });

  it('host add pins the key it prints; host list and info show it, the state and the drivers opened there', () => {
    const out = cliOk(['host', 'add', H, url, '--identity', sshd.identityFile]);
    expect(out).toContain(`Added host ${H} (${url})`);
    expect(out).toContain(`Host key: ssh-ed25519 ${sshd.hostKeyFingerprint} (pinned: a different key is refused until "hangar host trust ${H}")`);
    expect(out).toMatch(/^Drivers: lxc \(\d[^)]*\), qemu \(.*\), xen \(.*\), fake \(0\), openvz \(.*\)$/m);
    const listed = (JSON.parse(cliOk(['host', 'list', '--format', 'json'])) as HostRecord[]).find((h) => h.name === H);
    expect(listed).toMatchObject({ state: 'up', url, keyType: 'ssh-ed25519', fingerprint: sshd.hostKeyFingerprint, identityFile: sshd.identityFile, instances: 0, reason: null });
    const info = JSON.parse(cliOk(['host', 'info', H, '--format', 'json'])) as { hostname: string; drivers: Array<{ name: string; available: boolean; details: Record<string, string> }>; storage: { driver: string; path: string }; host: HostRecord };
    expect(info.host).toMatchObject({ name: H, state: 'up', fingerprint: sshd.hostKeyFingerprint });
    expect(info.drivers.map((d) => d.name)).toEqual(['lxc', 'qemu', 'xen', 'fake', 'openvz']);
    expect(info.drivers[0]).toMatchObject({ available: true, details: { 'lxc path': `${settings.dir}/lxc` } });
    expect(info.storage).toMatchObject({ driver: 'dir', path: `${settings.dir}/hosts/${H}/pool` });
    const table = cliOk(['host', 'info', H]);
    expect(table).toMatch(new RegExp(`^Host key: +ssh-ed25519 ${sshd.hostKeyFingerprint.replace(/[+/]/g, '\\$&')} \\(pinned\\)$`, 'm'));
    expect(table).toMatch(/^ +lxc +container +yes +yes +\d/m);
    expect(cli(['host', 'add', H, url, '--identity', sshd.identityFile]).stderr).toContain(`Host "${H}" already exists`);
  });

  it('an LXC container runs there over SSH, listed with its HOST; names stay unique across hosts', async () => {
    const r = await cliAsync(['launch', 'busybox', C, '--host', H, '--memory', '64MiB']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Launched ${C} \\(10\\.199\\.\\d+\\.\\d+\\) on host ${H}$`, 'm'));
    expect(findInstance(C)).toMatchObject({ host: H, driver: 'lxc', state: 'running' });
    expect(cliOk(['exec', C, '--', 'cat', '/etc/hostname'])).toBe(`${C}\n`);
    expect(cliOk(['list'])).toMatch(new RegExp(`^${C} +container +lxc +RUNNING +10\\.199\\.\\S+ +busybox +${H}$`, 'm'));
    expect((JSON.parse(cliOk(['list', '--host', H, '--format', 'json'])) as Instance[]).map((i) => i.name)).toEqual([C]);
    expect(existsSync(join(settings.dir, 'hosts', H, 'pool', 'instances', C))).toBe(true);
    expect(await refused(['launch', 'busybox', C])).toContain(`Instance "${C}" already exists (on host ${H})`);
    expect(await refused(['launch', 'busybox', `${P}d`, '--host', H, '--disk', '1GiB'])).toMatch(new RegExp(`limits\\.disk of instance "${P}d" cannot be enforced on host "${H}"`));
    expect(findInstance(`${P}d`)).toBeUndefined();
    expect(await refused(['host', 'remove', H])).toContain(`Host "${H}" cannot be removed: 1 instance lives there (${C}); delete them first`);
    expect(hostRecord(H)).toMatchObject({ state: 'up', instances: 1 });
  });

  it('sshd stopped: the host\'s instances are UNKNOWN with the reason at once, actions refused, the container runs on; sshd back: they come back', async () => {
    const pid = findInstance(C)!.pid!;
    await sshd.halt();
    const t0 = Date.now();
    const listed = await cliAsync(['list', '--format', 'json']);
    const ms = Date.now() - t0;
    console.log(`hangar list with host ${H} down: ${ms} ms (CLI start-up included)`);
    expect(listed.code).toBe(0);
    expect(ms).toBeLessThan(3000);
    const inst = (JSON.parse(listed.stdout) as Instance[]).find((i) => i.name === C);
    expect(inst).toMatchObject({ host: H, state: 'unknown', error: { reason: expect.stringContaining(`Host "${H}" is unreachable`) } });
    // The watcher then gives the connection's own words.
    const down = await pollUntil(() => { const h = hostRecord(H); return h.state === 'down' && /ECONNREFUSED/.test(h.reason ?? '') ? h : undefined; }, 50, 200);
    expect(down, JSON.stringify(hostRecord(H))).toBeTruthy();
    expect(cliOk(['list'])).toMatch(new RegExp(`^${C} +container +lxc +UNKNOWN .* ${H}$`, 'm'));
    expect(cliOk(['info', C])).toMatch(new RegExp(`^Unknown: +Host "${H}" is unreachable .*ECONNREFUSED`, 'm'));
    expect(cliOk(['host', 'list'])).toMatch(new RegExp(`^${H} +DOWN +${url.replace(/[/.]/g, '\\$&')} +1 .*ECONNREFUSED`, 'm'));
    expect(await refused(['exec', C, '--', 'true'])).toContain(`Host "${H}" is unreachable`);
    expect(await refused(['stop', C])).toContain(`Host "${H}" is unreachable`);
    expect(await refused(['delete', C, '--force'])).toContain(`Host "${H}" is unreachable`);
    expect(cliOk(['host', 'info', H, '--format', 'yaml'])).toMatch(/^ {2}state: down$/m);
    expect(await refused(['launch', 'busybox', `${P}e`, '--host', H])).toContain(`Host "${H}" is unreachable`);
    expect(findInstance(`${P}e`)).toBeUndefined();
    // Nothing happened to the container itself: its init still runs.
    expect(alive(pid)).toBe(true);
    await sshd.start();
    const back = await instanceUntil(C, 'running');
    expect(back, JSON.stringify(back)).toMatchObject({ state: 'running', pid });
    expect(cliOk(['exec', C, '--', 'echo', 'back'])).toBe('back\n');
    expect(hostRecord(H)).toMatchObject({ state: 'up', reason: null });
  });

  it('a changed host key is refused, naming both keys, until host trust pins it', async () => {
    const old = sshd.hostKeyFingerprint;
    await sshd.halt();
    const fresh = sshd.replaceHostKey();
    await sshd.start();
    const refusedKey = await pollUntil(() => { const h = hostRecord(H); return h.state === 'down' && h.reason?.includes(`presented host key ${fresh}, not the pinned ${old}`) ? h : undefined; }, 150, 200);
    expect(refusedKey, JSON.stringify(hostRecord(H))).toBeTruthy();
    expect(findInstance(C)).toMatchObject({ state: 'unknown', error: { reason: expect.stringContaining(`presented host key ${fresh}`) } });
    expect(await refused(['host', 'trust', H, '--fingerprint', old])).toContain(`presents host key ssh-ed25519 ${fresh}, not the expected ${old} (nothing was changed)`);
    expect(hostRecord(H).fingerprint).toBe(old);
    expect(cliOk(['host', 'trust', H])).toBe(`Host ${H}: host key ssh-ed25519 ${fresh} pinned (was ssh-ed25519 ${old})\n`);
    expect(hostRecord(H)).toMatchObject({ state: 'up', fingerprint: fresh });
    expect(await instanceUntil(C, 'running', 50)).toMatchObject({ state: 'running' });
    expect(cliOk(['host', 'trust', H])).toBe(`Host ${H}: host key ssh-ed25519 ${fresh} was pinned already\n`);
  });

  it('hangard killed: the container on the host keeps running, and the next hangard reconnects and adopts it', async () => {
    const pid = findInstance(C)!.pid!;
    const daemon = await sharedDaemon();
    process.kill(daemon.pid, 'SIGKILL');
    await pollUntil(() => !alive(daemon.pid), 100, 50);
    expect(alive(pid)).toBe(true);
    const d = await startDaemon(TEST_ENV);
    setSharedDaemon(d);
    const adopted = await instanceUntil(C, 'running', 150);
    expect(adopted, JSON.stringify(adopted)).toMatchObject({ host: H, state: 'running', pid });
    expect(hostRecord(H)).toMatchObject({ state: 'up', fingerprint: sshd.hostKeyFingerprint });
    expect(cliOk(['exec', C, '--', 'echo', 'adopted'])).toBe('adopted\n');
  });

  it('a container there whose init is killed from outside is recorded stopped at once (a pidfd on the host, held by perl over SSH), with an event', async () => {
    const sub = await collectEvents({ types: ['instance-stopped'] });
    try {
      const pid = findInstance(C)!.pid!;
      process.kill(pid, 'SIGKILL');
      // The bound is only there to fail rather than hang: the event comes from the pidfd there.
      const seen = await pollUntil(() => sub.events.some((e) => e.instance === C && e.type === 'instance-stopped'), 100, 50);
      expect(seen, JSON.stringify(sub.events)).toBe(true);
      expect(sub.events.find((e) => e.instance === C && e.type === 'instance-stopped')?.data).toEqual({ by: 'outside', pid });
      expect(findInstance(C)).toMatchObject({ state: 'stopped', pid: null });
    } finally {
      sub.close();
    }
    cliOk(['start', C]);
    expect(findInstance(C)?.state).toBe('running');
  });

  it('vzmigrate --offline moves a running CT there and back with its private area and CTID.conf; hangar move takes the LXC container home and out again', async () => {
    const ctid = String(CT);
    const mk = await cliAsync(['vz', 'create', ctid, '--ostemplate', 'busybox-x86_64', '--config', 'vswap-256m', '--name', `${P}v`]);
    expect(mk.code, mk.stderr).toBe(0);
    expect((await cliAsync(['vz', 'start', ctid])).code).toBe(0);
    expect((await cliAsync(['vz', 'exec', ctid, 'echo kept > /root/marker'])).code).toBe(0);
    // Refused before anything moves: an unknown destination, a live migration (no CRIU that can), -r no, no CT.
    expect((await cliAsync(['vz', 'migrate', '--offline', 'nowhere', ctid])).code).toBe(4);
    const live = await cliAsync(['vz', 'migrate', '--online', H, ctid]);
    expect(live.code).toBe(14);
    expect(live.stderr).toMatch(/checkpoint/i);
    expect((await cliAsync(['vz', 'migrate', '-r', 'no', H, ctid])).code).toBe(1);
    expect((await cliAsync(['vz', 'migrate', H, '999999999'])).code).toBe(10);
    expect(findInstance(`${P}v`)).toMatchObject({ host: 'local', state: 'running' });

    const r = await cliAsync(['vz', 'migrate', '--offline', H, ctid]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Migration of CT ${ctid} to ${H} completed`);
    expect(findInstance(`${P}v`)).toMatchObject({ host: H, state: 'running', driver: 'openvz' });
    expect(cliOk(['vz', 'exec', ctid, 'cat /root/marker'])).toBe('kept\n');
    expect(existsSync(join(settings.dir, 'hosts', H, 'pool', 'instances', `${P}v`, 'root.hdd'))).toBe(true);
    expect(existsSync(join(settings.dir, 'openvz', 'conf', `${ctid}.conf`))).toBe(true);
    expect((await cliAsync(['vz', 'migrate', H, ctid])).code).toBe(1);
    const home = await cliAsync(['vz', 'migrate', 'local', ctid]);
    expect(home.code, home.stderr).toBe(0);
    expect(findInstance(`${P}v`)).toMatchObject({ host: 'local', state: 'running' });
    expect(cliOk(['vz', 'exec', ctid, 'cat /root/marker'])).toBe('kept\n');
    expect(existsSync(join(settings.dir, 'hosts', H, 'pool', 'instances', `${P}v`))).toBe(false);
    expect((await cliAsync(['vz', 'stop', ctid, '--fast'])).code).toBe(0);
    expect((await cliAsync(['vz', 'destroy', ctid])).code).toBe(0);
    expect(findInstance(`${P}v`)).toBeUndefined();

    // The LXC container: home, and out again, running both times with its files.
    expect((await cliAsync(['exec', C, '--', 'sh', '-c', 'echo lxc > /root/marker'])).code).toBe(0);
    for (const to of ['local', H]) {
      const m = await cliAsync(['move', C, '--host', to]);
      expect(m.code, m.stderr).toBe(0);
      expect(m.stdout).toBe(`Moved ${C} to host ${to}\n`);
      expect(findInstance(C)).toMatchObject({ host: to, state: 'running' });
      expect(cliOk(['exec', C, '--', 'cat', '/root/marker'])).toBe('lxc\n');
    }
  });

  it('the container is deleted there leaving nothing; then the host is removed', async () => {
    const r = await cliAsync(['delete', C, '--force']);
    expect(r.code, r.stderr).toBe(0);
    expect(findInstance(C)).toBeUndefined();
    for (const p of [join(settings.dir, 'hosts', H, 'pool', 'instances', C), join(settings.lxcPath, C), join(settings.dir, 'instances', C)]) expect(existsSync(p), p).toBe(false);
    // The image copy made for the host stays there for the next instance made from it.
    expect(readdirSync(join(settings.dir, 'hosts', H, 'pool', 'images')).length).toBeGreaterThan(0);
    expect(cliOk(['host', 'remove', H])).toBe(`Removed host ${H}\n`);
    expect(hostListed(H)).toBe(false);
    // Removing a reachable host deletes the daemon's files for it there (not the network: here it is the daemon's own bridge).
    expect(existsSync(join(settings.dir, 'hosts', H))).toBe(false);
    expect(existsSync(join(settings.dnsmasqDir, 'hosts'))).toBe(true);
  });
});

describe('hangar import xen', () => {
  const fixtures = ['xlexample.pvlinux', 'xlexample.pvhlinux', 'xlexample.hvm'].map((f) => join(ROOT, 'test/fixtures/xen', f));

  it('--dry-run prints the translation of every fixture without a Xen host, changing nothing', () => {
    const before = listJson().map((i) => i.name);
    for (const file of fixtures) {
      const table = cliOk(['import', 'xen', file, '--dry-run']);
      expect(table, file).toMatch(/^Instance: +example-[a-z]+ \(vm, driver xen, (PV|PVH|HVM) guest\)$/m);
      expect(table, file).toMatch(/^Disks:\n +# +TARGET .*\n +0 +\/dev\/\S+ +raw +xvda +rw +root +the root disk: the block device \/dev\/\S+ is used in place/m);
      expect(table, file).toMatch(/^NICs:\n/m);
      expect(table, file).toMatch(/^(Not translated \(not kept\):\n +KEY +VALUE +REASON\n|Not translated: \(nothing)/m);
      const t = JSON.parse(cliOk(['import', 'xen', file, '--dry-run', '--format', 'json'])) as XenImportTranslation;
      expect(t).toMatchObject({ type: 'vm', driver: 'xen', config: { 'limits.cpu': expect.stringMatching(/^\d+$/) } });
      // Nothing is dropped silently: every setting of the file is translated or listed with a reason.
      expect(t.translated.length + t.untranslated.length).toBeGreaterThan(4);
      expect(cliOk(['import', 'xen', file, '--dry-run', '--format', 'yaml'])).toMatch(/^name: example-/m);
    }
    expect(listJson().map((i) => i.name)).toEqual(before);
  });

  it('refuses bad syntax with its position, a missing file, and an import on a host without Xen; nothing is created', async () => {
    const bad = join(scratch, 'bad.cfg');
    writeFileSync(bad, 'name = "x"\nvcpus = [ 1,\n');
    expect(await refused(['import', 'xen', bad, '--dry-run'])).toMatch(new RegExp(`^Error: ${bad.replace(/[/.]/g, '\\$&')}:\\d+:\\d+: `));
    expect(await refused(['import', 'xen', join(scratch, 'none.cfg'), '--dry-run'])).toMatch(/Cannot read .*none\.cfg/);
    expect(await refused(['import', 'xen', fixtures[0]!, '--name', `${P}x`])).toContain('the xen driver is not available on host local: xl not found on host local');
    expect(findInstance(`${P}x`)).toBeUndefined();
  });
});
