// Debian VM image builder: debootstrap (systemd, cloud kernel, cloud-init, qemu-ga) cached as a tarball, then a disk that boots by itself (BIOS and UEFI), made without loop mounts.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import * as qemuImg from '../../drivers/common/qemu-img.js';
import { cleanBuildLeftovers, renderSourcesList, runDebootstrap, unmountUnder, validateDebianOptions, writeInRoot } from './debian.js';
import { renderMbr, SECTOR } from './disk-layout.js';

/** Options for buildDebianVmImage. */
export interface DebianVmOptions {
  /** Debian suite codename (default bookworm). */
  release: string;
  /** Debian mirror URL, e.g. http://deb.debian.org/debian. */
  mirror: string;
  /** Directory holding cached VM trees (created if missing); a cached build takes seconds. */
  cacheDir: string;
  onProgress?: (msg: string) => void;
  /** Virtual size of the root disk in bytes (default 2 GiB; the raw file is sparse, the qcow2 holds only data). */
  diskSize?: number;
  /** Ignore (and replace) an existing cached tree. */
  refresh?: boolean;
}

/** Packages added to debootstrap's minbase variant for a VM guest (no SSH server: access is through the guest agent and the console). */
export const DEBIAN_VM_INCLUDES = [
  'systemd-sysv', 'udev', 'dbus', 'systemd-resolved', 'linux-image-cloud-amd64', 'initramfs-tools', 'e2fsprogs',
  'qemu-guest-agent', 'cloud-init', 'iproute2', 'iputils-ping', 'procps', 'sudo',
  // growpart: cloud-init grows the root partition when limits.disk made the disk larger than the image's.
  'cloud-guest-utils',
  // debootstrap does not resolve virtual packages: python3-cryptography (for cloud-init) needs python3-cffi-backend-api-*.
  'python3-cffi-backend',
] as const;

/** Modules the initramfs loads to find the root disk (MODULES=list keeps it small); ones built into the kernel are skipped by mkinitramfs. */
export const DEBIAN_VM_INITRAMFS_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_scsi', 'sd_mod', 'crc32c_generic', 'ext4'] as const;

/** Units enabled in the cached tree: networkd applies cloud-init's (or the fallback DHCP) network config, resolved serves DNS. */
export const DEBIAN_VM_ENABLED_UNITS = ['systemd-networkd.service', 'systemd-resolved.service'] as const;

/** File-system label of the root disk (the kernel command line finds it by label). */
export const DEBIAN_VM_ROOT_LABEL = 'hangar-root';

/** Kernel command line; the driver appends hangar.* settings, which this image ignores (cloud-init configures the guest). */
export const DEBIAN_VM_CMDLINE = `root=LABEL=${DEBIAN_VM_ROOT_LABEL} rw console=ttyS0 quiet cryptomgr.notests mitigations=off no_timer_check`;

/** File-system label of the boot partition, mounted on /boot/efi in the guest. */
export const DEBIAN_VM_BOOT_LABEL = 'HGBOOT';

/** Size of the boot partition (FAT, also the UEFI system partition): the kernel and initramfs copies and both boot loaders. */
export const DEBIAN_VM_BOOT_MIB = 64;

/** Host files the boot partition is made from (packages syslinux-common and systemd-boot-efi). */
export const BOOT_LOADER_FILES = {
  mbr: '/usr/lib/syslinux/mbr/mbr.bin',
  ldlinux: '/usr/lib/syslinux/modules/bios/ldlinux.c32',
  systemdBoot: '/usr/lib/systemd/boot/efi/systemd-bootx64.efi',
} as const;

/** syslinux.cfg: boots the copies of the newest kernel and initramfs at once, console on the serial port. */
export function renderSyslinuxCfg(cmdline: string): string {
  return `DEFAULT debian\nPROMPT 0\nTIMEOUT 0\nSERIAL 0 115200\nLABEL debian\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND ${cmdline}\n`;
}

/** systemd-boot's loader.conf and its one entry, for UEFI. */
export function renderSystemdBoot(cmdline: string): { loaderConf: string; entry: string } {
  return {
    loaderConf: 'timeout 0\ndefault debian.conf\n',
    entry: `title Debian (Hangar)\nlinux /vmlinuz\ninitrd /initrd.img\noptions ${cmdline}\n`,
  };
}

