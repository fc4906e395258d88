// Import commands: `hangar import xen FILE.cfg` (adopting an existing Xen domain), `hangar import openvz CTID.conf` and `hangar import openvz7 CTID --host NODE`, or with --dry-run showing the translation only.
import { AppError } from '../../shared/errors.js';
import { assertHostRef } from '../../shared/hosts.js';
import { assertName } from '../../shared/names.js';
import type { Format, ImportTranslateRequest, ImportTranslation, Instance, Openvz7ImportTranslation, OpenvzImportTranslation, XenImportTranslation } from '../../shared/schemas.js';
import type { Ctx } from '../context.js';
import { instanceInfoText } from './instances.js';
import { keyValues, renderObject, renderTable } from '../format.js';

/** Options of `hangar import xen|openvz`. */
export interface ImportXenOptions {
  host?: string;
  name?: string;
  /** openvz: the private area directory on the host. */
  private?: string;
  dryRun?: boolean;
  format: Format;
}

/** Indents every line of a block by two spaces. */
function indent(block: string): string {
  return block.split('\n').map((l) => (l ? `  ${l}` : l)).join('\n');
}

/** What became of each setting: those kept (and what they became), then those not kept, with why. */
function keptAndDropped(t: ImportTranslation): string {
  const kept = t.translated.length
    ? `Translated:\n${indent(renderTable(['KEY', 'VALUE', 'BECOMES', 'NOTE'], t.translated.map((x) => [x.key, x.value, x.to.join(' ') || '(nothing needed)', x.note ?? ''])))}`
    : 'Translated: (nothing)\n';
  const dropped = t.untranslated.length
    ? `Not translated (not kept):\n${indent(renderTable(['KEY', 'VALUE', 'REASON'], t.untranslated.map((x) => [x.key, x.value, x.reason])))}`
    : 'Not translated: (nothing: every setting was kept)\n';
  return kept + dropped;
}

/** The human view of a translation: the instance and its Hangar keys, each disk and NIC with what happens to it, and every setting not kept, with why. */
export function translationText(t: XenImportTranslation): string {
  let out = keyValues([
    ['Instance', `${t.name} (${t.type}, driver ${t.driver}, ${t.guestType.toUpperCase()} guest)`],
    ...(t.uuid ? [['UUID', t.uuid] as [string, string]] : []),
  ]);
  const keys = Object.keys(t.config).sort();
  out += keys.length ? `Hangar config:\n${keys.map((k) => `  ${k}=${t.config[k]}`).join('\n')}\n` : 'Hangar config: (none: the backend\'s defaults)\n';
  out += t.disks.length
    ? `Disks:\n${indent(renderTable(['#', 'TARGET', 'FORMAT', 'VDEV', 'ACCESS', 'USE', 'WHAT HAPPENS'], t.disks.map((d) => [String(d.index), d.disk.target, d.disk.format, d.disk.vdev, d.disk.access, d.use, d.note])))}`
    : 'Disks: (none)\n';
  out += t.nics.length
    ? `NICs:\n${indent(renderTable(['#', 'SPEC', 'MAC', 'IPV4', 'USE', 'WHAT HAPPENS'], t.nics.map((n) => [String(n.index), n.spec === '' ? "''" : n.spec, n.mac ?? '', n.ipv4 ?? '', n.use, n.note])))}`
    : 'NICs: (none)\n';
  return out + keptAndDropped(t);
}

/** The human view of an OpenVZ translation: the container, its Hangar keys and addresses, every beancounter pair read, and every setting not kept, with why. */
export function openvzTranslationText(t: OpenvzImportTranslation): string {
  let out = keyValues([
    ['Instance', `${t.name} (CT ${t.ctid}, ${t.type}, driver ${t.driver})`],
    ...(t.hostname !== undefined ? [['Hostname', t.hostname] as [string, string]] : []),
    ...(t.ostemplate !== undefined ? [['OS template', t.ostemplate] as [string, string]] : []),
    ['Addresses', t.addresses.join(' ') || '(none)'],
    ...(t.private !== undefined ? [['Private area', t.private] as [string, string]] : []),
  ]);
  const keys = Object.keys(t.config).sort();
  out += keys.length ? `Hangar config:\n${keys.map((k) => `  ${k}=${t.config[k]}`).join('\n')}\n` : 'Hangar config: (none: the backend\'s defaults)\n';
  out += t.ubc.length
    ? `Resource pairs read:\n${indent(renderTable(['PARAMETER', 'UNIT', 'BARRIER', 'LIMIT'], t.ubc.map((u) => [u.param, u.unit === 'kib' ? '1 KiB blocks' : u.unit === 'pages' ? '4 KiB pages' : u.unit, u.barrier, u.limit])))}`
    : 'Resource pairs read: (none)\n';
  return out + keptAndDropped(t);
}

