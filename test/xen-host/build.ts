// Builds the Xen test host offline from Debian bookworm packages: xen.elf, the Dom0 kernel, a busybox Dom0 initramfs with xl and dropbear, SSH keys, a manifest; cached by recipe hash.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Host } from '../../src/host/host.js';
import { BUSYBOX_STATIC } from '../../src/core/images/busybox.js';
import { parseLdd } from '../../src/core/images/busybox-vm.js';
import { extractVmlinux, fetchDebPackage, parseMetaDepends, resolveKernelModules, safeVersion, type UnpackedDeb } from '../../src/core/images/debian-kernel.js';

/** Where built hosts are cached by default: one directory per recipe hash, plus the shared package cache `debs/`. */
export const XEN_HOST_CACHE_ROOT = '/var/cache/hangar/xen-host';

/** Line Dom0's init prints on the (serial) console once xenstored, xenconsoled, the network and the SSH server run. */
export const XEN_HOST_READY_MARKER = 'HANGAR-XEN-HOST-READY';

/** The bridge Dom0 creates for domU vifs, and its address. */
export const XEN_BRIDGE = 'xenbr0';
/** Dom0's address on XEN_BRIDGE (domUs get addresses in this /24). */
export const XEN_BRIDGE_ADDRESS = '10.251.0.1/24';

/** Dom0's tmpfs for domU kernels, initrds and disk files. */
export const XEN_IMAGES_DIR = '/var/lib/xen-images';

/** Dom0's address on QEMU's user network and the gateway that forwards the SSH port. */
export const DOM0_NET = { address: '10.0.2.15/24', gateway: '10.0.2.2' } as const;

/** Debian packages the host is made of (downloaded and unpacked, never installed here), with what each is for. */
export const XEN_HOST_PACKAGES: readonly { name: string; why: string }[] = [
  { name: 'xen-hypervisor-4.17-amd64', why: 'the hypervisor: xen-4.17-amd64.gz, gunzipped to the multiboot ELF QEMU -kernel boots' },
  { name: 'xen-utils-4.17', why: 'xl, oxenstored, xenconsoled, xenconsole (xl console), xen-init-dom0, libxl-save-helper (save/restore), xentop' },
  { name: 'xen-utils-common', why: 'hotplug scripts libxl runs (vif-bridge, block) and /etc/xen/xl.conf' },
  { name: 'xenstore-utils', why: 'xenstore-read/write/ls/..., used by the hotplug scripts and handy in tests' },
  { name: 'libxenmisc4.17', why: 'libxenlight, libxlutil, libxenctrl, libxenguest, libxenstat' },
  { name: 'libxencall1', why: 'hypercall library' },
  { name: 'libxenevtchn1', why: 'event channel library' },
  { name: 'libxenforeignmemory1', why: 'foreign memory mapping library' },
  { name: 'libxengnttab1', why: 'grant table library' },
  { name: 'libxenstore4', why: 'xenstore client library' },
  { name: 'libxentoollog1', why: 'tool logging library' },
  { name: 'libxentoolcore1', why: 'tool core library (every libxen* links it)' },
  { name: 'libxendevicemodel1', why: 'device model library' },
  { name: 'libxenhypfs1', why: 'hypervisor fs library' },
  { name: 'libyajl2', why: 'JSON library of libxl (xl list -l)' },
  { name: 'libgcc-s1', why: 'libgcc_s.so.1, dlopened by glibc for pthread_cancel in xl create (invisible to ldd)' },
  { name: 'dropbear-bin', why: 'the SSH server (dropbear) and dropbearconvert (host key to dropbear format)' },
  { name: 'libtomcrypt1', why: 'crypto library of dropbear' },
  { name: 'libtommath1', why: 'bignum library of dropbear' },
  { name: 'openssh-sftp-server', why: 'sftp-server, so SFTP and scp work against the host' },
];

