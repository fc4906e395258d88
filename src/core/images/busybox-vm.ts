// Builds the busybox VM image offline: Debian's cloud kernel (ELF vmlinux), a busybox initramfs with qemu-ga and acpid, and a small ext4 qcow2 data disk.
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import * as qemuImg from '../../drivers/common/qemu-img.js';
import { BUSYBOX_STATIC } from './busybox.js';
import { fetchDebPackage, fetchDebianKernel, resolveKernelModules, type DebianKernelFlavour } from './debian-kernel.js';

/** Options for buildBusyboxVmImage. */
export interface BusyboxVmOptions {
  /** Cache for downloaded Debian packages (kernel, qemu-guest-agent); a second build downloads nothing. */
  cacheDir: string;
  /** Debian kernel flavour (default cloud-amd64). */
  kernelFlavour?: DebianKernelFlavour;
  /** Size of the data disk in MiB (default 64). */
  diskMiB?: number;
  /** Compress the initramfs with gzip (default false: the plain cpio is 2.3x larger, ~9 MB, but boots ~0.1 s faster under TCG). */
  gzipInitrd?: boolean;
  onProgress?: (msg: string) => void;
}

/**
 * Modules the guest needs, whichever of them the kernel has built in: NIC, disk, guest-agent port, ACPI power button, balloon,
 * entropy, ext4 (and its crc32c, a soft dependency), pvpanic (QEMU sees a guest panic); and Xen's NIC and disk front ends,
 * so that the same image boots as a Xen PV/PVH domain (elsewhere they refuse to load, and the init ignores that).
 */
export const VM_MODULES = ['virtio_pci', 'virtio_net', 'virtio_blk', 'virtio_console', 'button', 'evdev', 'virtio_balloon', 'virtio_rng', 'crc32c_generic', 'ext4', 'pvpanic_mmio', 'xen-netfront', 'xen-blkfront'] as const;

/** Kernel command line measured fastest under TCG (see host-facts); the driver appends hangar.* settings. */
export const VM_CMDLINE = 'console=ttyS0 quiet cryptomgr.notests mitigations=off no_timer_check';

/** Serial-console line the guest prints when its agent and network setup have started: `HANGAR-READY <hostname>`. */
export const VM_READY_MARKER = 'HANGAR-READY';

/** Serial-console line the guest prints when it begins to power down: `HANGAR-POWERDOWN <hostname>`. */
export const VM_POWERDOWN_MARKER = 'HANGAR-POWERDOWN';

/** Name of the virtio-serial port qemu-ga listens on. */
export const GUEST_AGENT_PORT = 'org.qemu.guest_agent.0';

/** File-system label of the data disk; the guest mounts the disk with this label on /data. */
export const DATA_LABEL = 'hangar-data';

const INITTAB = `# busybox init: sysinit brings the VM up, a shell respawns on the console, every shutdown goes through rcK.
::sysinit:/etc/init.d/rcS
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
`;

/** Renders /etc/init.d/rcS of the guest (kernel release decides the module directory). */
export function renderRcS(kernelVersion: string): string {
  return `#!/bin/sh
# Brings the VM up: pseudo file systems, modules, hostname, network, /data, guest agent, ACPI button; then prints the ready marker.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev 2>/dev/null
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
mount -t tmpfs -o mode=0755,nosuid,nodev run /run

HN=busybox IP= GW= DNS=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    hangar.hostname=*) HN="\${arg#*=}" ;;
    hangar.ip=*) IP="\${arg#*=}" ;;
    hangar.gw=*) GW="\${arg#*=}" ;;
    hangar.dns=*) DNS="\${arg#*=}" ;;
  esac
done
hostname "$HN"
echo "$HN" > /etc/hostname

# Dependencies come first in the list; a module the kernel lacks only costs a message.
while read -r m; do
  [ -n "$m" ] && insmod "/lib/modules/${kernelVersion}/$m" 2>/dev/null
done < /etc/hangar/modules

ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  if [ -n "$IP" ]; then
    ip addr add "$IP" dev eth0
    [ -n "$GW" ] && ip route add default via "$GW"
    for s in $(echo "$DNS" | tr , ' '); do echo "nameserver $s"; done > /etc/resolv.conf
  else
    # In the background: a network without DHCP must never hold up the boot.
    setsid udhcpc -f -S -i eth0 -x "hostname:$HN" -s /usr/share/udhcpc/default.script </dev/null >/dev/null 2>&1 &
  fi
fi

dev=$(findfs LABEL=${DATA_LABEL} 2>/dev/null)
if [ -n "$dev" ]; then
  mkdir -p /data
  mount -t ext4 -o noatime "$dev" /data || echo "hangar: cannot mount $dev on /data" > /dev/console
fi

# No udev: name the virtio-serial ports by hand. Port names arrive over the control queue just after the probe.
if grep -qx 0x0003 /sys/bus/virtio/devices/*/device 2>/dev/null; then
  mkdir -p /dev/virtio-ports
  i=0
  while [ $i -lt 40 ]; do
    for d in /sys/class/virtio-ports/*; do
      n=$(cat "$d/name" 2>/dev/null)
      [ -n "$n" ] && ln -sf "../\${d##*/}" "/dev/virtio-ports/$n"
    done
    [ -e /dev/virtio-ports/${GUEST_AGENT_PORT} ] && break
    usleep 50000
    i=$((i+1))
  done
fi
if [ -e /dev/virtio-ports/${GUEST_AGENT_PORT} ]; then
  qemu-ga -d -m virtio-serial -p /dev/virtio-ports/${GUEST_AGENT_PORT} -f /run/qemu-ga.pid -t /run -l /var/log/qemu-ga.log
fi

# The ACPI power button (button + evdev) reaches acpid as an input event; its handler powers off.
if [ -e /dev/input/event0 ]; then
  setsid acpid -f -c /etc/acpi </dev/null >/dev/null 2>&1 &
  ACPID=$!
  # Ready only once acpid holds the input device open: a power-button press before that would be lost.
  i=0
  while [ $i -lt 100 ] && ! ls -l /proc/$ACPID/fd 2>/dev/null | grep -q /dev/input/event; do
    i=$((i + 1)); usleep 20000
  done
fi

echo "${VM_READY_MARKER} $HN" > /dev/console
exit 0
`;
}