/** Guest hook (kernel postinst.d and initramfs post-update.d): copies the newest kernel and initramfs to the boot partition. */
export const DEBIAN_VM_BOOT_HOOK = `#!/bin/sh
# Hangar: the boot loaders load /vmlinuz and /initrd.img from the boot partition; keep them the newest ones.
set -e
mountpoint -q /boot/efi || exit 0
for f in vmlinuz initrd.img; do
  [ -e "/$f" ] || continue
  cp -L "/$f" "/boot/efi/$f.new"
  mv "/boot/efi/$f.new" "/boot/efi/$f"
done
`;

/** Name of the virtio-serial port qemu-guest-agent listens on (its udev rule starts it when the port appears). */
export const DEBIAN_VM_AGENT_PORT = 'org.qemu.guest_agent.0';

const DEFAULT_DISK_SIZE = 2 * 1024 ** 3;

/** cloud-init settings of the image: NoCloud only, networkd renderer, nothing that needs missing packages or the network. */
export const DEBIAN_VM_CLOUD_CFG = `# Hangar: VMs get a NoCloud seed (volume label cidata); None keeps the boot going without one.
datasource_list: [ NoCloud, None ]
system_info:
  network:
    renderers: [ networkd ]
# No locales package and no SSH server in the image.
locale: false
ssh_genkeytypes: []
ssh_deletekeys: false
preserve_hostname: false
`;

// Fallback when cloud-init writes no network config: DHCP on every wired interface (dnsmasq on the bridge reserves the VM's MAC).
const FALLBACK_NETWORK = `# Hangar fallback: DHCP on every ethernet interface; cloud-init's files in /run/systemd/network take precedence.
[Match]
Name=en* eth*

[Network]
DHCP=yes
`;

// Any configured interface is enough; without this a VM with a second, unplugged NIC would wait two minutes.
const WAIT_ONLINE_DROPIN = `[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
`;

/** Name of the cached tree tarball for a release and architecture (packages, initramfs modules and enabled units are part of the key). */
export function debianVmCacheName(release: string, arch: string): string {
  const key = createHash('sha256').update([DEBIAN_VM_INCLUDES.join(','), DEBIAN_VM_INITRAMFS_MODULES.join(','), DEBIAN_VM_ENABLED_UNITS.join(',')].join(';')).digest('hex').slice(0, 8);
  return `debian-vm-${release}-${arch}-${key}.tar.zst`;
}