/** Dom0 kernel modules: Xen backends and devices, the domU bridge, loop (file disks), QEMU's virtio NIC, tun. */
export const DOM0_MODULES = ['xen-evtchn', 'xen-privcmd', 'xenfs', 'xen-gntdev', 'xen-gntalloc', 'xen-netback', 'xen-blkback', 'bridge', 'loop', 'virtio_pci', 'virtio_net', 'tun'] as const;

// Xen tools, from xen-utils-4.17; libxl finds its helpers under LIBEXEC_BIN, so they keep that path.
const XEN_LIBEXEC = 'usr/lib/xen-4.17/bin';
const XEN_BINARIES = ['xl', 'oxenstored', 'xenconsoled', 'xenconsole', 'xen-init-dom0', 'libxl-save-helper', 'xentop', 'xenstore-control'] as const;
const XENSTORE_TOOLS = ['xenstore', 'xenstore-read', 'xenstore-write', 'xenstore-exists', 'xenstore-rm', 'xenstore-ls', 'xenstore-list', 'xenstore-chmod', 'xenstore-watch'] as const;
// From the build host's own Debian packages: the hotplug scripts are bash and lock with util-linux flock; the block script wants util-linux losetup;
// /bin/sh is dash and tar is GNU tar, as on a Debian Dom0 (busybox ash runs its own tar applet, which refuses --xattrs,
// for every command hangard sends); hangard converts qcow2 disks there with qemu-img.
const HOST_BINARIES = [
  ['/bin/dash', 'bin/sh'], ['/bin/bash', 'bin/bash'], ['/usr/bin/flock', 'usr/bin/flock'], ['/usr/sbin/losetup', 'usr/sbin/losetup'], ['/bin/tar', 'bin/tar'], ['/usr/bin/qemu-img', 'usr/bin/qemu-img'],
] as const;

/** What a build produced (absolute paths into the cache) and how it was made. */
export interface XenHostArtifacts {
  /** The cache directory of this recipe. */
  dir: string;
  /** Recipe hash (the directory name). */
  key: string;
  /** True when this call found the build in the cache. */
  cached: boolean;
  xenElf: string;
  /** Dom0's kernel (Debian's generic amd64 kernel as an ELF vmlinux). */
  kernel: string;
  initrd: string;
  /** Private key authorised for root in Dom0 (OpenSSH format, mode 0600). */
  identityFile: string;
  /** Dom0's host public key, `ssh-ed25519 AAAA...`. */
  hostKey: string;
  /** Its SHA256 fingerprint as ssh-keygen -l prints it (`SHA256:...`). */
  hostKeyFingerprint: string;
  manifest: XenHostManifest;
}

/** manifest.json of a built host. */
export interface XenHostManifest {
  key: string;
  builtAt: string;
  buildMs: number;
  xenVersion: string;
  kernel: { package: string; version: string; release: string };
  packages: { name: string; version: string }[];
  hostFiles: { path: string; sha256: string }[];
  modules: string[];
  hostKey: string;
  hostKeyFingerprint: string;
  readyMarker: string;
  bridge: string;
  bridgeAddress: string;
  imagesDir: string;
  initrdBytes: number;
}

/** Options for buildXenHost. */
export interface BuildXenHostOptions {
  /** Default XEN_HOST_CACHE_ROOT; packages go to <cacheRoot>/debs. */
  cacheRoot?: string;
  onProgress?: (msg: string) => void;
}

