// Import commands: `hangar import xen FILE.cfg`, adopting an existing Xen domain, or with --dry-run showing its translation only.
import { AppError } from '../../shared/errors.js';
import { assertHostRef } from '../../shared/hosts.js';
import { assertName } from '../../shared/names.js';
import type { Format, ImportTranslateRequest, Instance, XenImportTranslation } from '../../shared/schemas.js';
import type { Ctx } from '../context.js';
import { instanceInfoText } from './instances.js';
import { keyValues, renderObject, renderTable } from '../format.js';

/** Options of `hangar import xen`. */
export interface ImportXenOptions {
  host?: string;
  name?: string;
  dryRun?: boolean;
  format: Format;
}

/** Indents every line of a block by two spaces. */
function indent(block: string): string {
  return block.split('\n').map((l) => (l ? `  ${l}` : l)).join('\n');
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
  out += t.translated.length
    ? `Translated:\n${indent(renderTable(['KEY', 'VALUE', 'BECOMES', 'NOTE'], t.translated.map((x) => [x.key, x.value, x.to.join(' ') || '(nothing needed)', x.note ?? ''])))}`
    : 'Translated: (nothing)\n';
  out += t.untranslated.length
    ? `Not translated (not kept):\n${indent(renderTable(['KEY', 'VALUE', 'REASON'], t.untranslated.map((x) => [x.key, x.value, x.reason])))}`
    : 'Not translated: (nothing: every setting was kept)\n';
  return out;
}

/** `hangar import xen FILE.cfg [--host NAME] [--name N] [--dry-run] [--format json|yaml|table]`: the file is read here and its text sent. */
export async function importXenCommand(ctx: Ctx, file: string, opts: ImportXenOptions): Promise<void> {
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
  const req: ImportTranslateRequest = { kind: 'xen', text, source: file, ...(opts.name !== undefined ? { name: opts.name } : {}) };
  if (opts.dryRun) {
    const t = await ctx.client.translateImport(req);
    ctx.out(await renderObject(t, opts.format, () => translationText(t)));
    return;
  }
  const progress = ctx.progress();
  let inst: Instance;
  try {
    inst = (await ctx.client.runOperation(() => ctx.client.importInstance({ ...req, ...(opts.host !== undefined ? { host: opts.host } : {}) }), { onProgress: progress.update })) as Instance;
  } finally {
    progress.end();
  }
  ctx.out(await renderObject(inst, opts.format, () => `Imported ${inst.name} (xen) on host ${inst.host} from ${file}\n${instanceInfoText(inst)}(what was translated and what not: hangar import xen ${file} --dry-run)\n`));
}