/** Builds the Debian VM image into destDir (created if missing): disk.qcow2, which boots by itself; returns the image properties. */
export async function buildDebianVmImage(host: Host, destDir: string, opts: DebianVmOptions): Promise<{ props: Record<string, string>; description: string }> {
  const release = opts.release || 'bookworm';
  validateDebianOptions(release, opts.mirror);
  const progress = opts.onProgress ?? (() => undefined);
  const diskSize = opts.diskSize ?? DEFAULT_DISK_SIZE;
  if (!Number.isInteger(diskSize) || diskSize < 512 * 1024 ** 2) {
    throw new AppError('INVALID_ARGUMENT', `Invalid root disk size ${diskSize} for the Debian VM image: expected at least 512 MiB`);
  }
  const arch = (await host.exec(['dpkg', '--print-architecture'])).stdout.trim();
  if (arch !== 'amd64') throw new AppError('UNSUPPORTED', `The Debian VM image needs an amd64 host (this one is ${arch})`);

  await host.fs.mkdir(destDir, { recursive: true, mode: 0o755 });
  await host.fs.mkdir(opts.cacheDir, { recursive: true });
  const cacheFile = posix.join(opts.cacheDir, debianVmCacheName(release, arch));
  // Built beside the cache, not in the image's volume: debootstrap and the chroot need device nodes, which the pool (nodev) refuses.
  const work = posix.join(opts.cacheDir, `.build-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  const tree = posix.join(work, 'tree');
  try {
    await host.fs.mkdir(tree, { recursive: true, mode: 0o755 });
    if (!opts.refresh && (await host.fs.stat(cacheFile))?.isFile === true) {
      progress(`Unpacking the cached Debian ${release} VM tree`);
      try {
        await host.exec(['tar', '-x', '--zstd', '--numeric-owner', '-p', '--xattrs', '--xattrs-include=*', '-C', tree, '-f', cacheFile], { timeoutMs: 600_000 });
      } catch (e) {
        throw new AppError('HOST_FAILED', `Failed to unpack the cached Debian ${release} VM tree ${cacheFile}`, { cause: e });
      }
    } else {
      await buildBaseTree(host, tree, release, opts.mirror, progress);
      progress(`Saving the Debian ${release} VM tree to the cache`);
      const tmp = `${cacheFile}.${process.pid}-${Math.random().toString(36).slice(2, 8)}.tmp`;
      try {
        await host.exec(['tar', '-c', '--zstd', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', tree, '-f', tmp, '.'], { timeoutMs: 600_000 });
        await host.fs.rename(tmp, cacheFile);
      } catch (e) {
        await host.fs.rm(tmp, { force: true });
        throw new AppError('HOST_FAILED', `Failed to save the Debian ${release} VM tree to the cache ${cacheFile}`, { cause: e });
      }
    }

    progress('Configuring the guest');
    await configureTree(host, tree, release, opts.mirror);
    const kernelVersion = await installedKernel(host, tree);

    progress(`Creating the ${Math.round(diskSize / 1024 ** 2)} MiB disk: a boot partition (syslinux for BIOS, systemd-boot for UEFI) and the ext4 root`);
    await buildBootableDisk(host, work, tree, diskSize, release);
    // Another file system: mv copies (sparse) and removes.
    await host.exec(['mv', posix.join(work, 'disk.qcow2'), posix.join(destDir, 'disk.qcow2')], { timeoutMs: 600_000 });
    const agentVersion = await packageVersion(host, tree, 'qemu-guest-agent');
    const cloudInitVersion = await packageVersion(host, tree, 'cloud-init');
    return {
      props: {
        disk: 'disk.qcow2',
        boot: 'disk',
        bootLoader: 'syslinux (BIOS), systemd-boot (UEFI)',
        cpu: 'qemu64',
        cloudInit: 'nocloud',
        guestAgent: 'qemu-ga',
        guestAgentPort: DEBIAN_VM_AGENT_PORT,
        powerdown: 'acpi',
        os: 'debian',
        release,
        architecture: arch,
        kernelVersion,
        ...(agentVersion ? { guestAgentVersion: agentVersion } : {}),
        ...(cloudInitVersion ? { cloudInitVersion } : {}),
      },
      description: `Debian ${release} ${arch} VM (systemd, kernel ${kernelVersion}, cloud-init ${cloudInitVersion ?? '?'}, qemu-guest-agent ${agentVersion ?? '?'})`,
    };
  } finally {
    await unmountUnder(host, work);
    await host.fs.rm(work, { recursive: true, force: true });
  }
}

// debootstrap, then a small initramfs that finds the root disk, enabled units and no build leftovers: what the cache holds.
async function buildBaseTree(host: Host, tree: string, release: string, mirror: string, progress: (msg: string) => void): Promise<void> {
  await runDebootstrap(host, tree, { release, mirror, includes: DEBIAN_VM_INCLUDES, what: `the Debian ${release} VM` }, progress);
  progress('Building the initramfs');
  await writeInRoot(host, tree, 'etc/initramfs-tools/conf.d/hangar.conf', '# Hangar: only the modules listed in ../modules (virtio disk, ext4), not "most".\nMODULES=list\n');
  await writeInRoot(host, tree, 'etc/initramfs-tools/modules', `# Hangar: the VM's root disk.\n${DEBIAN_VM_INITRAMFS_MODULES.join('\n')}\n`);
  const kernelVersion = await installedKernel(host, tree);
  for (const name of await host.fs.readdir(posix.join(tree, 'boot'))) {
    if (name.startsWith('initrd.img-')) await host.fs.rm(posix.join(tree, 'boot', name), { force: true });
  }
  await chroot(host, tree, ['update-initramfs', '-c', '-k', kernelVersion], `build the initramfs for ${kernelVersion}`);
  await chroot(host, tree, ['systemctl', 'enable', ...DEBIAN_VM_ENABLED_UNITS], 'enable the network units');
  await unmountUnder(host, tree);
  await cleanBuildLeftovers(host, tree);
}

// Runs a command inside the tree; the build needs no /proc or /dev from the host.
async function chroot(host: Host, tree: string, argv: string[], what: string): Promise<void> {
  const res = await host.exec(['chroot', tree, ...argv], { allowFailure: true, timeoutMs: 600_000, env: { DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C', PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  if (res.code !== 0) throw new AppError('HOST_FAILED', `Failed to ${what} in the Debian VM tree`, { cause: new Error((res.stderr || res.stdout).trim() || `exit code ${res.code}`) });
}

// The per-build files, cheap to apply after every unpack so they can change without a new debootstrap.
async function configureTree(host: Host, tree: string, release: string, mirror: string): Promise<void> {
  // An empty machine-id makes systemd generate a fresh one on first boot, so VMs from one image differ.
  await writeInRoot(host, tree, 'etc/machine-id', '', 0o444);
  await host.fs.rm(posix.join(tree, 'var/lib/dbus/machine-id'), { force: true });
  await host.fs.rm(posix.join(tree, 'var/lib/systemd/random-seed'), { force: true });
  // debootstrap copies the build host's hostname; cloud-init sets the real one from meta-data.
  await writeInRoot(host, tree, 'etc/hostname', 'localhost\n');
  await writeInRoot(host, tree, 'etc/hosts', '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n');
  await writeInRoot(host, tree, 'etc/fstab', `LABEL=${DEBIAN_VM_ROOT_LABEL}\t/\text4\trw,errors=remount-ro\t0\t1\nLABEL=${DEBIAN_VM_BOOT_LABEL}\t/boot/efi\tvfat\tumask=0077,nofail\t0\t2\n`);
  await host.fs.mkdir(posix.join(tree, 'boot/efi'), { recursive: true });
  await writeInRoot(host, tree, 'etc/kernel/postinst.d/zz-hangar-boot', DEBIAN_VM_BOOT_HOOK, 0o755);
  await writeInRoot(host, tree, 'etc/initramfs/post-update.d/zz-hangar-boot', DEBIAN_VM_BOOT_HOOK, 0o755);
  await writeInRoot(host, tree, 'etc/apt/sources.list', renderSourcesList(release, mirror));
  await writeInRoot(host, tree, 'etc/cloud/cloud.cfg.d/90-hangar.cfg', DEBIAN_VM_CLOUD_CFG);
  await writeInRoot(host, tree, 'etc/systemd/network/99-hangar-dhcp.network', FALLBACK_NETWORK);
  await writeInRoot(host, tree, 'etc/systemd/system/systemd-networkd-wait-online.service.d/hangar.conf', WAIT_ONLINE_DROPIN);
  // systemd-resolved's stub; debootstrap may have left the build host's resolv.conf.
  await host.fs.rm(posix.join(tree, 'etc/resolv.conf'), { force: true });
  await host.fs.symlink('../run/systemd/resolve/stub-resolv.conf', posix.join(tree, 'etc/resolv.conf'));
  for (const need of ['sbin/init', 'usr/sbin/qemu-ga', 'usr/bin/cloud-init']) {
    if (!(await host.fs.stat(posix.join(tree, need)))) throw new AppError('BACKEND_FAILED', `The Debian ${release} VM tree has no /${need}`);
  }
}

/**
 * work/disk.qcow2 from the tree, without loop devices: an MBR with syslinux's boot code; partition 1 (active, type EF)
 * a FAT boot partition holding the kernel and initramfs, syslinux and systemd-boot; partition 2 the ext4 root.
 */
async function buildBootableDisk(host: Host, work: string, tree: string, diskSize: number, release: string): Promise<void> {
  for (const f of Object.values(BOOT_LOADER_FILES)) {
    if (!(await host.fs.stat(f))) throw new AppError('HOST_FAILED', `Missing ${f} on the host: install syslinux-common and systemd-boot-efi`);
  }
  const mib = 1024 ** 2;
  const bootStart = mib / SECTOR;
  const bootSectors = (DEBIAN_VM_BOOT_MIB * mib) / SECTOR;
  const rootStart = bootStart + bootSectors;
  const rootSectors = Math.floor(diskSize / mib) * (mib / SECTOR) - rootStart;
  const mtools = { env: { MTOOLS_SKIP_CHECK: '1' } };

  const fat = posix.join(work, 'boot.fat');
  await host.exec(['mkfs.vfat', '-C', '-n', DEBIAN_VM_BOOT_LABEL, fat, String(DEBIAN_VM_BOOT_MIB * 1024)]);
  await host.exec(['mmd', '-i', fat, '::/syslinux', '::/EFI', '::/EFI/BOOT', '::/loader', '::/loader/entries'], mtools);
  // Following /vmlinuz and /initrd.img: the symlinks Debian keeps on the newest kernel, as the guest's hook does later.
  for (const f of ['vmlinuz', 'initrd.img']) {
    const target = await host.fs.readlink(posix.join(tree, f)).catch(() => undefined);
    if (!target) throw new AppError('BACKEND_FAILED', `The Debian ${release} VM tree has no /${f} symlink`);
    await host.exec(['mcopy', '-i', fat, posix.join(tree, target.replace(/^\/+/, '')), `::/${f}`], mtools);
  }
  const files: [string, string][] = [['syslinux/syslinux.cfg', renderSyslinuxCfg(DEBIAN_VM_CMDLINE)]];
  const sd = renderSystemdBoot(DEBIAN_VM_CMDLINE);
  files.push(['loader/loader.conf', sd.loaderConf], ['loader/entries/debian.conf', sd.entry]);
  for (const [rel, text] of files) {
    const local = posix.join(work, rel.replaceAll('/', '_'));
    await host.fs.writeAtomic(local, text);
    await host.exec(['mcopy', '-i', fat, local, `::/${rel}`], mtools);
  }
  await host.exec(['mcopy', '-i', fat, BOOT_LOADER_FILES.ldlinux, '::/syslinux/ldlinux.c32'], mtools);
  await host.exec(['mcopy', '-i', fat, BOOT_LOADER_FILES.systemdBoot, '::/EFI/BOOT/BOOTX64.EFI'], mtools);
  await host.exec(['syslinux', '--install', '--directory', '/syslinux', fat], mtools);

  const root = posix.join(work, 'root.ext4');
  // Inode tables and journal are zeroed here, not lazily by the guest, so overlays stay small after the first boot.
  const mkfs = await host.exec(['mkfs.ext4', '-q', '-F', '-L', DEBIAN_VM_ROOT_LABEL, '-E', 'lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0', '-d', tree, root, `${(rootSectors * SECTOR) / 1024}k`], { allowFailure: true, timeoutMs: 900_000 });
  if (mkfs.code !== 0) {
    throw new AppError('HOST_FAILED', `Failed to create the Debian ${release} VM root file system`, { cause: new Error(mkfs.stderr.trim() || `mkfs.ext4 exited with code ${mkfs.code}`) });
  }

  const raw = posix.join(work, 'disk.raw');
  const mbr = posix.join(work, 'mbr.bin');
  const code = (await host.fs.readFile(BOOT_LOADER_FILES.mbr)).subarray(0, 440);
  await host.fs.writeAtomic(mbr, renderMbr(code, [
    { type: 0xef, startSector: bootStart, sectors: bootSectors, bootable: true },
    { type: 0x83, startSector: rootStart, sectors: rootSectors },
  ], 0x48474152));
  await host.exec(['truncate', '-s', String((rootStart + rootSectors) * SECTOR), raw]);
  for (const [from, sector] of [[mbr, 0], [fat, bootStart], [root, rootStart]] as const) {
    await host.exec(['dd', `if=${from}`, `of=${raw}`, 'bs=1M', `seek=${sector * SECTOR}`, 'oflag=seek_bytes', 'conv=notrunc,sparse', 'status=none'], { timeoutMs: 900_000 });
    await host.fs.rm(from, { force: true });
  }
  await qemuImg.convert(host, { source: raw, from: 'raw', dest: posix.join(work, 'disk.qcow2'), to: 'qcow2' }, { timeoutMs: 900_000 });
  await host.fs.rm(raw, { force: true });
}

async function installedKernel(host: Host, tree: string): Promise<string> {
  const versions = (await host.fs.readdir(posix.join(tree, 'lib/modules')).catch(() => [] as string[])).filter((v) => v.endsWith('-cloud-amd64')).sort();
  const v = versions.at(-1);
  if (v === undefined) throw new AppError('BACKEND_FAILED', `The Debian VM tree ${tree} has no cloud kernel in /lib/modules`);
  return v;
}

async function packageVersion(host: Host, tree: string, name: string): Promise<string | undefined> {
  const res = await host.exec(['dpkg-query', `--admindir=${posix.join(tree, 'var/lib/dpkg')}`, '-W', '-f', '${Version}', name], { allowFailure: true });
  return res.code === 0 && res.stdout.trim() ? res.stdout.trim() : undefined;
}
