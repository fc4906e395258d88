// E2e crash probe: concurrent mixed operations on containers and a VM, hangard killed (-9) at several points and restarted; asserts what start-up reconciliation promises and writes the figures to .cache/crash-probe.json.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HangarClient } from '../../src/client/client.js';
import type { HangarEvent, Instance, Operation } from '../../src/shared/schemas.js';
import { isAppError } from '../../src/shared/errors.js';
import { setSharedDaemon, sharedDaemon, startDaemon, TEST_ENV, uniquePrefix, ROOT } from '../helpers/daemon.js';
import { alive, collectEvents, daemonPid, deleteAllWithPrefix, hostIfName, leftovers, pollUntil, settings } from '../helpers/e2e.js';

const P = uniquePrefix('cp');
const VM = `${P}vm`;
/** The witness: no operation ever touches it, so its init must survive every kill. */
const WITNESS = `${P}c0`;
const CONTAINERS = [WITNESS, `${P}c1`, `${P}c2`, `${P}c3`];
/** Where each trial's kill -9 lands, in ms after the operations were sent: early (requests still arriving) to late (most done). */
const KILL_POINTS_MS = [60, 140, 230, 330, 450, 600];
/** Operations sent at once per trial (two of them on the VM). */
const OPS_PER_TRIAL = 20;

let client: HangarClient;
/** Set just before a kill: a failure seen after it may be the cut connection, not the daemon's answer. */
let killing = false;

/** A small deterministic generator: the same seed gives the same mix of operations in every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Sent {
  kind: string;
  target: string;
  /** The instance a launch or copy makes. */
  makes?: string;
  op?: Operation;
  /** Refused at once (no operation made): a conflict with the state, which is fine. */
  refused?: string;
  /** The outcome the client saw before the kill. */
  outcome?: 'success' | 'failure';
}

/** Restarts the test daemon after a kill and points the client at it. */
async function restart(): Promise<void> {
  const d = await startDaemon(TEST_ENV);
  setSharedDaemon(d);
  client = d.client;
  killing = false;
}

/** Kills hangard with SIGKILL and waits until it is gone. */
async function killDaemon(): Promise<void> {
  const pid = await daemonPid();
  killing = true;
  client.close();
  process.kill(pid, 'SIGKILL');
  expect(await pollUntil(() => !alive(pid), 100, 50), 'hangard gone after SIGKILL').toBe(true);
}

/** The drift events the running daemon found at its start (replayed from its history). */
async function replayedDrift(): Promise<HangarEvent[]> {
  const sub = await collectEvents({ replay: true, types: ['instance-drift'] });
  await new Promise((r) => setTimeout(r, 300));
  sub.close();
  return sub.events.filter((e) => (e.instance ?? '').startsWith(P) || e.instance === undefined);
}

const ours = (list: Instance[]) => list.filter((i) => i.name.startsWith(P));
const dirNames = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((n) => !n.startsWith('.')) : []);

/** Names of the processes whose whole command line is argv. */
function processesOf(argv: string[]): number[] {
  const want = `${argv.join('\0')}\0`;
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try { return readFileSync(`/proc/${p}/cmdline`, 'utf8') === want; } catch { return false; }
  }).map(Number);
}

/** The tags in a VM disk's qcow2 snapshot table. */
function qcow2Tags(name: string): string[] {
  const r = spawnSync('qemu-img', ['info', '--output=json', '-U', join(settings.poolDir, 'instances', name, 'root.qcow2')], { encoding: 'utf8' });
  return ((JSON.parse(r.stdout) as { snapshots?: { name: string }[] }).snapshots ?? []).map((s) => s.name).sort();
}

