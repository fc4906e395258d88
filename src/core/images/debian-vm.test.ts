// Unit tests of the Debian VM image's pure parts: boot loader configs, the guest's kernel hook, the cache key.
import { describe, expect, it } from 'vitest';
import { DEBIAN_VM_BOOT_HOOK, DEBIAN_VM_CMDLINE, DEBIAN_VM_INCLUDES, debianVmCacheName, renderSyslinuxCfg, renderSystemdBoot } from './debian-vm.js';

describe('Debian VM boot', () => {
  it('syslinux boots the boot partition\'s kernel and initramfs at once, on the serial console', () => {
    const cfg = renderSyslinuxCfg(DEBIAN_VM_CMDLINE);
    expect(cfg).toMatch(/^DEFAULT debian\nPROMPT 0\nTIMEOUT 0\nSERIAL 0 115200\n/);
    expect(cfg).toContain('  LINUX /vmlinuz\n  INITRD /initrd.img\n');
    expect(cfg).toContain(`  APPEND root=LABEL=hangar-root rw console=ttyS0`);
  });
  it('systemd-boot has no menu timeout and one entry with the same files and command line', () => {
    const sd = renderSystemdBoot(DEBIAN_VM_CMDLINE);
    expect(sd.loaderConf).toBe('timeout 0\ndefault debian.conf\n');
    expect(sd.entry).toContain('linux /vmlinuz\ninitrd /initrd.img\n');
    expect(sd.entry).toContain(`options ${DEBIAN_VM_CMDLINE}\n`);
  });
  it('the guest hook copies through the symlinks and replaces each file in one rename', () => {
    expect(DEBIAN_VM_BOOT_HOOK).toMatch(/^#!\/bin\/sh\n/);
    expect(DEBIAN_VM_BOOT_HOOK).toContain('mountpoint -q /boot/efi || exit 0');
    expect(DEBIAN_VM_BOOT_HOOK).toContain('cp -L "/$f" "/boot/efi/$f.new"');
    expect(DEBIAN_VM_BOOT_HOOK).toContain('mv "/boot/efi/$f.new" "/boot/efi/$f"');
  });
  it('the cached tree is keyed by the package list (growpart is in it)', () => {
    expect(DEBIAN_VM_INCLUDES).toContain('cloud-guest-utils');
    expect(debianVmCacheName('bookworm', 'amd64')).toMatch(/^debian-vm-bookworm-amd64-[0-9a-f]{8}\.tar\.zst$/);
  });
});
