// The SQLite state database: schema migrations and typed row access for instances, snapshots, images and remote hosts.
import Database from 'better-sqlite3';
import type { InstanceConfig } from '../../shared/config.js';
import type { InstanceType, Operation } from '../../shared/schemas.js';
import { AppError } from '../../shared/errors.js';

/** Desired state recorded for an instance (what it should be doing). */
export type ExpectedState = 'stopped' | 'running' | 'frozen';

/** An instance row. */
export interface InstanceRow {
  name: string;
  type: InstanceType;
  driver: string;
  image: string;
  imageFingerprint: string;
  config: InstanceConfig;
  pendingConfig: InstanceConfig;
  ipv4: string;
  mac: string;
  expectedState: ExpectedState;
  initPid: number | null;
  initStartTime: number | null;
  /** CPUs the instance is pinned to while running ("0,1"), chosen at start to balance load. */
  cpuset: string | null;
  /** Unprivileged containers with an isolated id map: which 65536-id block of the host's range is theirs (1, 2, ...). */
  idmapBlock: number | null;
  /** The host it lives on ("local" for the daemon's own machine). */
  host: string;
  createdAt: string;
  /** Where it came from when it was not made from an image: an import's translation (kind, source file, what was kept and what not). */
  origin: Record<string, unknown> | null;
}

/** A remote host: how to reach it and the host key pinned at first contact (the local host has no row). */
export interface HostRow {
  name: string;
  address: string;
  port: number;
  user: string;
  identityFile: string;
  /** The pinned key's type ("ssh-ed25519") and SHA256 fingerprint. */
  keyType: string;
  fingerprint: string;
  addedAt: string;
  /** The host's own bridge instances attach to, or null for the managed network replicated there. */
  bridge: string | null;
}

/** An image row. */
export interface ImageRow {
  alias: string;
  type: InstanceType;
  fingerprint: string;
  description: string;
  sizeBytes: number;
  createdAt: string;
  source: string;
  props: Record<string, string>;
}

/** A journaled intent: a multi-step change recorded before its first side effect, removed when it is done or undone. */
export interface IntentRow {
  id: number;
  kind: string;
  instance: string;
  data: Record<string, unknown>;
  createdAt: string;
}

/** A snapshot row. */
export interface SnapshotRow {
  instance: string;
  name: string;
  createdAt: string;
  stateful: boolean;
}

const MIGRATIONS: string[] = [
  `CREATE TABLE instances (
     name TEXT PRIMARY KEY,
     type TEXT NOT NULL,
     driver TEXT NOT NULL,
     image TEXT NOT NULL,
     image_fingerprint TEXT NOT NULL,
     config TEXT NOT NULL,
     pending_config TEXT NOT NULL DEFAULT '{}',
     ipv4 TEXT NOT NULL UNIQUE,
     mac TEXT NOT NULL UNIQUE,
     expected_state TEXT NOT NULL,
     init_pid INTEGER,
     init_start_time INTEGER,
     cpuset TEXT,
     created_at TEXT NOT NULL
   );
   CREATE TABLE images (
     alias TEXT PRIMARY KEY,
     type TEXT NOT NULL,
     fingerprint TEXT NOT NULL UNIQUE,
     description TEXT NOT NULL,
     size_bytes INTEGER NOT NULL,
     created_at TEXT NOT NULL,
     source TEXT NOT NULL,
     props TEXT NOT NULL
   );
   CREATE TABLE snapshots (
     instance TEXT NOT NULL REFERENCES instances(name) ON DELETE CASCADE,
     name TEXT NOT NULL,
     created_at TEXT NOT NULL,
     stateful INTEGER NOT NULL,
     PRIMARY KEY (instance, name)
   );`,
  // An alias may have a container and a VM variant (busybox has both).
  `CREATE TABLE images_v2 (
     alias TEXT NOT NULL,
     type TEXT NOT NULL,
     fingerprint TEXT NOT NULL UNIQUE,
     description TEXT NOT NULL,
     size_bytes INTEGER NOT NULL,
     created_at TEXT NOT NULL,
     source TEXT NOT NULL,
     props TEXT NOT NULL,
     PRIMARY KEY (alias, type)
   );
   INSERT INTO images_v2 (alias, type, fingerprint, description, size_bytes, created_at, source, props)
     SELECT alias, type, fingerprint, description, size_bytes, created_at, source, props FROM images;
   DROP TABLE images;
   ALTER TABLE images_v2 RENAME TO images;`,
  `ALTER TABLE instances ADD COLUMN idmap_block INTEGER;`,
  `ALTER TABLE instances ADD COLUMN host TEXT NOT NULL DEFAULT 'local';`,
  // Remote hosts; the local one is implicit. Instance names stay unique across hosts (instances.name is the key).
  `CREATE TABLE hosts (
     name TEXT PRIMARY KEY,
     address TEXT NOT NULL,
     port INTEGER NOT NULL,
     user TEXT NOT NULL,
     identity_file TEXT NOT NULL,
     key_type TEXT NOT NULL,
     fingerprint TEXT NOT NULL,
     added_at TEXT NOT NULL
   );
   ALTER TABLE instances ADD COLUMN origin TEXT;`,
  // A host's own bridge instances attach to (null: the managed network, replicated there).
  `ALTER TABLE hosts ADD COLUMN bridge TEXT;`,
  // Operations as records (the wire object as JSON): one that was running when hangard died is answered as interrupted.
  `CREATE TABLE operations (
     id TEXT PRIMARY KEY,
     status TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     record TEXT NOT NULL
   );
   CREATE INDEX operations_status ON operations (status);
   CREATE TABLE intents (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     kind TEXT NOT NULL,
     instance TEXT NOT NULL,
     data TEXT NOT NULL,
     created_at TEXT NOT NULL
   );`,
];

