// Unit tests of the vzctl/vzlist front ends' pure parts: option parsing, vzctl set → config, samples, vzlist layout and JSON, vz.conf.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Instance } from '../../shared/schemas.js';
import { sampleConfig, templateImage, VZ_SAMPLES } from '../../shared/vz-samples.js';
import { parseVzArgs, VzError, vzExitCode } from './args.js';
import { AppError } from '../../shared/errors.js';
import { findDestination } from './vzmigrate.js';
import type { HostRecord } from '../../shared/schemas.js';
import { findCt, parseCtidArg, readVzGlobal, setPatch, statusLine, templateTarball } from './vzctl.js';
import { formatVzJson, formatVzText, parseVzListArgs, sortVz, VZLIST_DEFAULT, VZLIST_FIELDS, type CtView } from './vzlist.js';
import { formatUserBeancounters } from './beancounters-text.js';

const SPEC = { save: 'flag', ram: 'value', ipadd: 'multi' } as const;

function ct(over: Partial<Instance> & { config?: Record<string, string> } = {}): Instance {
  return {
    name: 'web', host: 'local', type: 'container', driver: 'openvz', state: 'running', image: 'busybox', ipv4: '10.0.0.5', mac: '02:00:00:00:00:01',
    config: { 'openvz.ctid': '101' }, pendingConfig: {}, pid: 42, createdAt: '2026-01-01T00:00:00Z',
    technology: { kernel: 'shared', memory: 'burstable', isolation: 'x' },
    features: { freeze: true, snapshots: false, statefulStop: false, console: true, execTty: true, liveCopy: false, graphicalConsole: false, monitor: false },
    ...over,
  } as Instance;
}

const code = (fn: () => unknown): number | string => {
  try { fn(); return 'no error'; } catch (e) { return e instanceof VzError ? e.exitCode : String(e); }
};

describe('vzctl option parsing', () => {
  it('takes --opt value, --opt=value and repeated options; unknown options are exit 20', () => {
    const o = parseVzArgs(['--ram', '512M', '--ipadd=10.0.0.1', '--ipadd', '10.0.0.2', '--save', 'pos'], SPEC);
    expect(o.values.get('ram')).toBe('512M');
    expect(o.multi.get('ipadd')).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(o.flags.has('save')).toBe(true);
    expect(o.positional).toEqual(['pos']);
    expect(code(() => parseVzArgs(['--bogus'], SPEC))).toBe(20);
    expect(code(() => parseVzArgs(['--ram'], SPEC))).toBe(20);
    expect(code(() => parseVzArgs(['--save=1'], SPEC))).toBe(20);
  });

  it('CTIDs are numbers from 1 to INT_MAX (exit 21 otherwise)', () => {
    expect(parseCtidArg('101')).toBe(101);
    for (const bad of ['0', '-1', 'abc', '2147483648', '1e3', '']) expect(code(() => parseCtidArg(bad)), bad).toBe(21);
  });

  it('maps Hangar errors to vzctl exit codes', () => {
    expect(vzExitCode(new AppError('INVALID_ADDRESS', 'x'))).toBe(71);
    expect(vzExitCode(new AppError('CONFLICT', 'Address 10.0.0.1 is already in use'))).toBe(78);
    expect(vzExitCode(new AppError('NOT_FOUND', 'Image "x" not found'))).toBe(91);
    expect(vzExitCode(new AppError('INVALID_SIZE', 'Failed to apply', { cause: new AppError('INVALID_SIZE', 'Failed to shrink the private area') }))).toBe(46);
    expect(vzExitCode(new Error('boom'))).toBe(3);
  });
});

