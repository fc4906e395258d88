// vzctl's commands over Hangar's API: create, start, stop, restart, status, destroy, mount, umount, exec, exec2, enter, set; CTs by CTID or name.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isAppError } from '../../shared/errors.js';
import type { Instance } from '../../shared/schemas.js';
import { parseVzNumber, parseVzPair, vzBytes } from '../../shared/vz-values.js';
import { bytesSize, cpuunitsWeight, sampleConfig, templateImage, VZ_BUILTIN_TEMPLATES, VZ_DEFAULT_OSTEMPLATE, VZ_DEFAULT_SAMPLE, VZ_SAMPLES } from '../../shared/vz-samples.js';
import type { StreamIo } from '../../client/client.js';
import type { Ctx } from '../context.js';
import { asVzError, badValue, parseVzArgs, valueOf, VZ_EXIT, VzError, type VzOptKind } from './args.js';
import { formatUserBeancounters } from './beancounters-text.js';

const CTID_MAX = 2147483647;

/** The usage vzctl prints for no or an unknown command. */
export const VZCTL_USAGE = `Usage: vzctl [options] <command> <ctid> [parameters]
vzctl create <ctid> [--ostemplate <name>] [--config <name>] [--ipadd <addr>] [--hostname <name>] [--name <name>]
   [--diskspace <kbytes>] [--diskinodes <num>]
vzctl start <ctid> [--wait]
vzctl stop <ctid> [--fast]
vzctl restart <ctid> [--fast] [--wait]
vzctl status | mount | umount | destroy | delete <ctid>
vzctl exec | exec2 <ctid> <command> [arg ...]
vzctl enter <ctid>
vzctl set <ctid> [--save] [--ram <bytes>] [--swap <bytes>] [--memguarantee auto|<N>%] [--cpus <N>] [--cpuunits <N>]
   [--cpulimit <N>[%]] [--diskspace [soft:]hard] [--diskinodes [soft:]hard] [--numproc [b:]l] [--ipadd <addr>]...
   [--ipdel <addr>|all]... [--hostname <name>] [--nameserver <addr>]... [--searchdomain <name>]... [--onboot yes|no]
   [--userpasswd <user>:<password>] [--description <text>] [--netif_add <ifname>] [--netif_del <ifname>|all]
vzctl beancounters <ctid>
vzctl chkpnt | restore <ctid>   (refused where the host's CRIU cannot checkpoint; host info says why)
CTs are Hangar instances of the openvz driver; <ctid> is a CTID or a CT's name.
`;

/** The settings of vz.conf that Hangar honours (CONFIGFILE, DEF_OSTEMPLATE, TEMPLATE), from HANGAR_VZ_CONF or /etc/vz/vz.conf. */
export function readVzGlobal(env: Record<string, string | undefined>): { sample: string; ostemplate: string; templateDir: string } {
  const path = env.HANGAR_VZ_CONF ?? '/etc/vz/vz.conf';
  let text = '';
  try { text = readFileSync(path, 'utf8'); } catch { /* no vz.conf: vzctl's defaults */ }
  const get = (key: string) => {
    let v: string | undefined;
    for (const line of text.split('\n')) {
      const m = new RegExp(`^\\s*${key}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|(\\S*))`).exec(line);
      if (m) v = m[1] ?? m[2] ?? m[3];
    }
    return v;
  };
  // OpenVZ keeps OS template tarballs in $TEMPLATE/cache; Hangar's default is beside its state.
  const templateDir = get('TEMPLATE') || join(env.HANGAR_DIR ?? '/var/lib/hangar', 'template');
  return { sample: get('CONFIGFILE') || VZ_DEFAULT_SAMPLE, ostemplate: get('DEF_OSTEMPLATE') || VZ_DEFAULT_OSTEMPLATE, templateDir };
}

/** The tarball of a template in the cache ($TEMPLATE/cache/NAME.tar.gz, .tar.xz, .tar.zst or .tar), if there is one. */
export function templateTarball(templateDir: string, name: string): string | undefined {
  return ['.tar.gz', '.tar.xz', '.tar.zst', '.tar'].map((ext) => join(templateDir, 'cache', `${name}${ext}`)).find((p) => existsSync(p));
}