// Ends the VM at once instead of letting busybox init sleep through its own kill sequence.
const RCK = `#!/bin/sh
# Shutdown action: announce, stop every process, unmount /data, then power off (or reboot when asked to).
echo "${VM_POWERDOWN_MARKER} $(hostname)" > /dev/console
kill -TERM -1 2>/dev/null
i=0
while [ $i -lt 10 ] && kill -0 -1 2>/dev/null; do usleep 50000; i=$((i+1)); done
kill -KILL -1 2>/dev/null
sync
umount /data 2>/dev/null
if [ -e /run/.reboot-requested ]; then exec /bin/busybox reboot -f; fi
exec /bin/busybox poweroff -f
`;

// busybox reboot signals init (SIGTERM), whose shutdown action cannot tell a reboot from a halt: leave a marker.
const REBOOT = `#!/bin/sh
# Marks the shutdown as a reboot for /etc/init.d/rcK, then asks init to reboot.
: > /run/.reboot-requested
exec /bin/busybox reboot "$@"
`;

// qemu-ga's guest-shutdown runs "shutdown -h|-r|-H -P +0 msg"; busybox has no shutdown applet.
const SHUTDOWN = `#!/bin/sh
# Minimal shutdown(8) for qemu-ga's guest-shutdown: -r reboots, anything else powers off.
for a in "$@"; do [ "$a" = -r ] && exec /sbin/reboot; done
exec /bin/busybox poweroff
`;

// busybox acpid maps the power button (EV_KEY KEY_POWER) to the action PWRF/00000080 under its config directory.
const POWER_BUTTON = `#!/bin/sh
# ACPI power button: a clean power-off through init and rcK.
exec /bin/busybox poweroff
`;

const UDHCPC_SCRIPT = `#!/bin/sh
# udhcpc hook: applies the lease to the interface, the default route and resolv.conf.
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/\${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "\${router%% *}" dev "$interface"
    if [ -n "$dns" ]; then
      for s in $dns; do echo "nameserver $s"; done > /etc/resolv.conf
    fi
    ;;
esac
exit 0
`;

const FILES: [string, string, number][] = [
  ['etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n', 0o644],
  ['etc/group', 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n', 0o644],
  ['etc/hosts', '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n', 0o644],
  ['etc/resolv.conf', '', 0o644],
  ['etc/shells', '/bin/sh\n/bin/ash\n', 0o644],
  ['etc/profile', 'export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1=\'\\h:\\w\\$ \'\n', 0o644],
  ['etc/inittab', INITTAB, 0o644],
  ['etc/init.d/rcK', RCK, 0o755],
  ['etc/acpi/PWRF/00000080', POWER_BUTTON, 0o755],
  ['usr/share/udhcpc/default.script', UDHCPC_SCRIPT, 0o755],
  ['sbin/reboot', REBOOT, 0o755],
  ['sbin/shutdown', SHUTDOWN, 0o755],
];

const DIRS = ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc/hangar', 'etc/init.d', 'proc', 'sys', 'dev', 'run', 'tmp', 'var/log', 'root', 'data', 'lib/x86_64-linux-gnu', 'lib64', 'mnt'];

/** Parses `ldd` output into the absolute paths of the libraries and the loader; throws when one is not found. */
export function parseLdd(output: string, subject: string): string[] {
  const out: string[] = [];
  for (const line of output.split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('linux-vdso') || t.startsWith('linux-gate')) continue;
    const arrow = /^(\S+)\s+=>\s+(.*?)\s*(\(0x[0-9a-f]+\))?$/.exec(t);
    if (arrow?.[1] !== undefined && arrow[2] !== undefined) {
      if (arrow[2] === 'not found' || !arrow[2].startsWith('/')) {
        throw new AppError('NOT_FOUND', `Failed to collect the libraries of ${subject}: ${arrow[1]} is not installed on the host`);
      }
      out.push(arrow[2]);
      continue;
    }
    const direct = /^(\/\S+)\s+\(0x[0-9a-f]+\)$/.exec(t);
    if (direct?.[1] !== undefined) out.push(direct[1]);
  }
  return out;
}

