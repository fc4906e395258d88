// Unit tests of the directory pool on a temp dir (no root): volumes are copies, snapshots restore their content, names are checked.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { LocalHost } from '../../host/local.js';
import { DirectoryPool } from './directory-pool.js';

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (e) { return isAppError(e) ? e.code : String(e); }
  return 'no error';
}

describe('DirectoryPool', () => {
  let dir: string;
  let pool: DirectoryPool;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hangar-dirpool-'));
    pool = new DirectoryPool(new LocalHost(), { dir });
    await pool.ensure();
    const img = await pool.createImageVolume('img1');
    writeFileSync(join(img, 'hello'), 'image\n');
    await pool.sealImageVolume('img1');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('makes instance volumes as independent copies of their image and of each other', async () => {
    const a = await pool.createInstanceVolume('a', 'img1', 1024 ** 2);
    writeFileSync(join(a, 'hello'), 'changed\n');
    expect(readFileSync(join(pool.imagePath('img1'), 'hello'), 'utf8')).toBe('image\n');
    const b = await pool.copyInstance('a', 'b');
    expect(readFileSync(join(b, 'hello'), 'utf8')).toBe('changed\n');
    expect(pool.containerRootPath('a')).toBe(a);
    expect(await pool.instanceExists('b')).toBe(true);
    expect((await pool.instanceUsage('a')).limitBytes).toBeNull();
    expect(await code(pool.createInstanceVolume('a', 'img1'))).toBe('ALREADY_EXISTS');
    expect(await code(pool.createInstanceVolume('c', 'nope'))).toBe('NOT_FOUND');
    expect(await code(pool.createInstanceVolume('../x', 'img1'))).toBe('INVALID_NAME');
    expect(await code(pool.setInstanceSize('a', -1))).toBe('INVALID_SIZE');
  });

  it('makes an empty volume for a driver that keeps its own disks, still checking the image and the name', async () => {
    const v = await pool.createInstanceVolume('vm', 'img1', undefined, { empty: true });
    expect(readdirSync(v)).toEqual([]);
    writeFileSync(join(v, 'root.raw'), 'disk\n');
    // A copy carries the driver's disks.
    expect(readFileSync(join(await pool.copyInstance('vm', 'vm2'), 'root.raw'), 'utf8')).toBe('disk\n');
    expect(await code(pool.createInstanceVolume('vm', 'img1', undefined, { empty: true }))).toBe('ALREADY_EXISTS');
    expect(await code(pool.createInstanceVolume('vm3', 'nope', undefined, { empty: true }))).toBe('NOT_FOUND');
    // An imported OpenVZ CT's volume has no image at all; only an empty one may lack it.
    expect(readdirSync(await pool.createInstanceVolume('imp', null, undefined, { empty: true }))).toEqual([]);
    expect(await code(pool.createInstanceVolume('imp2', null))).toBe('INVALID_ARGUMENT');
    expect(existsSync(pool.instancePath('vm3'))).toBe(false);
  });

  it('restores a snapshot, and deletes a volume with its snapshots', async () => {
    const a = await pool.createInstanceVolume('a', 'img1');
    await pool.createSnapshot('a', 's1');
    expect(await code(pool.createSnapshot('a', 's1'))).toBe('ALREADY_EXISTS');
    writeFileSync(join(a, 'hello'), 'after\n');
    await pool.restoreSnapshot('a', 's1');
    expect(readFileSync(join(a, 'hello'), 'utf8')).toBe('image\n');
    expect(existsSync(join(dir, 'instances', '.a.old'))).toBe(false);
    await pool.deleteSnapshot('a', 's1');
    expect(await code(pool.deleteSnapshot('a', 's1'))).toBe('NOT_FOUND');
    await pool.createSnapshot('a', 's2');
    await pool.deleteInstanceVolume('a');
    expect(existsSync(a)).toBe(false);
    expect(existsSync(pool.snapshotPath('a', 's2'))).toBe(false);
    await pool.deleteInstanceVolume('a');
  });
});
