// The KVM side of the accelerator check on a KVM that works: a TCG guest with (emulated) SVM loads kvm-amd and runs Hangar's two test guests under it.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { prepareAccelGuest } from '../../src/core/images/accel-guest.js';
import { parseLdd } from '../../src/core/images/busybox-vm.js';
import { BUSYBOX_STATIC } from '../../src/core/images/busybox.js';
import { packCpio, type CpioEntry } from '../../src/core/images/cpio.js';
import { fetchDebianKernel } from '../../src/core/images/debian-kernel.js';
import { judgeKvm, linuxCheckArgv, parseLinuxRun, parseRomRun, probeRom, romProbeArgv, type GuestRun } from '../../src/drivers/qemu/accel.js';

// Why nested: on the machines this project runs on, /dev/kvm either fails or is absent, so the only KVM that really runs
// guests here is one inside a guest whose virtualization extensions TCG emulates. The argv, the guests and the parsers are
// the production ones; only where KVM comes from differs.
const host = new LocalHost();
const CACHE = '/var/lib/hangar-test-cache/vm';
const QEMU = '/usr/bin/qemu-system-x86_64';
const tcgHasSvm = existsSync(QEMU) && (await host.exec([QEMU, '-accel', 'tcg', '-cpu', 'help'], { allowFailure: true })).stdout.includes('svm');

const quote = (a: string) => `'${a.replaceAll("'", "'\\''")}'`;

/** The L1 init: load KVM, run the ROM probe and the Linux boot check under it, print each one's output and exit status, power off. */
function l1Init(rom: string[], linux: string[]): string {
  return [
    '#!/bin/sh',
    'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev',
    'for m in irqbypass kvm kvm-amd; do insmod /mods/$m.ko; done',
    'ls -l /dev/kvm',
    'up() { cut -d" " -f1 /proc/uptime; }',
    `echo "=== rom start $(up)"; ${rom.map(quote).join(' ')} 2>/tmp/rom.err; echo "=== rom rc=$? end $(up)"; cat /tmp/rom.err`,
    `echo "=== linux start $(up)"; ${linux.map(quote).join(' ')} 2>/tmp/linux.err; echo "=== linux rc=$? end $(up)"; cat /tmp/linux.err`,
    'echo "=== done"',
    'poweroff -f',
    '',
  ].join('\n');
}

/** One section of the L1 console: the guest's output, QEMU's exit status and stderr, and its time. */
function section(out: string, name: string): { stdout: string; stderr: string; code: number; elapsedMs: number } {
  const m = new RegExp(`=== ${name} start ([\\d.]+)\\r?\\n([\\s\\S]*?)=== ${name} rc=(\\d+) end ([\\d.]+)\\r?\\n([\\s\\S]*?)(?==== )`).exec(out);
  if (!m) throw new Error(`no ${name} section in the L1 console:\n${out.slice(-3000)}`);
  return { stdout: m[2]!, code: Number(m[3]), elapsedMs: (Number(m[4]) - Number(m[1])) * 1000, stderr: m[5]! };
}

