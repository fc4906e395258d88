// Unit tests of the state database: migrations keep data, images keyed by alias and type, instance rows round-trip.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { StateDb, type ImageRow, type InstanceRow } from './database.js';

const dirs: string[] = [];
const tmpDb = () => {
  const d = mkdtempSync(join(tmpdir(), 'hangar-db-'));
  dirs.push(d);
  return join(d, 'state.db');
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const image = (alias: string, type: 'container' | 'vm', fp: string): ImageRow => ({
  alias, type, fingerprint: fp, description: 'd', sizeBytes: 1, createdAt: 't', source: 's', props: { init: '/sbin/init' },
});

describe('StateDb', () => {
  it('migrates a version-1 database (images keyed by alias alone) without losing rows', () => {
    const file = tmpDb();
    const raw = new Database(file);
    raw.exec(`CREATE TABLE images (alias TEXT PRIMARY KEY, type TEXT NOT NULL, fingerprint TEXT NOT NULL UNIQUE, description TEXT NOT NULL,
      size_bytes INTEGER NOT NULL, created_at TEXT NOT NULL, source TEXT NOT NULL, props TEXT NOT NULL);
      CREATE TABLE instances (name TEXT PRIMARY KEY, type TEXT NOT NULL, driver TEXT NOT NULL, image TEXT NOT NULL, image_fingerprint TEXT NOT NULL,
      config TEXT NOT NULL, pending_config TEXT NOT NULL DEFAULT '{}', ipv4 TEXT NOT NULL UNIQUE, mac TEXT NOT NULL UNIQUE, expected_state TEXT NOT NULL,
      init_pid INTEGER, init_start_time INTEGER, cpuset TEXT, created_at TEXT NOT NULL);
      CREATE TABLE snapshots (instance TEXT NOT NULL REFERENCES instances(name) ON DELETE CASCADE, name TEXT NOT NULL, created_at TEXT NOT NULL,
      stateful INTEGER NOT NULL, PRIMARY KEY (instance, name));
      INSERT INTO images VALUES ('busybox', 'container', 'fp1', 'd', 1, 't', 's', '{"init":"/sbin/init"}');
      PRAGMA user_version = 1;`);
    raw.close();
    const db = new StateDb(file);
    expect(db.getImage('busybox', 'container')?.fingerprint).toBe('fp1');
    expect(db.getImage('busybox', 'vm')).toBeUndefined();
    db.insertImage(image('busybox', 'vm', 'fp2'));
    expect(db.listImages().map((i) => `${i.alias}/${i.type}`)).toEqual(['busybox/container', 'busybox/vm']);
    db.deleteImage('busybox', 'vm');
    expect(db.getImage('busybox', 'container')).toBeDefined();
    db.close();
  });

  it('round-trips instance rows and cascades snapshots on delete', () => {
    const db = new StateDb(tmpDb());
    const row: InstanceRow = {
      name: 'web1', type: 'container', driver: 'lxc', image: 'busybox', imageFingerprint: 'fp1', config: { 'limits.memory': '64MiB' }, pendingConfig: {},
      ipv4: '10.0.0.2', mac: '0a:00:00:00:00:01', expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null, idmapBlock: null, host: 'local', createdAt: 't', origin: null,
    };
    db.insertInstance(row);
    db.updateInstance('web1', { expectedState: 'running', initPid: 42, cpuset: '1' });
    expect(db.getInstance('web1')).toEqual({ ...row, expectedState: 'running', initPid: 42, cpuset: '1' });
    db.insertSnapshot({ instance: 'web1', name: 's1', createdAt: 't', stateful: false });
    expect(db.listSnapshots('web1').map((s) => s.name)).toEqual(['s1']);
    expect(() => db.insertInstance({ ...row, name: 'web2' })).toThrow(/UNIQUE/);
    db.deleteInstance('web1');
    expect(db.listSnapshots('web1')).toEqual([]);
    db.insertInstance({ ...row, name: 'imp1', host: 'xen1', image: '', imageFingerprint: '', origin: { kind: 'xen-import', disks: [{ target: '/dev/vg/x' }] } });
    expect(db.getInstance('imp1')?.origin).toEqual({ kind: 'xen-import', disks: [{ target: '/dev/vg/x' }] });
    db.updateInstance('imp1', { origin: null });
    expect(db.getInstance('imp1')?.origin).toBeNull();
    db.close();
  });

  it('records remote hosts, re-pins their key, and forgets one only while no instance lives there', () => {
    const db = new StateDb(tmpDb());
    const host = { name: 'xen1', address: '192.0.2.7', port: 2222, user: 'root', identityFile: '/root/.ssh/id_ed25519', keyType: 'ssh-ed25519', fingerprint: 'SHA256:a', addedAt: 't', bridge: 'xenbr0' };
    db.insertHost(host);
    expect(db.listHosts()).toEqual([host]);
    expect(() => db.insertHost(host)).toThrow(/UNIQUE/);
    db.updateHostKey('xen1', 'ssh-rsa', 'SHA256:b');
    expect(db.getHost('xen1')).toEqual({ ...host, keyType: 'ssh-rsa', fingerprint: 'SHA256:b' });
    db.insertInstance({
      name: 'dom1', type: 'vm', driver: 'xen', image: '', imageFingerprint: '', config: {}, pendingConfig: {}, ipv4: '10.0.0.9', mac: '0a:00:00:00:00:09',
      expectedState: 'stopped', initPid: null, initStartTime: null, cpuset: null, idmapBlock: null, host: 'xen1', createdAt: 't', origin: null,
    });
    expect(db.deleteHostIfEmpty('xen1')).toBe(false);
    expect(db.getHost('xen1')).toBeDefined();
    db.deleteInstance('dom1');
    expect(db.deleteHostIfEmpty('xen1')).toBe(true);
    expect(db.getHost('xen1')).toBeUndefined();
    db.close();
  });
});
