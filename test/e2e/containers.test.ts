// E2E test: real busybox LXC containers driven through the `hangar` CLI against the test daemon (exec, limits, network, snapshots, copy, images, bad input, detection).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { LocalHost } from '../../src/host/local.js';
import { buildBusyboxRootfs } from '../../src/core/images/busybox.js';
import { loadSettings } from '../../src/core/settings.js';
import { BtrfsPool } from '../../src/core/storage/btrfs-pool.js';
import type { HostInfo, Image, Instance, Snapshot, VirtFact } from '../../src/shared/schemas.js';
import { makeTar, type RawTarEntry } from '../fixtures/archives/make-tar.js';
import { TEST_ENV, cli, cliOk, sharedDaemon, uniquePrefix } from '../helpers/daemon.js';

const P = uniquePrefix('ct');
const settings = loadSettings(TEST_ENV);
const pool = new BtrfsPool(new LocalHost(), { poolDir: settings.poolDir, poolImage: settings.poolImage, sizeBytes: settings.poolSizeBytes, rootsDir: settings.rootsDir });
const MiB = 1024 ** 2;

// Everything this file may have created, deleted in afterAll whatever happened.
const createdInstances = new Set<string>();
const createdImages = new Set<string>();
let tmp = '';

const n = (suffix: string): string => `${P}-${suffix}`;

/** Launches a busybox (or other image) instance through the CLI, remembering it for cleanup. */
function launch(name: string, args: string[] = [], image = 'busybox'): string {
  createdInstances.add(name);
  return cliOk(['launch', image, name, ...args]);
}

function listJson(): Instance[] {
  return JSON.parse(cliOk(['list', '--format', 'json'])) as Instance[];
}

function instance(name: string): Instance {
  const i = listJson().find((x) => x.name === name);
  if (!i) throw new Error(`instance ${name} not in list`);
  return i;
}

function imagesJson(): Image[] {
  return JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as Image[];
}

/** Runs `hangar exec NAME -- CMD...` and answers stdout, throwing unless it exits 0. */
function exec(name: string, cmd: string[], input?: string): string {
  return cliOk(['exec', name, '--', ...cmd], input !== undefined ? { input } : {});
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((a, p) => a * 256 + Number(p), 0);
}

/** True when ip lies inside the CIDR subnet. */
function inSubnet(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  const start = ipToInt(base!) - (ipToInt(base!) % size);
  const v = ipToInt(ip);
  return /^\d+\.\d+\.\d+\.\d+$/.test(ip) && v >= start && v < start + size;
}

interface CgroupMount {
  fstype: string;
  mountPoint: string;
  superOpts: string[];
}

/** cgroup and cgroup2 mounts of this process, from /proc/self/mountinfo. */
function cgroupMounts(): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const [fstype, , superOpts] = post.split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    out.push({ fstype, mountPoint: pre.split(' ')[4]!, superOpts: (superOpts ?? '').split(',') });
  }
  return out;
}

const V1_CONTROLLERS = ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'blkio', 'devices', 'freezer'];

/** The layout /proc/self/mountinfo shows: v1 controllers only, cgroup2 only, or both. */
function mountedLayout(): 'v1' | 'v2' | 'hybrid' {
  const m = cgroupMounts();
  const v1 = m.some((x) => x.fstype === 'cgroup' && x.superOpts.some((o) => V1_CONTROLLERS.includes(o)));
  const v2 = m.some((x) => x.fstype === 'cgroup2');
  return v1 && v2 ? 'hybrid' : v1 ? 'v1' : 'v2';
}

/** Directory of the container's cgroup for a v1 controller, or (controller undefined / not mounted as v1) its v2 cgroup; found through /proc/<init pid>/cgroup. */
function cgroupDir(pid: number, controller?: string): { dir: string; v2: boolean } {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n').map((l) => l.split(':'));
  const mounts = cgroupMounts();
  if (controller) {
    const m = mounts.find((x) => x.fstype === 'cgroup' && x.superOpts.includes(controller));
    const l = lines.find((x) => x[1]!.split(',').includes(controller));
    if (m && l) return { dir: join(m.mountPoint, l.slice(2).join(':')), v2: false };
  }
  const m = mounts.find((x) => x.fstype === 'cgroup2');
  const l = lines.find((x) => x[0] === '0');
  if (!m || !l) throw new Error(`no cgroup found for pid ${pid}${controller ? ` and ${controller}` : ''}`);
  return { dir: join(m.mountPoint, l.slice(2).join(':')), v2: true };
}

