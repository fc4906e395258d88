// E2e of the resource model on LXC: memory-guarantee admission control, cpusets spread over cores, weight, processes, swap, live CPU changes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliOk, sharedDaemon, uniquePrefix } from '../helpers/daemon.js';
import { deleteAllWithPrefix, findInstance, settings } from '../helpers/e2e.js';

const P = uniquePrefix('rs');
const cg = (ctrl: string, name: string, file: string) => readFileSync(join('/sys/fs/cgroup', ctrl, settings.prefix, name, file), 'utf8').trim();
const hostMemory = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1]) * 1024;
const hostCpus = readFileSync('/sys/devices/system/cpu/online', 'utf8').trim();
const GiB = 1024 ** 3;

beforeAll(async () => {
  await sharedDaemon();
});

afterAll(() => {
  deleteAllWithPrefix(P);
}, 120_000);

describe('resource model (LXC, cgroup v1 on this hybrid host)', () => {
  it('admission control: a start that would overcommit memory guarantees is refused and changes nothing', () => {
    // The test daemon keeps the default 1 GiB reserve: guarantees of running instances may add up to RAM - 1 GiB.
    const capacity = hostMemory - GiB;
    const first = Math.floor((capacity - 512 * 1024 ** 2) / 1024 ** 2);
    cliOk(['launch', 'busybox', `${P}g1`, '-c', `limits.memory.guarantee=${first}MiB`]);
    expect(cg('memory', `${P}g1`, 'memory.soft_limit_in_bytes')).toBe(String(first * 1024 ** 2));
    const r = cli(['launch', 'busybox', `${P}g2`, '-c', 'limits.memory.guarantee=1GiB']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/memory guarantee/);
    expect(r.stderr).toContain(`${P}g2`);
    expect(findInstance(`${P}g2`)).toBeUndefined();
    // Created but stopped instances reserve nothing; starting one is refused while g1 runs, and allowed once it stops.
    cliOk(['create', 'busybox', `${P}g3`, '-c', 'limits.memory.guarantee=1GiB']);
    const s = cli(['start', `${P}g3`]);
    expect(s.code).not.toBe(0);
    expect(findInstance(`${P}g3`)?.state).toBe('stopped');
    cliOk(['stop', '--force', `${P}g1`]);
    cliOk(['start', `${P}g3`]);
    expect(findInstance(`${P}g3`)?.state).toBe('running');
  });

  it('refuses a guarantee above the maximum and sizes larger than the host', () => {
    const r = cli(['launch', 'busybox', `${P}bad`, '-c', 'limits.memory=64MiB', '-c', 'limits.memory.guarantee=128MiB']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/guarantee/);
    const cpus = cli(['launch', 'busybox', `${P}bad`, '--cpus', '512']);
    expect(cpus.code).not.toBe(0);
    expect(cpus.stderr).toMatch(/CPUs/);
    expect(findInstance(`${P}bad`)).toBeUndefined();
  });

  it('limits.cpu gives each container a cpuset of that many cores, spread over the host', () => {
    cliOk(['launch', 'busybox', `${P}c1`, '--cpus', '1']);
    cliOk(['launch', 'busybox', `${P}c2`, '--cpus', '1']);
    const a = cg('cpuset', `${P}c1`, 'cpuset.cpus');
    const b = cg('cpuset', `${P}c2`, 'cpuset.cpus');
    expect(a).toMatch(/^\d+$/);
    expect(b).toMatch(/^\d+$/);
    if (hostCpus !== '0') expect(a).not.toBe(b);
    // Inside, nproc sees one CPU.
    expect(cliOk(['exec', `${P}c1`, '--', 'nproc']).trim()).toBe('1');
    // Raised live: the cpuset grows without a restart.
    if (hostCpus !== '0') {
      const out = cliOk(['config', 'set', `${P}c1`, 'limits.cpu=2']);
      expect(out).toMatch(/Applied live: .*limits\.cpu/);
      expect(cliOk(['exec', `${P}c1`, '--', 'nproc']).trim()).toBe('2');
    }
  });

  it('limits.cpu.weight, limits.processes and limits.memory.swap reach the cgroup', () => {
    cliOk(['launch', 'busybox', `${P}w`, '-c', 'limits.cpu.weight=200', '-c', 'limits.processes=50', '-c', 'limits.memory=64MiB', '-c', 'limits.memory.swap=32MiB']);
    expect(cg('cpu', `${P}w`, 'cpu.shares')).toBe(String(2048));
    expect(cg('pids', `${P}w`, 'pids.max')).toBe('50');
    expect(cg('memory', `${P}w`, 'memory.memsw.limit_in_bytes')).toBe(String(96 * 1024 ** 2));
    // 60 sleeping processes do not fit under limits.processes=50.
    const r = cli(['exec', `${P}w`, '--', 'sh', '-c', 'for i in $(seq 60); do sleep 3 & done; wait']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/fork|resource|again/i);
  });
});
