// Config and snapshot commands: config show/set/unset, snapshot create/list/restore/delete.
import { AppError } from '../../shared/errors.js';
import { parseConfigPairs, validateConfig, validateConfigValues } from '../../shared/config.js';
import { assertName } from '../../shared/names.js';
import type { ConfigChangeResult, Format, Snapshot } from '../../shared/schemas.js';
import type { Ctx } from '../context.js';
import { renderList, renderObject, renderTable } from '../format.js';

/** `hangar config show NAME [--format]`: current values and values pending a restart. */
export async function configShowCommand(ctx: Ctx, name: string, format: Format): Promise<void> {
  assertName(name);
  const inst = await ctx.client.getInstance(name);
  const keys = [...new Set([...Object.keys(inst.config), ...Object.keys(inst.pendingConfig)])].sort();
  const rows = keys.map((k) => [k, inst.config[k] ?? '', inst.pendingConfig[k] ?? '']);
  const value = { config: inst.config, pendingConfig: inst.pendingConfig };
  const text = await renderObject(value, format, () => (keys.length ? renderTable(['KEY', 'VALUE', 'PENDING'], rows) : '(no config)\n'), () =>
    rows.map(([k, v, p]) => [k!, p ? `${v} (pending: ${p})` : v!] as [string, string]),
  );
  ctx.out(text);
}

/** Prints which keys applied live and which wait for a restart. */
export function describeChange(name: string, res: ConfigChangeResult): string {
  const lines: string[] = [];
  if (res.live.length) lines.push(`Applied live: ${res.live.join(', ')}`);
  if (res.pending.length) lines.push(`Pending until restart: ${res.pending.join(', ')} (run: hangar restart ${name})`);
  if (!lines.length) lines.push('Nothing changed');
  return lines.join('\n') + '\n';
}

/** `hangar config set NAME key=value ...`: validated locally first. */
export async function configSetCommand(ctx: Ctx, name: string, pairs: string[]): Promise<void> {
  assertName(name);
  if (!pairs.length) throw new AppError('INVALID_ARGUMENT', 'config set needs at least one key=value');
  const set = validateConfigValues(parseConfigPairs(pairs));
  ctx.out(describeChange(name, await ctx.client.patchConfig(name, { set })));
}

/** `hangar config unset NAME key ...`. */
export async function configUnsetCommand(ctx: Ctx, name: string, keys: string[]): Promise<void> {
  assertName(name);
  if (!keys.length) throw new AppError('INVALID_ARGUMENT', 'config unset needs at least one key');
  const bad = keys.find((k) => k.includes('=') || k.trim() === '');
  if (bad !== undefined) throw new AppError('INVALID_CONFIG', `Invalid config key ${JSON.stringify(bad)}: give keys only, without =value`);
  ctx.out(describeChange(name, await ctx.client.patchConfig(name, { unset: keys })));
}

/** `hangar snapshot create NAME SNAP [--stateful]`. */
export async function snapshotCreateCommand(ctx: Ctx, name: string, snap: string, opts: { stateful?: boolean } = {}): Promise<void> {
  assertName(name);
  assertName(snap, 'snapshot');
  await ctx.client.runOperation(() => ctx.client.createSnapshot(name, snap, { stateful: opts.stateful === true }));
  ctx.out(`Created snapshot ${snap} of ${name}`);
}

/** `hangar snapshot list NAME [--format]`. */
export async function snapshotListCommand(ctx: Ctx, name: string, format: Format): Promise<void> {
  assertName(name);
  const list = await ctx.client.listSnapshots(name);
  ctx.out(
    await renderList<Snapshot>(list, format, [
      { header: 'NAME', value: (s) => s.name },
      { header: 'CREATED', value: (s) => s.createdAt },
      { header: 'STATEFUL', value: (s) => (s.stateful ? 'yes' : 'no') },
    ]),
  );
}

/** `hangar snapshot restore NAME SNAP`. */
export async function snapshotRestoreCommand(ctx: Ctx, name: string, snap: string): Promise<void> {
  assertName(name);
  assertName(snap, 'snapshot');
  await ctx.client.runOperation(() => ctx.client.restoreSnapshot(name, snap));
  ctx.out(`Restored ${name} to snapshot ${snap}`);
}

/** `hangar snapshot delete NAME SNAP`. */
export async function snapshotDeleteCommand(ctx: Ctx, name: string, snap: string): Promise<void> {
  assertName(name);
  assertName(snap, 'snapshot');
  await ctx.client.runOperation(() => ctx.client.deleteSnapshot(name, snap));
  ctx.out(`Deleted snapshot ${snap} of ${name}`);
}

/** `hangar config device add NAME DEV disk size=SIZE`. */
export async function deviceAddCommand(ctx: Ctx, name: string, dev: string, type: string, props: string[]): Promise<void> {
  assertName(name);
  assertName(dev, 'device');
  if (type !== 'disk') throw new AppError('INVALID_ARGUMENT', `Unknown device type ${JSON.stringify(type)}: the only type is "disk"`);
  const given = parseConfigPairs(props);
  const unknown = Object.keys(given).filter((k) => k !== 'size');
  if (unknown.length) throw new AppError('INVALID_CONFIG', `Unknown disk device option(s): ${unknown.join(', ')} (known: size)`);
  if (!given.size) throw new AppError('INVALID_CONFIG', 'A disk device needs size=SIZE, e.g. size=10GiB');
  const set = validateConfig({ [`devices.${dev}.type`]: 'disk', [`devices.${dev}.size`]: given.size });
  ctx.out(describeChange(name, await ctx.client.patchConfig(name, { set })));
}

/** `hangar config device set NAME DEV size=SIZE`: grows a disk (live on a running Q35 VM). */
export async function deviceSetCommand(ctx: Ctx, name: string, dev: string, props: string[]): Promise<void> {
  assertName(name);
  assertName(dev, 'device');
  const given = parseConfigPairs(props);
  const unknown = Object.keys(given).filter((k) => k !== 'size');
  if (unknown.length || !given.size) throw new AppError('INVALID_CONFIG', `config device set takes size=SIZE${unknown.length ? ` (unknown: ${unknown.join(', ')})` : ''}`);
  const set = validateConfigValues({ [`devices.${dev}.size`]: given.size });
  ctx.out(describeChange(name, await ctx.client.patchConfig(name, { set })));
}

/** `hangar config device remove NAME DEV`. */
export async function deviceRemoveCommand(ctx: Ctx, name: string, dev: string): Promise<void> {
  assertName(name);
  assertName(dev, 'device');
  ctx.out(describeChange(name, await ctx.client.patchConfig(name, { unset: [`devices.${dev}.type`, `devices.${dev}.size`] })));
}

/** `hangar config device list NAME [--format]`. */
export async function deviceListCommand(ctx: Ctx, name: string, format: Format): Promise<void> {
  assertName(name);
  const inst = await ctx.client.getInstance(name);
  const merged = { ...inst.config, ...inst.pendingConfig };
  const devs = Object.keys(merged).filter((k) => /^devices\.[^.]+\.type$/.test(k)).map((k) => k.split('.')[1]!).sort();
  const rows = devs.map((d) => ({ name: d, type: merged[`devices.${d}.type`] ?? '', size: merged[`devices.${d}.size`] ?? '', pending: inst.config[`devices.${d}.type`] === undefined ? 'yes' : 'no' }));
  ctx.out(await renderList(rows, format, [
    { header: 'NAME', value: (r) => r.name },
    { header: 'TYPE', value: (r) => r.type },
    { header: 'SIZE', value: (r) => r.size },
    { header: 'PENDING', value: (r) => r.pending },
  ]));
}