function readCg(dir: string, file: string): string {
  return readFileSync(join(dir, file), 'utf8').trim();
}

/** The oom_kill counter of a memory cgroup (v1 memory.oom_control or v2 memory.events). */
function oomKills(cg: { dir: string; v2: boolean }): number {
  const text = readCg(cg.dir, cg.v2 ? 'memory.events' : 'memory.oom_control');
  const m = /^oom_kill (\d+)$/m.exec(text);
  if (!m) throw new Error(`no oom_kill in ${cg.dir}: ${text}`);
  return Number(m[1]);
}

/** CPU time of a cgroup in nanoseconds. */
function cpuUsageNs(cg: { dir: string; v2: boolean }): number {
  if (!cg.v2) return Number(readCg(cg.dir, 'cpuacct.usage'));
  const m = /^usage_usec (\d+)$/m.exec(readCg(cg.dir, 'cpu.stat'));
  return Number(m![1]) * 1000;
}

function lsDir(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

/** Minimal CSV reader (quoted fields with doubled quotes), enough for the list output. */
function parseCsv(text: string): string[][] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const out: string[] = [];
      let cur = '';
      let q = false;
      for (let i = 0; i < line.length; i++) {
        const c = line[i]!;
        if (q) {
          if (c === '"' && line[i + 1] === '"') {
            cur += '"';
            i++;
          } else if (c === '"') q = false;
          else cur += c;
        } else if (c === '"') q = true;
        else if (c === ',') {
          out.push(cur);
          cur = '';
        } else cur += c;
      }
      out.push(cur);
      return out;
    });
}

beforeAll(async () => {
  await sharedDaemon();
  tmp = await mkdtemp(join(tmpdir(), `${P}-`));
});

afterAll(async () => {
  for (const name of createdInstances) cli(['delete', name, '--force']);
  for (const alias of createdImages) cli(['image', 'delete', alias]);
  if (tmp) await rm(tmp, { recursive: true, force: true });
  const left = listJson().filter((i) => i.name.startsWith(P));
  const leftImages = imagesJson().filter((i) => i.alias.startsWith(P));
  expect(left.map((i) => i.name)).toEqual([]);
  expect(leftImages.map((i) => i.alias)).toEqual([]);
});

describe('exec and list', () => {
  const a = n('a');
  beforeAll(() => {
    launch(a, ['-c', 'user.purpose=e2e']);
  });

  it('passes stdout, the exit code and stdin through', () => {
    expect(exec(a, ['echo', 'hello'])).toBe('hello\n');
    const r = cli(['exec', a, '--', 'sh', '-c', 'exit 7']);
    expect(r.code).toBe(7);
    const input = 'line one\nline two\n\u00e9\u00e8 tabs\there\n';
    expect(exec(a, ['cat'], input)).toBe(input);
  });

  it('applies --env and --cwd', () => {
    const out = cliOk(['exec', a, '--env', 'HANGAR_K=some value', '--env', 'OTHER=2', '--cwd', '/tmp', '--', 'sh', '-c', 'echo "$HANGAR_K|$OTHER"; pwd']);
    expect(out).toBe('some value|2\n/tmp\n');
  });

  it('lists the instance as JSON, CSV and YAML', () => {
    const i = instance(a);
    expect(i.type).toBe('container');
    expect(i.driver).toBe('lxc');
    expect(i.state).toBe('running');
    expect(i.image).toBe('busybox');
    expect(i.ipv4).not.toBeNull();
    expect(inSubnet(i.ipv4!, TEST_ENV.HANGAR_SUBNET)).toBe(true);
    expect(i.ipv4).not.toBe(TEST_ENV.HANGAR_SUBNET.split('/')[0]!.replace(/\.\d+$/, '.1'));
    expect(i.config['user.purpose']).toBe('e2e');
    expect(i.pid).toBeGreaterThan(1);

    const csv = parseCsv(cliOk(['list', '--format', 'csv']));
    expect(csv[0]).toEqual(['NAME', 'TYPE', 'DRIVER', 'STATE', 'IPV4', 'IMAGE', 'HOST']);
    const row = csv.find((r) => r[0] === a);
    expect(row).toEqual([a, 'container', 'lxc', 'RUNNING', i.ipv4, 'busybox', 'local']);

    const yaml = parseYaml(cliOk(['list', '--format', 'yaml'])) as Instance[];
    const y = yaml.find((x) => x.name === a);
    expect(y).toMatchObject({ name: a, type: 'container', driver: 'lxc', state: 'running', ipv4: i.ipv4, image: 'busybox', config: i.config });
  });
});

