// Host and operation commands: host info, host detect, operation list/show.
import { formatSize } from '../../shared/units.js';
import type { AcceleratorInfo, Format, HostInfo, Operation, VirtFact } from '../../shared/schemas.js';
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
  out += 'Drivers:\n';
  out += renderTable(
    ['NAME', 'TYPE', 'DEFAULT', 'AVAILABLE', 'VERSION', 'REASON'],
    h.drivers.map((d) => [d.name, d.type, d.default ? 'yes' : '', d.available ? 'yes' : 'no', d.version ?? '', d.reason ?? '']),
  )
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
  return out;
}

/** `hangar host info [--format]`. */
export async function hostInfoCommand(ctx: Ctx, format: Format): Promise<void> {
  const info = await ctx.client.hostInfo();
  ctx.out(await renderObject(info, format, () => hostInfoText(info)));
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