/** A CTID argument: a number in vzctl's range (exit 21 otherwise). */
export function parseCtidArg(text: string): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) < 1 || Number(text) > CTID_MAX) throw new VzError(VZ_EXIT.INVALID_PARAMETER_VALUE, `Invalid CTID: ${JSON.stringify(text)} (a number from 1 to ${CTID_MAX})`);
  return Number(text);
}

/** The CT a CTID or name refers to among the instances (openvz ones only), or undefined. */
export function findCt(list: readonly Instance[], ref: string): Instance | undefined {
  const cts = list.filter((i) => i.driver === 'openvz');
  if (/^\d+$/.test(ref)) return cts.find((i) => i.config['openvz.ctid'] === String(Number(ref)));
  return cts.find((i) => i.name === ref);
}

/** The CTID of a CT (its name when it has none: one adopted or made through hangar without a CTID). */
export function ctidOf(i: Instance): string {
  return i.config['openvz.ctid'] ?? i.name;
}

/** vzctl's status line: "CTID 101 exist mounted running". */
export function statusLine(ref: string, i: Instance | undefined): string {
  if (!i) return `CTID ${ref} deleted unmounted down`;
  const running = i.state === 'running' || i.state === 'frozen';
  const mounted = running || /\(mounted\)/.test(i.details?.root ?? '');
  return `CTID ${ctidOf(i)} exist ${mounted ? 'mounted' : 'unmounted'} ${running ? (i.state === 'frozen' ? 'suspended' : 'running') : 'down'}`;
}

const SET_OPTIONS: Record<string, VzOptKind> = {
  save: 'flag', 'setmode': 'value', ram: 'value', swap: 'value', memguarantee: 'value', physpages: 'value', swappages: 'value',
  cpus: 'value', cpuunits: 'value', cpulimit: 'value', diskspace: 'value', diskinodes: 'value', numproc: 'value',
  ipadd: 'multi', ipdel: 'multi', hostname: 'value', nameserver: 'multi', searchdomain: 'multi', onboot: 'value',
  userpasswd: 'multi', name: 'value', description: 'value', 'netif_add': 'value', 'netif_del': 'value',
};

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** An --ipadd/--ipdel address: IPv4, an optional /prefix (venet routes a /32 whatever it says). */
function address(option: string, text: string): string {
  const a = text.replace(/\/(\d|[12]\d|3[0-2])$/, '');
  if (!IPV4.test(a)) throw new VzError(VZ_EXIT.BAD_IP, `Invalid value for --${option}: ${JSON.stringify(text)} is not an IPv4 address`);
  return a;
}

