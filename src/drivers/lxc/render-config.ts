// Pure rendering of an instance record into an LXC 5 container config file, and of the resource model into cgroup settings.
import { posix } from 'node:path';
import { resourcesOf, type InstanceConfig } from '../../shared/config.js';
import { AppError } from '../../shared/errors.js';
import type { HostFacts, InstanceRecord } from '../driver.js';

/** Files shown to LXC from lxcfs so that tools inside see the container's own numbers. */
export const LXCFS_PROC_FILES = ['meminfo', 'cpuinfo', 'stat', 'uptime', 'diskstats', 'swaps', 'loadavg'] as const;

/** CFS period used for CPU caps, in microseconds. */
export const CPU_PERIOD_US = 100_000;

/** Everything renderLxcConfig needs. */
export interface LxcRenderInput {
  record: InstanceRecord;
  facts: HostFacts;
  /** Daemon prefix: the container cgroup is <prefix>/<name>, its monitor's <prefix>.monitor/<name>. */
  prefix: string;
  lxcfsDir: string | null;
  /** Path of the seccomp profile (render-seccomp.ts) the driver writes beside the config. */
  seccompProfile: string;
  /** CPUs for limits.cpu chosen by the caller, e.g. "0" or "0-1"; defaults to the first limits.cpu CPUs. */
  cpuset?: string;
}

/** One cgroup file value derived from the resource model; controller is the v1 controller ("" on pure v2). */
export interface CgroupSetting {
  controller: string;
  file: string;
  value: string;
}

/** File names of the instance's LXC files inside its instance directory. */
export const INSTANCE_FILES = { consoleLog: 'console.log', lxcLog: 'lxc.log' } as const;

/** Container and monitor cgroup paths, relative to each hierarchy's root. */
export function cgroupDirs(prefix: string, name: string): { container: string; monitor: string } {
  return { container: `${prefix}/${name}`, monitor: `${prefix}.monitor/${name}` };
}

/** True when the record asks for a privileged container (no user namespace). */
export function isPrivileged(config: InstanceConfig): boolean {
  return config['security.privileged'] === 'true';
}

/** cpuset string for the first n CPUs: "0", "0-1", ... */
export function firstCpus(n: number): string {
  return n <= 1 ? '0' : `0-${n - 1}`;
}

/** The cgroup settings for a config on this host: v1 files on v1 and hybrid hosts, v2 files on pure v2. */
export function cgroupSettings(config: InstanceConfig, facts: HostFacts, cpuset?: string): CgroupSetting[] {
  const r = resourcesOf(config);
  const out: CgroupSetting[] = [];
  const v1 = facts.cgroupLayout !== 'v2';
  const set = (controller: string, file: string, value: number | string) => out.push({ controller: v1 ? controller : '', file, value: String(value) });
  const quota = r.cpuCapPct === undefined ? undefined : Math.max(1000, Math.round((r.cpuCapPct / 100) * CPU_PERIOD_US));
  if (v1) {
    if (r.memoryMax !== undefined) set('memory', 'memory.limit_in_bytes', r.memoryMax);
    if (r.memoryGuarantee !== undefined) set('memory', 'memory.soft_limit_in_bytes', r.memoryGuarantee);
    // memsw counts memory plus swap; it must be written after (and be at least) limit_in_bytes.
    if (r.memorySwap !== undefined && r.memoryMax !== undefined && facts.swapAccounting) set('memory', 'memory.memsw.limit_in_bytes', r.memoryMax + r.memorySwap);
    if (r.cpuCount !== undefined) set('cpuset', 'cpuset.cpus', cpuset ?? firstCpus(r.cpuCount));
    if (r.cpuWeight !== undefined) set('cpu', 'cpu.shares', Math.max(2, Math.round((r.cpuWeight * 1024) / 100)));
    if (quota !== undefined) {
      set('cpu', 'cpu.cfs_period_us', CPU_PERIOD_US);
      set('cpu', 'cpu.cfs_quota_us', quota);
    }
    if (r.processes !== undefined) set('pids', 'pids.max', r.processes);
  } else {
    if (r.memoryMax !== undefined) set('', 'memory.max', r.memoryMax);
    if (r.memoryGuarantee !== undefined) set('', 'memory.low', r.memoryGuarantee);
    if (r.memorySwap !== undefined) set('', 'memory.swap.max', r.memorySwap);
    if (r.cpuCount !== undefined) set('', 'cpuset.cpus', cpuset ?? firstCpus(r.cpuCount));
    if (r.cpuWeight !== undefined) set('', 'cpu.weight', r.cpuWeight);
    if (quota !== undefined) set('', 'cpu.max', `${quota} ${CPU_PERIOD_US}`);
    if (r.processes !== undefined) set('', 'pids.max', r.processes);
  }
  return out;
}

