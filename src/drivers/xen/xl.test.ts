// Unit tests of the xl wrapper: the argv of each command, what it parses, and how failures map to errors.
import { describe, expect, it } from 'vitest';
import { ScriptedHost } from '../../host/scripted.js';
import type { ExecResult } from '../../host/host.js';
import { AppError, isAppError } from '../../shared/errors.js';
import { Xl } from './xl.js';

const recording = (answer: (argv: readonly string[]) => Partial<ExecResult> | Error | undefined = () => undefined) => {
  const host = new ScriptedHost(answer, { name: 'dom0' });
  return { host, xl: new Xl(host) };
};

const caught = async (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e);

describe('Xl argv', () => {
  it('builds one argv per command, never a shell string', async () => {
    const { host, xl } = recording((argv) => (argv[1] === 'sched-credit2' && argv.length === 4 ? { stdout: 'Name ID Weight Cap\nweb1 3 256 0\n' } : undefined));
    await xl.create('/srv/web1/domain.cfg', 'web1');
    await xl.destroy('web1');
    await xl.pause('web1');
    await xl.unpause('web1');
    await xl.reboot('web1', { acpiFallback: true });
    await xl.save('web1', '/srv/web1/state.save');
    await xl.restore('/srv/web1/state.save', 'web1', { paused: true });
    await xl.memSet('web1', 192 * 1024 ** 2);
    await xl.memMax('web1', 256 * 1024 ** 2 + 1);
    await xl.vcpuSet('web1', 2);
    await xl.schedSet('credit2', 'web1', { weight: 512, cap: 50 });
    expect(await xl.sched('credit2', 'web1')).toEqual({ name: 'web1', domid: 3, weight: 256, cap: 0 });
    xl.console('web1', { cols: 80, rows: 24 });
    expect(host.calls.map((c) => c.argv)).toEqual([
      ['xl', 'create', '/srv/web1/domain.cfg'],
      ['xl', 'destroy', 'web1'],
      ['xl', 'pause', 'web1'],
      ['xl', 'unpause', 'web1'],
      ['xl', 'reboot', '-F', 'web1'],
      ['xl', 'save', 'web1', '/srv/web1/state.save'],
      ['xl', 'restore', '-p', '/srv/web1/state.save'],
      ['xl', 'mem-set', 'web1', '196608k'],
      ['xl', 'mem-max', 'web1', '262145k'],
      ['xl', 'vcpu-set', 'web1', '2'],
      ['xl', 'sched-credit2', '-d', 'web1', '-w', '512', '-c', '50'],
      ['xl', 'sched-credit2', '-d', 'web1'],
      ['xl', 'console', 'web1'],
    ]);
    // Every command but the console is bounded; a create or save gets more time than the rest.
    expect(host.calls.slice(0, -1).every((c) => c.opts.timeoutMs !== undefined && c.opts.allowFailure === true)).toBe(true);
    expect(host.calls[0]!.opts.timeoutMs).toBeGreaterThan(host.calls[1]!.opts.timeoutMs!);
  });
});

describe('Xl errors', () => {
  it('names the command and the domain, with xl\'s words in the cause', async () => {
    const { xl } = recording(() => ({ code: 1, stderr: 'Parsing config from /srv/x.cfg\nlibxl: error: libxl_create.c:1234:do_domain_create: Domain 7:Cannot create domain: Out of memory\n' }));
    const err = await caught(xl.create('/srv/x.cfg', 'x'));
    expect(isAppError(err, 'BACKEND_FAILED')).toBe(true);
    expect((err as Error).message).toBe('xl create of domain "x" failed');
    expect(((err as Error).cause as Error).message).toBe('libxl: error: Cannot create domain: Out of memory');
  });
  it('says when xl is not there (a local ENOENT, or a remote shell\'s 127)', async () => {
    const local = await caught(recording(() => new Error('spawn xl ENOENT')).xl.info()) as { details?: Record<string, unknown> };
    expect(local.details).toEqual({ xlNotFound: true });
    const remote = await caught(recording(() => ({ code: 127, stderr: 'sh: 1: xl: not found\n' })).xl.info()) as { details?: Record<string, unknown> };
    expect(remote.details).toEqual({ xlNotFound: true });
    const other = await caught(recording(() => ({ code: 1, stderr: 'libxl: error: cannot open libxc handle: No such file or directory\n' })).xl.info()) as { details?: Record<string, unknown> };
    const killed = await caught(recording(() => ({ code: -1, signal: 'SIGSEGV' })).xl.restore('/s', 'web1')) as Error;
    expect((killed.cause as Error).message).toBe('killed by SIGSEGV');
    expect(other.details).toEqual({ xlNotFound: false });
  });
  it('treats a missing domain as an answer where it is one', async () => {
    const { xl } = recording(() => ({ code: 1, stderr: 'web9 is an invalid domain identifier (rc=-6)\n' }));
    expect(await xl.find('web9')).toBeNull();
    expect(await xl.listLong('web9')).toBeNull();
    await xl.destroy('web9');
    expect(await xl.shutdown('web9', { wait: true, timeoutMs: 1000 })).toBe('shutdown');
    expect(isAppError(await caught(xl.pause('web9')), 'BACKEND_FAILED')).toBe(true);
  });
  it('refuses xl list -l output that is not JSON (output_format=sxp)', async () => {
    const { xl } = recording(() => ({ stdout: '(domain\n\t(domid 3)\n)\n' }));
    expect((await caught(xl.listLong('web1')) as Error).message).toBe('xl list -l of domain "web1" printed no JSON (is output_format=json in xl.conf?)');
  });
});

