// Instance commands: launch, create, start/stop/restart/freeze/unfreeze, delete, list, info, copy.
import { AppError } from '../../shared/errors.js';
import { parseConfigPairs, validateConfig, type InstanceConfig } from '../../shared/config.js';
import { assertName } from '../../shared/names.js';
import { assertHostRef } from '../../shared/hosts.js';
import type { Format, Instance, StateChangeRequest } from '../../shared/schemas.js';
import { formatSize } from '../../shared/units.js';
import type { Ctx } from '../context.js';
import { formatCpuTime, keyValues, renderList, renderObject, type Column } from '../format.js';

/** Options of launch/create. */
export interface LaunchOptions {
  config: string[];
  memory?: string;
  cpus?: string;
  disk?: string;
  ip?: string;
  vm?: boolean;
  /** The backend (lxc, qemu, ...). */
  driver?: string;
  /** The host to put it on (default local). */
  host?: string;
}

/** Throws INVALID_ADDRESS unless ip is a dotted-quad IPv4 address. */
export function assertIpv4(ip: string): string {
  const parts = ip.split('.');
  const ok = parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
  if (!ok) throw new AppError('INVALID_ADDRESS', `Invalid IPv4 address ${JSON.stringify(ip)}: expected four numbers 0-255 separated by dots`);
  return ip;
}

/** Merges `-c` pairs with the --memory/--cpus/--disk sugar and validates the result locally. */
export function buildConfig(opts: Pick<LaunchOptions, 'config' | 'memory' | 'cpus' | 'disk'>): InstanceConfig {
  const config = parseConfigPairs(opts.config);
  if (opts.memory !== undefined) config['limits.memory'] = opts.memory;
  if (opts.cpus !== undefined) config['limits.cpu'] = opts.cpus;
  if (opts.disk !== undefined) config['limits.disk'] = opts.disk;
  return validateConfig(config);
}

/** `hangar launch|create IMAGE NAME`: creates (and starts) an instance, showing progress. */
export async function launchCommand(ctx: Ctx, image: string, name: string, opts: LaunchOptions, start: boolean): Promise<void> {
  assertName(name);
  if (image.trim() === '') throw new AppError('INVALID_ARGUMENT', 'Image must not be empty');
  const config = buildConfig(opts);
  if (opts.ip !== undefined) assertIpv4(opts.ip);
  if (opts.host !== undefined) assertHostRef(opts.host);
  const req = {
    name,
    image,
    ...(opts.host !== undefined ? { host: opts.host } : {}),
    ...(opts.vm ? { type: 'vm' as const } : {}),
    ...(opts.driver !== undefined ? { driver: opts.driver } : {}),
    ...(Object.keys(config).length ? { config } : {}),
    ...(opts.ip !== undefined ? { ipv4: opts.ip } : {}),
    start,
  };
  const progress = ctx.progress();
  try {
    const result = await ctx.client.runOperation(() => ctx.client.createInstance(req), { onProgress: progress.update });
    progress.end();
    const inst = result as Partial<Instance> | undefined;
    const ip = inst?.ipv4 ? ` (${inst.ipv4})` : '';
    const on = opts.host !== undefined && opts.host !== 'local' ? ` on host ${opts.host}` : '';
    ctx.out(`${start ? 'Launched' : 'Created'} ${name}${ip}${on}`);
  } finally {
    progress.end();
  }
}

/** `hangar start|stop|restart|freeze|unfreeze NAME`. */
export async function stateCommand(ctx: Ctx, name: string, action: StateChangeRequest['action'], opts: { timeout?: string; force?: boolean; stateful?: boolean } = {}): Promise<void> {
  assertName(name);
  const req: StateChangeRequest = { action };
  if (opts.force) req.force = true;
  if (opts.stateful) {
    if (action !== 'stop') throw new AppError('INVALID_ARGUMENT', '--stateful only applies to stop');
    if (opts.force) throw new AppError('INVALID_ARGUMENT', '--stateful and --force exclude each other');
    req.stateful = true;
  }
  if (opts.timeout !== undefined) {
    const t = Number(opts.timeout);
    if (!Number.isInteger(t) || t <= 0 || t > 86400) throw new AppError('INVALID_ARGUMENT', `Invalid timeout ${JSON.stringify(opts.timeout)}: expected whole seconds between 1 and 86400`);
    req.timeout = t;
  }
  await ctx.client.runOperation(() => ctx.client.changeState(name, req));
}

/** `hangar delete NAME [--force]`. */
export async function deleteCommand(ctx: Ctx, name: string, opts: { force?: boolean }): Promise<void> {
  assertName(name);
  await ctx.client.runOperation(() => ctx.client.deleteInstance(name, { force: Boolean(opts.force) }));
  ctx.out(`Deleted ${name}`);
}