describe('vzctl set → Hangar config', () => {
  const patch = (args: string[], current: Record<string, string> = {}, primary: string | null = '10.0.0.5') => setPatch(parseVzArgs(args, {
    ram: 'value', swap: 'value', memguarantee: 'value', cpus: 'value', cpuunits: 'value', cpulimit: 'value', diskspace: 'value', diskinodes: 'value',
    numproc: 'value', ipadd: 'multi', ipdel: 'multi', hostname: 'value', nameserver: 'multi', searchdomain: 'multi', onboot: 'value', description: 'value',
    userpasswd: 'multi', physpages: 'value', swappages: 'value', 'netif_add': 'value', 'netif_del': 'value',
  }), current, primary);

  it('vSwap, CPU, disk and process options become the resource model keys', () => {
    expect(patch(['--ram', '512M', '--swap', '1G', '--memguarantee', '50%', '--cpus', '2', '--cpuunits', '2000', '--cpulimit', '150%', '--diskspace', '2G:2.2G', '--diskinodes', '200000', '--numproc', '240:300']).set).toEqual({
      'limits.memory': '512MiB', 'limits.memory.swap': '1GiB', 'limits.memory.guarantee': '256MiB', 'limits.cpu': '2', 'limits.cpu.weight': '200', 'limits.cpu.cap': '150%',
      'limits.disk': '2306867KiB', 'limits.disk.inodes': '200000', 'limits.processes': '300',
    });
    // Plain --diskspace numbers are 1 KiB blocks, --physpages counts pages; 0 and unlimited lift limits.
    expect(patch(['--diskspace', '1048576', '--physpages', '0:65536']).set).toEqual({ 'limits.disk': '1GiB', 'limits.memory': '256MiB' });
    expect(patch(['--cpus', '0', '--cpulimit', '0', '--numproc', 'unlimited', '--memguarantee', 'auto'], { 'limits.cpu': '1', 'limits.cpu.cap': '50%', 'limits.processes': '9', 'limits.memory.guarantee': '1MiB' }).unset.sort())
      .toEqual(['limits.cpu', 'limits.cpu.cap', 'limits.memory.guarantee', 'limits.processes']);
    expect(patch(['--swap', '0']).set).toEqual({ 'limits.memory.swap': '0' });
  });

  it('addresses are incremental; the CT\'s own one stays; names, resolvers, onboot and description have their keys', () => {
    expect(patch(['--ipadd', '10.0.0.7', '--ipadd', '10.0.0.8/24'], { 'openvz.ipadd': '10.0.0.6' }).set).toEqual({ 'openvz.ipadd': '10.0.0.6 10.0.0.7 10.0.0.8' });
    expect(patch(['--ipdel', '10.0.0.6'], { 'openvz.ipadd': '10.0.0.6 10.0.0.7' }).set).toEqual({ 'openvz.ipadd': '10.0.0.7' });
    expect(patch(['--ipdel', 'all'], { 'openvz.ipadd': '10.0.0.6' }).unset).toEqual(['openvz.ipadd']);
    expect(code(() => patch(['--ipdel', '10.0.0.5']))).toBe(21);
    expect(code(() => patch(['--ipdel', '10.0.0.99']))).toBe(21);
    expect(code(() => patch(['--ipadd', '10.0.0.300']))).toBe(71);
    expect(patch(['--hostname', 'a.b', '--nameserver', '1.1.1.1', '--nameserver', '8.8.8.8', '--searchdomain', 'b', '--onboot', 'yes', '--description', 'my ct']).set).toEqual({
      'openvz.hostname': 'a.b', 'openvz.nameserver': '1.1.1.1 8.8.8.8', 'openvz.searchdomain': 'b', 'boot.autostart': 'true', 'user.description': 'my ct',
    });
    expect(patch(['--userpasswd', 'root:s3cret']).passwords).toEqual([['root', 's3cret']]);
  });

  it('--netif_add gives the CT one veth on Hangar\'s bridge by its inside name; --netif_del removes it', () => {
    expect(patch(['--netif_add', 'eth0']).set).toEqual({ 'openvz.netif': 'eth0' });
    expect(patch(['--netif_add', 'eth1,,,,']).set).toEqual({ 'openvz.netif': 'eth1' });
    expect(patch(['--netif_del', 'eth0'], { 'openvz.netif': 'eth0' }).unset).toEqual(['openvz.netif']);
    expect(patch(['--netif_del', 'all', '--netif_add', 'eth1'], { 'openvz.netif': 'eth0' }).set).toEqual({ 'openvz.netif': 'eth1' });
    // Another veth beside the one it has, a MAC or bridge of the user's, bad names, or removing one it has not: exit 21.
    for (const [args, current] of [[['--netif_add', 'eth1'], { 'openvz.netif': 'eth0' }], [['--netif_add', 'eth0,02:00:00:00:00:01']], [['--netif_add', 'eth0,,,,br9']], [['--netif_add', 'venet0']], [['--netif_add', 'a b']], [['--netif_add', 'x'.repeat(16)]], [['--netif_del', 'eth0']]] as const) {
      expect(code(() => patch([...args], { ...current })), args.join(' ')).toBe(21);
    }
  });

  it('refuses bad values with exit 21', () => {
    for (const args of [['--ram', 'lots'], ['--cpuunits', '7'], ['--cpuunits', '500001'], ['--cpulimit', 'x'], ['--onboot', 'maybe'], ['--memguarantee', '101%', '--ram', '1G'], ['--memguarantee', '50%'], ['--numproc', '5:3'], ['--userpasswd', 'nopass'], ['--diskspace', 'unlimited']]) {
      expect(code(() => patch(args)), args.join(' ')).toBe(21);
    }
  });
});