interface RawInstance {
  name: string; type: string; driver: string; image: string; image_fingerprint: string; config: string; pending_config: string;
  ipv4: string; mac: string; expected_state: string; init_pid: number | null; init_start_time: number | null; cpuset: string | null; idmap_block: number | null; host: string; created_at: string; origin: string | null;
}
interface RawHost { name: string; address: string; port: number; user: string; identity_file: string; key_type: string; fingerprint: string; added_at: string; bridge: string | null }
interface RawImage { alias: string; type: string; fingerprint: string; description: string; size_bytes: number; created_at: string; source: string; props: string }

function toInstance(r: RawInstance): InstanceRow {
  return {
    name: r.name, type: r.type as InstanceType, driver: r.driver, image: r.image, imageFingerprint: r.image_fingerprint,
    config: JSON.parse(r.config) as InstanceConfig, pendingConfig: JSON.parse(r.pending_config) as InstanceConfig,
    ipv4: r.ipv4, mac: r.mac, expectedState: r.expected_state as ExpectedState, initPid: r.init_pid, initStartTime: r.init_start_time, cpuset: r.cpuset, idmapBlock: r.idmap_block, host: r.host, createdAt: r.created_at,
    origin: r.origin === null ? null : JSON.parse(r.origin) as Record<string, unknown>,
  };
}
function toHost(r: RawHost): HostRow {
  return { name: r.name, address: r.address, port: r.port, user: r.user, identityFile: r.identity_file, keyType: r.key_type, fingerprint: r.fingerprint, addedAt: r.added_at, bridge: r.bridge };
}
function toImage(r: RawImage): ImageRow {
  return { alias: r.alias, type: r.type as InstanceType, fingerprint: r.fingerprint, description: r.description, sizeBytes: r.size_bytes, createdAt: r.created_at, source: r.source, props: JSON.parse(r.props) as Record<string, string> };
}

/** The state database. */
export class StateDb {
  private readonly db: Database.Database;

