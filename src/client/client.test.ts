// Unit tests of HangarClient against the fake daemon: error mapping, operations, exec framing, events.
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError, causeChain } from '../shared/errors.js';
import type { HangarEvent } from '../shared/schemas.js';
import { HangarClient } from './client.js';
import { startFakeDaemon, type FakeDaemon } from '../../test/helpers/fake-daemon.js';
import { sink } from '../../test/helpers/sink.js';

let fake: FakeDaemon;
let client: HangarClient;

beforeAll(async () => {
  fake = await startFakeDaemon();
  client = new HangarClient({ socketPath: fake.socketPath });
});
afterAll(async () => {
  client.close();
  await fake.close();
});

describe('HangarClient requests', () => {
  it('lists instances and validates them', async () => {
    const list = await client.listInstances();
    expect(list.map((i) => i.name)).toEqual(['web1', 'db1', 'dom1']);
    expect(list[1]!.ipv4).toBeNull();
    expect(list[2]).toMatchObject({ host: 'dom0', state: 'unknown' });
    expect((await client.listInstances({ host: 'dom0' })).map((i) => i.name)).toEqual(['dom1']);
    expect(fake.requests.at(-1)?.path).toBe('/1.0/instances?host=dom0');
  });

  it('lists and reads hosts, and a host that is down answers HOST_UNREACHABLE for its facts', async () => {
    expect((await client.listHosts()).map((h) => `${h.name}:${h.state}`)).toEqual(['local:up', 'dom0:down', 'spare:up']);
    expect(await client.getHost('dom0')).toMatchObject({ state: 'down', reason: expect.stringContaining('ECONNREFUSED') });
    expect(await client.hostInfo('spare')).toMatchObject({ hostname: 'spare' });
    expect(await client.hostInfo('dom0').catch((e: unknown) => e)).toMatchObject({ code: 'HOST_UNREACHABLE' });
  });

  it('maps a 404 error body to AppError NOT_FOUND with its causes as a cause chain', async () => {
    const err = await client.getInstance('missing').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('NOT_FOUND');
    expect((err as AppError).message).toBe('Instance "missing" not found');
    expect(causeChain(err)).toEqual(['no row in instances', 'lookup by name']);
  });

  it('maps a non-JSON error answer by status', async () => {
    const err = await client.request('GET', '/1.0/broken').catch((e: unknown) => e);
    expect((err as AppError).code).toBe('INTERNAL');
    expect((err as AppError).message).toContain('HTTP 500');
    expect(causeChain(err)).toEqual(['boom']);
  });

  it('rejects answers that do not match the schema', async () => {
    const err = await client.getInstance('bad-shape').catch((e: unknown) => e);
    expect((err as AppError).code).toBe('INTERNAL');
    expect((err as AppError).message).toContain('Unexpected answer');
  });

  it('reports a missing socket as HOST_FAILED naming the socket, with a hint', async () => {
    const c = new HangarClient({ socketPath: `${fake.socketPath}.nope` });
    const err = await c.serverInfo().catch((e: unknown) => e);
    expect((err as AppError).code).toBe('HOST_FAILED');
    expect((err as AppError).message).toBe(`Cannot reach hangard at ${fake.socketPath}.nope`);
    expect(String((err as AppError).details?.hint)).toContain('npm start');
    expect(causeChain(err)[0]).toContain('ENOENT');
    c.close();
  });

  it('sends JSON bodies and parses results', async () => {
    const res = await client.patchConfig('web1', { set: { 'limits.cpu': '2' } });
    expect(res).toEqual({ live: ['limits.memory'], pending: ['limits.cpu'] });
    expect(fake.requests.at(-1)).toEqual({ method: 'PATCH', path: '/1.0/instances/web1/config', body: { set: { 'limits.cpu': '2' } } });
  });
});

describe('operations', () => {
  it('waitOperation answers the result of a successful operation', async () => {
    const op = await client.createInstance({ name: 'c1', image: 'busybox' });
    expect(op.status).toBe('running');
    const result = (await client.waitOperation(op)) as { name: string };
    expect(result.name).toBe('c1');
    expect(fake.requests.some((r) => r.path === `/1.0/operations/${op.id}/wait?timeout=30`)).toBe(true);
  });

  it('waitOperation throws a failed operation as AppError with causes', async () => {
    const op = await client.changeState('web1', { action: 'start' });
    const err = await client.waitOperation(op).catch((e: unknown) => e);
    expect((err as AppError).code).toBe('BACKEND_FAILED');
    expect((err as AppError).message).toBe('Failed to start instance "web1"');
    expect(causeChain(err)).toEqual(['lxc-start exited with status 1', 'cgroup memory controller missing']);
  });

  it('launch delivers progress of its own operation and answers the instance', async () => {
    const seen: string[] = [];
    const inst = await client.launch({ name: 'c2', image: 'busybox' }, { onProgress: (m) => seen.push(m) });
    expect(inst.name).toBe('c2');
    const post = fake.requests.filter((r) => r.method === 'POST').at(-1);
    expect(post?.body).toEqual({ name: 'c2', image: 'busybox', start: true });
    expect(seen).toEqual(['unpacking rootfs']);
  });
});