describe('memory limit', () => {
  const m = n('mem');
  beforeAll(() => {
    launch(m, ['--memory', '64MiB']);
  });

  it('writes the limit into the container cgroup', () => {
    const cg = cgroupDir(instance(m).pid!, 'memory');
    expect(cg.dir).toContain(`${settings.prefix}/${m}`);
    if (cg.v2) expect(readCg(cg.dir, 'memory.max')).toBe(String(64 * MiB));
    else expect(readCg(cg.dir, 'memory.limit_in_bytes')).toBe(String(64 * MiB));
  });

  it('lets a process under the limit live and OOM-kills one over it', () => {
    const cg = cgroupDir(instance(m).pid!, 'memory');
    const before = oomKills(cg);
    // tail buffers the whole "line" (all zeros, no newline) in memory.
    const small = cli(['exec', m, '--', 'sh', '-c', 'head -c 40m /dev/zero | tail -n 1 | wc -c']);
    expect(small.code).toBe(0);
    expect(small.stdout.trim()).toBe(String(40 * MiB));
    expect(oomKills(cg)).toBe(before);

    const big = cli(['exec', m, '--', 'sh', '-c', 'head -c 100m /dev/zero | tail -n 1']);
    expect(big.code).not.toBe(0);
    expect(oomKills(cg)).toBeGreaterThan(before);
    // The container itself survives its process being killed.
    expect(exec(m, ['echo', 'alive'])).toBe('alive\n');
  });
});

describe('disk limit', () => {
  const d = n('disk');
  beforeAll(() => {
    launch(d, ['--disk', '64MiB']);
  });

  it('allows writes under the quota and refuses writes past it', () => {
    const ok = cli(['exec', d, '--', 'dd', 'if=/dev/zero', 'of=/ok', 'bs=1M', 'count=16']);
    expect(ok.code).toBe(0);
    expect(exec(d, ['sh', '-c', 'sync; wc -c < /ok']).trim()).toBe(String(16 * MiB));
    const big = cli(['exec', d, '--', 'dd', 'if=/dev/zero', 'of=/big', 'bs=1M', 'count=100']);
    expect(big.code).not.toBe(0);
    expect(big.stderr).toMatch(/Disk quota exceeded|No space left/);
  });
});

describe('CPU cap', () => {
  const c = n('cpu');
  beforeAll(() => {
    launch(c, ['-c', 'limits.cpu.cap=50%']);
  });

  it('sets the CFS quota and holds a busy loop near half a CPU', () => {
    const pid = instance(c).pid!;
    const cpu = cgroupDir(pid, 'cpu');
    if (cpu.v2) expect(readCg(cpu.dir, 'cpu.max')).toBe('50000 100000');
    else {
      expect(readCg(cpu.dir, 'cpu.cfs_quota_us')).toBe('50000');
      expect(readCg(cpu.dir, 'cpu.cfs_period_us')).toBe('100000');
    }
    const acct = cgroupDir(pid, 'cpuacct');
    const u0 = cpuUsageNs(acct);
    const t0 = process.hrtime.bigint();
    const r = cli(['exec', c, '--', 'timeout', '3', 'sh', '-c', 'while :; do :; done']);
    const elapsedNs = Number(process.hrtime.bigint() - t0);
    const used = cpuUsageNs(acct) - u0;
    expect(r.stderr).not.toMatch(/Error/);
    const ratio = used / elapsedNs;
    console.log(`CPU cap 50%: ${(used / 1e9).toFixed(2)} s CPU over ${(elapsedNs / 1e9).toFixed(2)} s, ratio ${ratio.toFixed(2)}`);
    expect(ratio).toBeLessThanOrEqual(0.65);
    expect(ratio).toBeGreaterThanOrEqual(0.3);
  });
});

