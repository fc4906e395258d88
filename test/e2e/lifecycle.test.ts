// E2e: instance lifecycle through the CLI (stop/start/restart/freeze, live and pending config, console log, timeouts) and conflicting concurrent requests.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError } from '../../src/shared/errors.js';
import type { Operation } from '../../src/shared/schemas.js';
import { HangarClient } from '../../src/client/client.js';
import { cli, cliOk, sharedDaemon, TEST_ENV, uniquePrefix, type TestDaemon } from '../helpers/daemon.js';
import { alive, deleteAllWithPrefix, findInstance, leftovers, pollUntil, settings } from '../helpers/e2e.js';

const P = uniquePrefix('lc');
const N = `${P}m`; // main instance
const PRIV = `${P}p`; // gets a pending security.privileged
const HANG = `${P}h`; // its shutdown action hangs
let d: TestDaemon;

/** A client of its own per test (d.client is kept for the keep-alive test: see there). */
async function withClient<T>(fn: (c: HangarClient) => Promise<T>): Promise<T> {
  const c = new HangarClient({ socketPath: TEST_ENV.HANGAR_SOCKET });
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

const cg = (ctrl: string, name: string, file: string) => join('/sys/fs/cgroup', ctrl, settings.prefix, name, file);
const counterFile = (name: string) => join(settings.poolDir, 'instances', name, 'tmp/c');
const readCounter = (name: string) => (existsSync(counterFile(name)) ? readFileSync(counterFile(name), 'utf8').trim() : '');
const configOf = (name: string) => JSON.parse(cliOk(['config', 'show', name, '--format', 'json'])) as { config: Record<string, string>; pendingConfig: Record<string, string> };

function stateOf(name: string): string | undefined {
  return findInstance(name)?.state;
}

beforeAll(async () => {
  d = await sharedDaemon();
  cliOk(['launch', 'busybox', N]);
});

afterAll(() => {
  deleteAllWithPrefix(P);
});

describe('lifecycle', () => {
  it('stop (graceful), start, stop --force, restart with a new init', () => {
    const pid0 = findInstance(N)!.pid!;
    const stop = cli(['stop', N]);
    expect(stop.code, stop.stderr).toBe(0);
    expect(stateOf(N)).toBe('stopped');
    expect(findInstance(N)?.pid).toBeNull();
    expect(alive(pid0)).toBe(false);

    cliOk(['start', N]);
    const pid1 = findInstance(N)!.pid!;
    expect(stateOf(N)).toBe('running');
    expect(pid1).not.toBe(pid0);

    cliOk(['stop', N, '--force']);
    expect(stateOf(N)).toBe('stopped');
    expect(alive(pid1)).toBe(false);
    // Stopping a stopped instance is refused, naming it.
    const again = cli(['stop', N]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain(`"${N}"`);
    expect(again.stderr).toMatch(/already stopped/);

    cliOk(['start', N]);
    const pid2 = findInstance(N)!.pid!;
    cliOk(['restart', N]);
    const pid3 = findInstance(N)!.pid!;
    expect(stateOf(N)).toBe('running');
    expect(pid3).not.toBe(pid2);
    expect(alive(pid2)).toBe(false);
    expect(alive(pid3)).toBe(true);
  });

  it('freeze stops every process (cgroup FROZEN, counter still, exec refused); unfreeze resumes them', async () => {
    // A detached counter loop inside the container, writing to its root (readable from the host).
    cliOk(['exec', N, '--', 'sh', '-c', 'setsid sh -c "i=0; while :; do i=\\$((i+1)); echo \\$i > /tmp/c; usleep 50000; done" </dev/null >/dev/null 2>&1 &']);
    expect(await pollUntil(() => Number(readCounter(N)) > 2), 'counter advances before freeze').toBe(true);

    cliOk(['freeze', N]);
    expect(stateOf(N)).toBe('frozen');
    expect(readFileSync(cg('freezer', N, 'freezer.state'), 'utf8').trim()).toBe('FROZEN');
    const c1 = readCounter(N);
    await new Promise((r) => setTimeout(r, 1000));
    expect(readCounter(N), 'counter does not move while frozen').toBe(c1);
    const ex = cli(['exec', N, '--', 'true']);
    expect(ex.code).not.toBe(0);
    expect(ex.stderr).toMatch(/frozen/);

    cliOk(['unfreeze', N]);
    expect(stateOf(N)).toBe('running');
    expect(readFileSync(cg('freezer', N, 'freezer.state'), 'utf8').trim()).toBe('THAWED');
    expect(await pollUntil(() => readCounter(N) !== c1), 'counter moves again after unfreeze').toBe(true);
    cliOk(['exec', N, '--', 'true']);
  });

  it('config set limits.memory on a running instance applies live and changes the cgroup', () => {
    const file = cg('memory', N, 'memory.limit_in_bytes');
    expect(readFileSync(file, 'utf8').trim()).not.toBe(String(128 * 1024 ** 2));
    const out = cliOk(['config', 'set', N, 'limits.memory=128MiB']);
    expect(out).toMatch(/Applied live: limits\.memory/);
    expect(out).not.toMatch(/Pending/);
    expect(readFileSync(file, 'utf8').trim()).toBe(String(128 * 1024 ** 2));
    expect(configOf(N)).toEqual({ config: { 'limits.memory': '128MiB' }, pendingConfig: {} });
  });

  it('config set limits.bogus is refused and changes nothing (CLI and API)', async () => {
    const before = configOf(N);
    const r = cli(['config', 'set', N, 'limits.bogus=1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/limits\.bogus/);
    const api = await withClient((c) => c.patchConfig(N, { set: { 'limits.bogus': '1' } })).then(() => undefined, (e: unknown) => e);
    expect(isAppError(api), String(api)).toBe(true);
    expect((api as Error).message).toMatch(/limits\.bogus/);
    // One bad key in a batch refuses the whole batch.
    const mixed = await withClient((c) => c.patchConfig(N, { set: { 'limits.memory': '64MiB', 'limits.bogus': '1' } })).then(() => undefined, (e: unknown) => e);
    expect(isAppError(mixed), String(mixed)).toBe(true);
    expect(configOf(N)).toEqual(before);
    expect(readFileSync(cg('memory', N, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(128 * 1024 ** 2));
  });

  it('config set security.privileged on a running instance is pending until restart', () => {
    cliOk(['launch', 'busybox', PRIV]);
    const out = cliOk(['config', 'set', PRIV, 'security.privileged=true']);
    expect(out).toMatch(/Pending until restart: security\.privileged/);
    expect(out).not.toMatch(/Applied live/);
    expect(configOf(PRIV)).toEqual({ config: {}, pendingConfig: { 'security.privileged': 'true' } });
    const table = cliOk(['config', 'show', PRIV]);
    expect(table).toMatch(/security\.privileged\s+-\s+true/);
  });

  it('after a restart the pending security.privileged=true applies: no user namespace, root-owned tree', () => {
    cliOk(['restart', PRIV]);
    expect(configOf(PRIV)).toEqual({ config: { 'security.privileged': 'true' }, pendingConfig: {} });
    const uidMap = cliOk(['exec', PRIV, '--', 'cat', '/proc/self/uid_map']).trim().split(/\s+/).map(Number);
    expect(uidMap).toEqual([0, 0, 4294967295]);
    // Trees are stored 0-based: the privileged container sees them as they are, unprivileged ones through an idmapped mount.
    expect(cliOk(['exec', PRIV, '--', 'stat', '-c', '%u', '/bin/busybox']).trim()).toBe('0');
    cliOk(['config', 'set', PRIV, 'security.privileged=false']);
    cliOk(['restart', PRIV]);
    const again = cliOk(['exec', PRIV, '--', 'cat', '/proc/self/uid_map']).trim().split(/\s+/).map(Number);
    expect(again[1]).toBeGreaterThan(0);
    expect(cliOk(['exec', PRIV, '--', 'stat', '-c', '%u', '/bin/busybox']).trim()).toBe('0');
  });

  it('console --show-log prints the persistent console log, also once stopped', async () => {
    const shown = await pollUntil(() => cliOk(['console', N, '--show-log']).includes(`${N} login:`), 50, 200);
    expect(shown, cliOk(['console', N, '--show-log'])).toBe(true);
    cliOk(['stop', N]);
    expect(cliOk(['console', N, '--show-log'])).toContain(`${N} login:`);
    cliOk(['start', N]);
  });

  it('stop --timeout 1 on an instance whose shutdown hangs fails with a timeout and leaves it running; --force stops it', () => {
    cliOk(['launch', 'busybox', HANG]);
    // busybox init runs /etc/init.d/rcK on the halt signal and waits for it: make it hang.
    cliOk(['exec', HANG, '--', 'sh', '-c', 'printf "#!/bin/sh\\nexec sleep 3600\\n" > /etc/init.d/rcK']);
    const pid = findInstance(HANG)!.pid!;
    const r = cli(['stop', HANG, '--timeout', '1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`"${HANG}"`);
    expect(r.stderr).toMatch(/within 1 s/);
    expect(r.stderr).toMatch(/--force/);
    expect(stateOf(HANG)).toBe('running');
    expect(findInstance(HANG)?.pid).toBe(pid);
    cliOk(['stop', HANG, '--force']);
    expect(stateOf(HANG)).toBe('stopped');
    expect(alive(pid)).toBe(false);
  });

  it('an exec whose client goes away ends with it: the command and what it started in the container are killed', async () => {
    const tag = String(1_000_000 + Math.floor(Math.random() * 1_000_000));
    const inContainer = () => cliOk(['exec', N, '--', 'ps']).split('\n').filter((l) => l.includes(`sleep ${tag}`) || l.includes(`sleep 2${tag}`));
    const child = spawn(process.execPath, [join(import.meta.dirname, '../../dist/hangar.cjs'), 'exec', N, '--', 'sh', '-c', `sleep 2${tag} & sleep ${tag}`], { env: { ...process.env, ...TEST_ENV }, stdio: 'ignore' });
    try {
      expect(await pollUntil(() => inContainer().length === 2, 100, 100), 'both sleeps run in the container').toBe(true);
    } finally {
      // The client dies without a word: its connection drops.
      child.kill('SIGKILL');
    }
    expect(await pollUntil(() => inContainer().length === 0, 100, 100), `left in the container: ${inContainer().join('; ')}`).toBe(true);
    expect(findInstance(N)?.state).toBe('running');
  });

  it('an exec is listed and signalled by id through the API; its disconnect signal is the one asked for, on both exec paths', async () => {
    const tag = String(1_000_000 + Math.floor(Math.random() * 1_000_000));
    const mark = (what: string) => join(settings.poolDir, 'instances', N, 'tmp', `${what}${tag}`);
    const marked = (what: string) => (existsSync(mark(what)) ? readFileSync(mark(what), 'utf8') : '');
    const trapping = (sig: string, what: string) => ['sh', '-c', `trap "echo ${what} > /tmp/${what}${tag}; exit 42" ${sig}; echo ready; while :; do sleep 1; done`];
    await withClient(async (c) => {
      let id: string | undefined;
      let out = '';
      const stdout = new Writable({ write(chunk: Buffer, _e, cb) { out += chunk.toString(); cb(); } });
      const run = c.exec(N, { command: trapping('INT', 'int') }, { stdout, stderr: stdout, onExecId: (x) => { id = x; } });
      expect(await pollUntil(() => id !== undefined && out.includes('ready'), 100, 50), out).toBe(true);
      expect((await c.listExecs(N)).find((e) => e.id === id)).toMatchObject({ command: trapping('INT', 'int'), tty: false, disconnectSignal: 'SIGKILL' });
      expect((await c.signalExec(N, id!, 'SIGINT')).id).toBe(id);
      // The trap's own exit code, or lxc-attach's own end by the same signal (130): either way the command got SIGINT and ran its trap.
      expect([42, 130]).toContain(await run);
      expect(marked('int')).toBe('int\n');
      expect((await c.listExecs(N)).map((e) => e.id)).not.toContain(id);
      const err = await c.signalExec(N, id!, 'SIGINT').then(() => undefined, (e: unknown) => e);
      expect(isAppError(err, 'NOT_FOUND'), String(err)).toBe(true);
    });
    // The POST path: the client goes away (its connection closed); SIGHUP was asked for, so the trap for it runs.
    const gone = new HangarClient({ socketPath: TEST_ENV.HANGAR_SOCKET });
    let started = false;
    const sink = new Writable({ write(chunk: Buffer, _e, cb) { if (chunk.toString().includes('ready')) started = true; cb(); } });
    const hung = gone.exec(N, { command: trapping('HUP', 'hup'), disconnectSignal: 'SIGHUP' }, { stdout: sink, stderr: sink }).catch(() => undefined);
    expect(await pollUntil(() => started, 100, 50)).toBe(true);
    gone.close();
    await hung;
    expect(await pollUntil(() => marked('hup') === 'hup\n', 100, 100), 'the HUP trap ran').toBe(true);
    // The websocket path (the CLI streams a stdin that is a pipe over one): the CLI is SIGKILLed; SIGTERM was asked for.
    const child = spawn(process.execPath, [join(import.meta.dirname, '../../dist/hangar.cjs'), 'exec', N, '--disconnect-signal', 'SIGTERM', '--', ...trapping('TERM', 'term')], { env: { ...process.env, ...TEST_ENV }, stdio: ['pipe', 'pipe', 'ignore'] });
    let childOut = '';
    child.stdout.on('data', (b: Buffer) => { childOut += b.toString(); });
    try {
      expect(await pollUntil(() => childOut.includes('ready'), 100, 100)).toBe(true);
    } finally {
      child.kill('SIGKILL');
    }
    expect(await pollUntil(() => marked('term') === 'term\n', 100, 100), 'the TERM trap ran').toBe(true);
    expect(await pollUntil(async () => (await withClient((c) => c.listExecs(N))).length === 0, 100, 100)).toBe(true);
    cliOk(['exec', N, '--', 'rm', '-f', `/tmp/int${tag}`, `/tmp/hup${tag}`, `/tmp/term${tag}`]);
  });

  it('delete of a running instance without --force is refused; it keeps running', () => {
    const pid = findInstance(N)!.pid!;
    const r = cli(['delete', N]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`"${N}"`);
    expect(r.stderr).toMatch(/running/);
    expect(r.stderr).toMatch(/--force/);
    expect(findInstance(N)?.pid).toBe(pid);
    expect(alive(pid)).toBe(true);
  });

  it('image delete busybox while instances use it is refused (IN_USE)', async () => {
    const r = cli(['image', 'delete', 'busybox']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/busybox/);
    expect(r.stderr).toContain(N);
    // A fresh client: this check must not depend on the keep-alive handling tested below.
    const client = new HangarClient({ socketPath: TEST_ENV.HANGAR_SOCKET });
    try {
      const err = await client.waitOperation(await client.deleteImage('busybox')).then(() => undefined, (e: unknown) => e);
      expect(isAppError(err, 'IN_USE'), String(err)).toBe(true);
      expect((err as Error).message).toContain(N);
    } finally {
      client.close();
    }
    const images = JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as Array<{ alias: string }>;
    expect(images.map((i) => i.alias)).toContain('busybox');
  });

  it('the API client keeps working after the daemon closed its idle keep-alive connection', async () => {
    await d.client.serverInfo();
    // Node's HTTP server closes idle keep-alive connections after 5 s; with the event loop busy meanwhile (here a
    // synchronous child, as cli() is) the agent only learns of the close when it reuses the socket: the client must retry.
    spawnSync('sleep', ['6']);
    await expect(d.client.getInstance(N)).resolves.toMatchObject({ name: N });
  });

  describe('concurrent conflicting requests (start, stop, delete in parallel) are serialised', () => {
    type Op = 'start' | 'stop' | 'delete';
    type State = 'running' | 'stopped' | 'deleted';
    type Outcome = { ok: true } | { ok: false; code: string; message: string };

    /** What one op does to a state when run alone: the next state, or undefined when it must fail. */
    function apply(op: Op, s: State): State | undefined {
      if (s === 'deleted') return undefined;
      if (op === 'start') return s === 'stopped' ? 'running' : undefined;
      if (op === 'stop') return s === 'running' ? 'stopped' : undefined;
      return s === 'stopped' ? 'deleted' : undefined;
    }

    /** Every (successes, final state) a serial order of the ops can produce from `initial`. */
    function serialOutcomes(initial: State, ops: Op[]): Array<{ ok: boolean[]; final: State }> {
      const perms = (xs: number[]): number[][] => (xs.length <= 1 ? [xs] : xs.flatMap((x) => perms(xs.filter((y) => y !== x)).map((p) => [x, ...p])));
      return perms(ops.map((_, i) => i)).map((order) => {
        const ok = ops.map(() => false);
        let s = initial;
        for (const i of order) {
          const next = apply(ops[i]!, s);
          if (next !== undefined) { ok[i] = true; s = next; }
        }
        return { ok, final: s };
      });
    }

    async function run(c: HangarClient, op: Op, name: string): Promise<Outcome> {
      try {
        let started: Operation;
        if (op === 'delete') started = await c.deleteInstance(name);
        else started = await c.changeState(name, { action: op });
        await c.waitOperation(started);
        return { ok: true };
      } catch (e) {
        return { ok: false, code: isAppError(e) ? e.code : 'NOT_APP_ERROR', message: e instanceof Error ? e.message : String(e) };
      }
    }

    const ops: Op[] = ['start', 'stop', 'delete'];
    const cases: Array<{ initial: 'running' | 'stopped'; round: number }> = [];
    for (let round = 0; round < 3; round++) for (const initial of ['stopped', 'running'] as const) cases.push({ initial, round });

    for (const { initial, round } of cases) {
      it(`from ${initial} (round ${round + 1})`, async () => {
        const name = `${P}c${initial[0]}${round}`;
        cliOk([initial === 'running' ? 'launch' : 'create', 'busybox', name]);
        const mac = findInstance(name)!.mac;
        const outcomes = await withClient((c) => Promise.all(ops.map((op) => run(c, op, name))));
        const report = JSON.stringify(ops.map((op, i) => ({ op, ...outcomes[i] })));

        for (const o of outcomes) {
          if (o.ok) continue;
          expect(['INVALID_STATE', 'NOT_FOUND', 'CONFLICT', 'BUSY'], report).toContain(o.code);
          expect(o.message, report).toContain(`"${name}"`);
        }

        const inst = findInstance(name);
        const final: State = inst === undefined ? 'deleted' : inst.state === 'running' ? 'running' : inst.state === 'stopped' ? 'stopped' : (inst.state as State);
        const got = { ok: outcomes.map((o) => o.ok), final };
        expect(serialOutcomes(initial, ops), `observed ${JSON.stringify(got)}: ${report}`).toContainEqual(got);

        if (final === 'deleted') {
          expect(leftovers(name, mac ?? undefined)).toEqual([]);
        } else if (final === 'running') {
          expect(alive(inst!.pid!)).toBe(true);
          cliOk(['exec', name, '--', 'true']);
        } else {
          expect(inst!.pid).toBeNull();
          expect(existsSync(join(settings.lxcPath, name, 'config'))).toBe(true);
          expect(existsSync(join(settings.poolDir, 'instances', name))).toBe(true);
        }
      });
    }
  });
});