/** Renders Dom0's /init: mounts, modules, xenfs, xenstored, xen-init-dom0, xenconsoled, network, bridge, image tmpfs, dropbear, marker; then busybox init. */
export function renderDom0Init(kernelRelease: string): string {
  const [addr, gw] = [DOM0_NET.address, DOM0_NET.gateway];
  return `#!/bin/sh
# Dom0 init of the Hangar Xen test host: brings up the Xen toolstack, the network and SSH, prints the ready marker, then becomes busybox init.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "hangar-xen-host: $*" > /dev/console; }
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
# No udev: the links it would make. The block hotplug script's lock (stat -L /dev/stdin) spins for ever without them.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
mount -t tmpfs -o mode=0755,nosuid,nodev run /run
mkdir -p /run/xen /run/xenstored /run/xen-hotplug /run/lock /var/lib/xen /var/lib/xenstored /var/log/xen/console
hostname xenhost

# Dependencies come first in the list (resolved at build time: there is no depmod here).
while read -r m; do
  [ -n "$m" ] && { insmod "/lib/modules/${kernelRelease}/$m" || say "insmod $m failed"; }
done < /etc/hangar/modules

# The NIC first, so that its link comes up while the toolstack starts.
ip link set lo up
ip link set eth0 up && ip addr add ${addr} dev eth0 && ip route add default via ${gw} || say "eth0 setup failed"

mount -t xenfs xenfs /proc/xen || say "cannot mount xenfs"
grep -q control_d /proc/xen/capabilities 2>/dev/null || say "not running as Xen dom0"

# oxenstored, as Debian's /etc/init.d/xen prefers it (C xenstored 4.17 segfaulted here under domU device traffic);
# it forks into the background, and libxl needs its socket before anything else.
oxenstored --pid-file=/run/xenstored.pid || say "oxenstored failed"
i=0
while [ ! -S /run/xenstored/socket ] && [ $i -lt 200 ]; do usleep 50000; i=$((i + 1)); done
[ -S /run/xenstored/socket ] || say "xenstored socket missing"
xen-init-dom0 >/var/log/xen/xen-init-dom0.log 2>&1 || say "xen-init-dom0 failed: $(tail -n 3 /var/log/xen/xen-init-dom0.log)"
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console || say "xenconsoled failed"

# vif-bridge adds each domU's vif to this bridge; forward delay 0 so a vif forwards at once.
# busybox brctl here lacks stp/setfd: STP is off on a new bridge, and sysfs sets the forward delay.
brctl addbr ${XEN_BRIDGE} && echo 0 > /sys/class/net/${XEN_BRIDGE}/bridge/forward_delay || say "bridge setup failed"
ip addr add ${XEN_BRIDGE_ADDRESS} dev ${XEN_BRIDGE}
ip link set ${XEN_BRIDGE} up

mkdir -p ${XEN_IMAGES_DIR}
mount -t tmpfs -o mode=0755,nosuid,nodev xen-images ${XEN_IMAGES_DIR}

# Ready only with carrier: a connection forwarded before it stalls in TCP's SYN back-off (measured ~6 s with e1000).
i=0
while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 200 ]; do usleep 50000; i=$((i + 1)); done
[ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ] || say "eth0 has no carrier"

# Keys only (-s -g); in the foreground under setsid so its log goes to a file.
setsid dropbear -F -E -s -g -p 22 -r /etc/dropbear/dropbear_ed25519_host_key -P /run/dropbear.pid </dev/null >>/var/log/dropbear.log 2>&1 &

echo "${XEN_HOST_READY_MARKER} $(cat /proc/xen/capabilities 2>/dev/null)" > /dev/console
# busybox init reaps the orphans of the daemons above and powers off on ctrl-alt-del.
exec /bin/busybox init
`;
}

// busybox init with no respawn entries just waits; shutdown powers the machine off at once.
const INITTAB = `# busybox init of the Xen test host: nothing to respawn; ctrl-alt-del and shutdown power off.
::ctrlaltdel:/bin/busybox poweroff -f
::shutdown:/bin/busybox sync
`;