/** What `vzctl set` (or create) options ask for, as a config patch against a CT's current config. */
export function setPatch(o: ReturnType<typeof parseVzArgs>, current: Record<string, string>, primary: string | null): { set: Record<string, string>; unset: string[]; passwords: Array<[string, string]> } {
  const set: Record<string, string> = {};
  const unset: string[] = [];
  const put = (key: string, value: string | null) => { if (value === null) unset.push(key); else set[key] = value; };
  const bytes = (opt: string, unit: 'bytes' | 'pages' | 'kib') => valueOf(opt, () => {
    const v = o.values.get(opt)!;
    const n = unit === 'pages' ? parseVzPair(v, 'pages', `--${opt}`).limit : v.includes(':') ? parseVzPair(v, unit, `--${opt}`).limit : parseVzNumber(v, unit, `--${opt}`);
    return n === null ? null : vzBytes(n, unit)!;
  });
  const v = (opt: string) => o.values.get(opt);

  if (v('ram') !== undefined) { const b = bytes('ram', 'bytes'); put('limits.memory', b === null || b === 0n ? null : bytesSize(b)); }
  if (v('physpages') !== undefined) { const b = bytes('physpages', 'pages'); put('limits.memory', b === null ? null : bytesSize(b)); }
  if (v('swap') !== undefined) { const b = bytes('swap', 'bytes'); put('limits.memory.swap', b === null ? null : b === 0n ? '0' : bytesSize(b)); }
  if (v('swappages') !== undefined) { const b = bytes('swappages', 'pages'); put('limits.memory.swap', b === null ? null : b === 0n ? '0' : bytesSize(b)); }
  const mg = v('memguarantee');
  if (mg !== undefined) {
    const ram = set['limits.memory'] ?? current['limits.memory'];
    const pct = /^(\d{1,3})%$/.exec(mg);
    if (mg === 'auto' || mg === '0' || mg === '0%') put('limits.memory.guarantee', null);
    else if (pct) {
      if (Number(pct[1]) > 100) badValue('memguarantee', mg, 'a percentage of --ram, at most 100%');
      if (!ram) badValue('memguarantee', mg, 'a percentage needs --ram');
      const ramBytes = valueOf('ram', () => parseVzNumber(ram.replace(/iB$/, '').replace(/B$/, ''), 'bytes', 'limits.memory'));
      put('limits.memory.guarantee', bytesSize(((ramBytes ?? 0n) * BigInt(pct[1]!)) / 100n));
    } else {
      const b = valueOf('memguarantee', () => parseVzNumber(mg, 'bytes', '--memguarantee'));
      put('limits.memory.guarantee', b === null ? null : bytesSize(b));
    }
  }
  const cpus = v('cpus');
  if (cpus !== undefined) { if (!/^\d+$/.test(cpus)) badValue('cpus', cpus, 'a number of CPUs'); put('limits.cpu', Number(cpus) === 0 ? null : String(Number(cpus))); }
  const units = v('cpuunits');
  if (units !== undefined) {
    if (!/^\d+$/.test(units) || Number(units) < 8 || Number(units) > 500000) badValue('cpuunits', units, 'a number from 8 to 500000');
    put('limits.cpu.weight', String(cpuunitsWeight(Number(units))));
  }
  const cpulimit = v('cpulimit');
  if (cpulimit !== undefined) {
    const m = /^(\d+)%?$/.exec(cpulimit);
    if (!m) badValue('cpulimit', cpulimit, 'a percentage of one CPU');
    put('limits.cpu.cap', Number(m[1]) === 0 ? null : `${Number(m[1])}%`);
  }
  if (v('diskspace') !== undefined) { const b = bytes('diskspace', 'kib'); if (b === null) badValue('diskspace', v('diskspace')!, 'the private area needs a size'); put('limits.disk', bytesSize(b)); }
  const inodes = v('diskinodes');
  if (inodes !== undefined) { const p = valueOf('diskinodes', () => parseVzPair(inodes, 'items', '--diskinodes')); put('limits.disk.inodes', p.limit === null ? null : String(p.limit)); }
  const numproc = v('numproc');
  if (numproc !== undefined) { const p = valueOf('numproc', () => parseVzPair(numproc, 'items', '--numproc')); put('limits.processes', p.limit === null || p.limit === 0n ? null : String(p.limit)); }

  // Addresses: --ipdel first (all, or each), then --ipadd; the CT's own (first) address stays.
  const extra = new Set((current['openvz.ipadd'] ?? '').split(' ').filter(Boolean));
  let touched = false;
  for (const d of o.multi.get('ipdel') ?? []) {
    touched = true;
    if (d === 'all') { extra.clear(); continue; }
    const a = address('ipdel', d);
    if (a === primary) throw new VzError(VZ_EXIT.INVALID_PARAMETER_VALUE, `Cannot remove ${a}: it is the CT's own address (the instance's IPv4); remove the others with --ipdel`);
    if (!extra.delete(a)) throw new VzError(VZ_EXIT.INVALID_PARAMETER_VALUE, `Cannot remove ${a}: the CT has no such address`);
  }
  for (const add of o.multi.get('ipadd') ?? []) {
    touched = true;
    const a = address('ipadd', add);
    if (a !== primary) extra.add(a);
  }
  if (touched) put('openvz.ipadd', extra.size ? [...extra].join(' ') : null);
  // A veth on Hangar's bridge (one per CT): --netif_del first, then --netif_add.
  let netif = current['openvz.netif'];
  const del = v('netif_del');
  if (del !== undefined) {
    if (del !== 'all' && del !== netif) throw new VzError(VZ_EXIT.INVALID_PARAMETER_VALUE, `Cannot remove veth ${del}: the CT has ${netif ? `only ${netif}` : 'none'}`);
    netif = undefined;
    put('openvz.netif', null);
  }
  const add = v('netif_add');
  if (add !== undefined) {
    const [ifname = '', ...rest] = add.split(',');
    if (!/^[A-Za-z][A-Za-z0-9_.-]{0,14}$/.test(ifname) || ifname === 'venet0' || ifname === 'lo') badValue('netif_add', add, 'ifname[,mac,host_ifname,host_mac,bridge] with an interface name such as eth0');
    if (rest.some((x) => x !== '')) throw new VzError(VZ_EXIT.INVALID_PARAMETER_VALUE, `Invalid value for --netif_add: ${JSON.stringify(add)}: Hangar gives the veth the CT's own MAC and host interface name, on its own bridge; give the interface name only`);
    if (netif !== undefined && netif !== ifname) throw new VzError(VZ_EXIT.INVALID_PARAMETER_VALUE, `Cannot add veth ${ifname}: the CT has ${netif} already (a CT gets one veth on Hangar's bridge; --netif_del ${netif} first)`);
    put('openvz.netif', ifname);
  }
  if (v('hostname') !== undefined) put('openvz.hostname', v('hostname')!);
  const ns = o.multi.get('nameserver');
  if (ns) put('openvz.nameserver', ns.map((n) => address('nameserver', n)).join(' '));
  const sd = o.multi.get('searchdomain');
  if (sd) put('openvz.searchdomain', sd.join(' '));
  const onboot = v('onboot');
  if (onboot !== undefined) { if (onboot !== 'yes' && onboot !== 'no') badValue('onboot', onboot, 'yes or no'); put('boot.autostart', String(onboot === 'yes')); }
  if (v('description') !== undefined) put('user.description', v('description')!);
  const passwords: Array<[string, string]> = [];
  for (const up of o.multi.get('userpasswd') ?? []) {
    const i = up.indexOf(':');
    if (i <= 0 || !/^[a-z_][a-z0-9_-]{0,31}$/.test(up.slice(0, i))) badValue('userpasswd', up, 'user:password');
    if (/[\n\r:]/.test(up.slice(i + 1))) badValue('userpasswd', up, 'a password without line breaks or colons');
    passwords.push([up.slice(0, i), up.slice(i + 1)]);
  }
  return { set, unset: unset.filter((k) => current[k] !== undefined || set[k] !== undefined), passwords };
}

