// Image commands: list, build (with progress), import (path resolved locally), delete.
import { isAbsolute, resolve } from 'node:path';
import { AppError } from '../../shared/errors.js';
import { assertName } from '../../shared/names.js';
import type { Format, Image, ImageBuildRequest } from '../../shared/schemas.js';
import { formatSize } from '../../shared/units.js';
import type { Ctx } from '../context.js';
import { renderList, type Column } from '../format.js';

/** Columns of `hangar image list`. */
export const IMAGE_COLUMNS: ReadonlyArray<Column<Image>> = [
  { header: 'ALIAS', value: (i) => i.alias },
  { header: 'TYPE', value: (i) => i.type },
  { header: 'FINGERPRINT', value: (i) => i.fingerprint.slice(0, 12) },
  { header: 'SIZE', value: (i) => formatSize(i.sizeBytes) },
  { header: 'DESCRIPTION', value: (i) => i.description },
  { header: 'USED BY', value: (i) => i.usedBy.join(' ') },
  { header: 'CREATED', value: (i) => i.createdAt },
];

/** `hangar image list [--format]`. */
export async function imageListCommand(ctx: Ctx, format: Format): Promise<void> {
  ctx.out(await renderList(await ctx.client.listImages(), format, IMAGE_COLUMNS));
}

/** Prints a one-line summary of a built or imported image. */
function summary(verb: string, fallbackAlias: string, result: unknown): string {
  const img = result as Partial<Image> | undefined;
  const alias = img?.alias ?? fallbackAlias;
  const extra = [img?.fingerprint?.slice(0, 12), img?.sizeBytes !== undefined ? formatSize(img.sizeBytes) : undefined].filter(Boolean).join(', ');
  return `${verb} image ${alias}${extra ? ` (${extra})` : ''}`;
}

/** `hangar image build busybox|debian [--release R] [--alias NAME] [--vm]`. */
export async function imageBuildCommand(ctx: Ctx, kind: string, opts: { release?: string; alias?: string; vm?: boolean }): Promise<void> {
  if (kind !== 'busybox' && kind !== 'debian') throw new AppError('INVALID_ARGUMENT', `Unknown image kind ${JSON.stringify(kind)}: expected busybox or debian`);
  if (opts.alias !== undefined) assertName(opts.alias, 'image');
  if (opts.release !== undefined && kind === 'busybox') throw new AppError('INVALID_ARGUMENT', '--release applies to debian images only');
  const req: ImageBuildRequest = { kind, ...(opts.release ? { release: opts.release } : {}), ...(opts.alias ? { alias: opts.alias } : {}), ...(opts.vm ? { vm: true } : {}) };
  const progress = ctx.progress();
  let result: unknown;
  try {
    result = await ctx.client.runOperation(() => ctx.client.buildImage(req), { onProgress: progress.update });
  } finally {
    progress.end();
  }
  ctx.out(summary('Built', opts.alias ?? kind, result));
}

/** `hangar image import FILE --alias NAME [--vm]`: FILE is made absolute against the caller's cwd (the daemon reads it). */
export async function imageImportCommand(ctx: Ctx, file: string, opts: { alias: string; vm?: boolean }): Promise<void> {
  assertName(opts.alias, 'image');
  const path = isAbsolute(file) ? file : resolve(ctx.io.cwd, file);
  const progress = ctx.progress();
  let result: unknown;
  try {
    result = await ctx.client.runOperation(() => ctx.client.importImage({ path, alias: opts.alias, ...(opts.vm ? { vm: true } : {}) }), { onProgress: progress.update });
  } finally {
    progress.end();
  }
  ctx.out(summary('Imported', opts.alias, result));
}

/** `hangar image delete NAME [--vm]`. */
export async function imageDeleteCommand(ctx: Ctx, alias: string, opts: { vm?: boolean } = {}): Promise<void> {
  if (alias.trim() === '') throw new AppError('INVALID_ARGUMENT', 'Image name must not be empty');
  await ctx.client.runOperation(() => ctx.client.deleteImage(alias, { vm: opts.vm === true }));
  ctx.out(`Deleted image ${alias}`);
}