/** The human view of an OpenVZ 7 CT's translation: the CT and the instance it becomes, its addresses and Hangar keys, and every setting not kept, with why. */
export function openvz7TranslationText(t: Openvz7ImportTranslation): string {
  let out = keyValues([
    ['Instance', `${t.name} (${t.type}, driver ${t.driver}, on host ${t.host})`],
    ['CT', `${t.ctid} "${t.ctName}"${t.uuid ? ` (uuid ${t.uuid})` : ''}, ${t.state}`],
    ['Addresses', t.addresses.join(' ') || '(none)'],
  ]);
  const keys = Object.keys(t.config).sort();
  out += keys.length ? `Hangar config:\n${keys.map((k) => `  ${k}=${t.config[k]}`).join('\n')}\n` : 'Hangar config: (none: the backend\'s defaults)\n';
  return out + keptAndDropped(t);
}

/** The human view of any translation. */
function anyTranslationText(t: ImportTranslation): string {
  if (t.driver === 'openvz') return openvzTranslationText(t);
  if (t.driver === 'openvz7') return openvz7TranslationText(t);
  return translationText(t);
}

/** `hangar import xen FILE.cfg [--host NAME] [--name N] [--dry-run] [--format json|yaml|table]`: the file is read here and its text sent. */
export async function importXenCommand(ctx: Ctx, file: string, opts: ImportXenOptions): Promise<void> {
  return importCommand(ctx, 'xen', file, opts);
}

/** `hangar import openvz CTID.conf [--dry-run] ...`: the same for an OpenVZ container's config. */
export async function importOpenvzCommand(ctx: Ctx, file: string, opts: ImportXenOptions): Promise<void> {
  return importCommand(ctx, 'openvz', file, opts);
}

/** Options of `hangar import openvz7`: the node is required, the CT is read there. */
export interface ImportOpenvz7Options {
  host: string;
  name?: string;
  dryRun?: boolean;
  format: Format;
}

/** `hangar import openvz7 CTID|NAME --host NODE [--name N] [--dry-run] ...`: a CT already on an OpenVZ 7 node, read there (so a dry run needs the node too). */
export async function importOpenvz7Command(ctx: Ctx, ct: string, opts: ImportOpenvz7Options): Promise<void> {
  if (opts.name !== undefined) assertName(opts.name);
  assertHostRef(opts.host);
  const req: ImportTranslateRequest = { kind: 'openvz7', host: opts.host, ctid: ct, ...(opts.name !== undefined ? { name: opts.name } : {}) };
  if (opts.dryRun) {
    const t = await ctx.client.translateImport(req);
    ctx.out(await renderObject(t, opts.format, () => anyTranslationText(t)));
    return;
  }
  const inst = await runImport(ctx, req);
  ctx.out(await renderObject(inst, opts.format, () => `Imported ${inst.name} (openvz7) on host ${inst.host} from CT ${ct}\n${instanceInfoText(inst)}(what was translated and what not: hangar import openvz7 ${ct} --host ${opts.host} --dry-run)\n`));
}

/** Runs an import operation with progress; answers the instance it made. */
async function runImport(ctx: Ctx, req: Parameters<Ctx['client']['importInstance']>[0]): Promise<Instance> {
  const progress = ctx.progress();
  try {
    return (await ctx.client.runOperation(() => ctx.client.importInstance(req), { onProgress: progress.update })) as Instance;
  } finally {
    progress.end();
  }
}

async function importCommand(ctx: Ctx, kind: 'xen' | 'openvz', file: string, opts: ImportXenOptions): Promise<void> {
  if (opts.name !== undefined) assertName(opts.name);
  if (opts.host !== undefined) assertHostRef(opts.host);
  const { readFile } = await import('node:fs/promises');
  const { resolve } = await import('node:path');
  let text: string;
  try {
    text = await readFile(resolve(ctx.io.cwd, file), 'utf8');
  } catch (err) {
    throw new AppError('NOT_FOUND', `Cannot read ${file}`, { cause: err });
  }
  const req = { kind, text, source: file, ...(opts.name !== undefined ? { name: opts.name } : {}) } satisfies ImportTranslateRequest;
  if (opts.dryRun) {
    const t = await ctx.client.translateImport(req);
    ctx.out(await renderObject(t, opts.format, () => anyTranslationText(t)));
    return;
  }
  const inst = await runImport(ctx, {
    ...req, ...(opts.host !== undefined ? { host: opts.host } : {}), ...(kind === 'openvz' && opts.private !== undefined ? { private: resolve(ctx.io.cwd, opts.private) } : {}),
  });
  ctx.out(await renderObject(inst, opts.format, () => `Imported ${inst.name} (${kind}) on host ${inst.host} from ${file}\n${instanceInfoText(inst)}(what was translated and what not: hangar import ${kind} ${file} --dry-run)\n`));
}