/** Runs one vzctl command line; answers vzctl's exit code. */
export async function vzctl(ctx: Ctx, argv: readonly string[]): Promise<number> {
  try {
    return await dispatch(ctx, argv.filter((a) => a !== '--quiet' && a !== '--verbose'));
  } catch (err) {
    const e = asVzError(err);
    ctx.err(e.message);
    if (e.cause instanceof Error && isAppError(e.cause)) for (let c = (e.cause as Error & { cause?: unknown }).cause; c instanceof Error; c = (c as Error & { cause?: unknown }).cause) ctx.err(`  caused by: ${c.message}`);
    return e.exitCode;
  }
}

async function dispatch(ctx: Ctx, argv: readonly string[]): Promise<number> {
  const [cmd, ref, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === 'help') {
    ctx.out(VZCTL_USAGE);
    return cmd === undefined ? VZ_EXIT.INVALID_PARAMETER_SYNTAX : VZ_EXIT.OK;
  }
  const known = ['create', 'start', 'stop', 'restart', 'status', 'destroy', 'delete', 'mount', 'umount', 'exec', 'exec2', 'enter', 'set', 'beancounters', 'chkpnt', 'restore', 'suspend', 'resume'];
  if (!known.includes(cmd)) {
    ctx.err(`Invalid action: ${cmd}`);
    ctx.err(VZCTL_USAGE);
    return VZ_EXIT.INVALID_PARAMETER_SYNTAX;
  }
  if (ref === undefined) throw new VzError(VZ_EXIT.INVALID_PARAMETER_SYNTAX, `vzctl ${cmd} needs a CTID`);
  if (cmd === 'create') return create(ctx, ref, rest);
  const list = await ctx.client.listInstances();
  const ct = findCt(list, ref);
  if (cmd === 'status') {
    if (rest.length) throw new VzError(VZ_EXIT.INVALID_PARAMETER_SYNTAX, `Invalid option: ${rest[0]}`);
    const full = ct ? await ctx.client.getInstance(ct.name) : undefined;
    ctx.out(statusLine(ref, full));
    return VZ_EXIT.OK;
  }
  if (!ct) throw new VzError(VZ_EXIT.NOT_FOUND_CONFIG, `Container ${ref} does not exist (no openvz CT has this CTID or name)`);
  const id = ctidOf(ct);
  const running = ct.state === 'running' || ct.state === 'frozen';
  switch (cmd) {
    case 'start': {
      parseVzArgs(rest, { wait: 'flag', force: 'flag' });
      if (running) throw new VzError(VZ_EXIT.RUNNING, 'Container is already running');
      ctx.out('Starting container...');
      await ctx.client.runOperation(() => ctx.client.changeState(ct.name, { action: 'start' }));
      ctx.out('Container is mounted');
      ctx.out(`Adding IP address(es): ${[ct.ipv4, ...(ct.config['openvz.ipadd'] ?? '').split(' ')].filter(Boolean).join(' ')}`);
      ctx.out('Container start in progress...');
      return VZ_EXIT.OK;
    }
    case 'stop': {
      const o = parseVzArgs(rest, { fast: 'flag', skip_umount: 'flag' });
      if (!running) throw new VzError(VZ_EXIT.NOT_RUNNING, 'Unable to stop: container is not running');
      ctx.out('Stopping container ...');
      await ctx.client.runOperation(() => ctx.client.changeState(ct.name, { action: 'stop', ...(o.flags.has('fast') ? { force: true } : {}) }))
        .catch((e: unknown) => { throw asVzError(e, VZ_EXIT.STOP_FAILED); });
      ctx.out('Container was stopped');
      ctx.out('Container is unmounted');
      return VZ_EXIT.OK;
    }
    case 'restart': {
      const o = parseVzArgs(rest, { fast: 'flag', wait: 'flag' });
      ctx.out('Restarting container');
      await ctx.client.runOperation(() => ctx.client.changeState(ct.name, { action: 'restart', ...(o.flags.has('fast') ? { force: true } : {}) }));
      ctx.out('Container start in progress...');
      return VZ_EXIT.OK;
    }
    case 'destroy':
    case 'delete': {
      parseVzArgs(rest, {});
      if (running) throw new VzError(VZ_EXIT.RUNNING, 'Container is currently running. Stop it first.');
      ctx.out(`Destroying container private area of CT ${id}`);
      await ctx.client.runOperation(() => ctx.client.deleteInstance(ct.name)).catch((e: unknown) => { throw asVzError(e, VZ_EXIT.DELETE_FAILED); });
      ctx.out('Container private area was destroyed');
      return VZ_EXIT.OK;
    }
    case 'mount': {
      parseVzArgs(rest, {});
      const full = await ctx.client.getInstance(ct.name);
      if (running || /\(mounted\)/.test(full.details?.root ?? '')) throw new VzError(VZ_EXIT.MOUNTED, 'Container is already mounted');
      await ctx.client.runOperation(() => ctx.client.changeState(ct.name, { action: 'mount' })).catch((e: unknown) => { throw asVzError(e, VZ_EXIT.MOUNT_FAILED); });
      ctx.out('Container is mounted');
      return VZ_EXIT.OK;
    }
    case 'umount': {
      parseVzArgs(rest, {});
      if (running) throw new VzError(VZ_EXIT.RUNNING, 'Container is running -- stop it first');
      const full = await ctx.client.getInstance(ct.name);
      if (!/\(mounted\)/.test(full.details?.root ?? '')) throw new VzError(VZ_EXIT.NOT_MOUNTED, 'Container is not mounted');
      await ctx.client.runOperation(() => ctx.client.changeState(ct.name, { action: 'umount' })).catch((e: unknown) => { throw asVzError(e, VZ_EXIT.UMOUNT_FAILED); });
      ctx.out('Container is unmounted');
      return VZ_EXIT.OK;
    }
    case 'exec':
    case 'exec2': {
      if (!running) throw new VzError(VZ_EXIT.NOT_RUNNING, 'Container is not running');
      if (rest.length === 0) throw new VzError(VZ_EXIT.INVALID_PARAMETER_SYNTAX, `vzctl ${cmd} needs a command`);
      // vzctl runs the words as one shell command line; "-" reads the commands from stdin.
      const command = rest.length === 1 && rest[0] === '-' ? ['/bin/sh'] : ['/bin/sh', '-c', rest.join(' ')];
      const io: StreamIo = { stdin: ctx.io.stdin, stdout: ctx.io.stdout, stderr: ctx.io.stderr };
      return ctx.client.exec(ct.name, { command }, io);
    }
    case 'enter': {
      parseVzArgs(rest, { exec: 'value' });
      if (!running) throw new VzError(VZ_EXIT.NOT_RUNNING, 'Container is not running');
      ctx.out(`entered into CT ${id}`);
      const { execCommand } = await import('../commands/exec.js');
      const code = await execCommand(ctx, ct.name, ['/bin/sh', '-c', 'if [ -x /bin/bash ]; then exec /bin/bash -l; else exec /bin/sh -l; fi'], { tty: Boolean(ctx.io.stdin.isTTY), env: [] });
      ctx.out(`exited from CT ${id}`);
      return code === 0 ? VZ_EXIT.OK : code;
    }
    case 'beancounters': {
      parseVzArgs(rest, {});
      if (!running) throw new VzError(VZ_EXIT.NOT_RUNNING, 'Container is not running');
      ctx.out(formatUserBeancounters(id, await ctx.client.beancounters(ct.name)));
      return VZ_EXIT.OK;
    }
    case 'set':
      return setCommand(ctx, ct, rest);
    case 'chkpnt':
    case 'suspend':
    case 'restore':
    case 'resume': {
      // The host's openvz driver says whether its CRIU can checkpoint there (host info, "checkpoint").
      const info = await ctx.client.hostInfo(ct.host === 'local' ? undefined : ct.host);
      const why = info.drivers.find((d) => d.name === 'openvz')?.details.checkpoint ?? 'not available: the openvz driver is not enabled there';
      const code = cmd === 'chkpnt' || cmd === 'suspend' ? VZ_EXIT.CHKPNT_FAILED : VZ_EXIT.RESTORE_FAILED;
      throw new VzError(code, `Cannot ${cmd === 'chkpnt' || cmd === 'suspend' ? 'checkpoint' : 'restore'} CT ${id}: ${why}`);
    }
    default:
      return VZ_EXIT.INVALID_PARAMETER_SYNTAX;
  }
}

