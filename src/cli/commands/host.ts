// Host and operation commands: host add/list/info/remove/trust, host detect, operation list/show.
import { AppError, isAppError } from '../../shared/errors.js';
import { assertHostName, assertHostRef, assertBridgeName, parseSshUrl } from '../../shared/hosts.js';
import { formatSize } from '../../shared/units.js';
import type { AcceleratorInfo, DriverInfo, Format, HostInfo, HostRecord, Operation, VirtFact } from '../../shared/schemas.js';
import type { Ctx } from '../context.js';
import { keyValues, renderList, renderObject, renderTable, type Column } from '../format.js';

/** What VMs get: "kvm" or "tcg" and why, or that the check still runs. */
export function acceleratorText(a: AcceleratorInfo): string {
  const what = a.checking ? 'checking (a Linux test guest boots under KVM and TCG)' : a.default ?? 'none';
  return `${what} — ${a.reason}${a.mode === 'auto' ? '' : ` [HANGAR_ACCEL=${a.mode}]`}`;
}

/** The human view of `hangar host info`. */
export function hostInfoText(h: HostInfo): string {
  const st = h.storage;
  const storage = `${st.driver} at ${st.path}${st.sizeBytes !== null ? `, ${st.usedBytes !== null ? `${formatSize(st.usedBytes)} used of ` : ''}${formatSize(st.sizeBytes)}` : ''}`;
  let out = keyValues([
    ['Hostname', h.hostname],
    ['OS', h.os],
    ['Kernel', h.kernel],
    ['CPUs', String(h.cpus)],
    ['Memory', formatSize(h.memoryBytes)],
    ['Cgroups', h.cgroupLayout],
    ['Storage', `${storage}${st.state === 'ok' ? '' : ` [${st.state.toUpperCase()}]`}`],
    ...st.warnings.map((w): [string, string] => ['  warning', w]),
    ['Network', `bridge ${h.network.bridge}, subnet ${h.network.subnet}, gateway ${h.network.gateway}`],
    ['CPU virt flags', h.cpuVirtFlags.length ? h.cpuVirtFlags.join(' ') : '(none)'],
    ['KVM', h.kvm.usable ? `usable${h.kvm.reason ? `: ${h.kvm.reason}` : ''}` : h.kvm.present ? `present, not usable${h.kvm.reason ? `: ${h.kvm.reason}` : ''}` : `absent${h.kvm.reason ? `: ${h.kvm.reason}` : ''}`],
    ...h.drivers.filter((d) => d.accelerator).map((d): [string, string] => [`VM accelerator (${d.name})`, acceleratorText(d.accelerator!)]),
    ['Runs in', h.runsIn.length ? h.runsIn.map((f) => f.fact).join(', ') : 'bare metal (nothing detected)'],
  ]);
  return out + driversText(h.drivers);
}

/** The drivers block of host views: name, type, default, availability, version and why not. */
function driversText(drivers: readonly DriverInfo[], title = 'Drivers'): string {
  if (drivers.length === 0) return `${title}: (none opened yet)\n`;
  return `${title}:\n` + indent(renderTable(
    ['NAME', 'TYPE', 'DEFAULT', 'AVAILABLE', 'VERSION', 'REASON'],
    drivers.map((d) => [d.name, d.type, d.default ? 'yes' : '', d.available ? 'yes' : 'no', d.version ?? '', d.reason ?? '']),
  ));
}

/** Indents every line of a block by two spaces. */
function indent(block: string): string {
  return block.split('\n').map((l) => (l ? `  ${l}` : l)).join('\n');
}

/** The state of a host in a word, with why when it is not up. */
function stateText(h: HostRecord): string {
  return h.state === 'up' ? 'up' : `${h.state}${h.reason ? ` — ${h.reason}` : ''}`;
}

/** A host's network in a line: its bridge, subnet and gateway, and whether Hangar manages it. */
function networkText(n: HostRecord['network']): string {
  if (!n) return '(not known before the first contact)';
  return `bridge ${n.bridge}, subnet ${n.subnet}, gateway ${n.gateway} (${n.mode === 'host-bridge' ? "the host's own bridge: static addresses, no DHCP or NAT by Hangar" : 'managed by Hangar: DHCP and NAT'})`;
}

