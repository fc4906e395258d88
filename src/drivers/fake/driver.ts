// A fake in-memory driver: a third backend for API tests and the conformance suite, and the model a new backend starts from; it never proves that a real backend works.
import { posix } from 'node:path';
import { PassThrough } from 'node:stream';
import { resourcesOf, type InstanceConfig } from '../../shared/config.js';
import { AppError } from '../../shared/errors.js';
import type { Beancounter, Usage } from '../../shared/schemas.js';
import type { HostProcess } from '../../host/host.js';
import type { HostFacts } from '../../host/facts.js';
import { hostFitProblems } from '../host-fit.js';
import type {
  ConfigApplyResult, Driver, DriverEnv, DriverProbe, ExecSpec, HostDriver, InstanceHandle, InstanceRecord, ObservedState, StopOptions,
} from '../driver.js';
import { fakeDirExists, runFake, type FakeResult, type FakeSystem } from './userland.js';

/** Memory the fake init holds: reported as usage, and taken from limits.memory before any command gets any. */
export const FAKE_INIT_MEMORY = 4 * 1024 ** 2;

/** The least limits.memory a fake instance takes: its init, and as much again for commands. */
export const FAKE_MIN_MEMORY = 2 * FAKE_INIT_MEMORY;

/** The fake's version, as its probe reports it. */
const FAKE_VERSION = '0';

/** Config keys a running fake instance only takes at its next start (as a VM's vCPU count); it applies every other key live. */
const RESTART_KEYS: ReadonlySet<string> = new Set(['limits.cpu']);

/** CPU time a fake command costs (usage counts it). */
const COMMAND_CPU_NS = 1_000_000;

const PROMPT = '# ';

/** One fake instance: its state machine, the limits in force while it runs (its "cgroup"), its files and counters. */
export interface FakeInstance {
  state: 'stopped' | 'running' | 'frozen';
  pid: number | null;
  startTime: number | null;
  /** The limits.* keys in force: set at start, changed live by applyConfig; what the fake enforces. */
  limits: InstanceConfig;
  /** The root file system (files under /run live only while it runs). */
  files: Map<string, Buffer>;
  cpuTimeNs: number;
  memoryPeakBytes: number;
  /** Commands the fake OOM killer ended (they asked for more than limits.memory leaves them). */
  oomKills: number;
  /** Called on every state change: commands wait out a freeze, consoles end with a stop. */
  listeners: Set<() => void>;
}

/** Every fake instance that was created and not deleted, by name; tests inspect it. */
export const fakeWorld = new Map<string, FakeInstance>();

let nextPid = 1000;

/** A process whose output a function makes once its stdin has ended (the fake runs nothing while input still comes). */
function fakeProcess(run: (stdin: Buffer) => Promise<FakeResult>): HostProcess {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const chunks: Buffer[] = [];
  let finish!: (r: { code: number | null; signal: string | null }) => void;
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => { finish = r; });
  let ended = false;
  const end = (out: Buffer, err: Buffer, r: { code: number | null; signal: string | null }) => {
    if (ended) return;
    ended = true;
    stdout.end(out);
    stderr.end(err);
    finish(r);
  };
  stdin.on('data', (d: Buffer) => chunks.push(d));
  stdin.on('end', () => {
    // A process killed before its input ended never runs.
    if (ended) return;
    run(Buffer.concat(chunks)).then(
      (r) => end(r.stdout, r.stderr, { code: r.code, signal: null }),
      (e: unknown) => end(Buffer.alloc(0), Buffer.from(`fake: ${e instanceof Error ? e.message : String(e)}\n`), { code: 126, signal: null }),
    );
  });
  return {
    pid: Promise.resolve(nextPid++), stdin, stdout, stderr, wait: () => exited,
    kill: (signal = 'SIGTERM') => end(Buffer.alloc(0), Buffer.alloc(0), { code: null, signal }),
  };
}

/** What the fake knows on one host: the daemon's environment there and what its probe found. */
interface FakeHost {
  env: DriverEnv;
  probe: DriverProbe;
}

class FakeHandle implements InstanceHandle {
  private record: InstanceRecord;

  constructor(record: InstanceRecord, private readonly fake: FakeHost) {
    this.record = record;
  }

  private get name(): string { return this.record.name; }

  consoleLogPath(): string {
    return posix.join(this.record.instanceDir, 'console.log');
  }

  private instance(): FakeInstance | undefined {
    return fakeWorld.get(this.name);
  }