describe('samples and templates', () => {
  it('each sample is a valid Hangar config; vswap samples set RAM and twice as much swap', () => {
    for (const name of Object.keys(VZ_SAMPLES)) expect(() => sampleConfig(name), name).not.toThrow();
    expect(sampleConfig('vswap-512m')).toMatchObject({ 'limits.memory': '512MiB', 'limits.memory.swap': '1GiB', 'limits.disk.inodes': '144179', 'limits.cpu.weight': '100' });
    expect(sampleConfig('basic')['limits.memory']).toBeUndefined();
    expect(sampleConfig('light')).toMatchObject({ 'limits.processes': '40', 'limits.cpu.weight': '25' });
    expect(() => sampleConfig('nope')).toThrow(/not found/);
    expect(templateImage('debian-12-x86_64')).toBe('debian');
    expect(templateImage('centos-7-x86_64')).toBe('centos-7-x86-64');
    expect(() => templateImage('../x')).toThrow(/Invalid OS template/);
  });

  it('vz.conf\'s CONFIGFILE and DEF_OSTEMPLATE are honoured', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hangar-vzconf-'));
    try {
      writeFileSync(join(dir, 'vz.conf'), '# global\nCONFIGFILE="vswap-1024m"\nDEF_OSTEMPLATE=busybox-x86_64 # comment\nTEMPLATE=/vz/template\n');
      expect(readVzGlobal({ HANGAR_VZ_CONF: join(dir, 'vz.conf') })).toEqual({ sample: 'vswap-1024m', ostemplate: 'busybox-x86_64', templateDir: '/vz/template' });
      expect(readVzGlobal({ HANGAR_VZ_CONF: join(dir, 'missing'), HANGAR_DIR: '/srv/h' })).toEqual({ sample: 'vswap-256m', ostemplate: 'debian-12-x86_64', templateDir: '/srv/h/template' });
      mkdirSync(join(dir, 'cache'));
      writeFileSync(join(dir, 'cache', 'centos-7-x86_64.tar.xz'), '');
      expect(templateTarball(dir, 'centos-7-x86_64')).toBe(join(dir, 'cache', 'centos-7-x86_64.tar.xz'));
      expect(templateTarball(dir, 'centos-8-x86_64')).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('finding CTs and their status', () => {
  it('by CTID or name, openvz ones only; status lines as vzctl prints them', () => {
    const list = [ct(), ct({ name: 'other', driver: 'lxc', config: { 'openvz.ctid': '102' } })];
    expect(findCt(list, '101')?.name).toBe('web');
    expect(findCt(list, 'web')?.name).toBe('web');
    expect(findCt(list, '102')).toBeUndefined();
    expect(statusLine('101', ct())).toBe('CTID 101 exist mounted running');
    expect(statusLine('101', ct({ state: 'stopped', details: { root: '/x (not mounted)' } }))).toBe('CTID 101 exist unmounted down');
    expect(statusLine('101', ct({ state: 'stopped', details: { root: '/x (mounted)' } }))).toBe('CTID 101 exist mounted down');
    expect(statusLine('103', undefined)).toBe('CTID 103 deleted unmounted down');
  });
});

describe('vzlist', () => {
  const fields = (names: string[]) => names.map((n) => VZLIST_FIELDS.find((f) => f.name === n)!);
  const a: CtView = { instance: ct({ config: { 'openvz.ctid': '101', 'openvz.hostname': 'web.example.org', 'limits.memory': '256MiB', 'openvz.ipadd': '10.0.0.6' } }), ubc: [{ resource: 'numproc', unit: 'items', held: 12, maxheld: 20, barrier: null, limit: null, failcnt: 0 }, { resource: 'physpages', unit: 'pages', held: 100, maxheld: 200, barrier: 0, limit: 65536, failcnt: 3 }] };
  const b: CtView = { instance: ct({ name: 'ct99', state: 'stopped', pid: null, ipv4: '10.0.0.9', config: { 'openvz.ctid': '99' } }), info: ct({ state: 'stopped', details: { root: '/r (not mounted)' } }) };

  it('has vzlist\'s 144 fields; the default columns in its widths, one space apart, trailing blanks trimmed, - for unset', () => {
    expect(VZLIST_FIELDS).toHaveLength(144);
    expect(formatVzText(fields(VZLIST_DEFAULT), sortVz([a, b], 'ctid'), false)).toBe(
      '      CTID      NPROC STATUS    IP_ADDR         HOSTNAME\n'
      + '        99          - stopped   10.0.0.9        ct99\n'
      + '       101         12 running   10.0.0.5 10.0.0.6 web.example.org\n',
    );
    expect(formatVzText(fields(['smart_name', 'name']), [a, b], true)).toBe('       web web\n        99 -\n');
    expect(formatVzText(fields(['numproc.m', 'physpages.l', 'onboot', 'vswap']), [a], true)).toBe('        20      65536      -   yes\n');
  });

  it('sorts by any field, -field descending', () => {
    expect(sortVz([b, a], 'ctid').map((r) => r.instance.name)).toEqual(['ct99', 'web']);
    expect(sortVz([b, a], '-ctid').map((r) => r.instance.name)).toEqual(['web', 'ct99']);
    expect(() => sortVz([a], 'nope')).toThrow(/Invalid sort field/);
  });

  it('prints JSON with LONG_MAX exactly and beancounters as objects', () => {
    const out = formatVzJson(fields(['ctid', 'ip', 'numproc', 'onboot']), [a]);
    expect(out).toContain('"limit": 9223372036854775807');
    expect(out.split('\n')[2]).toBe('    "ctid": 101,');
    expect(JSON.parse(out.replace(/9223372036854775807/g, '0'))).toEqual([{ ctid: 101, ip: ['10.0.0.5', '10.0.0.6'], numproc: { held: 12, maxheld: 20, barrier: 0, limit: 0, failcnt: 0 }, onboot: null }]);
  });

  it('parses grouped short flags and -o/-s', () => {
    expect(parseVzListArgs(['-aH', '-o', 'ctid,ip', '-s', '-ctid', '101'])).toMatchObject({ all: true, noHeader: true, fields: ['ctid', 'ip'], sort: '-ctid', ids: ['101'] });
    expect(() => parseVzListArgs(['-q'])).toThrow(/Invalid option/);
  });

  it('formats /proc/user_beancounters', () => {
    const text = formatUserBeancounters(101, [{ resource: 'physpages', unit: 'pages', held: 5, maxheld: 9, barrier: 0, limit: null, failcnt: 2 }]);
    expect(text).toBe('Version: 2.5\n       uid  resource                     held              maxheld              barrier                limit              failcnt\n'
      + '       101:  physpages                          5                    9                    0  9223372036854775807                    2\n');
  });
});

describe('vzmigrate destinations', () => {
  const host = (name: string, address: string | null) => ({ name, address, local: address === null } as unknown as HostRecord);
  it('a destination is a host\'s name, or the address of exactly one host', () => {
    const hosts = [host('local', null), host('node2', '192.0.2.2'), host('a', '192.0.2.9'), host('b', '192.0.2.9')];
    expect(findDestination(hosts, 'node2')?.name).toBe('node2');
    expect(findDestination(hosts, '192.0.2.2')?.name).toBe('node2');
    expect(findDestination(hosts, 'local')?.name).toBe('local');
    // Two hosts at one address: ambiguous, so none; an unknown one: none.
    expect(findDestination(hosts, '192.0.2.9')).toBeUndefined();
    expect(findDestination(hosts, 'nowhere')).toBeUndefined();
  });
});
