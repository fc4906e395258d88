// E2e security tests written as the attacker would try: an unprivileged host user against the state tree, the socket and set-uid files; containers against host devices; a crafted image; a daemon started under umask 000.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Instance } from '../../src/shared/schemas.js';
import { cli, cliOk, sharedDaemon, startDaemon, stopDaemon, teardownDaemon, TEST_ENV, uniquePrefix } from '../helpers/daemon.js';
import { deleteAllWithPrefix, findInstance, leftovers, settings } from '../helpers/e2e.js';
import { sparseDesyncTar } from '../fixtures/archives/make-tar.js';

const P = uniquePrefix('sec');
const UNPRIV = `${P}u`;
const UNPRIV2 = `${P}v`;
const PRIV = `${P}p`;
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
const asNobody = (argv: string[]) => spawnSync(NOBODY[0]!, [...NOBODY.slice(1), ...argv], { encoding: 'utf8' });
const mode = (p: string) => (statSync(p).mode & 0o7777).toString(8);
let tmp = '';
let loop = '';

beforeAll(async () => {
  await sharedDaemon();
  cliOk(['launch', 'busybox', UNPRIV]);
  cliOk(['launch', 'busybox', UNPRIV2]);
  cliOk(['launch', 'busybox', PRIV, '-c', 'security.privileged=true']);
  tmp = mkdtempSync('/tmp/hangar-sec-');
}, 300_000);