describe('Xl.shutdown', () => {
  it('asks, polls until the domain is gone, and destroys it when the time is up', async () => {
    let listed = 0;
    const { host, xl } = recording((argv) => {
      if (argv[1] === 'list') {
        listed++;
        return { stdout: 'web1                                         3   256     1     -b----       2.7\n' };
      }
      return undefined;
    });
    expect(await xl.shutdown('web1', { wait: true, timeoutMs: 300 })).toBe('destroyed');
    expect(listed).toBeGreaterThan(1);
    expect(host.calls.map((c) => c.argv[1])).toEqual(['shutdown', ...Array(listed).fill('list'), 'destroy']);
  });
  it('destroys a guest that cannot be asked (no PV control interface), and falls back to ACPI for HVM when told', async () => {
    const { host, xl } = recording((argv) => (argv[1] === 'shutdown' ? { code: 1, stderr: 'PV control interface not available: external graceful shutdown not possible.\n' } : argv[1] === 'list' ? { code: 1, stderr: 'web1 is an invalid domain identifier (rc=-6)\n' } : undefined));
    expect(await xl.shutdown('web1', { wait: true, timeoutMs: 1000, acpiFallback: true })).toBe('destroyed');
    expect(host.calls.map((c) => c.argv)).toEqual([['xl', 'shutdown', '-F', 'web1'], ['xl', 'destroy', 'web1']]);
  });
});

describe('Xl.domid', () => {
  it('answers the number xl domid prints, null for no such domain (xl 4.17\'s words), and refuses anything else', async () => {
    const { xl } = recording((argv) => {
      if (argv[2] === 'web1') return { stdout: '7\n' };
      if (argv[2] === 'odd') return { stdout: 'seven\n' };
      return { code: 1, stderr: `Can't get domid of domain name '${argv[2]}', maybe this domain does not exist.\n` };
    });
    expect(await xl.domid('web1')).toBe(7);
    expect(await xl.domid('gone')).toBeNull();
    const err = await caught(xl.domid('odd'));
    expect(isAppError(err, 'BACKEND_FAILED') && err.message).toBe('xl domid of domain "odd" printed "seven", not a domid');
  });
});

describe('Xl over a connection that drops', () => {
  it('asks a read once more when the host was unreachable for it; a change is never repeated', async () => {
    let drops = 2;
    const { host, xl } = recording((argv) => {
      if (drops > 0) { drops--; return new AppError('HOST_UNREACHABLE', 'Host "dom0" is unreachable: the connection dropped while running xl'); }
      return argv[1] === 'list' ? { stdout: 'Name ID Mem VCPUs State Time(s) UUID Reason-Code Security Label\nweb1 3 128 1 -b---- 1.0 0b3c7a1e-0000-4000-8000-000000000001 - -\n' } : undefined;
    });
    expect(isAppError(await caught(xl.pause('web1')), 'BACKEND_FAILED')).toBe(true);
    expect((await xl.find('web1'))?.domid).toBe(3);
    expect(host.calls.map((c) => c.argv)).toEqual([['xl', 'pause', 'web1'], ['xl', 'list', '-v', 'web1'], ['xl', 'list', '-v', 'web1']]);
    // Twice unreachable: the read fails with the host's error in its cause.
    drops = 2;
    const err = await caught(xl.list());
    expect(isAppError(err, 'BACKEND_FAILED') && String((err as Error).cause)).toContain('unreachable');
    expect(host.calls).toHaveLength(5);
  });
});
