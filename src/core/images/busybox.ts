// Builds a busybox container root file system offline from the host's busybox-static binary.
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';

/** Where the busybox-static package installs its binary. */
export const BUSYBOX_STATIC = '/bin/busybox';

const DIRS: [string, number][] = [
  ['bin', 0o755], ['sbin', 0o755], ['usr', 0o755], ['usr/bin', 0o755], ['usr/sbin', 0o755],
  ['etc', 0o755], ['etc/init.d', 0o755], ['proc', 0o555], ['sys', 0o555], ['dev', 0o755],
  ['dev/pts', 0o755], ['dev/shm', 0o1777], ['tmp', 0o1777], ['run', 0o755], ['var', 0o755],
  ['var/log', 0o755], ['var/tmp', 0o1777], ['var/spool', 0o755], ['root', 0o700], ['home', 0o755],
  ['mnt', 0o755], ['lib', 0o755], ['opt', 0o755],
];

const INITTAB = `# busybox init: SIGUSR1 halts, SIGUSR2 powers off, SIGTERM reboots; all run the shutdown action first.
::sysinit:/etc/init.d/rcS
console::respawn:/sbin/getty -L 115200 console vt100
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
`;

// No udhcpc here: the address comes from the LXC config, and a DHCP client in the foreground would block shutdown.
const RCS = `#!/bin/sh
# Mounts what LXC does not provide (LXC mounts /proc, /sys, /dev and /dev/pts) and brings the loopback up.
mounted() { grep -q " $1 " /proc/mounts; }
mkdir -p /dev/shm
mounted /dev/shm || mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
mounted /run || mount -t tmpfs -o mode=0755,nosuid,nodev run /run
ip link set lo up 2>/dev/null
for s in /etc/init.d/S*; do [ -x "$s" ] && "$s" start; done
exit 0
`;

// Ends the container at once instead of letting busybox init sleep through its own kill sequence (~2 s):
// reboot(2) in a PID namespace ends the namespace; poweroff tells LXC "stopped", reboot tells it "restart".
const RCK = `#!/bin/sh
# Shutdown action: stop services, terminate every process, then end the PID namespace.
for s in /etc/init.d/K*; do [ -x "$s" ] && "$s" stop; done
kill -TERM -1 2>/dev/null
i=0
while [ $i -lt 10 ] && kill -0 -1 2>/dev/null; do usleep 100000; i=$((i+1)); done
kill -KILL -1 2>/dev/null
sync
umount -a -r 2>/dev/null
if [ -e /run/.reboot-requested ]; then exec /bin/busybox reboot -f; fi
exec /bin/busybox poweroff -f
`;

// busybox reboot signals init (SIGTERM), whose shutdown action cannot tell a reboot from a halt: leave a marker.
const REBOOT = `#!/bin/sh
# Marks the shutdown as a reboot for /etc/init.d/rcK, then asks init to reboot.
: > /run/.reboot-requested
exec /bin/busybox reboot "$@"
`;

const FILES: [string, string, number][] = [
  ['etc/passwd', 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n', 0o644],
  ['etc/group', 'root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n', 0o644],
  // Empty root password: the console is reachable only by whoever controls the host.
  ['etc/shadow', 'root::19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n', 0o640],
  ['etc/hostname', 'busybox\n', 0o644],
  ['etc/hosts', '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n', 0o644],
  ['etc/resolv.conf', '# Written by the network setup of the instance.\n', 0o644],
  ['etc/shells', '/bin/sh\n/bin/ash\n', 0o644],
  ['etc/profile', 'export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1=\'\\h:\\w\\$ \'\n', 0o644],
  ['etc/inittab', INITTAB, 0o644],
  ['etc/init.d/rcS', RCS, 0o755],
  ['etc/init.d/rcK', RCK, 0o755],
];

/** Builds a busybox rootfs in destDir (created if missing) and returns the image properties the driver needs. */
export async function buildBusyboxRootfs(host: Host, destDir: string): Promise<{ props: Record<string, string>; description: string }> {
  const st = await host.fs.stat(BUSYBOX_STATIC);
  if (!st?.isFile) {
    throw new AppError('NOT_FOUND', `Failed to build the busybox image: ${BUSYBOX_STATIC} is missing (install the busybox-static package)`);
  }
  const list = await host.exec([BUSYBOX_STATIC, '--list-full']);
  const applets = list.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const version = /BusyBox v(\S+)/.exec((await host.exec([BUSYBOX_STATIC], { allowFailure: true })).stdout)?.[1] ?? 'unknown';

  await host.fs.mkdir(destDir, { recursive: true, mode: 0o755 });
  for (const [dir, mode] of DIRS) {
    const p = posix.join(destDir, dir);
    await host.fs.mkdir(p, { recursive: true });
    await host.fs.chmod(p, mode);
  }
  await host.fs.writeAtomic(posix.join(destDir, 'bin/busybox'), await host.fs.readFile(BUSYBOX_STATIC), 0o755);
  await host.fs.chmod(posix.join(destDir, 'bin/busybox'), 0o755);

  const own = new Set(['bin/busybox', 'sbin/reboot']);
  for (const rel of applets) {
    if (own.has(rel) || rel.includes('..')) continue;
    const p = posix.join(destDir, rel);
    await host.fs.mkdir(posix.dirname(p), { recursive: true });
    if (await host.fs.stat(p)) await host.fs.rm(p, { force: true });
    await host.fs.symlink('/bin/busybox', p);
  }
  for (const [rel, text, mode] of [...FILES, ['sbin/reboot', REBOOT, 0o755] as [string, string, number]]) {
    const p = posix.join(destDir, rel);
    if (await host.fs.stat(p)) await host.fs.rm(p, { force: true });
    await host.fs.writeAtomic(p, text, mode);
    await host.fs.chmod(p, mode);
  }
  if (!(await host.fs.stat(posix.join(destDir, 'sbin/init')))) {
    throw new AppError('BACKEND_FAILED', `Failed to build the busybox image: ${BUSYBOX_STATIC} has no init applet`);
  }
  return {
    props: { init: '/sbin/init', haltSignal: 'SIGUSR2', os: 'busybox', release: version },
    description: `BusyBox ${version} (static, from the host's busybox-static)`,
  };
}