/** Every way the state after a restart can be wrong, as lines (empty: all invariants hold). */
async function violations(sent: Sent[], frozenAsked: Set<string>, before: Map<string, number | null>, touched: Set<string>): Promise<string[]> {
  const out: string[] = [];
  const list = ours(await client.listInstances());
  const names = new Set(list.map((i) => i.name));
  // Every operation that was acknowledged still answers, with an outcome.
  for (const s of sent.filter((x) => x.op)) {
    let op: Operation | undefined;
    try { op = await client.getOperation(s.op!.id); } catch (e) { out.push(`operation ${s.op!.id} (${s.kind} ${s.target}) does not answer after the restart: ${String(e)}`); continue; }
    if (op.status === 'running' || op.status === 'pending') out.push(`operation ${op.id} (${s.kind} ${s.target}) still ${op.status} after the restart`);
    if (s.outcome && op.status !== s.outcome) out.push(`operation ${op.id} (${s.kind} ${s.target}) answered ${s.outcome} before the kill, ${op.status} after`);
  }
  // Nothing acknowledged is lost; what an interrupted launch or copy made is complete or entirely gone.
  for (const s of sent.filter((x) => x.makes)) {
    if (s.outcome === 'success' && !names.has(s.makes!)) out.push(`${s.kind} of ${s.makes} succeeded but the instance is gone`);
    if (!names.has(s.makes!)) for (const l of leftovers(s.makes!)) out.push(`${s.makes} is gone but left ${l}`);
  }
  for (const s of sent.filter((x) => x.kind === 'delete' && x.outcome === 'success')) if (names.has(s.target)) out.push(`delete of ${s.target} succeeded but it is listed`);
  for (const i of list) {
    if (i.state === 'error') out.push(`${i.name} is in error: ${i.error?.reason}`);
    if (i.state === 'frozen' && !frozenAsked.has(i.name)) out.push(`${i.name} is frozen, and nobody asked for a freeze`);
    for (const p of [join(settings.poolDir, 'instances', i.name), join(settings.dir, 'instances', i.name), ...(i.type === 'container' ? [join(settings.lxcPath, i.name, 'config')] : [])]) {
      if (!existsSync(p)) out.push(`${i.name} is listed but has no ${p}`);
    }
    // Snapshot rows and what really holds them are in step.
    const rows = (await client.listSnapshots(i.name)).map((s) => s.name).sort();
    const real = i.type === 'vm' ? qcow2Tags(i.name) : dirNames(join(settings.poolDir, 'snapshots', i.name)).sort();
    if (JSON.stringify(rows) !== JSON.stringify(real)) out.push(`${i.name}: snapshots listed ${JSON.stringify(rows)}, held ${JSON.stringify(real)}`);
    // A running container's hostname is its own (never its source's or its image's).
    if (i.type === 'container' && i.state === 'running') {
      let host = '';
      const stdout = new Writable({ write(c: Buffer, _e, cb) { host += c.toString('utf8'); cb(); } });
      const code = await client.exec(i.name, { command: ['hostname'] }, { stdin: '', stdout, stderr: new PassThrough() });
      if (code !== 0 || host.trim() !== i.name) out.push(`${i.name}: hostname ${JSON.stringify(host.trim())} (exit ${code})`);
    }
    if (!touched.has(i.name) && before.has(i.name) && i.pid !== before.get(i.name)) out.push(`${i.name}: no operation touched it, yet its pid went from ${before.get(i.name)} to ${i.pid}`);
  }
  // Nothing of Hangar's naming outlives its instance.
  const running = new Set(list.filter((i) => i.state !== 'stopped').map((i) => hostIfName(i.name)));
  const links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout.split('\n').map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '');
  for (const l of links.filter((x) => new RegExp(`^${settings.prefix}[0-9a-f]{8}$`).test(x))) if (!running.has(l)) out.push(`interface ${l} belongs to no running instance`);
  for (const dir of [settings.lxcPath, join(settings.dir, 'instances'), join(settings.poolDir, 'instances')]) {
    for (const n of dirNames(dir).filter((x) => x.startsWith(P))) if (!names.has(n)) out.push(`${join(dir, n)} belongs to no instance`);
  }
  const hosts = existsSync(join(settings.dnsmasqDir, 'hosts')) ? readFileSync(join(settings.dnsmasqDir, 'hosts'), 'utf8') : '';
  for (const line of hosts.split('\n')) {
    const n = line.split(/[\s,]+/).find((w) => w.startsWith(P));
    if (n && !names.has(n)) out.push(`lease ${JSON.stringify(line)} belongs to no instance`);
  }
  for (const ctrl of readdirSync('/sys/fs/cgroup')) {
    for (const parent of [settings.prefix, `${settings.prefix}.monitor`, `${settings.prefix}.vm`]) {
      for (const n of dirNames(join('/sys/fs/cgroup', ctrl, parent)).filter((x) => x.startsWith(P))) {
        const inst = list.find((i) => i.name === n);
        if (!inst || inst.state === 'stopped') out.push(`cgroup ${join('/sys/fs/cgroup', ctrl, parent, n)} of a ${inst ? 'stopped' : 'missing'} instance`);
      }
    }
  }
  return out;
}