describe('network', () => {
  const a = n('na');
  const b = n('nb');
  beforeAll(() => {
    launch(a);
    launch(b);
  });

  it('reaches a container from the host and from another container', () => {
    const ipa = instance(a).ipv4!;
    const ipb = instance(b).ipv4!;
    expect(inSubnet(ipa, TEST_ENV.HANGAR_SUBNET)).toBe(true);
    expect(inSubnet(ipb, TEST_ENV.HANGAR_SUBNET)).toBe(true);
    expect(ipa).not.toBe(ipb);
    const host = spawnSync('ping', ['-c1', '-W2', ipa], { encoding: 'utf8' });
    expect(host.status, host.stdout + host.stderr).toBe(0);
    const inner = cli(['exec', a, '--', 'ping', '-c1', '-W2', ipb]);
    expect(inner.code, inner.stdout + inner.stderr).toBe(0);
    expect(inner.stdout).toMatch(/1 packets received/);
  });
});

describe('snapshots and copy', () => {
  const a = n('s');
  const b = n('scopy');
  beforeAll(() => {
    launch(a);
  });

  it('restores a file from a snapshot', () => {
    exec(a, ['sh', '-c', 'echo original > /root/data']);
    cliOk(['snapshot', 'create', a, 's1']);
    const snaps = JSON.parse(cliOk(['snapshot', 'list', a, '--format', 'json'])) as Snapshot[];
    expect(snaps.map((s) => s.name)).toEqual(['s1']);
    exec(a, ['sh', '-c', 'echo changed > /root/data; echo new > /root/extra']);
    expect(exec(a, ['cat', '/root/data'])).toBe('changed\n');
    cliOk(['snapshot', 'restore', a, 's1']);
    expect(exec(a, ['cat', '/root/data'])).toBe('original\n');
    expect(cli(['exec', a, '--', 'test', '-e', '/root/extra']).code).toBe(1);
    cliOk(['snapshot', 'delete', a, 's1']);
    expect(JSON.parse(cliOk(['snapshot', 'list', a, '--format', 'json']))).toEqual([]);
  });

  it('copies an instance with its own address, MAC and hostname', () => {
    exec(a, ['sh', '-c', 'echo copied > /root/copyme']);
    createdInstances.add(b);
    cliOk(['copy', a, b]);
    const ia = instance(a);
    let ib = instance(b);
    expect(ib.ipv4).not.toBeNull();
    expect(inSubnet(ib.ipv4!, TEST_ENV.HANGAR_SUBNET)).toBe(true);
    expect(ib.ipv4).not.toBe(ia.ipv4);
    expect(ib.mac).not.toBeNull();
    expect(ib.mac).not.toBe(ia.mac);
    if (ib.state !== 'running') cliOk(['start', b]);
    ib = instance(b);
    expect(ib.state).toBe('running');
    expect(exec(b, ['hostname'])).toBe(`${b}\n`);
    expect(exec(a, ['hostname'])).toBe(`${a}\n`);
    expect(exec(b, ['cat', '/root/copyme'])).toBe('copied\n');
    // Independent volumes: a write in the copy does not show in the source.
    exec(b, ['sh', '-c', 'echo mine > /root/copyme']);
    expect(exec(a, ['cat', '/root/copyme'])).toBe('copied\n');
    const ping = cli(['exec', b, '--', 'ping', '-c1', '-W2', ia.ipv4!]);
    expect(ping.code, ping.stdout + ping.stderr).toBe(0);
  });
});