/** The human view of a host record: how it is reached, its pinned key, its state and why. */
export function hostRecordText(h: HostRecord): string {
  const lines: Array<[string, string]> = [['Host', h.local ? `${h.name} (the daemon's own machine)` : h.name]];
  if (!h.local) {
    lines.push(['URL', h.url ?? '-'], ['Host key', `${h.keyType ?? '?'} ${h.fingerprint ?? '?'} (pinned)`], ['Identity', h.identityFile ?? '-'], ['Added', h.addedAt ?? '-']);
  }
  lines.push(['State', `${stateText(h)} (since ${h.since})`], ['Instances', String(h.instances)]);
  if (h.network) lines.push(['Network', h.network.problem ? `none: ${h.network.problem}` : networkText(h.network)]);
  return keyValues(lines);
}

/** `hangar host info [NAME] [--format]`: a host's facts, drivers, storage and network; for a named host also its record (state, key), and only that while it is down. */
export async function hostInfoCommand(ctx: Ctx, name: string | undefined, format: Format): Promise<void> {
  if (name === undefined) {
    const info = await ctx.client.hostInfo();
    ctx.out(await renderObject(info, format, () => hostInfoText(info)));
    return;
  }
  assertHostRef(name);
  const rec = await ctx.client.getHost(name);
  let info: HostInfo | undefined;
  if (rec.state === 'up') {
    // A host can go down between the two questions: then only its record is shown.
    info = await ctx.client.hostInfo(name).catch((e: unknown) => { if (isAppError(e, 'HOST_UNREACHABLE')) return undefined; throw e; });
  }
  const value = { ...(info ?? {}), host: rec };
  ctx.out(await renderObject(value, format, () => hostRecordText(rec) + (info ? hostInfoText(info) : driversText(rec.drivers, 'Drivers (as last opened there)'))));
}

/** Columns of `hangar host list`. */
export const HOST_COLUMNS: ReadonlyArray<Column<HostRecord>> = [
  { header: 'NAME', value: (h) => h.name },
  { header: 'STATE', value: (h) => h.state.toUpperCase() },
  { header: 'URL', value: (h) => (h.local ? '(local)' : h.url) },
  { header: 'INSTANCES', value: (h) => h.instances },
  { header: 'HOST KEY', value: (h) => (h.fingerprint ? `${h.keyType ?? ''} ${h.fingerprint}`.trim() : '') },
  { header: 'REASON', value: (h) => h.reason },
];

/** `hangar host list [--format]`. */
export async function hostListCommand(ctx: Ctx, format: Format): Promise<void> {
  ctx.out(await renderList(await ctx.client.listHosts(), format, HOST_COLUMNS));
}

/** `hangar host add NAME ssh://USER@ADDR[:PORT] [--identity FILE] [--fingerprint FP]`: pins the key the host presents and prints it. */
export async function hostAddCommand(ctx: Ctx, name: string, url: string, opts: { identity?: string; fingerprint?: string; bridge?: string }): Promise<void> {
  assertHostName(name);
  parseSshUrl(url);
  if (opts.bridge !== undefined) assertBridgeName(opts.bridge);
  let identityFile: string | undefined;
  if (opts.identity !== undefined) {
    if (opts.identity.trim() === '') throw new AppError('INVALID_ARGUMENT', '--identity must name a private key file');
    // The daemon reads the key on this same machine: a relative path means one from where the command runs.
    identityFile = (await import('node:path')).resolve(ctx.io.cwd, opts.identity);
  }
  const progress = ctx.progress();
  let h: HostRecord;
  try {
    const req = { name, url, ...(identityFile ? { identityFile } : {}), ...(opts.fingerprint !== undefined ? { fingerprint: opts.fingerprint } : {}), ...(opts.bridge !== undefined ? { bridge: opts.bridge } : {}) };
    h = (await ctx.client.runOperation(() => ctx.client.addHost(req), { onProgress: progress.update })) as HostRecord;
  } finally {
    progress.end();
  }
  ctx.out([
    `Added host ${h.name} (${h.url})`,
    `Host key: ${h.keyType} ${h.fingerprint} (pinned: a different key is refused until "hangar host trust ${h.name}")`,
    `Drivers: ${h.drivers.map((d) => `${d.name} ${d.available ? `(${d.version ?? 'available'})` : `(unavailable: ${d.reason})`}`).join(', ') || '(none)'}`,
    h.network?.problem ? `Network: none: ${h.network.problem}` : `Network: ${networkText(h.network)}`,
  ].join('\n'));
}

