// A fake in-memory driver, a third backend for API tests and the conformance suite; it never proves that a real backend works.
import { PassThrough } from 'node:stream';
import type { InstanceConfig } from '../../shared/config.js';
import type { HostProcess } from '../../host/host.js';
import type { Driver, ExecSpec, HostDriver, InstanceHandle, InstanceRecord, ObservedState } from '../driver.js';

interface FakeState { state: ObservedState['state']; pid: number | null; startTime: number | null; files: Set<string> }

/** Shared state of all fake instances, inspectable by tests. */
export const fakeWorld = new Map<string, FakeState>();

let nextPid = 1000;

function fakeProcess(output: string, code: number, stdinEcho: boolean): HostProcess {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  let resolveExit!: (v: { code: number | null; signal: string | null }) => void;
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => { resolveExit = r; });
  const chunks: Buffer[] = [];
  stdin.on('data', (d: Buffer) => chunks.push(d));
  stdin.on('end', () => {
    stdout.end(stdinEcho ? Buffer.concat(chunks) : output);
    stderr.end();
    resolveExit({ code, signal: null });
  });
  return { pid: Promise.resolve(nextPid++), stdin, stdout, stderr, wait: () => exited, kill: () => { stdin.end(); } };
}

function loadFake(record: InstanceRecord): InstanceHandle {
  const get = (): FakeState => {
    let s = fakeWorld.get(record.name);
    if (!s) { s = { state: 'stopped', pid: null, startTime: null, files: new Set() }; fakeWorld.set(record.name, s); }
    return s;
  };
  return {
    create: async () => { get(); },
    start: async () => { const s = get(); s.state = 'running'; s.pid = nextPid++; s.startTime = Date.now(); },
    stop: async () => { const s = get(); s.state = 'stopped'; s.pid = null; s.startTime = null; },
    freeze: async () => { get().state = 'frozen'; },
    unfreeze: async () => { get().state = 'running'; },
    delete: async () => { fakeWorld.delete(record.name); },
    state: async () => { const s = fakeWorld.get(record.name); return s ? { state: s.state, pid: s.pid, startTime: s.startTime } : { state: 'stopped', pid: null, startTime: null }; },
    applyConfig: async (next: InstanceConfig, prev: InstanceConfig) => {
      const changed = [...new Set([...Object.keys(next), ...Object.keys(prev)])].filter((k) => next[k] !== prev[k]);
      return { live: changed.filter((k) => k.startsWith('limits.')), pending: changed.filter((k) => !k.startsWith('limits.')) };
    },
    exec: (spec: ExecSpec) => {
      const [cmd, ...args] = spec.command;
      if (cmd === 'cat') return fakeProcess('', 0, true);
      if (cmd === 'exit') return fakeProcess('', Number(args[0] ?? 0), false);
      return fakeProcess(`${args.join(' ')}\n`, 0, false);
    },
    attachConsole: () => fakeProcess('', 0, true),
    consoleLogPath: () => `${record.instanceDir}/console.log`,
    usage: async () => ({ cpuTimeNs: 0, memoryBytes: 0, memoryPeakBytes: 0, processes: 1 }),
  };
}

const FAKE_TECHNOLOGY = { kernel: 'shared', memory: 'burstable', isolation: 'none (fake driver for tests)' } as const;

/** The fake driver: `echo` echoes its arguments, `cat` echoes stdin, `exit N` exits with N; nothing runs anywhere. */
export const fakeDriver: Driver = {
  name: 'fake',
  type: 'container',
  features: { freeze: true, snapshots: false, statefulStop: false, console: false, execTty: false, liveCopy: true, graphicalConsole: false, monitor: false },
  technology: FAKE_TECHNOLOGY,
  keys: ['limits.memory', 'limits.memory.guarantee', 'limits.cpu', 'limits.cpu.weight', 'limits.cpu.cap', 'limits.processes', 'limits.disk'],
  storage: 'tree',
  async open() {
    const opened: HostDriver = {
      driver: fakeDriver,
      probe: { available: true, version: '0', reason: null },
      details: () => ({ instances: String(fakeWorld.size) }),
      technology: () => FAKE_TECHNOLOGY,
      validate: (config: InstanceConfig) => (config['limits.processes'] === '1' ? ['limits.processes=1 leaves the fake init no room'] : []),
      idmap: () => 'none',
      load: loadFake,
    };
    return opened;
  },
};