  constructor(private readonly file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('synchronous = NORMAL');
    this.migrate();
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  /** Closes the database. */
  close(): void { this.db.close(); }

  /** Journals an intent; answers its id. */
  addIntent(kind: string, instance: string, data: Record<string, unknown>): number {
    return this.write(() => Number(this.db.prepare('INSERT INTO intents (kind, instance, data, created_at) VALUES (?, ?, ?, ?)').run(kind, instance, JSON.stringify(data), new Date().toISOString()).lastInsertRowid));
  }

  /** Removes an intent that was carried out or undone. */
  removeIntent(id: number): void {
    this.write(() => this.db.prepare('DELETE FROM intents WHERE id = ?').run(id));
  }

  /** The intents still journaled (those of a daemon that ended in their middle), oldest first. */
  listIntents(): IntentRow[] {
    return (this.db.prepare('SELECT * FROM intents ORDER BY id').all() as { id: number; kind: string; instance: string; data: string; created_at: string }[])
      .map((r) => ({ id: r.id, kind: r.kind, instance: r.instance, data: JSON.parse(r.data) as Record<string, unknown>, createdAt: r.created_at }));
  }

  /** Records an operation (inserted, or replaced by its newer state). */
  saveOperation(op: Operation): void {
    this.write(() => this.db.prepare('INSERT OR REPLACE INTO operations (id, status, updated_at, record) VALUES (?, ?, ?, ?)').run(op.id, op.status, op.updatedAt, JSON.stringify(op)));
  }

  /** One recorded operation or undefined. */
  getOperation(id: string): Operation | undefined {
    const r = this.db.prepare('SELECT record FROM operations WHERE id = ?').get(id) as { record: string } | undefined;
    return r ? JSON.parse(r.record) as Operation : undefined;
  }

  /** The recorded operations, oldest first; only those with this status when given. */
  listOperations(status?: Operation['status']): Operation[] {
    const rows = (status === undefined
      ? this.db.prepare('SELECT record FROM operations').all()
      : this.db.prepare('SELECT record FROM operations WHERE status = ?').all(status)) as { record: string }[];
    return rows.map((r) => JSON.parse(r.record) as Operation).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** Forgets finished operations last changed before `before` (an ISO time); answers how many. */
  pruneOperations(before: string): number {
    return this.write(() => this.db.prepare("DELETE FROM operations WHERE status != 'running' AND updated_at < ?").run(before).changes);
  }

  /** All instances, by name. */
  listInstances(): InstanceRow[] {
    return (this.db.prepare('SELECT * FROM instances ORDER BY name').all() as RawInstance[]).map(toInstance);
  }

  /** One instance or undefined. */
  getInstance(name: string): InstanceRow | undefined {
    const r = this.db.prepare('SELECT * FROM instances WHERE name = ?').get(name) as RawInstance | undefined;
    return r ? toInstance(r) : undefined;
  }

  /** Inserts a new instance row. */
  insertInstance(row: InstanceRow): void {
    this.write(() => this.db.prepare(`INSERT INTO instances (name, type, driver, image, image_fingerprint, config, pending_config, ipv4, mac, expected_state, init_pid, init_start_time, cpuset, idmap_block, host, created_at, origin)
      VALUES (@name, @type, @driver, @image, @imageFingerprint, @config, @pendingConfig, @ipv4, @mac, @expectedState, @initPid, @initStartTime, @cpuset, @idmapBlock, @host, @createdAt, @origin)`)
      .run({ ...row, config: JSON.stringify(row.config), pendingConfig: JSON.stringify(row.pendingConfig), origin: row.origin === null ? null : JSON.stringify(row.origin) }));
  }

  /** Updates the given fields of an instance. */
  updateInstance(name: string, patch: Partial<Omit<InstanceRow, 'name'>>): void {
    const cols: Record<string, string> = {
      type: 'type', driver: 'driver', image: 'image', imageFingerprint: 'image_fingerprint', config: 'config', pendingConfig: 'pending_config',
      ipv4: 'ipv4', mac: 'mac', expectedState: 'expected_state', initPid: 'init_pid', initStartTime: 'init_start_time', cpuset: 'cpuset', idmapBlock: 'idmap_block', host: 'host', createdAt: 'created_at', origin: 'origin',
    };
    const sets: string[] = [];
    const params: Record<string, unknown> = { name };
    for (const [k, v] of Object.entries(patch)) {
      const col = cols[k];
      if (!col) continue;
      sets.push(`${col} = @${k}`);
      params[k] = k === 'config' || k === 'pendingConfig' || (k === 'origin' && v !== null) ? JSON.stringify(v) : v;
    }
    if (sets.length === 0) return;
    this.write(() => this.db.prepare(`UPDATE instances SET ${sets.join(', ')} WHERE name = @name`).run(params));
  }

  /** Deletes an instance row (and its snapshot rows). */
  deleteInstance(name: string): void {
    this.write(() => this.db.prepare('DELETE FROM instances WHERE name = ?').run(name));
  }

  /** Snapshots of an instance, oldest first. */
  listSnapshots(instance: string): SnapshotRow[] {
    return (this.db.prepare('SELECT * FROM snapshots WHERE instance = ? ORDER BY created_at, name').all(instance) as { instance: string; name: string; created_at: string; stateful: number }[])
      .map((r) => ({ instance: r.instance, name: r.name, createdAt: r.created_at, stateful: r.stateful === 1 }));
  }

  /** Records a snapshot. */
  insertSnapshot(row: SnapshotRow): void {
    this.write(() => this.db.prepare('INSERT INTO snapshots (instance, name, created_at, stateful) VALUES (?, ?, ?, ?)').run(row.instance, row.name, row.createdAt, row.stateful ? 1 : 0));
  }

  /** Forgets a snapshot. */
  deleteSnapshot(instance: string, name: string): void {
    this.write(() => this.db.prepare('DELETE FROM snapshots WHERE instance = ? AND name = ?').run(instance, name));
  }

  /** All images. */
  listImages(): ImageRow[] {
    return (this.db.prepare('SELECT * FROM images ORDER BY alias, type').all() as RawImage[]).map(toImage);
  }

  /** One image by alias and type. */
  getImage(alias: string, type: InstanceType): ImageRow | undefined {
    const r = this.db.prepare('SELECT * FROM images WHERE alias = ? AND type = ?').get(alias, type) as RawImage | undefined;
    return r ? toImage(r) : undefined;
  }

  /** Records an image. */
  insertImage(row: ImageRow): void {
    this.write(() => this.db.prepare('INSERT INTO images (alias, type, fingerprint, description, size_bytes, created_at, source, props) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(row.alias, row.type, row.fingerprint, row.description, row.sizeBytes, row.createdAt, row.source, JSON.stringify(row.props)));
  }

  /** Forgets an image. */
  deleteImage(alias: string, type: InstanceType): void {
    this.write(() => this.db.prepare('DELETE FROM images WHERE alias = ? AND type = ?').run(alias, type));
  }

  /** Remote hosts, by name. */
  listHosts(): HostRow[] {
    return (this.db.prepare('SELECT * FROM hosts ORDER BY name').all() as RawHost[]).map(toHost);
  }

  /** One remote host or undefined. */
  getHost(name: string): HostRow | undefined {
    const r = this.db.prepare('SELECT * FROM hosts WHERE name = ?').get(name) as RawHost | undefined;
    return r ? toHost(r) : undefined;
  }

  /** Records a remote host. */
  insertHost(row: HostRow): void {
    this.write(() => this.db.prepare('INSERT INTO hosts (name, address, port, user, identity_file, key_type, fingerprint, added_at, bridge) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(row.name, row.address, row.port, row.user, row.identityFile, row.keyType, row.fingerprint, row.addedAt, row.bridge));
  }

  /** Pins another host key for a remote host. */
  updateHostKey(name: string, keyType: string, fingerprint: string): void {
    this.write(() => this.db.prepare('UPDATE hosts SET key_type = ?, fingerprint = ? WHERE name = ?').run(keyType, fingerprint, name));
  }

  /** Forgets a remote host, only while no instance lives there (checked in the same transaction); false when one does. */
  deleteHostIfEmpty(name: string): boolean {
    return this.write(() => this.db.transaction(() => {
      const n = (this.db.prepare('SELECT COUNT(*) AS n FROM instances WHERE host = ?').get(name) as { n: number }).n;
      if (n > 0) return false;
      this.db.prepare('DELETE FROM hosts WHERE name = ?').run(name);
      return true;
    })());
  }

  /** Runs fn in a transaction. */
  transaction<T>(fn: () => T): T {
    return this.write(() => this.db.transaction(fn)());
  }

  // A full disk is the user's to fix, and must say so: SQLite's "database or disk is full" becomes a clear error.
  private write<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      if (code === 'SQLITE_FULL' || /^SQLITE_IOERR/.test(code)) {
        throw new AppError('INSUFFICIENT_RESOURCES', `The state database ${this.file} cannot be written: its file system is full (free space there; nothing was changed)`, { cause: e });
      }
      throw e;
    }
  }
}
