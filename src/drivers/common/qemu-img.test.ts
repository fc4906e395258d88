// Unit tests of the qemu-img wrapper against the scripted host: the argv of each operation, the JSON it reads, how failures are reported.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { HostProcess } from '../../host/host.js';
import { ScriptedHost } from '../../host/scripted.js';
import { AppError, isAppError } from '../../shared/errors.js';
import * as qemuImg from './qemu-img.js';

// A scripted host whose spawned process prints stdout and stderr, then exits with code.
class SpawnHost extends ScriptedHost {
  constructor(private readonly out: { stdout: string; stderr: string; code: number }) { super(); }

  override spawn(argv: readonly string[]): HostProcess {
    super.spawn(argv);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const done = new Promise<{ code: number; signal: null }>((resolve) => {
      setImmediate(() => { stdout.end(this.out.stdout); stderr.end(this.out.stderr); setImmediate(() => resolve({ code: this.out.code, signal: null })); });
    });
    return { pid: Promise.resolve(-1), stdin: null, stdout, stderr, wait: () => done, kill: () => undefined };
  }
}

async function rejection(p: Promise<unknown>): Promise<AppError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

describe('qemu-img argv', () => {
  it('snapshotList reads the table of a held image (-U): tags, and RAM state where vm-state-size > 0', async () => {
    const stdout = JSON.stringify({ format: 'qcow2', snapshots: [{ id: '1', name: 'disk', 'vm-state-size': 0 }, { id: '2', name: 'live', 'vm-state-size': 4096 }, { id: '3' }] });
    const host = new ScriptedHost(() => ({ stdout }));
    expect(await qemuImg.snapshotList(host, '/v/root.qcow2')).toEqual([{ name: 'disk', stateful: false }, { name: 'live', stateful: true }]);
    expect(host.commands('qemu-img')).toEqual([['qemu-img', 'info', '--output=json', '-U', '/v/root.qcow2']]);
    expect(await qemuImg.snapshotList(new ScriptedHost(() => ({ stdout: '{"format":"qcow2"}' })), '/v/root.qcow2')).toEqual([]);
    const err = await rejection(qemuImg.snapshotList(new ScriptedHost(() => ({ stdout: '{"snapshots":{}}' })), '/v/root.qcow2'));
    expect(err.message).toMatch(/not a list/);
  });

  it('create: format, backing file and format, optional size', async () => {
    const host = new ScriptedHost();
    await qemuImg.create(host, '/v/root.qcow2', { format: 'qcow2', backing: { path: '/img/disk.qcow2', format: 'qcow2' }, sizeBytes: 1024 });
    await qemuImg.create(host, '/v/root.qcow2', { format: 'qcow2', backing: { path: '/img/disk.qcow2', format: 'qcow2' } });
    await qemuImg.create(host, '/v/disk-d1.qcow2', { format: 'qcow2', sizeBytes: 2048 });
    expect(host.commands('qemu-img')).toEqual([
      ['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', '/img/disk.qcow2', '/v/root.qcow2', '1024'],
      ['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', '/img/disk.qcow2', '/v/root.qcow2'],
      ['qemu-img', 'create', '-q', '-f', 'qcow2', '/v/disk-d1.qcow2', '2048'],
    ]);
  });

  it('resize, convert, check and snapshots; timeouts are passed to the host', async () => {
    const host = new ScriptedHost();
    await qemuImg.resize(host, '/v/d.qcow2', 4096);
    await qemuImg.convert(host, { source: '/w/disk.raw', from: 'raw', dest: '/w/disk.qcow2', to: 'qcow2' }, { timeoutMs: 300_000 });
    await qemuImg.convert(host, { source: 'json:{}', dest: '/w/out.qcow2', to: 'qcow2' });
    await qemuImg.check(host, 'json:{"driver":"qcow2"}', { timeoutMs: 5 });
    for (const op of ['create', 'apply', 'delete'] as const) await qemuImg.snapshot(host, '/v/root.qcow2', op, 'snap1');
    expect(host.commands('qemu-img')).toEqual([
      ['qemu-img', 'resize', '-q', '/v/d.qcow2', '4096'],
      ['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', '/w/disk.raw', '/w/disk.qcow2'],
      ['qemu-img', 'convert', '-q', '-O', 'qcow2', 'json:{}', '/w/out.qcow2'],
      ['qemu-img', 'check', '--output=json', 'json:{"driver":"qcow2"}'],
      ['qemu-img', 'snapshot', '-c', 'snap1', '/v/root.qcow2'],
      ['qemu-img', 'snapshot', '-a', 'snap1', '/v/root.qcow2'],
      ['qemu-img', 'snapshot', '-d', 'snap1', '/v/root.qcow2'],
    ]);
    expect(host.calls[1]!.opts.timeoutMs).toBe(300_000);
    expect(host.calls[3]!.opts.timeoutMs).toBe(5);
  });
});