const FILES: [string, string, number][] = [
  ['etc/passwd', 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n', 0o644],
  ['etc/group', 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n', 0o644],
  ['etc/shells', '/bin/sh\n/bin/ash\n/bin/bash\n', 0o644],
  ['etc/hosts', '127.0.0.1\tlocalhost xenhost\n::1\tlocalhost ip6-localhost ip6-loopback\n', 0o644],
  ['etc/hostname', 'xenhost\n', 0o644],
  ['etc/resolv.conf', '', 0o644],
  ['etc/profile', 'export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1=\'\\h:\\w\\$ \'\n', 0o644],
  ['etc/inittab', INITTAB, 0o644],
];

const DIRS = ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'usr/lib/openssh', 'lib/x86_64-linux-gnu', 'lib64', 'etc/hangar', 'etc/dropbear', 'etc/xen', 'proc', 'sys', 'dev', 'run', 'tmp', 'var/lib', 'var/log', 'root', 'mnt', XEN_IMAGES_DIR.slice(1)];

/** Builds the Xen test host into <cacheRoot>/<recipe hash>/ unless it is there already; returns its artifacts. */
export async function buildXenHost(host: Host, opts: BuildXenHostOptions = {}): Promise<XenHostArtifacts> {
  const t0 = Date.now();
  const cacheRoot = opts.cacheRoot ?? XEN_HOST_CACHE_ROOT;
  const progress = opts.onProgress ?? (() => undefined);
  const debDir = posix.join(cacheRoot, 'debs');

  // Resolving the recipe (package versions, libraries) is cheap; a cache hit stops right after it.
  const versions = await resolveVersions(host, cacheRoot);
  const debs = new Map<string, UnpackedDeb>();
  for (const name of [...XEN_HOST_PACKAGES.map((p) => p.name), versions.kernelPackage]) {
    const version = versions.versions[name];
    const root = version === undefined ? undefined : posix.join(debDir, `${name}_${safeVersion(version)}`);
    const have = root !== undefined && (await host.fs.stat(root))?.isDirectory;
    debs.set(name, have ? { name, version: version!, root: root! } : await fetchDebPackage(host, name, debDir, progress));
  }
  const deb = (name: string): UnpackedDeb => debs.get(name)!;
  const kdeb = deb(versions.kernelPackage);
  const kernel = {
    package: kdeb.name, packageVersion: kdeb.version, version: kdeb.name.slice('linux-image-'.length),
    modulesDir: posix.join(kdeb.root, 'lib/modules', kdeb.name.slice('linux-image-'.length)),
    vmlinuz: posix.join(kdeb.root, 'boot', `vmlinuz-${kdeb.name.slice('linux-image-'.length)}`),
    // Where fetchDebianKernel would extract it, so either fills it for the other.
    vmlinux: posix.join(kdeb.root, 'boot', `vmlinux-${kdeb.name.slice('linux-image-'.length)}`),
  };
  const modules = await resolveKernelModules(host, kernel.modulesDir, DOM0_MODULES);
  if (modules.missing.length > 0) throw new Error(`The Debian kernel ${kernel.version} lacks the Dom0 modules ${modules.missing.join(', ')}`);
  if (!(await host.fs.stat(BUSYBOX_STATIC))?.isFile) throw new Error(`${BUSYBOX_STATIC} is missing (install busybox-static)`);

  // Binaries: [source, path inside the initramfs].
  const utils = deb('xen-utils-4.17').root;
  const binaries: [string, string][] = [
    ...XEN_BINARIES.map((b): [string, string] => [posix.join(utils, XEN_LIBEXEC, b), posix.join(XEN_LIBEXEC, b)]),
    ...XENSTORE_TOOLS.map((b): [string, string] => [posix.join(deb('xenstore-utils').root, 'usr/bin', b), posix.join('usr/bin', b)]),
    [posix.join(deb('dropbear-bin').root, 'usr/sbin/dropbear'), 'usr/sbin/dropbear'],
    [posix.join(deb('openssh-sftp-server').root, 'usr/lib/openssh/sftp-server'), 'usr/lib/openssh/sftp-server'],
    ...HOST_BINARIES.map(([from, to]): [string, string] => [from, to]),
  ];
  // ldd finds the packaged libraries through LD_LIBRARY_PATH; the rest (glibc, zlib, ...) are the build host's own Debian ones.
  const libDirs: string[] = [];
  for (const d of debs.values()) {
    for (const sub of ['usr/lib/x86_64-linux-gnu', 'lib/x86_64-linux-gnu']) {
      if ((await host.fs.stat(posix.join(d.root, sub)))?.isDirectory) libDirs.push(posix.join(d.root, sub));
    }
  }
  const env = { LD_LIBRARY_PATH: libDirs.join(':') };
  const libs = new Set<string>();
  for (const [from] of binaries) {
    for (const lib of parseLdd((await host.exec(['ldd', from], { env })).stdout, from)) libs.add(lib);
  }
  const libgcc = libDirs.map((d) => posix.join(d, 'libgcc_s.so.1'));
  let libgccPath: string | undefined;
  for (const p of libgcc) if ((await host.fs.stat(p))?.isFile) libgccPath = p;
  if (!libgccPath) throw new Error('libgcc-s1 has no libgcc_s.so.1');
  libs.add(libgccPath);

  const scriptsDir = posix.join(deb('xen-utils-common').root, 'etc/xen/scripts');
  const init = renderDom0Init(kernel.version);
  const hostFiles = [BUSYBOX_STATIC, ...HOST_BINARIES.map(([from]) => from), ...[...libs].filter((l) => !l.startsWith(cacheRoot))].sort();
  const hostHashes: { path: string; sha256: string }[] = [];
  for (const p of hostFiles) hostHashes.push({ path: p, sha256: sha256(await host.fs.readFile(p)) });
  const packages = [...debs.values()].map((d) => ({ name: d.name, version: d.version }));
  const recipe = {
    // This file's own text: a change to how the host is assembled is a new recipe.
    builder: sha256(await host.fs.readFile(import.meta.filename)), packages, kernel: `${kernel.package} ${kernel.packageVersion}`, modules: modules.load, init, files: FILES, dirs: DIRS,
    binaries: binaries.map((b) => b[1]), libs: [...libs].map((l) => posix.basename(l)).sort(), hostHashes,
  };
  const key = sha256(JSON.stringify(recipe)).slice(0, 16);
  const dir = posix.join(cacheRoot, key);
  const found = await readArtifacts(host, dir, true);
  if (found) return found;

  const work = posix.join(cacheRoot, `.build-${key}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  const root = posix.join(work, 'initramfs');
  try {
    await host.fs.mkdir(root, { recursive: true, mode: 0o755 });
    progress('Unpacking the hypervisor');
    const xenGz = posix.join(deb('xen-hypervisor-4.17-amd64').root, 'boot/xen-4.17-amd64.gz');
    await host.fs.writeAtomic(posix.join(work, 'xen.elf'), gunzipSync(await host.fs.readFile(xenGz)), 0o644);
    const xenVersion = /^\d+\.\d+/.exec(deb('xen-hypervisor-4.17-amd64').version)?.[0] ?? 'unknown';
    // The ELF vmlinux, not the bzImage: Xen would spend ~5 s of TCG time unpacking the xz payload before Dom0 starts.
    if (!(await host.fs.stat(kernel.vmlinux))?.isFile) {
      progress(`Extracting vmlinux from ${posix.basename(kernel.vmlinuz)}`);
      await extractVmlinux(host, kernel.vmlinuz, kernel.vmlinux);
    }
    await host.exec(['cp', kernel.vmlinux, posix.join(work, 'vmlinux')]);

    progress('Generating SSH keys');
    for (const d of DIRS) await host.fs.mkdir(posix.join(root, d), { recursive: true, mode: 0o755 });
    const keys = posix.join(work, 'keys');
    await host.fs.mkdir(keys, { recursive: true, mode: 0o700 });
    await host.exec(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'hangar-xen-host-root', '-f', posix.join(work, 'id_ed25519')]);
    await host.exec(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'hangar-xen-host', '-f', posix.join(keys, 'host')]);
    // Generated by OpenSSH (whose fingerprint format the tests pin), converted for dropbear.
    const dropbearconvert = posix.join(deb('dropbear-bin').root, 'usr/bin/dropbearconvert');
    await host.exec([dropbearconvert, 'openssh', 'dropbear', posix.join(keys, 'host'), posix.join(root, 'etc/dropbear/dropbear_ed25519_host_key')], { env });
    await host.exec(['cp', posix.join(keys, 'host.pub'), posix.join(work, 'ssh_host_ed25519_key.pub')]);
    const hostKey = (await host.fs.readText(posix.join(keys, 'host.pub'))).trim().split(/\s+/).slice(0, 2).join(' ');
    const fp = /(SHA256:\S+)/.exec((await host.exec(['ssh-keygen', '-l', '-E', 'sha256', '-f', posix.join(keys, 'host.pub')])).stdout)?.[1];
    if (!fp) throw new Error('ssh-keygen printed no SHA256 fingerprint for the host key');

    progress('Assembling the Dom0 initramfs');
    await host.fs.chmod(posix.join(root, 'tmp'), 0o1777);
    await host.fs.chmod(posix.join(root, 'root'), 0o700);
    await host.fs.symlink('/run', posix.join(root, 'var/run'));
    await host.fs.symlink('/run/lock', posix.join(root, 'var/lock'));
    await host.fs.mkdir(posix.join(root, 'root/.ssh'), { mode: 0o700 });
    await host.fs.chmod(posix.join(root, 'root/.ssh'), 0o700);
    await host.fs.writeAtomic(posix.join(root, 'root/.ssh/authorized_keys'), await host.fs.readFile(posix.join(work, 'id_ed25519.pub')), 0o600);
    await host.fs.chmod(posix.join(root, 'root/.ssh/authorized_keys'), 0o600);

    await host.fs.writeAtomic(posix.join(root, 'bin/busybox'), await host.fs.readFile(BUSYBOX_STATIC), 0o755);
    const own = new Set(['bin/busybox', 'init', ...FILES.map((f) => f[0]), ...binaries.map((b) => b[1])]);
    const applets = (await host.exec([BUSYBOX_STATIC, '--list-full'])).stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.includes('..'));
    for (const rel of applets) {
      if (own.has(rel)) continue;
      await host.fs.mkdir(posix.dirname(posix.join(root, rel)), { recursive: true });
      await host.fs.symlink('/bin/busybox', posix.join(root, rel));
    }
    for (const [rel, text, mode] of [...FILES, ['init', init, 0o755] as [string, string, number]]) {
      await host.fs.writeAtomic(posix.join(root, rel), text, mode);
      await host.fs.chmod(posix.join(root, rel), mode);
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    await host.exec(['mknod', '-m', '600', posix.join(root, 'dev/console'), 'c', '5', '1']);

    for (const [from, to] of binaries) {
      await host.fs.mkdir(posix.dirname(posix.join(root, to)), { recursive: true });
      await host.fs.writeAtomic(posix.join(root, to), await host.fs.readFile(from), 0o755);
    }
    // The commands libxl, the hotplug scripts and people type: /usr/sbin/xl and friends, as Debian's wrappers would resolve them.
    for (const b of XEN_BINARIES) await host.fs.symlink(`/${XEN_LIBEXEC}/${b}`, posix.join(root, 'usr/sbin', b));
    // dropbear runs SFTP sessions through this path.
    await host.fs.symlink('/usr/lib/openssh/sftp-server', posix.join(root, 'usr/lib/sftp-server'));
    for (const lib of libs) {
      const to = lib.startsWith('/lib64/') ? lib.slice(1) : posix.join('lib/x86_64-linux-gnu', posix.basename(lib));
      await host.fs.writeAtomic(posix.join(root, to), await host.fs.readFile(lib), 0o755);
    }
    await host.exec(['cp', '-a', scriptsDir, posix.join(root, 'etc/xen/scripts')]);
    await host.exec(['cp', posix.join(deb('xen-utils-common').root, 'etc/xen/oxenstored.conf'), posix.join(root, 'etc/xen/oxenstored.conf')]);
    await host.exec(['cp', posix.join(deb('xen-utils-common').root, 'etc/xen/xl.conf'), posix.join(root, 'etc/xen/xl.conf')]);

    for (const rel of modules.load) {
      const to = posix.join(root, 'lib/modules', kernel.version, rel);
      await host.fs.mkdir(posix.dirname(to), { recursive: true });
      await host.fs.writeAtomic(to, await host.fs.readFile(posix.join(kernel.modulesDir, rel)), 0o644);
    }
    await host.fs.writeAtomic(posix.join(root, 'etc/hangar/modules'), modules.load.join('\n') + '\n');

    progress('Packing the Dom0 initramfs');
    const list = (await host.exec(['find', '.', '-mindepth', '1', '-printf', '%P\\n'], { cwd: root })).stdout.split('\n').filter(Boolean).sort();
    const cpio = posix.join(work, 'dom0.cpio');
    await host.exec(['cpio', '--quiet', '-o', '-H', 'newc', '-R', '0:0', '--reproducible', '-O', cpio], { cwd: root, input: list.join('\n') + '\n', timeoutMs: 300_000 });
    await host.fs.rm(root, { recursive: true, force: true });
    await host.fs.rm(keys, { recursive: true, force: true });

    const manifest: XenHostManifest = {
      key, builtAt: new Date().toISOString(), buildMs: Date.now() - t0, xenVersion,
      kernel: { package: kernel.package, version: kernel.packageVersion, release: kernel.version },
      packages, hostFiles: hostHashes, modules: modules.load, hostKey, hostKeyFingerprint: fp, readyMarker: XEN_HOST_READY_MARKER,
      bridge: XEN_BRIDGE, bridgeAddress: XEN_BRIDGE_ADDRESS, imagesDir: XEN_IMAGES_DIR, initrdBytes: (await host.fs.stat(cpio))?.size ?? 0,
    };
    // Written last: its presence marks a complete build.
    await host.fs.writeAtomic(posix.join(work, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n', 0o644);
    try {
      await host.fs.rename(work, dir);
    } catch (e) {
      // A concurrent build of the same recipe got there first; its result is as good.
      if (!(await readArtifacts(host, dir, true))) throw e;
    }
  } finally {
    await host.fs.rm(work, { recursive: true, force: true });
  }
  const built = await readArtifacts(host, dir, false);
  if (!built) throw new Error(`The Xen host build left no manifest in ${dir}`);
  await pruneOldBuilds(host, cacheRoot, key);
  return built;
}

// Removes the builds of other recipes (~25 MB each) unless a running process (a QEMU booted from one) names them.
async function pruneOldBuilds(host: Host, cacheRoot: string, keep: string): Promise<void> {
  const old = (await host.fs.readdir(cacheRoot)).filter((n) => /^[0-9a-f]{16}$/.test(n) && n !== keep);
  if (old.length === 0) return;
  const pids = (await host.fs.readdir('/proc')).filter((n) => /^\d+$/.test(n));
  const cmdlines = (await host.fs.readMany(pids.map((p) => `/proc/${p}/cmdline`))).join('\n');
  for (const n of old) {
    if (!cmdlines.includes(posix.join(cacheRoot, n))) await host.fs.rm(posix.join(cacheRoot, n), { recursive: true, force: true });
  }
}

// The artifacts of a complete build in dir, or undefined.
async function readArtifacts(host: Host, dir: string, cached: boolean): Promise<XenHostArtifacts | undefined> {
  const text = await host.fs.readTextIfExists(posix.join(dir, 'manifest.json'));
  if (text === undefined) return undefined;
  const manifest = JSON.parse(text) as XenHostManifest;
  return {
    dir, key: manifest.key, cached,
    xenElf: posix.join(dir, 'xen.elf'), kernel: posix.join(dir, 'vmlinux'), initrd: posix.join(dir, 'dom0.cpio'),
    identityFile: posix.join(dir, 'id_ed25519'), hostKey: manifest.hostKey, hostKeyFingerprint: manifest.hostKeyFingerprint, manifest,
  };
}

/** Candidate versions per package from `apt-cache show --no-all-versions A B ...` output (one record per package). */
export function parseAptRecords(output: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rec of output.split(/\n\s*\n/)) {
    const name = /^Package:\s*(\S+)/m.exec(rec)?.[1];
    const version = /^Version:\s*(\S+)/m.exec(rec)?.[1];
    if (name !== undefined && version !== undefined && out[name] === undefined) out[name] = version;
  }
  return out;
}

// Package versions (and the generic kernel package) as apt sees them. apt-cache costs ~1.5 s a call here, so the
// answer is kept beside the cache, keyed by the apt lists' names, sizes and mtimes: unchanged lists, same answer.
async function resolveVersions(host: Host, cacheRoot: string): Promise<{ kernelPackage: string; versions: Record<string, string> }> {
  const names = XEN_HOST_PACKAGES.map((p) => p.name);
  const lists = '/var/lib/apt/lists';
  const stampFile = async (): Promise<string> => {
    const stamp: string[] = [...names];
    for (const f of (await host.fs.readdir(lists).catch(() => [] as string[])).filter((f) => f.includes('_Packages')).sort()) {
      const st = await host.fs.stat(posix.join(lists, f));
      stamp.push(`${f}:${st?.size}:${st?.mtimeMs}`);
    }
    return posix.join(cacheRoot, `versions-${sha256(stamp.join('\n')).slice(0, 16)}.json`);
  };
  const kept = await host.fs.readTextIfExists(await stampFile());
  if (kept !== undefined) return JSON.parse(kept) as { kernelPackage: string; versions: Record<string, string> };
  const ask = async (): Promise<{ kernelPackage?: string; versions: Record<string, string>; err: string }> => {
    const dep = await host.exec(['apt-cache', 'depends', '--no-recommends', '--no-suggests', 'linux-image-amd64'], { allowFailure: true });
    const kernelPackage = dep.code === 0 ? parseMetaDepends(dep.stdout) : undefined;
    if (!kernelPackage) return { versions: {}, err: `no linux-image-amd64 dependency: ${dep.stderr.trim()}` };
    const show = await host.exec(['apt-cache', 'show', '--no-all-versions', ...names, kernelPackage], { allowFailure: true });
    const versions = parseAptRecords(show.stdout);
    const missing = [...names, kernelPackage].filter((n) => versions[n] === undefined);
    return { kernelPackage, versions, err: missing.length > 0 ? `no candidate for ${missing.join(', ')}` : '' };
  };
  let got = await ask();
  if (got.err) {
    // A machine whose packages were all installed may never have fetched apt lists (bootstrap updates only to install).
    await host.exec(['apt-get', 'update', '-qq'], { allowFailure: true, timeoutMs: 300_000 });
    got = await ask();
  }
  if (got.err || !got.kernelPackage) throw new Error(`Failed to resolve the Xen host's Debian packages: ${got.err}`);
  const { kernelPackage, versions } = got;
  const answer = { kernelPackage, versions };
  await host.fs.mkdir(cacheRoot, { recursive: true });
  await host.fs.writeAtomic(await stampFile(), JSON.stringify(answer, null, 2) + '\n', 0o644);
  return answer;
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
