// Which instance action is legal in which observed state: one table, and assertLegal(), which every state check of the instance service goes through.
import { AppError } from '../../shared/errors.js';
import { InstanceStateSchema, type InstanceState } from '../../shared/schemas.js';
import type { ObservedState } from '../../drivers/driver.js';

/** Every action whose legality depends on the instance's state (copy: a backend that copies stopped instances only; live-copy: one that copies running ones too). */
export const ACTIONS = [
  'start', 'stop', 'restart', 'freeze', 'unfreeze', 'config-change',
  'snapshot-create', 'snapshot-restore', 'snapshot-delete', 'copy', 'live-copy',
  'delete', 'force-delete', 'exec', 'console', 'graphical-console', 'monitor', 'mount', 'umount', 'beancounters',
] as const;

/** An action of the table. */
export type InstanceAction = (typeof ACTIONS)[number];

/** Every state an instance can be observed in, in the order of the table's columns. */
export const STATES: readonly InstanceState[] = InstanceStateSchema.options;

/**
 * What an action does in a state: allowed (carry it out); no-op (it already is where the action leads: succeed,
 * doing nothing); already (refused: it already is where the action leads); refused.
 */
export type Verdict = 'allowed' | 'no-op' | 'already' | 'refused';

const A = 'allowed', N = 'no-op', X = 'already', R = 'refused';

/** One row: how a refusal names the action ("Cannot <phrase> instance ..."), its verdict per state, and what to do instead. */
interface Rule {
  phrase: string;
  cells: readonly [Verdict, Verdict, Verdict, Verdict, Verdict, Verdict, Verdict, Verdict];
  /** Appended to a refusal (with its own separator): what the user can do instead. */
  hint?: (name: string, state: InstanceState) => string;
  /** A whole refusal message of its own (kept where clients already match its words). */
  message?: (name: string, state: string, detail: string | undefined) => string;
}

// The columns follow InstanceStateSchema; a test spells the whole table out again, so that a change here is a change there.
const RULES: Record<InstanceAction, Rule> = {
  //                                                 creating stopped starting running stopping frozen error unknown
  'start':             { phrase: 'start',             cells: [A, A, A, X, A, X, R, A], hint: () => '; use restart, or stop it first' },
  'stop':              { phrase: 'stop',              cells: [A, X, A, A, A, A, A, A] },
  // Restart stops what holds resources (running, frozen, in error) and then starts.
  'restart':           { phrase: 'restart',           cells: [A, A, A, A, A, A, A, A] },
  'freeze':            { phrase: 'freeze',            cells: [R, R, R, A, R, N, R, R] },
  'unfreeze':          { phrase: 'unfreeze',          cells: [R, R, R, N, R, A, R, R] },
  // A faulted instance takes config changes as pending (they wait for its restart).
  'config-change':     { phrase: 'change the config of', cells: [A, A, A, A, A, A, A, A] },
  'snapshot-create':   { phrase: 'snapshot',          cells: [A, A, A, A, A, A, R, A] },
  'snapshot-restore':  { phrase: 'restore a snapshot of', cells: [A, A, A, A, A, A, R, A], hint: () => '; stop it first' },
  'snapshot-delete':   { phrase: 'delete a snapshot of', cells: [A, A, A, A, A, A, A, A] },
  'copy':              {
    phrase: 'copy', cells: [R, A, R, R, R, R, R, R],
    message: (name, state, detail) => `Cannot copy instance "${name}" while it runs: stop it first (it is ${state}${detail ? `; ${detail}` : ''})`,
  },
  'live-copy':         { phrase: 'copy',              cells: [A, A, A, A, A, A, A, A] },
  // Without --force a delete never stops what runs; a faulted instance is stopped by the delete (nothing runs in it to lose).
  'delete':            { phrase: 'delete',            cells: [A, A, A, R, A, R, A, A], hint: () => '; stop it first or delete with --force' },
  'force-delete':      { phrase: 'delete',            cells: [A, A, A, A, A, A, A, A] },
  'exec':              { phrase: 'run a command in',  cells: [R, R, R, A, R, R, R, R] },
  'console':           { phrase: 'attach to the console of', cells: [R, R, R, A, R, A, R, R], hint: (name) => ` (its log: hangar console ${name} --show-log)` },
  'graphical-console': { phrase: 'open the graphical console of', cells: [R, R, R, A, R, A, R, R] },
  // A faulted VM keeps its monitor: that is where its state can be looked at.
  'monitor':           { phrase: 'reach the monitor of', cells: [R, R, R, A, R, A, A, R] },
  // A running CT's private area is mounted already; one that runs cannot be unmounted.
  'mount':             { phrase: 'mount',             cells: [R, A, R, N, R, N, R, R] },
  'umount':            { phrase: 'unmount',           cells: [R, A, R, R, R, R, R, R], hint: () => '; stop it first' },
  // Beancounters count what runs: a stopped CT has none.
  'beancounters':      { phrase: 'read the beancounters of', cells: [R, R, R, A, R, A, R, R] },
};

/** The verdict of the table for an action in a state. */
export function verdict(action: InstanceAction, state: InstanceState): Verdict {
  const i = STATES.indexOf(state);
  const v = RULES[action].cells[i];
  if (v === undefined) throw new AppError('INTERNAL', `No legality rule for action "${action}" in state "${state}"`);
  return v;
}

/** A state for messages: "in error (QEMU's reason)" for a fault, else the state itself. */
export function stateText(st: ObservedState | InstanceState): string {
  if (typeof st === 'string') return st === 'error' ? 'in error' : st;
  return st.state === 'error' && st.error ? `in error (${st.error.reason})` : st.state;
}

/**
 * Throws INVALID_STATE, naming the instance, its state and the action, when the table refuses the action in this state;
 * otherwise answers whether to carry it out ('allowed') or to succeed without doing anything ('no-op').
 */
export function assertLegal(action: InstanceAction, state: ObservedState | InstanceState, name: string, detail?: string): 'allowed' | 'no-op' {
  const s = typeof state === 'string' ? state : state.state;
  const v = verdict(action, s);
  if (v === 'allowed' || v === 'no-op') return v;
  const rule = RULES[action];
  const shown = v === 'already' ? `already ${s}` : stateText(state);
  const message = rule.message?.(name, shown, detail)
    ?? `Cannot ${rule.phrase} instance "${name}": it is ${shown}${v === 'refused' ? rule.hint?.(name, s) ?? '' : ''}${detail ? ` (${detail})` : ''}`;
  throw new AppError('INVALID_STATE', message);
}