  private setState(inst: FakeInstance, state: FakeInstance['state']): void {
    inst.state = state;
    for (const l of [...inst.listeners]) l();
  }

  /** Resolves with the instance once it runs (waiting out a freeze), or undefined once it is stopped or gone. */
  private runnable(): Promise<FakeInstance | undefined> {
    return new Promise((resolve) => {
      const check = () => {
        const inst = this.instance();
        if (inst?.state === 'frozen') return false;
        inst?.listeners.delete(check);
        resolve(inst?.state === 'running' ? inst : undefined);
        return true;
      };
      if (!check()) this.instance()!.listeners.add(check);
    });
  }

  /** Appends to the persistent console log on the host (as LXC's and QEMU's console logs). */
  private log(text: string): Promise<void> {
    return this.fake.env.host.fs.appendFile(this.consoleLogPath(), text);
  }

  async create(): Promise<void> {
    await this.fake.env.host.fs.mkdir(this.record.instanceDir, { recursive: true });
    if (this.instance()) return;
    fakeWorld.set(this.name, {
      state: 'stopped', pid: null, startTime: null, limits: {}, files: new Map([['/etc/hostname', Buffer.from(`${this.name}\n`)]]),
      cpuTimeNs: 0, memoryPeakBytes: 0, oomKills: 0, listeners: new Set(),
    });
  }

  async start(): Promise<void> {
    const inst = this.instance();
    if (!this.fake.probe.available) throw new AppError('UNSUPPORTED', `Failed to start instance "${this.name}": the fake backend is not available on this host (${this.fake.probe.reason})`);
    if (!inst) throw new AppError('NOT_FOUND', `Failed to start instance "${this.name}": it has not been created`);
    if (inst.state === 'running') return;
    if (inst.state === 'frozen') throw new AppError('INVALID_STATE', `Failed to start instance "${this.name}": it is frozen`);
    inst.pid = nextPid++;
    inst.startTime = Date.now();
    inst.limits = Object.fromEntries(Object.entries(this.record.config).filter(([k]) => k.startsWith('limits.')));
    inst.memoryPeakBytes = FAKE_INIT_MEMORY;
    this.setState(inst, 'running');
    await this.log(`fake init: ${this.name} started\r\n`);
  }

  async stop(opts: StopOptions): Promise<void> {
    if (opts.stateful) throw new AppError('UNSUPPORTED', `Cannot save the state of instance "${this.name}": the fake backend has no stateful stop`);
    const inst = this.instance();
    if (!inst || inst.state === 'stopped') return;
    // /run is a tmpfs: it goes with the instance's RAM.
    for (const f of [...inst.files.keys()]) if (f.startsWith('/run/')) inst.files.delete(f);
    inst.pid = null;
    inst.startTime = null;
    inst.limits = {};
    this.setState(inst, 'stopped');
    await this.log(`fake init: ${this.name} halted\r\n`);
  }

  async freeze(): Promise<void> {
    const inst = this.instance();
    if (inst?.state !== 'running') throw new AppError('INVALID_STATE', `Failed to freeze instance "${this.name}": it is ${inst?.state ?? 'not created'}`);
    this.setState(inst, 'frozen');
  }

  async unfreeze(): Promise<void> {
    const inst = this.instance();
    if (inst?.state === 'running') return;
    if (inst?.state !== 'frozen') throw new AppError('INVALID_STATE', `Failed to unfreeze instance "${this.name}": it is ${inst?.state ?? 'not created'}`);
    this.setState(inst, 'running');
  }

  async delete(): Promise<void> {
    const inst = this.instance();
    if (inst && inst.state !== 'stopped') throw new AppError('INVALID_STATE', `Failed to delete instance "${this.name}": it is ${inst.state}`);
    fakeWorld.delete(this.name);
    await this.fake.env.host.fs.rm(this.consoleLogPath(), { force: true });
  }

  async state(): Promise<ObservedState> {
    const inst = this.instance();
    return inst ? { state: inst.state, pid: inst.pid, startTime: inst.startTime } : { state: 'stopped', pid: null, startTime: null };
  }