/** The value that lifts a limit (kernel default) for every file cgroupSettings may write; allCpus is the parent's cpuset. */
export function cgroupDefault(setting: Pick<CgroupSetting, 'file'>, allCpus: string): string {
  switch (setting.file) {
    case 'memory.limit_in_bytes':
    case 'memory.soft_limit_in_bytes':
    case 'memory.memsw.limit_in_bytes':
    case 'cpu.cfs_quota_us':
      return '-1';
    case 'cpu.cfs_period_us':
      return String(CPU_PERIOD_US);
    case 'cpu.shares':
      return '1024';
    case 'cpuset.cpus':
      return allCpus;
    case 'memory.low':
      return '0';
    case 'cpu.weight':
      return '100';
    case 'cpu.max':
      return `max ${CPU_PERIOD_US}`;
    default:
      return 'max';
  }
}

/** The broadcast address of addr's subnet (LXC otherwise leaves it 0.0.0.255-style wrong). */
function broadcastOf(addr: string, prefixLength: number): string {
  const n = addr.split('.').reduce((acc, o) => (acc << 8) + Number(o), 0) >>> 0;
  const mask = prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
  const b = (n | (~mask >>> 0)) >>> 0;
  return [b >>> 24, (b >>> 16) & 255, (b >>> 8) & 255, b & 255].join('.');
}

function clean(value: string, what: string): string {
  if (/[\n\r\0]/.test(value)) throw new AppError('INVALID_CONFIG', `Invalid ${what} ${JSON.stringify(value)}: line breaks are not allowed in an LXC config value`);
  return value;
}

/** The devices every container may open: null, zero, full, random, urandom, tty, console, ptmx and the pts (everything else is denied). */
export const DEVICE_RULES = ['c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:1 rwm', 'c 5:2 rwm', 'c 136:* rwm'];

/** Devices a container gets only when asked for, with the host node bound in: key, rule, node. */
export const OPTIONAL_DEVICES = [
  { key: 'security.devices.fuse', rule: 'c 10:229 rwm', node: '/dev/fuse' },
  { key: 'security.devices.tun', rule: 'c 10:200 rwm', node: '/dev/net/tun' },
] as const;