async function setCommand(ctx: Ctx, ct: Instance, rest: readonly string[]): Promise<number> {
  const o = parseVzArgs(rest, SET_OPTIONS);
  if (o.positional.length) throw new VzError(VZ_EXIT.INVALID_PARAMETER_SYNTAX, `Invalid argument: ${o.positional[0]}`);
  if (o.values.has('name') && o.values.get('name') !== ct.name) throw new VzError(VZ_EXIT.SET_NAME, `Cannot rename CT ${ctidOf(ct)} to ${o.values.get('name')}: a CT's name is its Hangar instance name, fixed at vzctl create --name`);
  const current = { ...ct.config, ...ct.pendingConfig };
  const patch = setPatch(o, current, ct.ipv4);
  const running = ct.state === 'running' || ct.state === 'frozen';
  if (patch.passwords.length && !running) throw new VzError(VZ_EXIT.NOT_RUNNING, 'Unable to set the password: container is not running');
  if (Object.keys(patch.set).length || patch.unset.length) {
    const res = await ctx.client.patchConfig(ct.name, { ...(Object.keys(patch.set).length ? { set: patch.set } : {}), ...(patch.unset.length ? { unset: patch.unset } : {}) });
    if (res.pending.length) ctx.out(`Applied at the next start: ${res.pending.join(', ')}`);
  }
  for (const [user, pass] of patch.passwords) {
    // chpasswd reads user:password from stdin: the password is never on a command line.
    const script = 'id "$1" >/dev/null 2>&1 || adduser -D "$1" 2>/dev/null || useradd -m "$1"; chpasswd';
    const code = await ctx.client.exec(ct.name, { command: ['/bin/sh', '-c', script, 'sh', user] }, { stdin: `${user}:${pass}\n`, stdout: ctx.io.stdout, stderr: ctx.io.stderr });
    if (code !== 0) throw new VzError(VZ_EXIT.CHANGE_PASSWORD, `Unable to change the password of ${user} (chpasswd exited with ${code})`);
  }
  // Hangar keeps every setting: --save is implied (a running CT also gets the change at once).
  ctx.out(`Saved parameters for CT ${ctidOf(ct)}`);
  return VZ_EXIT.OK;
}