describe('qemu-img info', () => {
  it('reads the JSON header, with -U for an image a running QEMU holds', async () => {
    const host = new ScriptedHost(() => ({ stdout: '{"format":"qcow2","virtual-size":1073741824,"actual-size":200704}' }));
    expect(await qemuImg.info(host, '/v/a.qcow2')).toMatchObject({ format: 'qcow2', 'virtual-size': 1073741824 });
    expect(await qemuImg.virtualSize(host, '/v/a.qcow2')).toBe(1073741824);
    expect(await qemuImg.infoText(host, '/v/a.qcow2')).toContain('"actual-size":200704');
    expect(host.commands('qemu-img')).toEqual([
      ['qemu-img', 'info', '--output=json', '/v/a.qcow2'],
      ['qemu-img', 'info', '--output=json', '-U', '/v/a.qcow2'],
      ['qemu-img', 'info', '--output=json', '/v/a.qcow2'],
    ]);
  });

  it('refuses output that is not a JSON object', async () => {
    for (const stdout of ['not json', '[1]', 'null']) {
      const err = await rejection(qemuImg.info(new ScriptedHost(() => ({ stdout })), '/v/a.qcow2'));
      expect(err.code).toBe('HOST_FAILED');
      expect(err.message).toMatch(/^qemu-img info of \/v\/a\.qcow2 printed (no|unexpected) JSON$/);
      // qemu-img ran and exited 0: not a failed run whose words explain it.
      expect(qemuImg.isQemuImgFailure(err)).toBe(false);
    }
  });
});

describe('qemu-img failures', () => {
  it('a non-zero exit is HOST_FAILED naming the operation and file, with qemu-img\'s stderr as the cause', async () => {
    const host = new ScriptedHost(() => ({ code: 1, stderr: "qemu-img: Could not open '/v/x.qcow2': No such file or directory\n" }));
    const err = await rejection(qemuImg.resize(host, '/v/x.qcow2', 1));
    expect(err.message).toBe('qemu-img resize of /v/x.qcow2 failed');
    expect(isAppError(err, 'HOST_FAILED')).toBe(true);
    expect((err.cause as Error).message).toBe("qemu-img: Could not open '/v/x.qcow2': No such file or directory");
    expect(err.details).toMatchObject({ tool: 'qemu-img', operation: 'resize', file: '/v/x.qcow2', exitCode: 1 });
    expect(qemuImg.isQemuImgFailure(err)).toBe(true);
    const silent = await rejection(qemuImg.info(new ScriptedHost(() => ({ code: 3 })), '/v/x.qcow2'));
    expect((silent.cause as Error).message).toBe('exit code 3');
  });

  it('a qemu-img that cannot be started is the host\'s error, not a qemu-img failure', async () => {
    const err = await rejection(qemuImg.create(new ScriptedHost(() => new Error('spawn qemu-img ENOENT')), '/v/a.qcow2', { format: 'qcow2', sizeBytes: 1 }));
    expect(err.code).toBe('HOST_FAILED');
    expect(qemuImg.isQemuImgFailure(err)).toBe(false);
  });

  it('check returns its exit code (its answer) instead of throwing', async () => {
    const host = new ScriptedHost(() => ({ code: 2, stdout: '{"corruptions": 4}' }));
    expect(await qemuImg.check(host, '/v/a.qcow2')).toMatchObject({ code: 2, stdout: '{"corruptions": 4}' });
  });
});

describe('qemu-img convert -p', () => {
  it('parses the progress qemu-img prints', () => {
    expect(qemuImg.parseConvertProgress('    (0.00/100%)\r    (12.34/100%)\r    (100.00/100%)\r')).toEqual([0, 12.34, 100]);
    expect(qemuImg.parseConvertProgress('no progress here')).toEqual([]);
  });

  it('spawns qemu-img convert -p through the host', async () => {
    const host = new ScriptedHost();
    const seen: number[] = [];
    await qemuImg.convertWithProgress(host, { source: 'json:{"driver":"raw"}', dest: '/w/disk.qcow2', to: 'qcow2' }, (p) => seen.push(p));
    expect(host.commands('qemu-img')).toEqual([['qemu-img', 'convert', '-p', '-O', 'qcow2', 'json:{"driver":"raw"}', '/w/disk.qcow2']]);
    expect(seen).toEqual([]);
    const progress = new SpawnHost({ stdout: '    (0.00/100%)\r    (50.00/100%)\r    (100.00/100%)\r', stderr: '', code: 0 });
    await qemuImg.convertWithProgress(progress, { source: '/w/a.raw', from: 'raw', dest: '/w/a.qcow2', to: 'qcow2' }, (p) => seen.push(p));
    expect(progress.commands('qemu-img')).toEqual([['qemu-img', 'convert', '-p', '-f', 'raw', '-O', 'qcow2', '/w/a.raw', '/w/a.qcow2']]);
    expect(seen).toEqual([0, 50, 100]);
  });

  it('a failed conversion is a qemu-img failure with its stderr', async () => {
    const host = new SpawnHost({ stdout: '', stderr: 'qemu-img: error while writing at byte 0: No space left on device\n', code: 1 });
    const err = await rejection(qemuImg.convertWithProgress(host, { source: '/w/a.raw', dest: '/w/a.qcow2', to: 'qcow2' }, () => undefined));
    expect(err.message).toBe('qemu-img convert of /w/a.qcow2 failed');
    expect(qemuImg.isQemuImgFailure(err)).toBe(true);
    expect((err.cause as Error).message).toBe('qemu-img: error while writing at byte 0: No space left on device');
  });
});