describe('images: launching costs no copy', () => {
  const alias = `${P}big`;
  const big = n('big');
  const small = n('small');

  it('launches from a 200 MB image and from busybox with under 1 MiB of own storage', async () => {
    const root = join(tmp, 'bigroot');
    await buildBusyboxRootfs(new LocalHost(), root);
    execFileSync('dd', ['if=/dev/urandom', `of=${join(root, 'opt', 'random.bin')}`, 'bs=1M', 'count=200', 'status=none']);
    const tarball = join(tmp, 'big.tar');
    execFileSync('tar', ['-c', '--numeric-owner', '-C', root, '-f', tarball, '.']);
    createdImages.add(alias);
    cliOk(['image', 'import', tarball, '--alias', alias]);
    const img = imagesJson().find((i) => i.alias === alias);
    expect(img?.sizeBytes).toBeGreaterThanOrEqual(200 * 1000 * 1000);

    let t = Date.now();
    launch(big, [], alias);
    const bigMs = Date.now() - t;
    t = Date.now();
    launch(small);
    const smallMs = Date.now() - t;
    console.log(`launch (CLI) from ${alias} (200 MB): ${bigMs} ms; from busybox: ${smallMs} ms`);

    for (const name of [big, small]) {
      const u = await pool.instanceUsage(name);
      console.log(`${name}: exclusive ${u.exclusiveBytes} B, referenced ${u.referencedBytes} B`);
      expect(u.exclusiveBytes).toBeLessThan(MiB);
    }
    expect((await pool.instanceUsage(big)).referencedBytes).toBeGreaterThanOrEqual(200 * 1000 * 1000);
    expect(exec(big, ['sh', '-c', 'wc -c < /opt/random.bin']).trim()).toBe(String(200 * MiB));
  }, 600_000);
});