/** Builds the busybox VM image into destDir (created if missing): vmlinux, initrd.img and disk.qcow2; returns the image properties. */
export async function buildBusyboxVmImage(host: Host, destDir: string, opts: BusyboxVmOptions): Promise<{ props: Record<string, string>; description: string }> {
  const progress = opts.onProgress ?? (() => undefined);
  const diskMiB = opts.diskMiB ?? 64;
  if (!Number.isInteger(diskMiB) || diskMiB < 8 || diskMiB > 1024 * 1024) {
    throw new AppError('INVALID_ARGUMENT', `Invalid data disk size ${diskMiB} MiB for the busybox VM image: expected 8 MiB or more`);
  }
  if (!(await host.fs.stat(BUSYBOX_STATIC))?.isFile) {
    throw new AppError('NOT_FOUND', `Failed to build the busybox VM image: ${BUSYBOX_STATIC} is missing (install the busybox-static package)`);
  }
  const bbVersion = /BusyBox v(\S+)/.exec((await host.exec([BUSYBOX_STATIC], { allowFailure: true })).stdout)?.[1] ?? 'unknown';

  const kernel = await fetchDebianKernel(host, { cacheDir: opts.cacheDir, flavour: opts.kernelFlavour ?? 'cloud-amd64', onProgress: progress });
  if (!kernel.pvh) throw new AppError('BACKEND_FAILED', `The vmlinux of ${kernel.package} has no PVH entry note; QEMU cannot boot it directly`);
  const agent = await fetchDebPackage(host, 'qemu-guest-agent', opts.cacheDir, progress);
  const qemuGa = posix.join(agent.root, 'usr/sbin/qemu-ga');
  if (!(await host.fs.stat(qemuGa))?.isFile) throw new AppError('BACKEND_FAILED', `The Debian package qemu-guest-agent ${agent.version} has no /usr/sbin/qemu-ga`);
  const modules = await resolveKernelModules(host, kernel.modulesDir, VM_MODULES);
  if (modules.missing.length > 0) {
    throw new AppError('BACKEND_FAILED', `The Debian kernel ${kernel.version} lacks the modules ${modules.missing.join(', ')} the busybox VM needs`);
  }

  await host.fs.mkdir(destDir, { recursive: true, mode: 0o755 });
  const work = posix.join(destDir, `.build-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  const root = posix.join(work, 'initramfs');
  try {
    progress('Assembling the initramfs');
    await host.fs.mkdir(root, { recursive: true, mode: 0o755 });
    for (const d of DIRS) await host.fs.mkdir(posix.join(root, d), { recursive: true, mode: 0o755 });
    await host.fs.chmod(posix.join(root, 'tmp'), 0o1777);
    await host.fs.chmod(posix.join(root, 'root'), 0o700);
    await host.fs.symlink('/run', posix.join(root, 'var/run'));

    await host.fs.writeAtomic(posix.join(root, 'bin/busybox'), await host.fs.readFile(BUSYBOX_STATIC), 0o755);
    const own = new Set(['bin/busybox', ...FILES.map((f) => f[0])]);
    const applets = (await host.exec([BUSYBOX_STATIC, '--list-full'])).stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.includes('..'));
    if (!applets.includes('sbin/init') || !applets.some((a) => a.endsWith('/acpid'))) {
      throw new AppError('BACKEND_FAILED', `Failed to build the busybox VM image: ${BUSYBOX_STATIC} lacks the init or acpid applet`);
    }
    for (const rel of applets) {
      if (own.has(rel)) continue;
      await host.fs.mkdir(posix.dirname(posix.join(root, rel)), { recursive: true });
      await host.fs.symlink('/bin/busybox', posix.join(root, rel));
    }
    // The kernel runs /init; as "init" busybox becomes busybox init and reads /etc/inittab.
    await host.fs.symlink('/bin/busybox', posix.join(root, 'init'));
    for (const [rel, text, mode] of [...FILES, ['etc/init.d/rcS', renderRcS(kernel.version), 0o755] as [string, string, number]]) {
      await host.fs.mkdir(posix.dirname(posix.join(root, rel)), { recursive: true });
      await host.fs.writeAtomic(posix.join(root, rel), text, mode);
      await host.fs.chmod(posix.join(root, rel), mode);
    }
    // The kernel opens /dev/console for init before anything mounts devtmpfs.
    await host.exec(['mknod', '-m', '600', posix.join(root, 'dev/console'), 'c', '5', '1']);

    for (const rel of modules.load) {
      const to = posix.join(root, 'lib/modules', kernel.version, rel);
      await host.fs.mkdir(posix.dirname(to), { recursive: true });
      await host.fs.writeAtomic(to, await host.fs.readFile(posix.join(kernel.modulesDir, rel)), 0o644);
    }
    await host.fs.writeAtomic(posix.join(root, 'etc/hangar/modules'), modules.load.join('\n') + '\n');

    // qemu-ga is dynamically linked; the host's libraries are Debian's own, the same the guest agent was built against.
    await host.fs.writeAtomic(posix.join(root, 'usr/sbin/qemu-ga'), await host.fs.readFile(qemuGa), 0o755);
    const ldd = await host.exec(['ldd', qemuGa]);
    for (const lib of parseLdd(ldd.stdout, 'qemu-ga')) {
      const to = posix.join(root, lib.startsWith('/lib64/') ? lib : posix.join('lib/x86_64-linux-gnu', posix.basename(lib)));
      await host.fs.writeAtomic(to, await host.fs.readFile(lib), 0o755);
    }

    progress('Packing the initramfs');
    const list = await listTree(host, root);
    const cpio = posix.join(work, 'initrd.cpio');
    await host.exec(['cpio', '--quiet', '-o', '-H', 'newc', '-R', '0:0', '--reproducible', '-O', cpio], { cwd: root, input: list.join('\n') + '\n', timeoutMs: 300_000 });
    let initrd = cpio;
    if (opts.gzipInitrd ?? false) {
      await host.exec(['gzip', '-n', '-6', '-f', cpio], { timeoutMs: 300_000 });
      initrd = `${cpio}.gz`;
    }

    progress(`Creating the ${diskMiB} MiB data disk`);
    const content = posix.join(work, 'data');
    await host.fs.mkdir(content, { recursive: true });
    await host.fs.writeAtomic(posix.join(content, 'README'), 'The data disk of a Hangar busybox VM, mounted on /data.\n');
    const raw = posix.join(work, 'disk.raw');
    // Inode tables and journal are zeroed here, not lazily by the guest, so the qcow2 stays small after first boot.
    await host.exec(['mkfs.ext4', '-q', '-F', '-L', DATA_LABEL, '-E', 'lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0', '-d', content, raw, `${diskMiB}M`], { timeoutMs: 300_000 });
    await qemuImg.convert(host, { source: raw, from: 'raw', dest: posix.join(work, 'disk.qcow2'), to: 'qcow2' }, { timeoutMs: 300_000 });

    progress('Copying the kernel');
    await host.exec(['cp', '--sparse=always', kernel.vmlinux, posix.join(work, 'vmlinux')]);
    for (const [from, to] of [[posix.join(work, 'vmlinux'), 'vmlinux'], [initrd, 'initrd.img'], [posix.join(work, 'disk.qcow2'), 'disk.qcow2']] as const) {
      await host.fs.rename(from, posix.join(destDir, to));
    }
  } finally {
    await host.fs.rm(work, { recursive: true, force: true });
  }

  return {
    props: {
      kernel: 'vmlinux',
      initrd: 'initrd.img',
      disk: 'disk.qcow2',
      cmdline: VM_CMDLINE,
      // Measured under TCG with these virtio devices: q35 (MSI-X) ~2.0 s to the marker, pc (ACPI interrupt links) ~2.3 s.
      machine: 'q35',
      cpu: 'qemu64',
      guestAgent: 'qemu-ga',
      guestAgentPort: GUEST_AGENT_PORT,
      powerdown: 'acpi',
      readyMarker: VM_READY_MARKER,
      os: 'busybox',
      release: bbVersion,
      kernelVersion: kernel.version,
      kernelPackage: `${kernel.package} ${kernel.packageVersion}`,
      guestAgentVersion: agent.version,
    },
    description: `BusyBox ${bbVersion} VM (Debian kernel ${kernel.version}, qemu-guest-agent ${agent.version}, ${diskMiB} MiB data disk)`,
  };
}

// Every path below root, relative and sorted, directories before their contents (what cpio -o reads on stdin).
async function listTree(host: Host, root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await host.fs.readdir(rel ? posix.join(root, rel) : root)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      out.push(r);
      const st = await host.fs.stat(posix.join(root, r));
      if (st?.isDirectory) await walk(r);
    }
  };
  await walk('');
  return out;
}
