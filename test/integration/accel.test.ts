// Integration tests of the accelerator check with the real QEMU: both test guests run, and the verdict on this host follows from what they did.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { posix } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { prepareAccelGuest } from '../../src/core/images/accel-guest.js';
import { linuxCheckArgv, parseLinuxRun, parseRomRun, probeRom, romProbeArgv } from '../../src/drivers/qemu/accel.js';
import { QemuAccel } from '../../src/drivers/qemu/accel-check.js';
import { probeQemu } from '../../src/drivers/qemu/probe.js';

const host = new LocalHost();
const CACHE = '/var/lib/hangar-test-cache/vm';
let dir = '';
let build = '';

beforeAll(async () => {
  dir = await mkdtemp('/tmp/hangar-accel-');
  const probe = await probeQemu(host);
  if (!probe.available) throw new Error(`QEMU is not usable on this host: ${probe.reason}`);
  build = probe.build ?? '?';
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const timed = async (argv: string[], timeoutMs: number) => {
  const t0 = Date.now();
  const r = await host.exec(argv, { allowFailure: true, timeoutMs });
  return { ...r, timedOut: r.signal === 'SIGTERM', elapsedMs: Date.now() - t0 };
};

describe('accelerator test guests on the real QEMU', () => {
  it('the ROM guest runs through real, protected and long mode with software emulation and ends QEMU itself', async () => {
    const rom = posix.join(dir, 'probe.rom');
    await host.fs.writeAtomic(rom, probeRom());
    const out = await timed(romProbeArgv('qemu-system-x86_64', 'tcg', rom), 60_000);
    const run = parseRomRun('tcg', out);
    expect(run, `stdout ${JSON.stringify(out.stdout)}, stderr ${JSON.stringify(out.stderr)}`).toMatchObject({ ok: true, reached: 'done', timedOut: false });
  });

  it('the Linux test guest (Debian cloud kernel, busybox init) boots to its marker with software emulation and powers off', async () => {
    const guest = await prepareAccelGuest(host, CACHE);
    const out = await timed(linuxCheckArgv('qemu-system-x86_64', 'tcg', guest), 120_000);
    const run = parseLinuxRun('tcg', guest.marker, out);
    expect(run, `stdout ${JSON.stringify(out.stdout.slice(-2000))}, stderr ${JSON.stringify(out.stderr.slice(-2000))}`).toMatchObject({ ok: true, reached: 'booted', timedOut: false });
    // poweroff -f in the guest ends QEMU: it exits by itself, with status 0.
    expect(out.code).toBe(0);
  }, 180_000);

  it('the verdict on this host is what its test guests did: KVM only where both ran under it', async () => {
    const accel = await QemuAccel.open(host, { binary: 'qemu-system-x86_64', qemuBuild: build, mode: 'auto', cacheFile: posix.join(dir, 'accel.json'), linuxGuest: () => prepareAccelGuest(host, CACHE) });
    await accel.confirm();
    const e = accel.measured;
    const v = accel.verdict();
    console.log(`this host: ${accel.info().reason}`);
    expect(v.usable).not.toBeNull();
    if (!existsSync('/dev/kvm')) {
      expect(e.device.state).toBe('missing');
      expect(v.usable).toBe(false);
      return;
    }
    expect(e.rom?.tcg.ok).toBe(true);
    const linuxKvm = e.linux && 'kvm' in e.linux ? e.linux.kvm.ok : undefined;
    expect(v.usable).toBe(e.rom!.kvm.ok && linuxKvm === true);
    if (!v.usable) expect(accel.choose(undefined)).toMatchObject({ accel: 'tcg', reason: expect.stringMatching(/^\/dev\/kvm is present but (guests fail under it|QEMU cannot run a guest with it): .*; using software emulation \(TCG\)$/) as unknown });
  }, 180_000);
});