afterAll(() => {
  deleteAllWithPrefix(P);
  if (loop) spawnSync('losetup', ['-d', loop]);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 120_000);

describe('a host user who is not root', () => {
  it('cannot list the state tree, read the database, reach the pool or any container root, or connect to the API', () => {
    expect(mode(settings.dir)).toBe('711');
    expect(mode(settings.dbFile)).toBe('600');
    expect(mode(TEST_ENV.HANGAR_SOCKET)).toBe('600');
    for (const d of [settings.poolDir, settings.rootsDir, settings.imagesDir, settings.cacheDir, join(settings.dir, 'instances')]) expect(mode(d), d).toBe('700');
    expect(asNobody(['ls', settings.dir]).stderr).toMatch(/Permission denied/);
    expect(asNobody(['cat', settings.dbFile]).stderr).toMatch(/Permission denied/);
    for (const p of [join(settings.poolDir, 'instances', UNPRIV, 'etc/hostname'), join(settings.rootsDir, 'instances', UNPRIV, 'etc/hostname'), join(settings.dir, 'instances', UNPRIV, 'console.log')]) {
      const r = asNobody(['cat', p]);
      expect(r.status, p).not.toBe(0);
      expect(r.stderr, p).toMatch(/Permission denied/);
    }
    const connect = asNobody([process.execPath, '-e', `require('net').connect(${JSON.stringify(TEST_ENV.HANGAR_SOCKET)}).on('connect', () => process.exit(0)).on('error', (e) => { console.log(e.code); process.exit(3); })`]);
    expect(connect.status).toBe(3);
    expect(connect.stdout.trim()).toBe('EACCES');
  });

  it('cannot run a set-uid file planted by a container: not one a privileged container\'s root made, not one an unprivileged one made', () => {
    // A set-uid-root program in a privileged container's root (its root is host root), as that root would plant it.
    const planted = join(settings.poolDir, 'instances', PRIV, 'tmp', 'suid-id');
    copyFileSync('/usr/bin/id', planted);
    chmodSync(planted, 0o4755);
    // And the unprivileged container's root does the same from inside (busybox, set-uid).
    expect(cli(['exec', UNPRIV, '--', 'sh', '-c', 'cp /bin/busybox /tmp/suid-sh && chmod 4755 /tmp/suid-sh']).code).toBe(0);
    // Run from a shell as that user would (setpriv's own exec is not how an attacker starts a program).
    for (const p of [planted, join(settings.rootsDir, 'instances', PRIV, 'tmp', 'suid-id'), join(settings.poolDir, 'instances', UNPRIV, 'tmp', 'suid-sh'), join(settings.rootsDir, 'instances', UNPRIV, 'tmp', 'suid-sh')]) {
      const r = asNobody(['sh', '-c', `'${p}' ${p.endsWith('sh') ? "-c 'id -u'" : '-u'}`]);
      expect(r.status, p).not.toBe(0);
      expect(r.stdout, p).not.toMatch(/^0$/m);
      expect(r.stderr, p).toMatch(/Permission denied/);
    }
    // Through the pool's own mount the set-uid bit would not count either: it is mounted nosuid,nodev.
    const mountinfo = spawnSync('findmnt', ['-n', '-o', 'OPTIONS', settings.poolDir], { encoding: 'utf8' }).stdout;
    expect(mountinfo).toMatch(/nosuid/);
    expect(mountinfo).toMatch(/nodev/);
  });
});

describe('containers', () => {
  it('each unprivileged container has an id map of its own, apart from every other and from host ids', () => {
    const map = (n: string) => cliOk(['exec', n, '--', 'cat', '/proc/self/uid_map']).trim().split(/\s+/).map(Number);
    const [a, b] = [map(UNPRIV), map(UNPRIV2)];
    expect(a[0]).toBe(0);
    expect(a[2]).toBe(65536);
    expect(a[1]).toBeGreaterThanOrEqual(65536);
    expect(Math.abs(a[1]! - b[1]!)).toBeGreaterThanOrEqual(65536);
    // Their trees are stored 0-based and seen through idmapped mounts: inside, root owns /.
    expect(cliOk(['exec', UNPRIV, '--', 'stat', '-c', '%u', '/']).trim()).toBe('0');
  });

  it('cannot open a host block device whose node reaches their root file system, privileged or not (devices allow-list, nodev)', () => {
    // A host disk holding a secret, and its device node placed in each container's root (as a crafted image would).
    const disk = join(tmp, 'disk.img');
    writeFileSync(disk, Buffer.concat([Buffer.from('HOST-SECRET-DATA\n'), Buffer.alloc(1024 * 1024 - 17)]));
    loop = spawnSync('losetup', ['-f', '--show', disk], { encoding: 'utf8' }).stdout.trim();
    expect(loop).toMatch(/^\/dev\/loop\d+$/);
    const [major, minor] = spawnSync('stat', ['-c', '%t %T', loop], { encoding: 'utf8' }).stdout.trim().split(' ').map((h) => parseInt(h, 16));
    for (const n of [UNPRIV, PRIV]) {
      const node = join(settings.poolDir, 'instances', n, 'tmp', 'hostdisk');
      expect(spawnSync('mknod', ['-m', '666', node, 'b', String(major), String(minor)]).status).toBe(0);
      const r = cli(['exec', n, '--', 'head', '-c', '16', '/tmp/hostdisk']);
      expect(r.stdout, n).not.toContain('HOST-SECRET');
      expect(r.code, n).not.toBe(0);
    }
    // A privileged container may create device nodes itself (mknod is allowed), on its /dev (a tmpfs without nodev),
    // and the devices allow-list still refuses to open them.
    expect(cli(['exec', PRIV, '--', 'mknod', '/dev/mine', 'b', String(major), String(minor)]).code).toBe(0);
    const own = cli(['exec', PRIV, '--', 'head', '-c', '16', '/dev/mine']);
    expect(own.stdout).not.toContain('HOST-SECRET');
    expect(own.stderr).toMatch(/Operation not permitted/);
    // The standard devices still work.
    expect(cliOk(['exec', UNPRIV, '--', 'sh', '-c', 'head -c 4 /dev/urandom | wc -c; echo x > /dev/null && echo ok']).split('\n').map((l) => l.trim())).toEqual(['4', 'ok', '']);
  });
});

describe('images', () => {
  it('a crafted archive on which two tar parsers disagree is refused, and no device node lands anywhere', () => {
    const file = join(tmp, 'desync.tar');
    writeFileSync(file, sparseDesyncTar());
    const r = cli(['image', 'import', file, '--alias', `${P}evil`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unsupported type SparseFile/);
    expect((JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as { alias: string }[]).some((i) => i.alias === `${P}evil`)).toBe(false);
    expect(spawnSync('find', [settings.poolDir, '-xdev', '-type', 'b', '-print', '-quit'], { encoding: 'utf8' }).stdout).toBe('');
  });
});

describe('a daemon started under umask 000', () => {
  const ID = Math.floor(Math.random() * 1e4).toString(36);
  const ENV = { HANGAR_DIR: `/var/lib/hangar-umask-${ID}`, HANGAR_SOCKET: `/run/hangar-umask-${ID}/hangar.sock`, HANGAR_PREFIX: `hgm${ID.slice(0, 3)}`, HANGAR_SUBNET: '10.199.98.0/24', HANGAR_POOL_SIZE: String(1024 ** 3) };

  afterAll(async () => {
    await teardownDaemon(ENV);
    rmSync(ENV.HANGAR_DIR, { recursive: true, force: true });
    rmSync(`/run/hangar-umask-${ID}`, { recursive: true, force: true });
  }, 120_000);

  it('never shows its socket to other users, even for a moment, and keeps its state private', async () => {
    for (let round = 0; round < 3; round++) {
      rmSync(ENV.HANGAR_SOCKET, { force: true });
      // Watch the socket path from before the start, every millisecond: the first mode ever seen must be 0600.
      let first: string | undefined;
      const watch = setInterval(() => { if (first === undefined && existsSync(ENV.HANGAR_SOCKET)) { try { first = mode(ENV.HANGAR_SOCKET); } catch { /* raced its creation */ } } }, 1);
      try {
        const d = await startDaemon(ENV, 300_000, { umask: '000' });
        expect(first, `round ${round}`).toBe('600');
        await stopDaemon(d);
      } finally {
        clearInterval(watch);
      }
    }
    expect(mode(ENV.HANGAR_DIR)).toBe('711');
    expect(mode(join(ENV.HANGAR_DIR, 'hangar.db'))).toBe('600');
    for (const d of ['pool', 'roots', 'cache', 'images', 'instances']) expect(mode(join(ENV.HANGAR_DIR, d)), d).toBe('700');
    expect(mode(join(ENV.HANGAR_DIR, 'dnsmasq'))).toBe('711');
  }, 300_000);
});

describe('leftovers', () => {
  it('the security test instances can be deleted without a trace', () => {
    const macs = [UNPRIV, UNPRIV2, PRIV].map((n) => [n, findInstance(n)?.mac] as const);
    for (const [n] of macs) cliOk(['delete', n, '--force']);
    for (const [n, mac] of macs) expect(leftovers(n, mac as string | undefined)).toEqual([]);
    expect((JSON.parse(cliOk(['list', '--format', 'json'])) as Instance[]).filter((i) => i.name.startsWith(P))).toEqual([]);
  });
});
