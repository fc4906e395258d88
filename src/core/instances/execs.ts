// The commands running in instances through exec: each has an id the API lists and signals, and what its client's going away does to it.
import { randomBytes } from 'node:crypto';
import { AppError } from '../../shared/errors.js';
import type { ExecInfo, ExecSignal } from '../../shared/schemas.js';
import type { HostProcess } from '../../host/host.js';

/** How long a command gets after a disconnect signal other than SIGKILL before SIGKILL follows. */
export const DISCONNECT_GRACE_MS = 10_000;

/** An exec as its starter holds it: the process, its id, and what to call when its client's connection ends. */
export interface StartedExec {
  id: string;
  proc: HostProcess;
  /** Sends the exec's disconnect signal (to its process group where the backend has one), SIGKILL after the grace. */
  disconnected(): void;
}

interface Entry { instance: string; info: ExecInfo; proc: HostProcess }

/** The running execs of this daemon, by id; an exec leaves when its process exits. */
export class ExecRegistry {
  private readonly byId = new Map<string, Entry>();

  constructor(private readonly graceMs = DISCONNECT_GRACE_MS) {}

  /** Records a started process of an instance. */
  add(instance: string, proc: HostProcess, spec: { command: string[]; tty: boolean; disconnectSignal?: ExecSignal | undefined }): StartedExec {
    const id = randomBytes(8).toString('hex');
    const info: ExecInfo = { id, command: spec.command, tty: spec.tty, startedAt: new Date().toISOString(), disconnectSignal: spec.disconnectSignal ?? 'SIGKILL' };
    this.byId.set(id, { instance, info, proc });
    let exited = false;
    void proc.wait().catch(() => undefined).then(() => { exited = true; this.byId.delete(id); });
    const disconnected = () => {
      if (exited) return;
      proc.kill(info.disconnectSignal);
      if (info.disconnectSignal === 'SIGKILL') return;
      // A command that traps the gentler signal gets the grace to finish, not forever.
      const t = setTimeout(() => { if (!exited) proc.kill('SIGKILL'); }, this.graceMs);
      t.unref();
      void proc.wait().catch(() => undefined).then(() => clearTimeout(t));
    };
    return { id, proc, disconnected };
  }

  /** The running execs of an instance, oldest first. */
  list(instance: string): ExecInfo[] {
    return [...this.byId.values()].filter((e) => e.instance === instance).map((e) => e.info);
  }

  /** Sends a signal to one running exec of an instance. */
  signal(instance: string, id: string, signal: ExecSignal): ExecInfo {
    const e = this.byId.get(id);
    if (!e || e.instance !== instance) throw new AppError('NOT_FOUND', `No running exec "${id}" in instance "${instance}"`);
    // A guest agent that cannot deliver it says why: refused, never pretended.
    const why = e.proc.signalProblem?.();
    if (why) throw new AppError('UNSUPPORTED', `Cannot send ${signal} to exec "${id}" of instance "${instance}": ${why}`);
    e.proc.kill(signal);
    return e.info;
  }
}
