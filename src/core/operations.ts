// Operations: long actions that run in the background, report progress as events, and can be waited for.
import { randomUUID } from 'node:crypto';
import { AppError, toErrorBody } from '../shared/errors.js';
import type { Operation } from '../shared/schemas.js';
import type { EventBus } from './events.js';

/** Handle given to an operation's body to report progress. */
export interface OperationContext {
  readonly id: string;
  progress(message: string): void;
}

const KEEP_DONE_MS = 10 * 60 * 1000;

/** Runs and tracks operations. */
export class OperationManager {
  private readonly ops = new Map<string, Operation>();
  private readonly done = new Map<string, Promise<void>>();

  constructor(private readonly events: EventBus) {}

  /** Starts fn in the background and returns the operation record at once. */
  start(description: string, resources: string[], fn: (ctx: OperationContext) => Promise<unknown>): Operation {
    const now = new Date().toISOString();
    const op: Operation = { id: randomUUID(), description, status: 'running', resources, progress: null, createdAt: now, updatedAt: now, error: null };
    this.ops.set(op.id, op);
    this.events.emit({ type: 'operation-created', operation: op.id, message: description });
    const ctx: OperationContext = {
      id: op.id,
      progress: (message) => {
        op.progress = message;
        op.updatedAt = new Date().toISOString();
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
      this.events.emit({ type: 'operation-completed', operation: op.id, message: description, data: { status: op.status, ...(op.error ? { error: op.error } : {}) } });
      setTimeout(() => { this.ops.delete(op.id); this.done.delete(op.id); }, KEEP_DONE_MS).unref();
    })();
    this.done.set(op.id, finished);
    return { ...op };
  }

  /** All known operations. */
  list(): Operation[] {
    return [...this.ops.values()].map((o) => ({ ...o }));
  }

  /** One operation; NOT_FOUND when unknown. */
  get(id: string): Operation {
    const op = this.ops.get(id);
    if (!op) throw new AppError('NOT_FOUND', `Operation "${id}" not found`);
    return { ...op };
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