const CREATE_OPTIONS: Record<string, VzOptKind> = {
  ostemplate: 'value', config: 'value', ipadd: 'multi', hostname: 'value', name: 'value', diskspace: 'value', diskinodes: 'value',
  private: 'value', root: 'value', layout: 'value', 'local_uid': 'value', 'local_gid': 'value',
};

async function create(ctx: Ctx, ref: string, rest: readonly string[]): Promise<number> {
  const ctid = parseCtidArg(ref);
  const o = parseVzArgs(rest, CREATE_OPTIONS);
  if (o.positional.length) throw new VzError(VZ_EXIT.INVALID_PARAMETER_SYNTAX, `Invalid argument: ${o.positional[0]}`);
  for (const opt of ['private', 'root', 'layout', 'local_uid', 'local_gid']) {
    if (o.values.has(opt)) throw new VzError(VZ_EXIT.INVALID_PARAMETER_VALUE, `--${opt} is not supported: Hangar keeps each CT's private area (an ext4 image) in its storage pool and mounts it under its own state directory`);
  }
  const global = readVzGlobal(ctx.io.env);
  const sampleName = o.values.get('config') ?? global.sample;
  if (!Object.hasOwn(VZ_SAMPLES, sampleName)) throw new VzError(VZ_EXIT.INVALID_PARAMETER_VALUE, `Config sample "${sampleName}" not found (there are: ${Object.keys(VZ_SAMPLES).join(', ')})`);
  const ostemplate = o.values.get('ostemplate') ?? global.ostemplate;
  const image = valueOf('ostemplate', () => templateImage(ostemplate));
  const list = await ctx.client.listInstances();
  const holder = list.find((i) => i.config['openvz.ctid'] === String(ctid));
  if (holder) throw new VzError(VZ_EXIT.PRIVATE_EXISTS, `Container private area already exists: CT ${ctid} is instance "${holder.name}"`);
  const name = o.values.get('name') ?? `ct${ctid}`;
  if (!/^[a-z][a-z0-9-]{0,62}$/.test(name)) throw new VzError(VZ_EXIT.SET_NAME, `Invalid name ${JSON.stringify(name)}: a CT's name is a Hangar instance name (lower case letters, digits and -, starting with a letter)`);
  const taken = list.find((i) => i.name === name);
  if (taken) throw new VzError(VZ_EXIT.SET_NAME, `Name ${name} is already used by ${taken.driver === 'openvz' ? `CT ${ctidOf(taken)}` : `instance "${taken.name}" (${taken.driver})`}`);
  const config: Record<string, string> = { ...sampleConfig(sampleName), 'openvz.ctid': String(ctid), 'openvz.ostemplate': ostemplate };
  const patch = setPatch(parseVzArgs([
    ...(o.values.has('diskspace') ? ['--diskspace', o.values.get('diskspace')!] : []),
    ...(o.values.has('diskinodes') ? ['--diskinodes', o.values.get('diskinodes')!] : []),
    ...(o.values.has('hostname') ? ['--hostname', o.values.get('hostname')!] : []),
  ], SET_OPTIONS), config, null);
  Object.assign(config, patch.set);
  const ips = (o.multi.get('ipadd') ?? []).map((a) => address('ipadd', a));
  if (new Set(ips).size !== ips.length) throw new VzError(VZ_EXIT.INVALID_PARAMETER_VALUE, 'An address is given twice with --ipadd');
  if (ips.length > 1) config['openvz.ipadd'] = ips.slice(1).join(' ');
  ctx.out(`Creating container private area (${ostemplate})`);
  const progress = ctx.progress();
  try {
    // A tarball dropped into the template cache becomes an image of the template's name the first time it is used.
    const tarball = VZ_BUILTIN_TEMPLATES[ostemplate] ? undefined : templateTarball(global.templateDir, ostemplate);
    if (tarball && !(await ctx.client.listImages()).some((i) => i.alias === image && i.type === 'container')) {
      ctx.out(`Importing OS template ${tarball}`);
      await ctx.client.runOperation(() => ctx.client.importImage({ path: tarball, alias: image }), { onProgress: progress.update });
    }
    await ctx.client.runOperation(() => ctx.client.createInstance({
      name, image, type: 'container', driver: 'openvz', config, ...(ips[0] ? { ipv4: ips[0] } : {}), start: false,
    }), { onProgress: progress.update });
  } catch (err) {
    progress.end();
    if (isAppError(err) && err.code === 'NOT_FOUND' && /[Ii]mage/.test(err.message)) throw new VzError(VZ_EXIT.TEMPLATE_NOT_FOUND, `OS template ${ostemplate} is not found (no image "${image}", no ${join(global.templateDir, 'cache', `${ostemplate}.tar.gz`)}; drop the tarball there or import it with hangar image import FILE --alias ${image})`, err);
    throw asVzError(err, isAppError(err) && err.code === 'BACKEND_FAILED' ? VZ_EXIT.CREATE_FAILED : undefined);
  }
  progress.end();
  ctx.out('Container private area was created');
  return VZ_EXIT.OK;
}
