// Live tests: compiles native/cpuid.c and detects this machine, and a PID-namespace "container" seen through /proc/PID/root.
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostProcess } from '../../host/host.js';
import { LocalHost } from '../../host/local.js';
import { cpuidFamily, readCpuidSignature } from './cpuid.js';
import { analyzeVirt } from './detect.js';
import { readSnapshot } from './snapshot.js';

const host = new LocalHost();
const dir = join(tmpdir(), `tliv${randomBytes(2).toString('hex')}`);
const probe = join(dir, 'hangar-cpuid');
const source = fileURLToPath(new URL('../../../native/cpuid.c', import.meta.url));
let skipReason: string | undefined;
let signature: string | null = null;

beforeAll(async () => {
  await host.fs.mkdir(dir, { recursive: true });
  const cc = await host.exec(['gcc', '-O2', '-o', probe, source], { allowFailure: true }).catch((e: unknown) => ({ code: -1, stderr: String(e) }));
  if (cc.code !== 0) {
    skipReason = `cannot compile native/cpuid.c with gcc: ${cc.stderr.trim()}`;
    return;
  }
  signature = await readCpuidSignature(host, probe);
});

afterAll(async () => {
  await host.fs.rm(dir, { recursive: true, force: true });
});

/** Whether this machine shows any Docker runtime state, read independently of the detector's rules. */
async function dockerRuntimeVisible(): Promise<boolean> {
  const cgroup = (await host.fs.readTextIfExists('/proc/1/cgroup')) ?? '';
  const mountinfo = (await host.fs.readTextIfExists('/proc/self/mountinfo')) ?? '';
  const rootMount = mountinfo.split('\n').find((l) => l.split(' ')[4] === '/') ?? '';
  return /docker/.test(cgroup) || /docker/.test(rootMount);
}

describe('live detection on this machine', () => {
  it('names the hypervisor the CPUID probe reports and only believes Docker with runtime evidence', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const res = await analyzeVirt(host, { root: '/', cpuid: signature });
    const names = res.facts.map((f) => f.fact);
    const family = signature ? (cpuidFamily(signature) ?? 'vm-other') : undefined;
    if (family) {
      expect(names[0]).toBe(family);
      expect(res.facts[0]!.evidence[0]).toContain(`cpuid: ${signature}`);
    }
    const docker = await dockerRuntimeVisible();
    expect(names.includes('docker')).toBe(docker);
    if (!docker && (await host.fs.stat('/.dockerenv'))) expect(res.notes.join('\n')).toMatch(/\/\.dockerenv.*ignored/);
  });

  describe('a process tree in its own PID and mount namespace', () => {
    let proc: HostProcess | undefined;

    afterAll(async () => {
      if (proc) {
        proc.kill('SIGKILL');
        await proc.wait();
      }
    });

    it('reads the container init through /proc/PID/root (its own procfs, no /proc/self) and reports lxc inside the hypervisor', async (ctx) => {
      if (skipReason) ctx.skip(skipReason);
      // --kill-child takes the namespace's init down with unshare; --mount-proc gives the namespace its own procfs.
      proc = host.spawn(['unshare', '--pid', '--fork', '--mount', '--mount-proc', '--kill-child', 'env', 'container=lxc', 'sleep', '300']);
      const root = `/proc/${proc.pid}/root`;
      let ready = false;
      for (let i = 0; i < 200 && !ready; i++) {
        ready = ((await host.fs.readTextIfExists(`${root}/proc/1/cmdline`).catch(() => undefined)) ?? '').startsWith('sleep');
        if (!ready) await new Promise((r) => setTimeout(r, 25));
      }
      if (!ready) ctx.skip('unshare did not start a PID namespace here');
      // Outside the namespace /proc/self does not resolve in its procfs: the reader falls back to the init's files.
      expect((await readSnapshot(host, root)).mountinfo.path).toBe('/proc/1/mountinfo');
      const res = await analyzeVirt(host, { root, cpuid: signature });
      const names = res.facts.map((f) => f.fact);
      expect(names[names.length - 1]).toBe('lxc');
      expect(res.facts.at(-1)!.evidence).toContain('/proc/1/environ: container=lxc');
      const family = signature ? (cpuidFamily(signature) ?? 'vm-other') : undefined;
      if (family) expect(names[0]).toBe(family);
    });
  });
});
