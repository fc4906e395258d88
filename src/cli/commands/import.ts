// Import commands: `hangar import xen FILE.cfg` (adopting an existing Xen domain) and `hangar import openvz CTID.conf`, or with --dry-run showing the translation only.
import { AppError } from '../../shared/errors.js';
import { assertHostRef } from '../../shared/hosts.js';
import { assertName } from '../../shared/names.js';
import type { Format, ImportTranslateRequest, ImportTranslation, Instance, OpenvzImportTranslation, XenImportTranslation } from '../../shared/schemas.js';
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

/** The human view of either translation. */
function anyTranslationText(t: ImportTranslation): string {
  return t.driver === 'openvz' ? openvzTranslationText(t) : translationText(t);
}

/** `hangar import xen FILE.cfg [--host NAME] [--name N] [--dry-run] [--format json|yaml|table]`: the file is read here and its text sent. */
export async function importXenCommand(ctx: Ctx, file: string, opts: ImportXenOptions): Promise<void> {
  return importCommand(ctx, 'xen', file, opts);
}

/** `hangar import openvz CTID.conf [--dry-run] ...`: the same for an OpenVZ container's config. */
export async function importOpenvzCommand(ctx: Ctx, file: string, opts: ImportXenOptions): Promise<void> {
  return importCommand(ctx, 'openvz', file, opts);
}

async function importCommand(ctx: Ctx, kind: ImportTranslateRequest['kind'], file: string, opts: ImportXenOptions): Promise<void> {
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
  const req: ImportTranslateRequest = { kind, text, source: file, ...(opts.name !== undefined ? { name: opts.name } : {}) };
  if (opts.dryRun) {
    const t = await ctx.client.translateImport(req);
    ctx.out(await renderObject(t, opts.format, () => anyTranslationText(t)));
    return;
  }
  const progress = ctx.progress();
  let inst: Instance;
  try {
    inst = (await ctx.client.runOperation(() => ctx.client.importInstance({
      ...req, ...(opts.host !== undefined ? { host: opts.host } : {}), ...(kind === 'openvz' && opts.private !== undefined ? { private: resolve(ctx.io.cwd, opts.private) } : {}),
    }), { onProgress: progress.update })) as Instance;
  } finally {
    progress.end();
  }
  ctx.out(await renderObject(inst, opts.format, () => `Imported ${inst.name} (${kind}) on host ${inst.host} from ${file}\n${instanceInfoText(inst)}(what was translated and what not: hangar import ${kind} ${file} --dry-run)\n`));
}