  /** A running instance takes every key at once except RESTART_KEYS; a stopped one takes them all at its next start. */
  async applyConfig(next: InstanceConfig, prev: InstanceConfig): Promise<ConfigApplyResult> {
    const keys = [...new Set([...Object.keys(next), ...Object.keys(prev)])].filter((k) => next[k] !== prev[k]).sort();
    this.record = { ...this.record, config: next };
    const inst = this.instance();
    if (inst?.state !== 'running' && inst?.state !== 'frozen') return { live: keys, pending: [] };
    const live = keys.filter((k) => !RESTART_KEYS.has(k));
    for (const k of live.filter((x) => x.startsWith('limits.'))) {
      if (next[k] === undefined) delete inst.limits[k];
      else inst.limits[k] = next[k]!;
    }
    return { live, pending: keys.filter((k) => RESTART_KEYS.has(k)) };
  }

  /**
   * The fake's monitor, shaped like QMP: query-status (run state, as QEMU names it), query-limits (what it enforces) and
   * query-oom (kills so far); other commands fail as QMP's CommandNotFound would.
   */
  async monitor(command: string): Promise<unknown> {
    const inst = this.instance();
    if (command === 'query-status') {
      const status = inst?.state === 'running' ? 'running' : inst?.state === 'frozen' ? 'paused' : 'shutdown';
      return { status, running: status === 'running' };
    }
    if (command === 'query-limits') return { ...(inst?.limits ?? {}) };
    if (command === 'query-oom') return { kills: inst?.oomKills ?? 0 };
    throw new Error(`The command ${command} has not been found`);
  }

  /** What a command sees of its instance: name, files, the CPUs and memory its limits leave. */
  private system(inst: FakeInstance): FakeSystem {
    const r = resourcesOf(inst.limits);
    const facts = this.fake.env.facts;
    return {
      hostname: this.name,
      files: inst.files,
      memoryAvailable: (r.memoryMax ?? facts.memoryBytes) - FAKE_INIT_MEMORY,
      cpus: r.cpuCount ?? facts.cpus,
      onOomKill: () => { inst.oomKills++; },
      onPeak: (bytes) => { inst.memoryPeakBytes = Math.max(inst.memoryPeakBytes, FAKE_INIT_MEMORY + bytes); },
    };
  }

  /** Runs a command line in the instance (see userland.ts for what the fake can run); waits out a freeze, as a frozen cgroup would. */
  exec(spec: ExecSpec): HostProcess {
    if (spec.tty) throw new AppError('UNSUPPORTED', `Instance "${this.name}" (fake) has no terminal for exec (drop -t)`);
    return fakeProcess(async (stdin) => {
      const inst = await this.runnable();
      if (!inst) return { stdout: Buffer.alloc(0), stderr: Buffer.from(`fake: instance "${this.name}" is not running\n`), code: 1 };
      const sys = this.system(inst);
      const cwd = spec.cwd ?? '/';
      if (!fakeDirExists(sys, cwd)) return { stdout: Buffer.alloc(0), stderr: Buffer.from(`fake: cannot change to ${cwd}: No such directory\n`), code: 126 };
      inst.cpuTimeNs += COMMAND_CPU_NS;
      return runFake(sys, spec.command, { stdin, env: { PATH: '/usr/bin:/bin', HOME: '/root', ...spec.env }, cwd });
    });
  }