/** Sends one operation; refusals at once (a state conflict) are recorded, not thrown. */
async function send(s: Sent, start: () => Promise<Operation>): Promise<void> {
  try {
    s.op = await start();
  } catch (e) {
    s.refused = isAppError(e) ? e.code : String(e);
    // Refused by a daemon that is going down is no refusal.
    if (killing) delete s.refused;
    return;
  }
  try {
    await client.waitOperation(s.op, { timeoutS: 120 });
    s.outcome = 'success';
  } catch {
    // The daemon's death ends the wait too: only an answer from the daemon is an outcome (a success always is).
    if (!killing) s.outcome = 'failure';
  }
}

interface TrialFigures {
  killMs: number;
  sent: number;
  acknowledged: number;
  refused: number;
  doneBeforeKill: number;
  interrupted: number;
  repairs: Record<string, number>;
  violations: string[];
}

describe('crash probe: kill -9 in the middle of concurrent operations', () => {
  const figures: TrialFigures[] = [];

  beforeAll(async () => {
    client = (await sharedDaemon()).client;
    for (const c of CONTAINERS) await client.launch({ name: c, image: 'busybox' });
    await client.launch({ name: VM, image: 'busybox', type: 'vm' });
  }, 600_000);

  afterAll(async () => {
    try { await daemonPid(); } catch { await restart(); }
    for (const i of ours(await client.listInstances())) if (i.state === 'frozen') await client.runOperation(() => client.changeState(i.name, { action: 'unfreeze' })).catch(() => undefined);
    deleteAllWithPrefix(P);
    mkdirSync(join(ROOT, '.cache'), { recursive: true });
    writeFileSync(join(ROOT, '.cache', 'crash-probe.json'), `${JSON.stringify({ trials: figures.length, opsPerTrial: OPS_PER_TRIAL, killPointsMs: KILL_POINTS_MS, figures }, null, 2)}\n`);
  }, 300_000);

  KILL_POINTS_MS.forEach((killMs, trial) => {
    it(`trial ${trial + 1}: kill -9 ${killMs} ms into ${OPS_PER_TRIAL} concurrent operations; after the restart every invariant holds, and a second restart changes nothing`, async () => {
      const rand = rng(0x5eed + trial);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const list = ours(await client.listInstances());
      const before = new Map(list.map((i) => [i.name, i.pid]));
      const cts = list.filter((i) => i.type === 'container' && i.name !== WITNESS).map((i) => i.name);
      const snaps = new Map<string, string[]>();
      for (const i of list) snaps.set(i.name, (await client.listSnapshots(i.name)).map((s) => s.name));
      const sent: Sent[] = [];
      const frozenAsked = new Set<string>();
      const touched = new Set<string>();
      const runs: Promise<void>[] = [];
      const marker = String(500_000 + trial * 1000 + (process.pid % 1000));
      // An exec whose client dies with the daemon: the next daemon must end its command.
      const execStdin = new PassThrough();
      const exec = client.exec(WITNESS, { command: ['sleep', marker] }, { stdin: execStdin, stdout: new PassThrough(), stderr: new PassThrough() }).catch(() => -1);
      expect(await pollUntil(() => processesOf(['sleep', marker]).length === 1, 50, 100), 'the exec runs').toBe(true);
      const kinds = ['launch', 'copy', 'start', 'stop', 'force-stop', 'restart', 'freeze', 'unfreeze', 'snapshot-create', 'snapshot-restore', 'snapshot-delete', 'delete'] as const;
      for (let n = 0; n < OPS_PER_TRIAL; n++) {
        const onVm = n >= OPS_PER_TRIAL - 2;
        const kind = onVm ? pick(['snapshot-create', 'force-stop', 'start', 'freeze', 'unfreeze'] as const) : pick(kinds);
        const target = onVm ? VM : pick(cts);
        const s: Sent = { kind, target };
        sent.push(s);
        touched.add(target);
        const snapName = `t${trial}s${n}`;
        // A name the instance may not have (NOT_FOUND at once) when it has none.
        const oldSnap = () => pick(snaps.get(target)?.length ? snaps.get(target)! : ['none']);
        const start: Record<(typeof kinds)[number], () => Promise<Operation>> = {
          launch: () => client.createInstance({ name: (s.makes = `${P}n${trial}x${n}`), image: 'busybox', start: true }),
          copy: () => client.copyInstance(target, { name: (s.makes = `${P}k${trial}x${n}`) }),
          start: () => client.changeState(target, { action: 'start' }),
          stop: () => client.changeState(target, { action: 'stop', timeout: 2 }),
          'force-stop': () => client.changeState(target, { action: 'stop', force: true }),
          restart: () => client.changeState(target, { action: 'restart', force: true }),
          freeze: () => { frozenAsked.add(target); return client.changeState(target, { action: 'freeze' }); },
          unfreeze: () => client.changeState(target, { action: 'unfreeze' }),
          'snapshot-create': () => client.createSnapshot(target, snapName),
          'snapshot-restore': () => client.restoreSnapshot(target, oldSnap()),
          'snapshot-delete': () => client.deleteSnapshot(target, oldSnap()),
          delete: () => client.deleteInstance(target, { force: true }),
        };
        if (s.kind === 'launch' || s.kind === 'copy') touched.add(`${P}${s.kind === 'launch' ? 'n' : 'k'}${trial}x${n}`);
        runs.push(send(s, start[kind]));
      }
      await new Promise((r) => setTimeout(r, killMs));
      await killDaemon();
      await Promise.allSettled(runs);
      await exec;
      // Outcomes seen after the kill were not the daemon's answers.
      const doneBeforeKill = sent.filter((s) => s.outcome).length;
      const sleeper = processesOf(['sleep', marker]);

      await restart();
      const drift = await replayedDrift();
      const found = await violations(sent, frozenAsked, before, touched);
      if (!(await pollUntil(() => processesOf(['sleep', marker]).length === 0, 50, 100))) found.push(`the exec's command (pid ${sleeper.join(', ')}) outlived its client and both daemons`);
      let interrupted = 0;
      for (const s of sent.filter((x) => x.op)) {
        const op = await client.getOperation(s.op!.id).catch(() => undefined);
        if (op?.error?.code === 'INTERRUPTED') interrupted++;
      }
      // A second restart, with nothing in flight, finds nothing more to repair.
      await killDaemon();
      await restart();
      const again = await replayedDrift();
      for (const e of again) found.push(`second restart: ${e.message}`);
      // What explains a finding: the operations sent on that instance and what the restart repaired there.
      const context = found.length === 0 ? [] : [
        ...sent.map((x) => `sent ${x.kind} ${x.target}${x.makes ? ` -> ${x.makes}` : ''}: ${x.outcome ?? x.refused ?? 'cut off'}${x.op ? ` (${x.op.id})` : ''}`),
        ...drift.map((e) => `drift ${e.instance ?? ''}: ${e.message}`),
      ];
      const repairs: Record<string, number> = {};
      for (const e of drift) {
        const k = String(e.data?.repair ?? (e.data?.actual === 'deleted' ? 'deleted' : 'state'));
        repairs[k] = (repairs[k] ?? 0) + 1;
      }
      figures.push({
        killMs, sent: sent.length, acknowledged: sent.filter((s) => s.op).length, refused: sent.filter((s) => s.refused).length,
        doneBeforeKill, interrupted, repairs, violations: found,
      });
      // Each trial starts from a thawed state, so that a frozen instance always points at this trial's freeze.
      for (const i of ours(await client.listInstances())) if (i.state === 'frozen') await client.runOperation(() => client.changeState(i.name, { action: 'unfreeze' }));
      expect(found, context.join('\n')).toEqual([]);
      expect(await client.getInstance(WITNESS)).toMatchObject({ state: 'running', pid: before.get(WITNESS) });
    }, 300_000);
  });
});