describe('exec', () => {
  it('streams stdin, routes stdout/stderr by channel and answers the exit code', async () => {
    const stdin = new PassThrough();
    const out = sink();
    const err = sink();
    const done = client.exec('web1', { command: ['cat'] }, { stdin, stdout: out, stderr: err });
    stdin.write('hello ');
    stdin.end('world');
    expect(await done).toBe(3);
    expect(out.text()).toBe('hello world');
    expect(err.text()).toBe('warn\n');
  });

  it('sends a string stdin whole, then eof', async () => {
    const out = sink();
    expect(await client.exec('web1', { command: ['cat'] }, { stdin: 'abc', stdout: out, stderr: sink() })).toBe(3);
    expect(out.text()).toBe('abc');
  });

  it('without stdin sends eof at once', async () => {
    const out = sink();
    expect(await client.exec('web1', { command: ['cat'] }, { stdout: out, stderr: sink() })).toBe(3);
    expect(out.text()).toBe('');
  });

  it('passes the ExecRequest to the daemon', async () => {
    const out = sink();
    const code = await client.exec('web1', { command: ['env'], env: { A: '1' }, cwd: '/tmp' }, { stdout: out, stderr: sink() });
    expect(code).toBe(0);
    expect(JSON.parse(out.text())).toEqual({ command: ['env'], env: { A: '1' }, cwd: '/tmp' });
  });

  it('turns an error message into an AppError', async () => {
    const err = await client.exec('web1', { command: ['explode'] }, { stdout: sink(), stderr: sink() }).catch((e: unknown) => e);
    expect((err as AppError).code).toBe('BACKEND_FAILED');
    expect(causeChain(err)).toEqual(['lxc-attach: no such container']);
  });

  it('maps an HTTP error answer', async () => {
    const err = await client.exec('missing', { command: ['true'] }, { stdout: sink(), stderr: sink() }).catch((e: unknown) => e);
    expect((err as AppError).code).toBe('NOT_FOUND');
    expect(causeChain(err)).toEqual(['no row in instances', 'lookup by name']);
  });
});

describe('exec over the websocket (streamed stdin)', () => {
  it('sends the ExecRequest as the first text frame and a later eof', async () => {
    const out = sink();
    const code = await client.exec('web1', { command: ['env'], env: { A: '1' } }, { stdin: new PassThrough(), stdout: out, stderr: sink() });
    expect(code).toBe(0);
    expect(JSON.parse(out.text())).toEqual({ command: ['env'], env: { A: '1' } });
    expect(fake.requests.at(-1)?.method).toBe('WS');
  });

  it('turns an error message into an AppError', async () => {
    const err = await client.exec('web1', { command: ['explode'] }, { stdin: new PassThrough(), stdout: sink(), stderr: sink() }).catch((e: unknown) => e);
    expect((err as AppError).code).toBe('BACKEND_FAILED');
    expect(causeChain(err)).toEqual(['lxc-attach: no such container']);
  });

  it('maps an HTTP error before the upgrade', async () => {
    const err = await client.exec('missing', { command: ['true'] }, { stdin: new PassThrough(), stdout: sink(), stderr: sink() }).catch((e: unknown) => e);
    expect((err as AppError).code).toBe('NOT_FOUND');
  });
});

describe('events', () => {
  it('delivers events matching the type filter after ready', async () => {
    const got: HangarEvent[] = [];
    const stream = client.events({ types: ['instance-started'], onEvent: (e) => got.push(e) });
    await stream.ready;
    await fake.subscribers(1);
    expect(fake.requests.at(-1)?.path).toBe('/1.0/events?type=instance-started');
    fake.emit({ type: 'instance-stopped', time: 't', instance: 'web1' });
    fake.emit({ type: 'instance-started', time: 't', instance: 'web1' });
    await new Promise((r) => setTimeout(r, 50));
    stream.close();
    await stream.closed;
    expect(got).toEqual([{ type: 'instance-started', time: 't', instance: 'web1' }]);
  });

  it('rejects ready when the daemon is unreachable', async () => {
    const stream = new HangarClient({ socketPath: `${fake.socketPath}.nope` }).events({ onEvent: () => undefined });
    const err = await stream.ready.catch((e: unknown) => e);
    expect((err as AppError).code).toBe('HOST_FAILED');
  });
});