describe('bad input is refused and creates nothing', () => {
  const good = n('g');
  const lxcDir = join(settings.dir, 'lxc');
  const volDir = join(settings.poolDir, 'instances');
  const imgVolDir = join(settings.poolDir, 'images');
  let goodIp = '';

  beforeAll(() => {
    launch(good);
    goodIp = instance(good).ipv4!;
  });

  function state(): unknown {
    return {
      instances: listJson().map((i) => [i.name, i.state, i.ipv4, i.mac]),
      volumes: lsDir(volDir),
      lxc: lsDir(lxcDir),
      images: imagesJson().map((i) => [i.alias, i.fingerprint]),
      imageVolumes: lsDir(imgVolDir),
    };
  }

  /** Runs the CLI, expects failure with stderr matching re, and no change in instances, volumes, LXC dirs or images. */
  function refused(args: string[], re: RegExp): void {
    const before = state();
    const r = cli(args);
    expect(r.code, `hangar ${args.join(' ')} should fail; stdout: ${r.stdout}`).not.toBe(0);
    expect(r.stderr).toMatch(re);
    expect(state()).toEqual(before);
  }

  it.each([
    ['../x', /Invalid instance name/],
    ['a/b', /Invalid instance name/],
    ['-x', /Invalid instance name/],
    ['x-', /Invalid instance name/],
    ['123', /Invalid instance name.*digits/],
    ['a'.repeat(64), /Invalid instance name.*63/],
    ['', /Invalid instance name.*empty/],
    ['Web1', /Invalid instance name/],
    ['w\u00e9b', /Invalid instance name/],
  ])('refuses the name %j', (name, re) => {
    refused(['launch', 'busybox', '--', name], re);
  });

  it.each([
    [['--memory', '-1M'], /limits\.memory/],
    [['--memory', '0'], /limits\.memory/],
    [['--memory', '12XB'], /limits\.memory.*XB/],
    [['--memory', '100TiB'], /limits\.memory.*larger than/],
    [['--disk', '0'], /limits\.disk/],
    [['--ip', '192.0.2.50'], /192\.0\.2\.50.*outside/],
    [['-c', 'limits.bogus=1'], /limits\.bogus/],
  ])('refuses %j', (args, re) => {
    refused(['launch', 'busybox', n('bad'), ...args], re);
  });

  it('refuses the gateway and a taken address', () => {
    const [base] = TEST_ENV.HANGAR_SUBNET.split('/');
    const gateway = base!.replace(/\.\d+$/, '.1');
    refused(['launch', 'busybox', n('bad'), '--ip', gateway], /gateway/);
    refused(['launch', 'busybox', n('bad'), '--ip', goodIp], new RegExp(`${goodIp.replace(/\./g, '\\.')}.*(in use|taken)`));
  });

  it('refuses an unknown image and a duplicate name', () => {
    refused(['launch', `${P}nosuchimage`, n('bad')], /not found/);
    refused(['launch', 'busybox', good], /already exists/);
    expect(instance(good).state).toBe('running');
    expect(instance(good).ipv4).toBe(goodIp);
  });

  it('is refused by the daemon too when a client skips the CLI checks', async () => {
    const { client } = await sharedDaemon();
    const cases: Array<[string, Record<string, string>, string | undefined, RegExp]> = [
      ['../x', {}, undefined, /name/i],
      ['a/b', {}, undefined, /name/i],
      ['-x', {}, undefined, /name/i],
      ['123', {}, undefined, /name/i],
      ['a'.repeat(64), {}, undefined, /name/i],
      ['', {}, undefined, /name/i],
      ['Web1', {}, undefined, /name/i],
      ['w\u00e9b', {}, undefined, /name/i],
      [n('bad'), { 'limits.memory': '-1M' }, undefined, /limits\.memory/],
      [n('bad'), { 'limits.memory': '0' }, undefined, /limits\.memory/],
      [n('bad'), { 'limits.memory': '12XB' }, undefined, /limits\.memory/],
      [n('bad'), { 'limits.disk': '0' }, undefined, /limits\.disk/],
      [n('bad'), { 'limits.bogus': '1' }, undefined, /limits\.bogus/],
      [n('bad'), {}, '192.0.2.50', /outside/],
      [n('bad'), {}, 'not-an-ip', /address/i],
    ];
    for (const [name, config, ipv4, re] of cases) {
      const before = state();
      const req = { name, image: 'busybox', config, ...(ipv4 !== undefined ? { ipv4 } : {}) };
      const err = await client.launch(req).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      if (!err) createdInstances.add(name);
      expect(err, `daemon accepted ${JSON.stringify(req)}`).toBeInstanceOf(Error);
      expect(`${err!.message} ${String((err as { cause?: unknown }).cause ?? '')}`, JSON.stringify(req)).toMatch(re);
      expect(state(), JSON.stringify(req)).toEqual(before);
    }
  });

  it('refuses unsafe image tarballs', async () => {
    const base: RawTarEntry[] = [
      { path: './', type: '5' },
      { path: './bin/', type: '5' },
      { path: './bin/sh', data: '#!/bin/true\n', mode: 0o755 },
    ];
    const outside = join(tmp, 'outside');
    const cases: Array<[string, RawTarEntry[], RegExp]> = [
      ['dotdot', [...base, { path: '../evil', data: 'x' }], /\.\./],
      ['dotdot-inner', [...base, { path: './bin/../../evil', data: 'x' }], /\.\./],
      ['symlink-out', [...base, { path: './escape', type: '2', linkpath: outside }, { path: './escape/pwned', data: 'x' }], /symlink/],
      ['symlink-rel', [...base, { path: './up', type: '2', linkpath: '../../../..' + outside }, { path: './up/pwned', data: 'x' }], /symlink|outside|\.\./],
      ['chardev', [...base, { path: './dev/', type: '5' }, { path: './dev/kmem2', type: '3' }], /device/],
      ['blockdev', [...base, { path: './dev/', type: '5' }, { path: './dev/sda9', type: '4' }], /device/],
    ];
    for (const [label, entries, re] of cases) {
      const file = join(tmp, `${label}.tar`);
      await writeFile(file, makeTar(entries));
      createdImages.add(`${P}${label}`);
      refused(['image', 'import', file, '--alias', `${P}${label}`], re);
      expect(existsSync(join(outside, 'pwned')), label).toBe(false);
    }
  });
});

describe('host detection', () => {
  const a = n('det');
  beforeAll(() => {
    launch(a);
  });

  it('detects lxc inside a running container', () => {
    const pid = instance(a).pid!;
    const facts = JSON.parse(cliOk(['host', 'detect', '--root', `/proc/${pid}/root`, '--format', 'json'])) as VirtFact[];
    expect(facts.map((f) => f.fact)).toContain('lxc');
  });

  it('does not call this machine docker', () => {
    const facts = JSON.parse(cliOk(['host', 'detect', '--format', 'json'])) as VirtFact[];
    expect(facts.map((f) => f.fact)).not.toContain('docker');
    expect(facts.map((f) => f.fact)).not.toContain('lxc');
  });

  it('reports the cgroup layout of the mount table and lxc as available', () => {
    const info = JSON.parse(cliOk(['host', 'info', '--format', 'json'])) as HostInfo;
    expect(info.cgroupLayout).toBe(mountedLayout());
    const lxc = info.drivers.find((d) => d.name === 'lxc');
    expect(lxc?.available).toBe(true);
    expect(lxc?.type).toBe('container');
    expect(info.network.subnet).toBe(TEST_ENV.HANGAR_SUBNET);
  });
});