/** Renders the LXC config file: one key per line, in a stable order. */
export function renderLxcConfig(input: LxcRenderInput): string {
  const { record, facts, prefix, lxcfsDir } = input;
  const lines: string[] = [`# Generated by Hangar for instance "${clean(record.name, 'name')}"; rewritten on every config change.`];
  const kv = (key: string, value: string | number) => lines.push(`${key} = ${clean(String(value), key)}`);

  kv('lxc.uts.name', record.name);
  kv('lxc.rootfs.path', `dir:${record.rootPath}`);
  // The essentials of LXC's common.conf/userns.conf, inline: including them would pull in common.conf.d, whose lxcfs
  // hooks fork shell scripts on every start and stop (measured: lxc-stop -k 540 ms with them, 35 ms without).
  const privileged = isPrivileged(record.config);
  kv('lxc.tty.max', 4);
  kv('lxc.pty.max', 1024);
  kv('lxc.seccomp.profile', input.seccompProfile);
  // LXC silently skips the profile when hangard itself runs under a seccomp filter (a systemd SystemCallFilter, a
  // container): stacking keeps the btrfs ban in force there too.
  kv('lxc.seccomp.allow_nesting', 1);
  kv('lxc.mount.auto', privileged ? 'cgroup:mixed proc:mixed sys:mixed' : 'cgroup:mixed proc:mixed sys:rw');
  kv('lxc.mount.entry', '/sys/fs/fuse/connections sys/fs/fuse/connections none bind,optional 0 0');
  // A devices allow-list for every container, privileged or not: a device node that reaches a root file system (an
  // image, a bind mount) opens nothing beyond it. On a hybrid host lxc.cgroup2.* keys would be ignored.
  const devKey = facts.cgroupLayout === 'v2' ? 'lxc.cgroup2.devices' : 'lxc.cgroup.devices';
  kv(`${devKey}.deny`, 'a');
  // Privileged containers may still create nodes (mknod), as LXC's common.conf allows; opening them is what is ruled.
  if (privileged) for (const rule of ['c *:* m', 'b *:* m']) kv(`${devKey}.allow`, rule);
  for (const rule of DEVICE_RULES) kv(`${devKey}.allow`, rule);
  for (const d of OPTIONAL_DEVICES) {
    if (record.config[d.key] !== 'true') continue;
    kv(`${devKey}.allow`, d.rule);
    kv('lxc.mount.entry', `${d.node} ${d.node.slice(1)} none bind,create=file,optional 0 0`);
  }
  if (privileged) {
    kv('lxc.tty.dir', 'lxc');
    kv('lxc.cap.drop', 'mac_admin mac_override sys_time sys_module sys_rawio');
  } else {
    const map = record.idmap ?? facts.idmap;
    kv('lxc.idmap', `u 0 ${map.uidStart} ${map.count}`);
    kv('lxc.idmap', `g 0 ${map.gidStart} ${map.count}`);
    // The tree is stored with the container's own ids (0-based); an idmapped mount shows it through this map, so
    // no container needs a chown of its tree, and each can have its own map.
    kv('lxc.rootfs.options', 'idmap=container');
  }

  const nic = record.nic;
  kv('lxc.net.0.type', 'veth');
  kv('lxc.net.0.link', nic.bridge);
  kv('lxc.net.0.veth.pair', nic.hostIfName);
  kv('lxc.net.0.hwaddr', nic.mac);
  kv('lxc.net.0.ipv4.address', `${nic.ipv4}/${nic.prefixLength} ${broadcastOf(nic.ipv4, nic.prefixLength)}`);
  kv('lxc.net.0.ipv4.gateway', nic.gateway);
  kv('lxc.net.0.flags', 'up');
  kv('lxc.net.0.name', 'eth0');

  // /dev/console is a pty that lxc-console -t 0 attaches to; its output is also kept in a bounded, rotated file.
  kv('lxc.console.logfile', posix.join(record.instanceDir, INSTANCE_FILES.consoleLog));
  kv('lxc.console.size', '1MB');
  kv('lxc.console.rotate', 1);
  kv('lxc.log.file', posix.join(record.instanceDir, INSTANCE_FILES.lxcLog));
  kv('lxc.log.level', 'ERROR');

  if (record.imageProps.haltSignal) kv('lxc.signal.halt', record.imageProps.haltSignal);
  if (record.imageProps.init) kv('lxc.init.cmd', record.imageProps.init);

  if (lxcfsDir) {
    for (const f of LXCFS_PROC_FILES) kv('lxc.mount.entry', `${posix.join(lxcfsDir, 'proc', f)} proc/${f} none bind,optional,create=file 0 0`);
  }

  // As root LXC places cgroups relative to PID 1's cgroups (not hangard's own), so these land at /sys/fs/cgroup/<ctrl>/<prefix>/<name>.
  const dirs = cgroupDirs(prefix, record.name);
  kv('lxc.cgroup.relative', 0);
  kv('lxc.cgroup.dir.container', dirs.container);
  kv('lxc.cgroup.dir.monitor', dirs.monitor);
  // On a hybrid host lxc.cgroup2.* keys are ignored (with only a warning): the limits must go to the v1 controllers.
  const keyPrefix = facts.cgroupLayout === 'v2' ? 'lxc.cgroup2' : 'lxc.cgroup';
  for (const s of cgroupSettings(record.config, facts, input.cpuset)) kv(`${keyPrefix}.${s.file}`, s.value);
  return `${lines.join('\n')}\n`;
}
