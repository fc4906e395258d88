// Integration test: builds a NoCloud seed ISO with genisoimage and reads it back with isoinfo (volume id, Rock Ridge names, contents).
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { buildSeedIso, renderNoCloudSeed } from '../../src/drivers/qemu/cloud-init.js';

const host = new LocalHost();

describe('buildSeedIso (genisoimage, checked with isoinfo)', () => {
  let dir = '';
  let iso = '';
  const seed = renderNoCloudSeed({ instanceId: 'hgt-seed-1', hostname: 'seedtest', ipv4: '10.0.2.15/24', gateway: '10.0.2.2', mac: '52:54:00:12:34:56' });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `t${Math.random().toString(36).slice(2, 6)}-seed-`));
    iso = await buildSeedIso(host, dir, seed);
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('has volume id cidata and Rock Ridge and Joliet extensions', () => {
    expect(iso).toBe(join(dir, 'seed.iso'));
    const info = execFileSync('isoinfo', ['-d', '-i', iso], { encoding: 'utf8' });
    // genisoimage keeps the case; cloud-init accepts cidata and CIDATA.
    expect(info).toMatch(/^Volume id: cidata\s*$/mi);
    expect(info).toMatch(/Rock Ridge/);
    expect(info).toMatch(/Joliet/);
    expect(execFileSync('blkid', ['-o', 'value', '-s', 'LABEL', iso], { encoding: 'utf8' }).trim()).toBe('cidata');
  });

  it('holds the three files under their exact names and leaves only the ISO behind', async () => {
    const list = execFileSync('isoinfo', ['-R', '-f', '-i', iso], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();
    expect(list).toEqual(['/meta-data', '/network-config', '/user-data']);
    for (const name of ['meta-data', 'user-data', 'network-config'] as const) {
      expect(execFileSync('isoinfo', ['-R', '-i', iso, '-x', `/${name}`], { encoding: 'utf8' })).toBe(seed[name]);
    }
    expect(await readdir(dir)).toEqual(['seed.iso']);
  });
});
