// Unit tests of QgaClient against the scripted FakeQgaAgent on a unix socket in a temporary directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalHost } from '../../host/local.js';
import { AppError } from '../../shared/errors.js';
import { FakeQgaAgent, type FakeQgaExec, type FakeQgaRequest } from './fake-qga.js';
import { QgaClient, isQgaDisconnect, withCwd } from './qga.js';

const host = new LocalHost();
let dir: string;
let sockPath: string;
let agent: FakeQgaAgent;
let server: Server | undefined;
const clients: QgaClient[] = [];

function listen(a: FakeQgaAgent): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer((c) => a.accept(c));
    s.once('error', reject);
    s.listen(sockPath, () => resolve(s));
  });
}

async function connect(opts?: Parameters<typeof QgaClient.connect>[2]): Promise<QgaClient> {
  const c = await QgaClient.connect(host, sockPath, opts);
  clients.push(c);
  return c;
}

async function rejection(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error('expected a rejection');
}

function commands(): string[] {
  return agent.received.map((r) => r.execute);
}

async function useAgent(a: FakeQgaAgent): Promise<void> {
  agent.closeAll();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  agent = a;
  server = await listen(a);
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hangar-qga-'));
  sockPath = join(dir, 'qga.sock');
  agent = new FakeQgaAgent();
  server = await listen(agent);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  agent.closeAll();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

describe('QgaClient sync', () => {
  it('syncs first, skipping junk before the 0xFF sentinel, then runs the command', async () => {
    agent.syncPrefix = Buffer.concat([Buffer.from('{"return": {}}\n{"error": {"class": "GenericError", "desc": "stale"}}\n{"retu'), Buffer.from([0xc3])]);
    const c = await connect();
    await c.waitReady(2000);
    await c.ping();
    expect(commands()).toEqual(['guest-sync-delimited', 'guest-ping']);
    const id = agent.received[0]!.arguments?.id;
    expect(Number.isInteger(id)).toBe(true);
    // The client sends 0xFF before the sync to reset the agent's parser.
    expect(agent.sentinels).toBe(1);
    // Synced once per connection, not per command.
    await c.ping();
    expect(commands()).toEqual(['guest-sync-delimited', 'guest-ping', 'guest-ping']);
  });

  it('ignores a stale sync reply of an earlier client and a reply split across chunks', async () => {
    agent.handle('guest-sync-delimited', (req, a) => {
      const data = Buffer.concat([Buffer.from('garbage'), a.syncReply(123), Buffer.from('{"return": {"x": 1}}\n'), a.syncReply(req.arguments?.id)]);
      void a.sendSplit(data, 5, 1);
      return undefined;
    });
    agent.handle('guest-info', { return: { version: '7.2.0' } });
    const c = await connect();
    // No explicit waitReady: the first command syncs by itself.
    expect(await c.execute('guest-info')).toEqual({ version: '7.2.0' });
    expect(commands()).toEqual(['guest-sync-delimited', 'guest-info']);
  });

  it('waitReady retries while the agent is not running and skips the replies to its earlier tries', async () => {
    await useAgent(new FakeQgaAgent({ running: false }));
    const c = await connect();
    setTimeout(() => agent.start(), 350);
    const started = Date.now();
    await c.waitReady(5000, { tryMs: 100 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    await c.ping();
    const syncs = agent.received.filter((r) => r.execute === 'guest-sync-delimited').map((r) => r.arguments?.id);
    expect(syncs.length).toBeGreaterThanOrEqual(3);
    expect(new Set(syncs).size).toBe(syncs.length);
    expect(commands().at(-1)).toBe('guest-ping');
  });

  it('rejects with a clear TIMEOUT when the guest has no agent', async () => {
    await useAgent(new FakeQgaAgent({ running: false }));
    const c = await connect({ name: 'instance "web1"' });
    const started = Date.now();
    const err = await rejection(c.waitReady(400, { tryMs: 100 }));
    expect(Date.now() - started).toBeLessThan(1500);
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toMatch(/^The guest agent of instance "web1" did not answer within 400 ms/);
    expect(err.message).toContain('qemu-guest-agent');
    // A command on a connection that never synced fails the same way.
    const err2 = await rejection(c.ping({ timeoutMs: 150 }));
    expect(err2.code).toBe('TIMEOUT');
    expect(err2.message).toMatch(/^The guest agent of instance "web1" did not answer/);
  });

  it('names the socket when no name is given and fails to connect to a missing socket', async () => {
    await useAgent(new FakeQgaAgent({ running: false }));
    const c = await connect();
    expect((await rejection(c.waitReady(100))).message).toContain(`The guest agent of ${sockPath} did not answer`);
    const missing = await rejection(QgaClient.connect(host, join(dir, 'nope.sock')));
    expect(missing.code).toBe('BACKEND_FAILED');
    expect(missing.message).toContain('nope.sock');
  });
});

describe('QgaClient commands', () => {
  it('sends concurrent calls one at a time, in order', async () => {
    const got: FakeQgaRequest[] = [];
    for (const name of ['guest-a', 'guest-b', 'guest-c']) agent.handle(name, (req) => { got.push(req); return undefined; });
    const c = await connect();
    await c.waitReady(1000);
    const a = c.execute<string>('guest-a', { n: 1 });
    const b = c.execute<string>('guest-b');
    const cc = c.execute<string>('guest-c', { n: 3 });
    await agent.waitForCommand('guest-a');
    await new Promise((r) => setTimeout(r, 50));
    expect(got.map((r) => r.execute)).toEqual(['guest-a']);
    expect(got[0]!.arguments).toEqual({ n: 1 });
    const nextB = agent.waitForCommand('guest-b');
    agent.reply({ return: 'A' });
    await nextB;
    expect(got.map((r) => r.execute)).toEqual(['guest-a', 'guest-b']);
    expect(got[1]!.arguments).toBeUndefined();
    const nextC = agent.waitForCommand('guest-c');
    agent.reply({ return: 'B' });
    await nextC;
    agent.reply({ return: 'C' });
    expect(await Promise.all([a, b, cc])).toEqual(['A', 'B', 'C']);
  });

  it('turns error replies into BACKEND_FAILED and keeps working', async () => {
    agent.handle('guest-file-open', { error: { class: 'GenericError', desc: "failed to open file '/nope' (mode: 'r'): No such file or directory" } });
    const c = await connect();
    const err = await rejection(c.execute('guest-file-open', { path: '/nope' }));
    expect(err.code).toBe('BACKEND_FAILED');
    expect(err.message).toBe("Guest agent guest-file-open failed: failed to open file '/nope' (mode: 'r'): No such file or directory");
    expect(err.details).toMatchObject({ class: 'GenericError', command: 'guest-file-open' });
    expect(agent.received.at(-1)?.arguments).toEqual({ path: '/nope' });
    expect((await rejection(c.execute('guest-nope'))).details?.class).toBe('CommandNotFound');
    await c.ping();
  });

  it('times out a silent command, then resyncs so its late reply is not taken for the next one', async () => {
    agent.handle('guest-slow', () => 'hang');
    agent.handle('guest-get-host-name', { return: { 'host-name': 'web1' } });
    const c = await connect();
    const err = await rejection(c.execute('guest-slow', undefined, { timeoutMs: 100 }));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toContain('guest-slow');
    agent.reply({ return: { late: true } });
    expect(await c.execute('guest-get-host-name')).toEqual({ 'host-name': 'web1' });
    expect(commands()).toEqual(['guest-sync-delimited', 'guest-slow', 'guest-sync-delimited', 'guest-get-host-name']);
  });

  it('noReply commands resolve once sent and force a resync', async () => {
    agent.handle('guest-shutdown', () => 'hang');
    const c = await connect();
    await c.execute('guest-shutdown', { mode: 'powerdown' }, { noReply: true });
    await c.ping();
    expect(commands()).toEqual(['guest-sync-delimited', 'guest-shutdown', 'guest-sync-delimited', 'guest-ping']);
  });

  it('rejects the current and queued calls when the connection drops, and later ones at once', async () => {
    agent.handle('guest-slow', () => 'hang');
    const c = await connect();
    await c.waitReady(1000);
    const slow = c.execute('guest-slow');
    const queued = c.ping();
    await agent.waitForCommand('guest-slow');
    agent.drop();
    const err = await rejection(slow);
    expect(err.code).toBe('BACKEND_FAILED');
    expect(err.message).toContain('guest-slow');
    expect(err.message).toContain(sockPath);
    expect(isQgaDisconnect(err)).toBe(true);
    expect(isQgaDisconnect(await rejection(queued))).toBe(true);
    await c.closed;
    expect(c.connected).toBe(false);
    expect(isQgaDisconnect(await rejection(c.ping()))).toBe(true);
  });

  it('close() rejects pending calls as closed by the client', async () => {
    agent.handle('guest-slow', () => 'hang');
    const c = await connect();
    const slow = c.execute('guest-slow');
    await agent.waitForCommand('guest-slow');
    c.close();
    expect((await rejection(slow)).details).toMatchObject({ disconnected: true, closedByClient: true });
  });
});

describe('QgaClient.run', () => {
  it('passes argv, env and stdin, polls until exited and decodes stdout, stderr and the exit code', async () => {
    const execs: FakeQgaExec[] = [];
    agent.handleExec((e) => {
      execs.push(e);
      return {
        stdout: Buffer.concat([Buffer.from('got: '), e.input ?? Buffer.alloc(0), Buffer.from([0x00, 0xff, 0xfe])]),
        stderr: 'warning: ünïcode\n', exitcode: 3, pollsUntilExit: 3,
      };
    });
    const c = await connect();
    const r = await c.run(['/usr/bin/tr', 'a-z', 'A-Z'], { input: Buffer.from('hello\n'), env: { A: '1', PATH: '/usr/bin:/bin' }, pollMs: 20 });
    expect(execs).toEqual([{
      path: '/usr/bin/tr', arg: ['a-z', 'A-Z'], env: ['A=1', 'PATH=/usr/bin:/bin'], input: Buffer.from('hello\n'), captureOutput: true,
    }]);
    expect(r.code).toBe(3);
    expect(r.signal).toBeNull();
    expect(r.stdout).toEqual(Buffer.concat([Buffer.from('got: hello\n'), Buffer.from([0x00, 0xff, 0xfe])]));
    expect(r.stderr.toString('utf8')).toBe('warning: ünïcode\n');
    expect(r.truncated).toBe(false);
    expect([...agent.statusPolls.values()]).toEqual([4]);
    expect(commands().filter((n) => n === 'guest-sync-delimited')).toHaveLength(1);
  });

  it('omits input-data and env when not given and reports an empty output', async () => {
    agent.handleExec(() => ({}));
    const c = await connect();
    const r = await c.run(['true']);
    const args = agent.received.find((q) => q.execute === 'guest-exec')?.arguments;
    expect(args).toEqual({ path: 'true', arg: [], 'capture-output': true });
    expect(r).toEqual({ code: 0, signal: null, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), truncated: false });
    expect((await rejection(c.run([]))).code).toBe('INVALID_ARGUMENT');
  });

  it('reports a signal exit as 128+signal and truncated output', async () => {
    agent.handleExec(() => ({ signal: 9, stdout: 'partial', outTruncated: true, pollsUntilExit: 1 }));
    const c = await connect();
    const r = await c.run(['sleep', '100'], { pollMs: 10 });
    expect(r.code).toBe(137);
    expect(r.signal).toBe(9);
    expect(r.stdout.toString()).toBe('partial');
    expect(r.truncated).toBe(true);
  });

  it('times out a process that does not exit, naming the command and pid', async () => {
    agent.handleExec(() => ({ pollsUntilExit: Infinity }));
    const c = await connect({ name: 'instance "web1"' });
    const started = Date.now();
    const err = await rejection(c.run(['sleep', 'infinity'], { timeoutMs: 200, pollMs: 20 }));
    expect(Date.now() - started).toBeLessThan(1500);
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toContain('"sleep"');
    expect(err.message).toContain('instance "web1"');
    expect(err.details?.pid).toBe(1000);
  });

  it('concurrent runs interleave their polls without mixing results', async () => {
    agent.handleExec((e) => ({ stdout: e.arg.join(' '), exitcode: Number(e.arg[0]), pollsUntilExit: 2 }));
    const c = await connect();
    const rs = await Promise.all([1, 2, 3].map((n) => c.run(['echo', String(n), 'x'], { pollMs: 5 })));
    expect(rs.map((r) => [r.code, r.stdout.toString()])).toEqual([[1, '1 x'], [2, '2 x'], [3, '3 x']]);
  });
});

describe('withCwd', () => {
  it('passes the directory and argv as arguments, never inside the script', () => {
    const cwd = '/srv/it\'s "$HOME" `x`';
    expect(withCwd(['ls', '-l', '$(reboot)'], cwd)).toEqual(['/bin/sh', '-c', 'cd "$1" && shift && exec "$@"', 'sh', cwd, 'ls', '-l', '$(reboot)']);
    expect(() => withCwd(['ls'], 'relative')).toThrow(AppError);
    expect(() => withCwd(['ls'], '-P')).toThrow(/absolute/);
    expect(() => withCwd([], '/')).toThrow(AppError);
  });
});
