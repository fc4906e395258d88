// Operations: long actions that run in the background, report progress as events, and can be waited for; recorded so that a restart answers what became of them.
import { randomUUID } from 'node:crypto';
import { AppError, toErrorBody } from '../shared/errors.js';
import type { Operation } from '../shared/schemas.js';
import type { EventBus } from './events.js';

/** Handle given to an operation's body to report progress. */
export interface OperationContext {
  readonly id: string;
  progress(message: string): void;
}

/** Where operations are recorded (the state database): written when one starts, at each step and when it ends. */
export interface OperationStore {
  saveOperation(op: Operation): void;
  getOperation(id: string): Operation | undefined;
  listOperations(status?: Operation['status']): Operation[];
  pruneOperations(before: string): number;
}

const KEEP_DONE_MS = 10 * 60 * 1000;
/** How long a finished operation's record is kept in the store: a client that comes back the next day still learns its outcome. */
export const KEEP_RECORD_MS = 24 * 60 * 60 * 1000;

/** Runs and tracks operations. */
export class OperationManager {
  private readonly ops = new Map<string, Operation>();
  private readonly done = new Map<string, Promise<void>>();

  constructor(private readonly events: EventBus, private readonly store?: OperationStore) {}

  /**
   * At daemon start, before any new operation: every recorded operation still `running` was cut off by the previous
   * daemon's end. Each becomes a failure (INTERRUPTED, with what it was doing last) and its completion is published;
   * records finished more than a day ago are dropped. Answers the interrupted ones.
   */
  recoverInterrupted(): Operation[] {
    if (!this.store) return [];
    const now = new Date();
    this.store.pruneOperations(new Date(now.getTime() - KEEP_RECORD_MS).toISOString());
    const cut = this.store.listOperations('running');
    for (const op of cut) {
      op.status = 'failure';
      op.updatedAt = now.toISOString();
      op.error = {
        code: 'INTERRUPTED', message: `Operation "${op.description}" was interrupted by a daemon restart`,
        causes: op.progress ? [`its last step: ${op.progress}`] : [], details: { startedAt: op.createdAt },
      };
      this.store.saveOperation(op);
      this.events.emit({ type: 'operation-completed', operation: op.id, message: op.description, data: { status: op.status, error: op.error } });
    }
    return cut;
  }

  /** Starts fn in the background and returns the operation record at once. */
  start(description: string, resources: string[], fn: (ctx: OperationContext) => Promise<unknown>): Operation {
    const now = new Date().toISOString();
    const op: Operation = { id: randomUUID(), description, status: 'running', resources, progress: null, createdAt: now, updatedAt: now, error: null };
    // Recorded before it does anything: a daemon killed from here on leaves a record that says so.
    this.store?.saveOperation(op);
    this.ops.set(op.id, op);
    this.events.emit({ type: 'operation-created', operation: op.id, message: description });
    const ctx: OperationContext = {
      id: op.id,
      progress: (message) => {
        op.progress = message;
        op.updatedAt = new Date().toISOString();
        // Its last step is what an interrupted operation's record tells (a write of ~20 µs; a full disk loses only that).
        try { this.store?.saveOperation(op); } catch { /* kept in memory */ }
        this.events.emit({ type: 'operation-progress', operation: op.id, message });
      },
    };
    const finished = (async () => {
      try {
        const result = await fn(ctx);
        op.status = 'success';
        if (result !== undefined) op.result = result;
      } catch (err) {
        op.status = 'failure';
        op.error = toErrorBody(err);
      }
      op.updatedAt = new Date().toISOString();
      try {
        this.store?.saveOperation(op);
      } catch {
        // A full disk: the outcome is still in memory and in the event; the record says running until the next start.
      }
      this.events.emit({ type: 'operation-completed', operation: op.id, message: description, data: { status: op.status, ...(op.error ? { error: op.error } : {}) } });
      setTimeout(() => { this.ops.delete(op.id); this.done.delete(op.id); }, KEEP_DONE_MS).unref();
    })();
    this.done.set(op.id, finished);
    return { ...op };
  }

  /** The operations of the last ten minutes, oldest first: this daemon's and the records of an earlier one (get() finds a record for a day). */
  list(): Operation[] {
    const live = [...this.ops.values()].map((o) => ({ ...o }));
    const since = new Date(Date.now() - KEEP_DONE_MS).toISOString();
    const recorded = (this.store?.listOperations() ?? []).filter((o) => !this.ops.has(o.id) && o.updatedAt >= since);
    return [...recorded, ...live].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** One operation (of this daemon, else its record); NOT_FOUND when unknown. */
  get(id: string): Operation {
    const op = this.ops.get(id);
    if (op) return { ...op };
    const recorded = this.store?.getOperation(id);
    if (recorded) return recorded;
    throw new AppError('NOT_FOUND', `Operation "${id}" not found`);
  }

  /** Waits until the operation is done or timeoutMs passes, then returns its record. */
  async wait(id: string, timeoutMs: number): Promise<Operation> {
    const finished = this.done.get(id);
    if (!finished) return this.get(id);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([finished, new Promise<void>((r) => { timer = setTimeout(r, timeoutMs); })]);
    if (timer) clearTimeout(timer);
    return this.get(id);
  }

  /** Waits for every running operation (used on shutdown and in tests). */
  async drain(): Promise<void> {
    await Promise.all([...this.done.values()]);
  }
}
