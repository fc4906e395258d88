// E2e: a launch that fails after real side effects (volume, config, lease, cgroups, veth) leaves nothing behind.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliOk, sharedDaemon, uniquePrefix } from '../helpers/daemon.js';
import { collectEvents, deleteAllWithPrefix, leftovers, listJson, pollUntil, settings } from '../helpers/e2e.js';

const P = uniquePrefix('fc');
const IMAGE = `${P}noinit`;
let dir = '';

beforeAll(async () => {
  await sharedDaemon();
  dir = mkdtempSync(join(tmpdir(), `${P}-`));
  // A root file system that passes import (top-level bin) but has no /sbin/init: the start fails inside lxc-start.
  const root = join(dir, 'root');
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'etc'));
  copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
  symlinkSync('busybox', join(root, 'bin/sh'));
  writeFileSync(join(root, 'etc/hostname'), 'noinit\n');
  execFileSync('tar', ['-C', root, '-czf', join(dir, 'noinit.tar.gz'), '.']);
  cliOk(['image', 'import', join(dir, 'noinit.tar.gz'), '--alias', IMAGE]);
});

afterAll(() => {
  deleteAllWithPrefix(P);
  // Empty cgroups a failed start may have left for our names (rmdir only removes empty ones).
  for (const ctrl of readdirSync('/sys/fs/cgroup')) {
    for (const parent of [settings.prefix, `${settings.prefix}.monitor`]) {
      const dir = join('/sys/fs/cgroup', ctrl, parent);
      if (!existsSync(dir)) continue;
      for (const n of readdirSync(dir).filter((x) => x.startsWith(P))) spawnSync('rmdir', [join(dir, n)]);
    }
  }
  cli(['image', 'delete', IMAGE]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('failure cleanup', () => {
  it('the leftover probe sees every trace a running instance has (so an empty answer means something)', () => {
    const probe = `${P}probe`;
    cliOk(['launch', 'busybox', probe]);
    const mac = listJson().find((i) => i.name === probe)?.mac ?? undefined;
    const found = leftovers(probe, mac).join('\n');
    for (const kind of ['still listed', `${settings.poolDir}/instances/${probe}`, `${settings.lxcPath}/${probe}`, `${settings.dir}/instances/${probe}`,
      'host interface', 'dnsmasq hosts line', `/sys/fs/cgroup/memory/${settings.prefix}/${probe}`, `/sys/fs/cgroup/pids/${settings.prefix}/${probe}`, 'monitor process']) {
      expect(found, kind).toContain(kind);
    }
    cliOk(['delete', probe, '--force']);
    expect(leftovers(probe, mac)).toEqual([]);
  });

  it('launch of an image without init fails naming the instance and the cause, and leaves nothing behind (4 attempts)', async () => {
    const left: Record<string, string[]> = {};
    for (let i = 0; i < 4; i++) {
      const name = `${P}x${i}`;
      const sub = await collectEvents({ types: ['instance-created', 'instance-starting', 'instance-started'] });
      let r: ReturnType<typeof cli>;
      try {
        r = cli(['launch', IMAGE, name]);
        // cli() blocks the event loop: let the buffered frames arrive before closing.
        await pollUntil(() => sub.events.some((e) => e.instance === name && e.type === 'instance-starting'), 50, 100);
      } finally {
        sub.close();
      }
      expect(r.code, r.stdout + r.stderr).not.toBe(0);
      const err = r.stderr;
      expect(err).toMatch(new RegExp(`Failed to (create|launch|start) instance "${name}"`));
      expect(err).toMatch(/caused by:/);
      expect(err).toMatch(/\/sbin\/init/);
      // The failure came after real side effects: the instance had been created and its start begun.
      const seen = sub.events.filter((e) => e.instance === name).map((e) => e.type);
      expect(seen).toContain('instance-created');
      expect(seen).toContain('instance-starting');
      expect(seen).not.toContain('instance-started');
      expect(listJson().map((x) => x.name)).not.toContain(name);
      const l = leftovers(name);
      if (l.length) left[name] = l;
    }
    expect(left).toEqual({});
  }, 300_000);

  it('a failed start of an existing instance keeps it stopped with no runtime leftovers, and it deletes cleanly (3 attempts)', () => {
    const name = `${P}y`;
    cliOk(['create', IMAGE, name]);
    const inst = listJson().find((i) => i.name === name);
    expect(inst?.state).toBe('stopped');
    const left: Record<number, string[]> = {};
    for (let i = 0; i < 3; i++) {
      const r = cli(['start', name]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`Failed to start instance "${name}"`));
      // Every attempt fails for the real reason, not because an earlier attempt left something behind.
      expect(r.stderr, `attempt ${i + 1}`).toMatch(/\/sbin\/init/);
      expect(listJson().find((x) => x.name === name)?.state).toBe('stopped');
      const l = leftovers(name, inst?.mac).filter((x) => !/still listed|^path |dnsmasq hosts/.test(x));
      if (l.length) left[i + 1] = l;
    }
    expect(left).toEqual({});
    cliOk(['delete', name]);
    expect(leftovers(name, inst?.mac)).toEqual([]);
  }, 300_000);

  it('the image can be deleted once nothing uses it', () => {
    deleteAllWithPrefix(P); // whatever an earlier failed test left
    cliOk(['image', 'delete', IMAGE]);
    const images = JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as Array<{ alias: string }>;
    expect(images.map((i) => i.alias)).not.toContain(IMAGE);
  });
});
