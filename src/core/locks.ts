// Per-key async locks: conflicting actions on one instance are serialised, never interleaved.

/** Serialises async work per key (e.g. "instance/web1"). */
export class LockManager {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs fn once every earlier holder of each key has finished. Keys are taken in sorted order to avoid deadlocks. */
  async withLock<T>(keys: string | string[], fn: () => Promise<T>): Promise<T> {
    const list = [...new Set(Array.isArray(keys) ? keys : [keys])].sort();
    const releases: (() => void)[] = [];
    try {
      for (const key of list) releases.push(await this.acquire(key));
      return await fn();
    } finally {
      for (const release of releases.reverse()) release();
    }
  }

  /** True when someone holds or waits for key. */
  isLocked(key: string): boolean {
    return this.tails.has(key);
  }

  private async acquire(key: string): Promise<() => void> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => { release = r; });
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    return () => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }
}
