// The everyday commands' own parser: which forms it takes, and for each that it does exactly what the command tree does.
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeDaemon, type FakeDaemon } from '../../test/helpers/fake-daemon.js';
import { planFast, runFast } from './fast.js';
import { run, type CliIo } from './run.js';
import { sink } from '../../test/helpers/sink.js';

let fake: FakeDaemon;
beforeAll(async () => {
  fake = await startFakeDaemon();
});
afterAll(async () => {
  await fake.close();
});

/** Runs argv through one entry; answers code, output and the requests the daemon saw. */
async function through(entry: 'fast' | 'tree', argv: string[], input: string): Promise<{ code: number | undefined; out: string; err: string; requests: unknown[] }> {
  const stdout = sink();
  const stderr = sink();
  const io: CliIo = { stdin: Readable.from(input ? [Buffer.from(input)] : []), stdout, stderr, env: { HANGAR_SOCKET: fake.socketPath }, cwd: '/tmp' };
  const before = fake.requests.length;
  const code = entry === 'fast' ? await runFast(argv, io) : await run(argv, io);
  // Operation ids count up across runs: compared as one name.
  const requests = JSON.parse(JSON.stringify(fake.requests.slice(before)).replace(/op-\d+/g, 'op-N')) as unknown[];
  return { code, out: stdout.text(), err: stderr.text(), requests };
}

describe('planFast', () => {
  it('takes the everyday commands in the forms commander parses the same way', () => {
    for (const argv of [
      ['list'], ['list', '--format', 'json'], ['list', '--format=csv', '--host', 'dom0'], ['info', 'web1'], ['info', '--format', 'yaml', 'web1'],
      ['start', 'web1'], ['stop', 'web1', '--force'], ['stop', '--timeout=30', 'web1'], ['restart', 'web1', '--timeout', '5'], ['freeze', 'web1'], ['unfreeze', 'web1'],
      ['delete', 'web1'], ['delete', '--force', 'web1'],
      ['exec', 'web1', '--', 'true'], ['exec', 'web1', 'ls', '/'], ['exec', '-t', 'web1', '--', 'sh', '-c', 'x'], ['exec', 'web1', '--env', 'A=1', '--env', 'B=2', '--cwd', '/srv', '--', 'env', '-x'],
    ]) expect(planFast(argv), argv.join(' ')).not.toBeNull();
  });

  it('leaves help, unknown and bundled options, missing or extra arguments and refused formats to the command tree', () => {
    for (const argv of [
      [], ['--help'], ['help', 'list'], ['list', '--help'], ['list', '-h'], ['list', 'extra'], ['list', '--format'], ['list', '--format', 'xml'], ['list', '--format', '--host'],
      ['info'], ['info', 'a', 'b'], ['start'], ['start', 'web1', '--force'], ['stop', 'web1', '--force=yes'], ['stop', 'web1', '--timeout', '-5'], ['delete', 'web1', '--stateful'],
      ['exec', 'web1'], ['exec', 'web1', 'ls', '-la'], ['exec', '-tx', 'web1', '--', 'sh'], ['exec', 'web1', '--user', 'x', '--', 'id'], ['launch', 'busybox', 'c1'], ['image', 'list'], ['list', '--'],
    ]) expect(planFast(argv), argv.join(' ')).toBeNull();
  });
});

describe('runFast against the command tree', () => {
  it('prints, exits and asks the daemon exactly as run() does, errors included', async () => {
    const cases: Array<[string[], string?]> = [
      [['list']], [['list', '--format', 'json']], [['list', '--format=csv']], [['list', '--host', 'dom0']], [['list', '--host', 'nowhere']], [['list', '--host', 'Bad Host']],
      [['info', 'web1']], [['info', 'web1', '--format', 'yaml']], [['info', 'missing']], [['info', 'Not-A-Name!']],
      [['start', 'web1']], [['stop', 'web1', '--force']], [['stop', 'web1', '--timeout', '0']], [['stop', 'web1', '--stateful', '--force']], [['restart', 'web1', '--stateful']], [['freeze', 'nope']],
      [['delete', 'missing']],
      [['exec', 'web1', '--', 'cat'], 'ping'], [['exec', 'web1', '--env', 'A=1', '--cwd', '/srv', '--', 'env', '-x']], [['exec', 'web1', '--env', 'novalue', '--', 'env']],
      [['exec', 'web1', '--disconnect-signal', 'SIGSTOP', '--', 'env']], [['exec', 'missing', '--', 'true']], [['exec', 'web1', '--', 'explode']],
    ];
    for (const [argv, input] of cases) {
      const fast = await through('fast', argv, input ?? '');
      const tree = await through('tree', argv, input ?? '');
      expect(fast, argv.join(' ')).toEqual(tree);
    }
  });

  it('answers undefined, touching nothing, for what it does not take', async () => {
    const r = await through('fast', ['list', '--format', 'xml'], '');
    expect(r).toEqual({ code: undefined, out: '', err: '', requests: [] });
  });
});