/** Columns of `hangar list`. */
export const INSTANCE_COLUMNS: ReadonlyArray<Column<Instance>> = [
  { header: 'NAME', value: (i) => i.name },
  { header: 'TYPE', value: (i) => i.type },
  { header: 'DRIVER', value: (i) => i.driver },
  { header: 'STATE', value: (i) => i.state.toUpperCase() },
  { header: 'IPV4', value: (i) => i.ipv4 },
  { header: 'IMAGE', value: (i) => i.image },
  { header: 'HOST', value: (i) => i.host },
];

/** `hangar list [--host NAME] [--format]`: every host's instances (those of a host that is down as UNKNOWN). */
export async function listCommand(ctx: Ctx, format: Format, opts: { host?: string } = {}): Promise<void> {
  if (opts.host !== undefined) assertHostRef(opts.host);
  const list = await ctx.client.listInstances(opts.host !== undefined ? { host: opts.host } : {});
  ctx.out(await renderList(list, format, INSTANCE_COLUMNS));
}

/** The human view of `hangar info`. */
export function instanceInfoText(i: Instance): string {
  const t = i.technology;
  const lines: Array<[string, string]> = [
    ['Name', i.name],
    ['Host', i.host],
    ['State', i.state],
    ...(i.error && i.state === 'unknown' ? [['Unknown', `${i.error.reason} (since ${i.error.since})`] as [string, string]] : []),
    ...(i.error && i.state !== 'unknown' ? [['Error', `${i.error.reason} (since ${i.error.since}); stop --force, restart or delete it`] as [string, string]] : []),
    ['Type', i.type],
    ['Driver', i.driver],
    ['Technology', `${t.kernel === 'shared' ? 'shared kernel' : 'own kernel'}, ${t.memory === 'burstable' ? 'burstable memory' : 'dedicated memory'}, isolation: ${t.isolation}`],
    ['Image', i.image || '(none: imported)'],
    ['IPv4', i.ipv4 ?? '-'],
    ['MAC', i.mac ?? '-'],
    ['PID', i.pid === null ? '-' : String(i.pid)],
    ['Created', i.createdAt],
  ];
  let out = keyValues(lines);
  if (i.details) out += section('Backend', i.details);
  out += section('Config', i.config);
  const pending = Object.keys(i.pendingConfig);
  if (pending.length) out += section('Pending config (applies on restart)', i.pendingConfig);
  const u = i.usage;
  if (u) {
    const usage: Array<[string, string]> = [];
    if (u.cpuTimeNs !== undefined) usage.push(['CPU time', formatCpuTime(u.cpuTimeNs)]);
    if (u.memoryBytes !== undefined || u.memoryPeakBytes !== undefined) {
      const now = u.memoryBytes !== undefined ? formatSize(u.memoryBytes) : '-';
      usage.push(['Memory', u.memoryPeakBytes !== undefined ? `${now} (peak ${formatSize(u.memoryPeakBytes)})` : now]);
    }
    if (u.processes !== undefined) usage.push(['Processes', String(u.processes)]);
    if (u.diskUsedBytes !== undefined) usage.push(['Disk used', formatSize(u.diskUsedBytes)]);
    if (u.rxBytes !== undefined || u.txBytes !== undefined) {
      usage.push(['Network', `rx ${u.rxBytes !== undefined ? formatSize(u.rxBytes) : '-'}, tx ${u.txBytes !== undefined ? formatSize(u.txBytes) : '-'}`]);
    }
    out += 'Usage:\n' + (usage.length ? keyValues(usage, '  ') : '  (none reported)\n');
  }
  return out;
}

/** A titled block of key: value lines, "(none)" when empty. */
function section(title: string, map: Record<string, string>): string {
  const keys = Object.keys(map).sort();
  if (!keys.length) return `${title}: (none)\n`;
  return `${title}:\n${keys.map((k) => `  ${k}: ${map[k]}`).join('\n')}\n`;
}

/** `hangar info NAME [--format]`. */
export async function infoCommand(ctx: Ctx, name: string, format: Format): Promise<void> {
  assertName(name);
  const inst = await ctx.client.getInstance(name);
  ctx.out(await renderObject(inst, format, () => instanceInfoText(inst)));
}

/** `hangar move NAME --host HOST`. */
export async function moveCommand(ctx: Ctx, name: string, opts: { host: string }): Promise<void> {
  assertName(name);
  const progress = ctx.progress();
  try {
    await ctx.client.runOperation(() => ctx.client.moveInstance(name, { host: opts.host }), { onProgress: progress.update });
  } finally {
    progress.end();
  }
  ctx.out(`Moved ${name} to host ${opts.host}`);
}

/** `hangar copy SRC DST [--ip ADDR]`. */
export async function copyCommand(ctx: Ctx, src: string, dst: string, opts: { ip?: string }): Promise<void> {
  assertName(src);
  assertName(dst);
  if (opts.ip !== undefined) assertIpv4(opts.ip);
  const req = { name: dst, ...(opts.ip !== undefined ? { ipv4: opts.ip } : {}) };
  const progress = ctx.progress();
  try {
    await ctx.client.runOperation(() => ctx.client.copyInstance(src, req), { onProgress: progress.update });
  } finally {
    progress.end();
  }
  ctx.out(`Copied ${src} to ${dst}`);
}