describe('the accelerator check under a KVM that runs guests', () => {
  it.skipIf(!tcgHasSvm)('chooses KVM: the ROM guest and the Linux test guest both run under the nested KVM (skipped: this QEMU\'s TCG has no SVM)', async () => {
    const guest = await prepareAccelGuest(host, CACHE);
    const kernel = await fetchDebianKernel(host, { cacheDir: CACHE });
    const files: CpioEntry[] = [];
    const dirs = new Set<string>();
    const add = (path: string, data: Buffer, mode = 0o755) => {
      const parts = path.split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = parts.slice(0, i).join('/');
        if (!dirs.has(d)) { dirs.add(d); files.push({ path: d, type: 'dir', mode: 0o755 }); }
      }
      files.push({ path, type: 'file', mode, data });
    };
    add('bin/busybox', readFileSync(BUSYBOX_STATIC));
    for (const a of ['sh', 'mount', 'insmod', 'ls', 'cut', 'cat', 'echo', 'poweroff']) files.push({ path: `bin/${a}`, type: 'symlink', target: 'busybox' });
    for (const m of ['virt/lib/irqbypass.ko', 'arch/x86/kvm/kvm.ko', 'arch/x86/kvm/kvm-amd.ko']) add(`mods/${posix.basename(m)}`, readFileSync(posix.join(kernel.modulesDir, 'kernel', m)), 0o644);
    add(QEMU.slice(1), readFileSync(QEMU));
    for (const lib of parseLdd((await host.exec(['ldd', QEMU])).stdout, QEMU)) add(lib.slice(1), readFileSync(lib));
    // Firmware and option ROMs QEMU loads for q35 and a direct kernel boot.
    for (const d of ['/usr/share/qemu', '/usr/share/seabios']) {
      for (const f of readdirSync(d)) if (f.endsWith('.bin') && statSync(posix.join(d, f)).isFile()) add(posix.join(d, f).slice(1), readFileSync(posix.join(d, f)), 0o644);
    }
    add('probe.rom', probeRom(), 0o644);
    add('vmlinux', readFileSync(guest.kernel), 0o644);
    add('guest.cpio', readFileSync(guest.initrd), 0o644);
    files.push({ path: 'dev', type: 'dir', mode: 0o755 }, { path: 'dev/console', type: 'char', mode: 0o600, major: 5, minor: 1 }, { path: 'tmp', type: 'dir', mode: 0o1777 }, { path: 'proc', type: 'dir', mode: 0o555 }, { path: 'sys', type: 'dir', mode: 0o555 });
    const rom = romProbeArgv(QEMU, 'kvm', '/probe.rom');
    const linux = linuxCheckArgv(QEMU, 'kvm', { ...guest, kernel: '/vmlinux', initrd: '/guest.cpio' });
    add('init', Buffer.from(l1Init(rom, linux)));
    const dir = await host.exec(['mktemp', '-d', '/tmp/hangar-nested-XXXXXX']).then((r) => r.stdout.trim());
    try {
      const initrd = posix.join(dir, 'l1.cpio');
      await host.fs.writeAtomic(initrd, packCpio(files));
      // L1: software emulation with every feature TCG has, SVM (and nested paging) among them.
      const l1 = await host.exec([QEMU, '-accel', 'tcg', '-cpu', 'max', '-machine', 'q35', '-m', '1536', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
        '-kernel', kernel.vmlinux, '-initrd', initrd, '-append', 'console=ttyS0 quiet panic=-1 rdinit=/init', '-serial', 'stdio'], { allowFailure: true, timeoutMs: 400_000 });
      const out = l1.stdout;
      expect(out, `L1 console:\n${out.slice(-3000)}\n${l1.stderr.slice(-2000)}`).toContain('=== done');
      expect(out).toMatch(/^crw.* \/dev\/kvm/m);
      const kvmRom = parseRomRun('kvm', { ...section(out, 'rom'), timedOut: false });
      const kvmLinux = parseLinuxRun('kvm', guest.marker, { ...section(out, 'linux'), timedOut: false });
      // The yardstick: the same guests with software emulation on this host.
      const romFile = posix.join(dir, 'probe.rom');
      await host.fs.writeAtomic(romFile, probeRom());
      const onHost = async (argv: string[]) => { const t0 = Date.now(); const r = await host.exec(argv, { allowFailure: true, timeoutMs: 120_000 }); return { ...r, timedOut: r.signal === 'SIGTERM', elapsedMs: Date.now() - t0 }; };
      const tcgRom: GuestRun = parseRomRun('tcg', await onHost(romProbeArgv(QEMU, 'tcg', romFile)));
      const tcgLinux: GuestRun = parseLinuxRun('tcg', guest.marker, await onHost(linuxCheckArgv(QEMU, 'tcg', guest)));
      expect(kvmRom, section(out, 'rom').stdout).toMatchObject({ ok: true, reached: 'done' });
      expect(kvmLinux, section(out, 'linux').stdout).toMatchObject({ ok: true, reached: 'booted' });
      const verdict = judgeKvm({ device: { state: 'present' }, rom: { kvm: kvmRom, tcg: tcgRom }, linux: { kvm: kvmLinux, tcg: tcgLinux, kvmDeadlineMs: 15_000 } });
      console.log(`nested KVM: ROM ${Math.round(kvmRom.elapsedMs)} ms, Linux ${Math.round(kvmLinux.elapsedMs)} ms: ${verdict.reason}`);
      expect(verdict.usable).toBe(true);
    } finally {
      await host.fs.rm(dir, { recursive: true, force: true });
    }
  }, 420_000);
});
