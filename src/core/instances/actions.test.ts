// Unit tests of the legality table: every action × state cell against the table spelled out here, and the messages of refusals.
import { describe, expect, it } from 'vitest';
import { AppError } from '../../shared/errors.js';
import { InstanceStateSchema, type InstanceState } from '../../shared/schemas.js';
import { ACTIONS, STATES, assertLegal, verdict, type InstanceAction, type Verdict } from './actions.js';

// A changed cell must be changed here too: that is the point. ok = allowed, noop = no-op, already/refused = INVALID_STATE.
const EXPECTED = `
action             creating stopped  starting running  stopping frozen   error    unknown
start              ok       ok       ok       already  ok       already  refused  ok
stop               ok       already  ok       ok       ok       ok       ok       ok
restart            ok       ok       ok       ok       ok       ok       ok       ok
freeze             refused  refused  refused  ok       refused  noop     refused  refused
unfreeze           refused  refused  refused  noop     refused  ok       refused  refused
config-change      ok       ok       ok       ok       ok       ok       ok       ok
snapshot-create    ok       ok       ok       ok       ok       ok       refused  ok
snapshot-restore   ok       ok       ok       ok       ok       ok       refused  ok
snapshot-delete    ok       ok       ok       ok       ok       ok       ok       ok
copy               refused  ok       refused  refused  refused  refused  refused  refused
live-copy          ok       ok       ok       ok       ok       ok       ok       ok
delete             ok       ok       ok       refused  ok       refused  ok       ok
force-delete       ok       ok       ok       ok       ok       ok       ok       ok
exec               refused  refused  refused  ok       refused  refused  refused  refused
console            refused  refused  refused  ok       refused  ok       refused  refused
graphical-console  refused  refused  refused  ok       refused  ok       refused  refused
monitor            refused  refused  refused  ok       refused  ok       ok       refused
mount              refused  ok       refused  noop     refused  noop     refused  refused
umount             refused  ok       refused  refused  refused  refused  refused  refused
beancounters       refused  refused  refused  ok       refused  ok       refused  refused
`;

const WORDS: Record<string, Verdict> = { ok: 'allowed', noop: 'no-op', already: 'already', refused: 'refused' };

function parse(text: string): { states: string[]; rows: Map<string, Verdict[]> } {
  const [header, ...lines] = text.trim().split('\n').map((l) => l.trim().split(/\s+/));
  const rows = new Map<string, Verdict[]>();
  for (const [action, ...cells] of lines) rows.set(action!, cells.map((c) => WORDS[c]!));
  return { states: header!.slice(1), rows };
}

function refusal(action: InstanceAction, state: InstanceState, name = 'web1', detail?: string): AppError {
  try {
    assertLegal(action, state, name, detail);
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  throw new Error(`${action} in ${state} was not refused`);
}

describe('the legality table', () => {
  const expected = parse(EXPECTED);

  it('has a column for every instance state and a row for every action, in the written order', () => {
    expect(expected.states).toEqual(InstanceStateSchema.options);
    expect([...STATES]).toEqual(InstanceStateSchema.options);
    expect([...expected.rows.keys()]).toEqual([...ACTIONS]);
  });

  for (const action of ACTIONS) {
    it(`${action}: every state as written`, () => {
      const row = expected.rows.get(action)!;
      expect(row).toHaveLength(STATES.length);
      STATES.forEach((state, i) => expect(verdict(action, state), `${action} in ${state}`).toBe(row[i]));
    });
  }

  it('assertLegal answers allowed and no-op, and throws INVALID_STATE for every refused or already cell', () => {
    for (const action of ACTIONS) {
      for (const state of STATES) {
        const v = verdict(action, state);
        if (v === 'allowed' || v === 'no-op') {
          expect(assertLegal(action, state, 'web1')).toBe(v);
        } else {
          const err = refusal(action, state);
          expect(err.code, `${action} in ${state}`).toBe('INVALID_STATE');
          // Names the instance and its state.
          expect(err.message).toContain('"web1"');
          expect(err.message).toContain(state === 'error' ? 'in error' : state);
        }
      }
    }
  });
});

describe('refusal messages', () => {
  it('say what is already so, and what to do instead', () => {
    expect(refusal('stop', 'stopped').message).toBe('Cannot stop instance "web1": it is already stopped');
    expect(refusal('start', 'running').message).toBe('Cannot start instance "web1": it is already running');
    expect(refusal('delete', 'running').message).toBe('Cannot delete instance "web1": it is running; stop it first or delete with --force');
    expect(refusal('console', 'stopped').message).toBe('Cannot attach to the console of instance "web1": it is stopped (its log: hangar console web1 --show-log)');
    expect(refusal('exec', 'frozen').message).toBe('Cannot run a command in instance "web1": it is frozen');
  });

  it('give a fault its reason', () => {
    const err = (() => { try { assertLegal('start', { state: 'error', pid: 7, startTime: 1, error: { reason: 'KVM internal error', since: 'now' } }, 'vm1'); } catch (e) { return e as AppError; } return undefined; })();
    expect(err?.message).toBe('Cannot start instance "vm1": it is in error (KVM internal error); use restart, or stop it first');
  });

  it('keep the words a copy refusal has always had, with the state and the backend', () => {
    expect(refusal('copy', 'running', 'vm1', 'the qemu backend copies stopped instances only').message)
      .toBe('Cannot copy instance "vm1" while it runs: stop it first (it is running; the qemu backend copies stopped instances only)');
  });
});