  /**
   * The console: a root shell on the instance's tty. It echoes what is typed, runs each line through the fake sh and
   * prints a prompt; everything it shows also goes to the console log. Killing it detaches; a stop ends it.
   */
  attachConsole(): HostProcess {
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const inst = this.instance();
    let finish!: (r: { code: number | null; signal: string | null }) => void;
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) => { finish = r; });
    let attached = true;
    const detach = (r: { code: number | null; signal: string | null }) => {
      if (!attached) return;
      attached = false;
      inst?.listeners.delete(onState);
      stdout.end();
      finish(r);
    };
    const onState = () => { if (inst?.state === 'stopped') detach({ code: 0, signal: null }); };
    if (inst?.state !== 'running' && inst?.state !== 'frozen') {
      const stderr = new PassThrough();
      stderr.end(`fake: instance "${this.name}" is not running\n`);
      stdout.end();
      return { pid: Promise.resolve(nextPid++), stdin: null, stdout, stderr, wait: async () => ({ code: 1, signal: null }), kill: () => undefined };
    }
    inst.listeners.add(onState);
    let logged = Promise.resolve();
    const show = (text: string) => {
      if (!attached) return;
      stdout.write(text);
      logged = logged.then(() => this.log(text)).catch(() => undefined);
    };
    let line = '';
    // Typed input is handled in order, and not at all while the instance is frozen.
    let typed = Promise.resolve();
    stdin.on('data', (d: Buffer) => {
      typed = typed.then(async () => {
        for (const c of d.toString('utf8')) {
          const running = await this.runnable();
          if (!running || !attached) return;
          if (c !== '\r' && c !== '\n') { line += c; show(c); continue; }
          show('\r\n');
          const cmd = line;
          line = '';
          if (cmd.trim() !== '') {
            running.cpuTimeNs += COMMAND_CPU_NS;
            const r = runFake(this.system(running), ['sh', '-c', cmd], { stdin: Buffer.alloc(0), env: { PATH: '/usr/bin:/bin', HOME: '/root' }, cwd: '/root' });
            show(Buffer.concat([r.stdout, r.stderr]).toString('utf8').replace(/\n/g, '\r\n'));
          }
          show(PROMPT);
        }
      });
    });
    stdin.on('end', () => detach({ code: 0, signal: null }));
    return {
      pid: Promise.resolve(nextPid++), stdin, stdout, stderr: null, wait: () => exited,
      kill: (signal = 'SIGTERM') => detach({ code: null, signal }),
    };
  }

  /** Beancounters as the fake counts them: its init's memory against limits.memory, one process against limits.processes. */
  async beancounters(): Promise<Beancounter[]> {
    const mem = resourcesOf(this.record.config).memoryMax;
    const procs = resourcesOf(this.record.config).processes ?? null;
    return [
      { resource: 'physpages', unit: 'pages', held: FAKE_INIT_MEMORY / 4096, maxheld: FAKE_INIT_MEMORY / 4096, barrier: 0, limit: mem === undefined ? null : Math.floor(mem / 4096), failcnt: 0 },
      { resource: 'numproc', unit: 'items', held: 1, maxheld: 1, barrier: procs, limit: procs, failcnt: 0 },
    ];
  }

  async usage(): Promise<Usage> {
    const inst = this.instance();
    if (inst?.state !== 'running' && inst?.state !== 'frozen') return {};
    return { cpuTimeNs: inst.cpuTimeNs, memoryBytes: FAKE_INIT_MEMORY, memoryPeakBytes: inst.memoryPeakBytes, processes: 1, rxBytes: 0, txBytes: 0 };
  }
}

/** Problems with a config for the fake on this host: the limits every backend checks, its least memory, and room for its init. */
function validateFake(config: InstanceConfig, facts: HostFacts): string[] {
  let r: ReturnType<typeof resourcesOf>;
  try {
    r = resourcesOf(config);
  } catch (e) {
    return [e instanceof Error ? e.message : String(e)];
  }
  const problems = hostFitProblems(config, r, facts, { name: 'fake', minMemoryBytes: FAKE_MIN_MEMORY, why: 'its init holds 4 MiB and commands need as much again' });
  if (r.processes === 1) problems.push('limits.processes=1 leaves the fake init no room');
  return problems;
}

const FAKE_TECHNOLOGY = { kernel: 'shared', memory: 'burstable', isolation: 'none (fake driver for tests)' } as const;

/**
 * The fake backend: instances live in this process (fakeWorld) and run a small userland (userland.ts) that enforces
 * limits.memory; HANGAR_FAKE_UNAVAILABLE=<reason> makes its probe fail, to show how an unavailable backend looks.
 */
export const fakeDriver: Driver = {
  name: 'fake',
  type: 'container',
  features: { freeze: true, snapshots: false, statefulStop: false, console: true, execTty: false, liveCopy: true, graphicalConsole: false, monitor: true },
  technology: FAKE_TECHNOLOGY,
  keys: ['limits.memory', 'limits.memory.guarantee', 'limits.cpu', 'limits.cpu.weight', 'limits.cpu.cap', 'limits.processes', 'limits.disk'],
  storage: 'tree',
  async open(env) {
    const off = env.settings.HANGAR_FAKE_UNAVAILABLE;
    const fake: FakeHost = {
      env,
      probe: off ? { available: false, version: null, reason: `switched off by HANGAR_FAKE_UNAVAILABLE: ${off}` } : { available: true, version: FAKE_VERSION, reason: null },
    };
    const opened: HostDriver = {
      driver: fakeDriver,
      probe: fake.probe,
      details: () => ({ instances: String(fakeWorld.size) }),
      technology: () => FAKE_TECHNOLOGY,
      validate: (config) => validateFake(config, env.facts),
      idmap: () => 'none',
      load: (record) => new FakeHandle(record, fake),
    };
    return opened;
  },
};
