// Unit tests of the operation manager with its records in a real SQLite file: a daemon's end mid-operation is answered as INTERRUPTED by the next one, finished outcomes survive, old records go.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { HangarEvent } from '../shared/schemas.js';
import { isAppError } from '../shared/errors.js';
import { StateDb } from './db/database.js';
import { EventBus } from './events.js';
import { KEEP_RECORD_MS, OperationManager } from './operations.js';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

function stateFile(): string {
  const d = mkdtempSync(join(tmpdir(), 'hangar-ops-'));
  dirs.push(d);
  return join(d, 'state.db');
}

describe('operations as records', () => {
  it('answers an operation the previous daemon was running as a failure: interrupted by a daemon restart, with its last step', async () => {
    const file = stateFile();
    const db1 = new StateDb(file);
    const first = new OperationManager(new EventBus(), db1);
    const ok = first.start('Creating instance "a"', ['/1.0/instances/a'], async () => ({ name: 'a' }));
    await first.wait(ok.id, 1000);
    const bad = first.start('Starting instance "b"', ['/1.0/instances/b'], async () => { throw new Error('no init'); });
    await first.wait(bad.id, 1000);
    // This one never ends: the daemon dies in the middle of it.
    const cut = first.start('Launching instance "c"', ['/1.0/instances/c'], (ctx) => { ctx.progress('Starting instance "c"'); return new Promise(() => undefined); });
    expect(db1.getOperation(cut.id)?.status).toBe('running');
    db1.close();

    const db2 = new StateDb(file);
    const events = new EventBus();
    const seen: HangarEvent[] = [];
    events.subscribe((e) => seen.push(e));
    const second = new OperationManager(events, db2);
    expect(second.recoverInterrupted().map((o) => o.id)).toEqual([cut.id]);
    const after = second.get(cut.id);
    expect(after).toMatchObject({ status: 'failure', description: 'Launching instance "c"', error: { code: 'INTERRUPTED', message: 'Operation "Launching instance "c"" was interrupted by a daemon restart', causes: ['its last step: Starting instance "c"'] } });
    expect(seen.filter((e) => e.type === 'operation-completed')).toEqual([expect.objectContaining({ operation: cut.id, data: expect.objectContaining({ status: 'failure' }) })]);
    expect(await second.wait(cut.id, 10)).toMatchObject({ status: 'failure' });
    expect(second.get(ok.id)).toMatchObject({ status: 'success', result: { name: 'a' } });
    expect(second.get(bad.id)).toMatchObject({ status: 'failure', error: { code: 'INTERNAL', message: 'no init' } });
    expect(second.list().map((o) => o.id)).toEqual([ok.id, bad.id, cut.id]);
    // A second restart changes nothing.
    expect(second.recoverInterrupted()).toEqual([]);
    const unknown = (() => { try { return second.get('no-such-op'); } catch (e) { return e; } })();
    expect(isAppError(unknown, 'NOT_FOUND')).toBe(true);
    db2.close();
  });

  it('drops finished records older than a day at start, and keeps running ones to interrupt', () => {
    const db = new StateDb(stateFile());
    const old = new Date(Date.now() - KEEP_RECORD_MS - 60_000).toISOString();
    db.saveOperation({ id: 'old-done', description: 'x', status: 'success', resources: [], progress: null, createdAt: old, updatedAt: old, error: null });
    db.saveOperation({ id: 'old-running', description: 'y', status: 'running', resources: [], progress: null, createdAt: old, updatedAt: old, error: null });
    const ops = new OperationManager(new EventBus(), db);
    expect(ops.recoverInterrupted().map((o) => o.id)).toEqual(['old-running']);
    expect(db.getOperation('old-done')).toBeUndefined();
    expect(ops.get('old-running').status).toBe('failure');
    // Listed while recent: the interrupted one was just changed.
    expect(ops.list().map((o) => o.id)).toEqual(['old-running']);
    db.close();
  });
});
