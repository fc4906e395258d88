// Tests of the busybox VM image builder's pure parts: ldd parsing and the guest's boot script.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { GUEST_AGENT_PORT, parseLdd, renderRcS, VM_CMDLINE, VM_MODULES, VM_READY_MARKER } from './busybox-vm.js';

describe('parseLdd', () => {
  it('collects libraries and the loader, skipping the vDSO', () => {
    const out = `\tlinux-vdso.so.1 (0x00007ffd)\n\tlibglib-2.0.so.0 => /lib/x86_64-linux-gnu/libglib-2.0.so.0 (0x00007f2c)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2a)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f2c)\n`;
    expect(parseLdd(out, 'qemu-ga')).toEqual(['/lib/x86_64-linux-gnu/libglib-2.0.so.0', '/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2']);
  });
  it('names a missing library', () => {
    expect(() => parseLdd('\tlibnuma.so.1 => not found\n', 'qemu-ga')).toThrow(/libnuma\.so\.1 is not installed/);
  });
});

describe('renderRcS', () => {
  const rcs = renderRcS('6.1.0-56-cloud-amd64');
  it('is valid busybox sh', () => {
    execFileSync('/bin/busybox', ['sh', '-n', '-c', rcs]);
  });
  it('loads modules, configures the network without blocking, starts the agent and acpid, then prints the marker', () => {
    expect(rcs).toContain('/lib/modules/6.1.0-56-cloud-amd64/');
    expect(rcs).toMatch(/setsid udhcpc -f .*&$/m);
    expect(rcs).toContain(`qemu-ga -d -m virtio-serial -p /dev/virtio-ports/${GUEST_AGENT_PORT}`);
    expect(rcs).toMatch(/setsid acpid -f .*&$/m);
    expect(rcs).toContain('hangar.hostname=*');
    expect(rcs.trimEnd().split('\n').slice(-2)[0]).toBe(`echo "${VM_READY_MARKER} $HN" > /dev/console`);
  });
  it('needs the drivers for the NIC, disk, agent port and power button', () => {
    for (const m of ['virtio_net', 'virtio_blk', 'virtio_console', 'button', 'evdev', 'pvpanic_mmio', 'xen-netfront', 'xen-blkfront']) expect(VM_MODULES).toContain(m);
    expect(VM_CMDLINE).toMatch(/^console=ttyS0 quiet /);
  });
});
