// The Linux test guest of the accelerator check: the Debian cloud kernel of Hangar's VM images and a busybox initramfs that prints a marker and powers off.
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import { BUSYBOX_STATIC } from './busybox.js';
import { packCpio } from './cpio.js';
import { fetchDebianKernel } from './debian-kernel.js';
import { VM_CMDLINE } from './busybox-vm.js';

/** What the guest prints on its console once userspace runs. */
export const ACCEL_GUEST_MARKER = 'HANGAR-ACCEL-OK';

/** PID 1 of the test guest: proof that the kernel booted and ran userspace, then an immediate power-off (QEMU exits). */
export const ACCEL_GUEST_INIT = `#!/bin/busybox sh
/bin/busybox echo ${ACCEL_GUEST_MARKER}
/bin/busybox poweroff -f
`;

/** The test guest's initramfs from a static busybox binary. */
export function accelGuestInitrd(busybox: Buffer): Buffer {
  return packCpio([
    { path: 'bin', type: 'dir', mode: 0o755 },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: busybox },
    { path: 'dev', type: 'dir', mode: 0o755 },
    // The kernel opens /dev/console for init before anything could mount devtmpfs.
    { path: 'dev/console', type: 'char', mode: 0o600, major: 5, minor: 1 },
    { path: 'init', type: 'file', mode: 0o755, data: Buffer.from(ACCEL_GUEST_INIT) },
  ]);
}

/** Prepares the test guest in cacheDir (the kernel download is shared with the VM image builds): kernel, initramfs, command line, marker. */
export async function prepareAccelGuest(host: Host, cacheDir: string): Promise<{ kernel: string; initrd: string; cmdline: string; marker: string }> {
  if (!(await host.fs.stat(BUSYBOX_STATIC))?.isFile) throw new AppError('NOT_FOUND', `${BUSYBOX_STATIC} is missing (install the busybox-static package)`);
  const kernel = await fetchDebianKernel(host, { cacheDir, flavour: 'cloud-amd64' });
  if (!kernel.pvh) throw new AppError('BACKEND_FAILED', `The vmlinux of ${kernel.package} has no PVH entry note; QEMU cannot boot it directly`);
  const initrd = posix.join(cacheDir, 'accel-guest.cpio');
  await host.fs.writeAtomic(initrd, accelGuestInitrd(await host.fs.readFile(BUSYBOX_STATIC)), 0o644);
  // panic=-1 with -no-reboot: a guest that cannot run init ends QEMU at once instead of hanging until the deadline.
  return { kernel: kernel.vmlinux, initrd, cmdline: `${VM_CMDLINE} panic=-1 rdinit=/init`, marker: ACCEL_GUEST_MARKER };
}