/** `hangar host remove NAME`. */
export async function hostRemoveCommand(ctx: Ctx, name: string): Promise<void> {
  assertHostRef(name);
  await ctx.client.removeHost(name);
  ctx.out(`Removed host ${name}`);
}

/** `hangar host trust NAME [--fingerprint FP]`: pins the key the host presents now. */
export async function hostTrustCommand(ctx: Ctx, name: string, opts: { fingerprint?: string }): Promise<void> {
  assertHostRef(name);
  const before = await ctx.client.getHost(name);
  const progress = ctx.progress();
  let h: HostRecord;
  try {
    h = (await ctx.client.runOperation(() => ctx.client.trustHost(name, opts.fingerprint !== undefined ? { fingerprint: opts.fingerprint } : {}), { onProgress: progress.update })) as HostRecord;
  } finally {
    progress.end();
  }
  ctx.out(h.fingerprint === before.fingerprint
    ? `Host ${name}: host key ${h.keyType} ${h.fingerprint} was pinned already`
    : `Host ${name}: host key ${h.keyType} ${h.fingerprint} pinned (was ${before.keyType} ${before.fingerprint})`);
}


/** Columns of `hangar host detect`. */
export const FACT_COLUMNS: ReadonlyArray<Column<VirtFact>> = [
  { header: 'FACT', value: (f) => f.fact },
  { header: 'EVIDENCE', value: (f) => f.evidence.join('; ') },
];

/** `hangar host detect [--root DIR] [--cpuid SIG] [--format]`. */
export async function hostDetectCommand(ctx: Ctx, opts: { root?: string; cpuid?: string }, format: Format): Promise<void> {
  const facts = await ctx.client.hostDetect(opts);
  if (format === 'table' && facts.length === 0) return ctx.out('Nothing detected: bare metal (or an undetectable layer)');
  ctx.out(await renderList(facts, format, FACT_COLUMNS));
}

/** Columns of `hangar operation list`. */
export const OPERATION_COLUMNS: ReadonlyArray<Column<Operation>> = [
  { header: 'ID', value: (o) => o.id },
  { header: 'DESCRIPTION', value: (o) => o.description },
  { header: 'STATUS', value: (o) => o.status.toUpperCase() },
  { header: 'RESOURCES', value: (o) => o.resources.join(' ') },
  { header: 'CREATED', value: (o) => o.createdAt },
];

/** `hangar operation list [--format]`. */
export async function operationListCommand(ctx: Ctx, format: Format): Promise<void> {
  ctx.out(await renderList(await ctx.client.listOperations(), format, OPERATION_COLUMNS));
}

/** `hangar operation show ID [--format]`. */
export async function operationShowCommand(ctx: Ctx, id: string, format: Format): Promise<void> {
  const op = await ctx.client.getOperation(id);
  const human = (): string => {
    let out = keyValues([
      ['ID', op.id],
      ['Description', op.description],
      ['Status', op.status],
      ['Resources', op.resources.join(' ') || '-'],
      ['Progress', op.progress ?? '-'],
      ['Created', op.createdAt],
      ['Updated', op.updatedAt],
    ]);
    if (op.error) {
      out += `Error: ${op.error.code}: ${op.error.message}\n` + op.error.causes.map((c) => `  caused by: ${c}\n`).join('');
    }
    return out;
  };
  ctx.out(await renderObject(op, format, human));
}
