// Unit tests of the Dom0 domain watch: one xenstore watch for every watched domid, a release checked with xl list, the watch ended when nothing is watched.
import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import type { Host } from '../../host/host.js';
import { DomainWatch } from './watch.js';
import type { Xl } from './xl.js';

const settle = () => new Promise((r) => setTimeout(r, 10));

describe('DomainWatch', () => {
  it('fires for the domids a release took, once; one xenstore-watch; killed once nothing is watched', async () => {
    const stdout = new PassThrough();
    const kill = vi.fn();
    const spawn = vi.fn(() => ({ pid: Promise.resolve(42), stdin: new PassThrough(), stdout, stderr: new PassThrough(), wait: () => new Promise(() => undefined), kill }));
    let domids = [0, 5, 7];
    const list = vi.fn(async () => domids.map((domid) => ({ domid })));
    // The xenstore home of a domain: gone with the domain, unless kept (below) to stand for a listing that missed one.
    const homes = new Set<number>();
    const exec = vi.fn(async (argv: string[]) => ({ code: domids.includes(Number(argv[1]!.split('/').pop())) || homes.has(Number(argv[1]!.split('/').pop())) ? 0 : 1, signal: null, stdout: '', stderr: '' }));
    const w = new DomainWatch({ spawn, exec } as unknown as Host, { list } as unknown as Xl);
    const ended: number[] = [];
    w.watch(5, () => ended.push(5));
    const cancel7 = w.watch(7, () => ended.push(7));
    expect(spawn.mock.calls).toEqual([[['xenstore-watch', '@releaseDomain']]]);
    // The watch's first firing, as xenstored sends it when it is set: everything still runs.
    stdout.write('@releaseDomain\n');
    await settle();
    expect(ended).toEqual([]);
    domids = [0, 7];
    stdout.write('@releaseDomain\n@releaseDomain\n');
    await settle();
    expect(ended).toEqual([5]);
    // A listing that lacks domain 7 while its xenstore home is there (a misread): nothing more ends.
    domids = [0];
    homes.add(7);
    stdout.write('@releaseDomain\n');
    await settle();
    expect(ended).toEqual([5]);
    expect(exec).toHaveBeenCalledWith(['xenstore-exists', '/local/domain/7'], expect.anything());
    homes.delete(7);
    domids = [0, 7];
    stdout.write('@releaseDomain\n');
    await settle();
    expect(ended).toEqual([5]);
    expect(kill).not.toHaveBeenCalled();
    cancel7!();
    expect(kill).toHaveBeenCalledWith('SIGKILL');
  });

  it('a watch set while an xl list is under way is not judged by that list (its domain may be newer)', async () => {
    const stdout = new PassThrough();
    const spawn = () => ({ pid: Promise.resolve(42), stdin: new PassThrough(), stdout, stderr: new PassThrough(), wait: () => new Promise(() => undefined), kill: () => undefined });
    let release!: (v: { domid: number }[]) => void;
    const list = vi.fn(() => new Promise<{ domid: number }[]>((r) => { release = r; }));
    const exec = async () => ({ code: 1, signal: null, stdout: '', stderr: '' });
    const w = new DomainWatch({ spawn, exec } as unknown as Host, { list } as unknown as Xl);
    const ended: number[] = [];
    w.watch(4, () => ended.push(4));
    stdout.write('@releaseDomain\n');
    await settle();
    // Domain 4 went; domain 9 is created and watched while the list that lacks it is still being read.
    w.watch(9, () => ended.push(9));
    release([{ domid: 0 }]);
    await settle();
    expect(ended).toEqual([4]);
  });

  it('a host that cannot run the watch gives no watch', () => {
    const w = new DomainWatch({ spawn: () => { throw new Error('down'); } } as unknown as Host, { list: async () => [] } as unknown as Xl);
    expect(w.watch(3, () => undefined)).toBeUndefined();
  });
});
