// Tests of ensureImageOn with real tar on this machine: an image volume copied into another pool, and a receiving tar that fails ending the copy (no hang) with both sides' words and no staging left.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../host/local.js';
import type { Host, SpawnOptions } from '../../host/host.js';
import type { HostContext } from './context.js';
import { ensureImageOn } from './images.js';

const base = mkdtempSync(join(tmpdir(), 'hangar-image-copy-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
const FP = 'ab'.repeat(32);

/** Just what ensureImageOn uses of a host context: its name, Host and the image path of its pool. */
function ctx(name: string, host: Host, poolDir: string): HostContext {
  return { name, host, pool: { imagePath: (fp: string) => join(poolDir, 'images', fp) } } as unknown as HostContext;
}

/** A local host whose tar is replaced by `argv` (a receiving tar that refuses its options). */
function withTar(argv: string[]): Host {
  const local = new LocalHost();
  const spawn = local.spawn.bind(local);
  return Object.assign(Object.create(local) as Host, { spawn: (a: readonly string[], o?: SpawnOptions) => spawn(a[0] === 'tar' ? argv : a, o) });
}

describe('ensureImageOn', () => {
  const src = join(base, 'src');
  mkdirSync(join(src, 'images', FP, 'rootfs'), { recursive: true });
  // Larger than a pipe's buffer, so a reader whose writer is gone blocks on a full pipe.
  const payload = randomBytes(4 * 1024 * 1024);
  writeFileSync(join(src, 'images', FP, 'rootfs', 'blob'), payload);
  writeFileSync(join(src, 'images', FP, 'metadata.json'), '{}\n');
  const from = ctx('local', new LocalHost(), src);

  it('copies the volume into the other pool once, keeping its files; a second call finds it', async () => {
    const dest = join(base, 'dest');
    const progress: string[] = [];
    const path = await ensureImageOn(from, ctx('remote1', new LocalHost(), dest), FP, (m) => progress.push(m));
    expect(path).toBe(join(dest, 'images', FP));
    expect(readFileSync(join(path, 'rootfs', 'blob')).equals(payload)).toBe(true);
    expect(readdirSync(join(dest, 'images'))).toEqual([FP]);
    expect(progress).toEqual(['Copying the image to host remote1']);
    await ensureImageOn(from, ctx('remote1', new LocalHost(), dest), FP, (m) => progress.push(m));
    expect(progress).toHaveLength(1);
  });

  it('a receiving tar that fails ends the copy with both hosts named, and leaves no staging directory', async () => {
    const dest = join(base, 'dest-bad');
    const to = ctx('remote2', withTar(['sh', '-c', 'echo "tar: unrecognized option --xattrs" >&2; exit 1']), dest);
    const err = await ensureImageOn(from, to, FP).then(() => undefined, (e: unknown) => e as Error & { cause?: Error });
    expect(err?.message).toBe(`Failed to copy image ${FP.slice(0, 12)} to host remote2`);
    expect(err?.cause?.message).toMatch(/writing on host remote2: tar: unrecognized option --xattrs/);
    expect(readdirSync(join(dest, 'images'))).toEqual([]);
  }, 30_000);
});
