// Reverter: records undo steps of a multi-step change and runs them in reverse on failure.

/** Collects undo steps; call fail() in a catch block or success() when everything worked. */
export class Reverter {
  private steps: { what: string; undo: () => Promise<unknown> | unknown }[] = [];
  /** Errors raised by undo steps, kept for logging. */
  readonly undoErrors: { what: string; error: unknown }[] = [];

  /** Registers an undo step for something that has just been done. */
  add(what: string, undo: () => Promise<unknown> | unknown): void {
    this.steps.push({ what, undo });
  }

  /** Forgets the undo steps: the change is complete. */
  success(): void {
    this.steps = [];
  }

  /** Undoes every registered step, newest first; undo failures are collected, not thrown. */
  async fail(): Promise<void> {
    const steps = this.steps.reverse();
    this.steps = [];
    for (const step of steps) {
      try {
        await step.undo();
      } catch (error) {
        this.undoErrors.push({ what: step.what, error });
      }
    }
  }

  /** Runs fn with this reverter; on a throw, reverts and rethrows. */
  async run<T>(fn: (r: Reverter) => Promise<T>): Promise<T> {
    try {
      const out = await fn(this);
      this.success();
      return out;
    } catch (e) {
      await this.fail();
      throw e;
    }
  }
}
