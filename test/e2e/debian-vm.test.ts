// E2e: the Debian VM image is built (debootstrap, cached), boots from its own disk under SeaBIOS and OVMF to a login prompt, runs cloud-init user-data and answers the guest agent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliOk, cliOkAsync, sharedDaemon, uniquePrefix } from '../helpers/daemon.js';
import { consoleLogText, deleteAllWithPrefix, findInstance, waitForGuest } from '../helpers/e2e.js';

const P = uniquePrefix('dvm');
const IMAGE = `${P}deb`;
const VM = `${P}a`;
const VMU = `${P}u`;

beforeAll(async () => {
  await sharedDaemon();
});

afterAll(() => {
  deleteAllWithPrefix(P);
  cli(['image', 'delete', IMAGE, '--vm']);
}, 180_000);

describe('Debian VM', () => {
  it('image build debian --vm (debootstrap with a kernel, qemu-guest-agent and cloud-init)', async () => {
    const out = await cliOkAsync(['image', 'build', 'debian', '--vm', '--alias', IMAGE]);
    expect(out).toContain(IMAGE);
    const img = (JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as { alias: string; type: string }[]).find((i) => i.alias === IMAGE);
    expect(img?.type).toBe('vm');
  }, 1_200_000);

  it('boots from its own disk (SeaBIOS + syslinux; OVMF + systemd-boot with boot.firmware=uefi) to a login prompt, runs cloud-init user-data, grows its root to limits.disk, answers the agent', async () => {
    const userData = '#cloud-config\nruncmd:\n  - [sh, -c, "echo HANGAR-CLOUD-INIT-OK > /dev/ttyS0"]\n';
    // Both boot at once (one vCPU each under TCG): BIOS with a larger disk, UEFI with the image's size.
    cliOk(['launch', IMAGE, VM, '--vm', '--memory', '1GiB', '--disk', '3GiB', '-c', `cloud-init.user-data=${userData}`]);
    cliOk(['launch', IMAGE, VMU, '--vm', '--memory', '1GiB', '-c', 'boot.firmware=uefi', '-c', `cloud-init.user-data=${userData}`]);
    for (const [name, loader] of [[VM, /SYSLINUX/], [VMU, /BdsDxe: starting/]] as const) {
      // Under TCG the boot takes tens of seconds: poll the persistent console log.
      await waitForGuest(name, { marker: /login:/, timeoutMs: 300_000 });
      expect(consoleLogText(name)).toMatch(loader);
      await waitForGuest(name, { marker: 'HANGAR-CLOUD-INIT-OK', agent: true, timeoutMs: 180_000 });
      expect(cliOk(['exec', name, '--', 'cat', '/etc/hostname']).trim()).toBe(name);
      expect(cliOk(['exec', name, '--', 'ip', '-4', '-o', 'addr'])).toContain(`${findInstance(name)!.ipv4!}/`);
    }
    // cloud-init's growpart + resizefs took the root partition to the end of the 3 GiB disk.
    const rootBytes = Number(cliOk(['exec', VM, '--', 'sh', '-c', 'df -B1 --output=size / | tail -n 1']).trim());
    expect(rootBytes).toBeGreaterThan(2.5 * 1024 ** 3);
    // The boot partition is mounted, and the kernel hook keeps the boot loaders' copies current.
    const hook = cliOk(['exec', VM, '--', 'sh', '-c', 'mountpoint -q /boot/efi && /etc/kernel/postinst.d/zz-hangar-boot && cmp /vmlinuz /boot/efi/vmlinuz && cmp /initrd.img /boot/efi/initrd.img && echo hook-ok']);
    expect(hook.trim()).toBe('hook-ok');
  }, 900_000);

  it('cloud-init keys are refused for containers and for images without cloud-init', () => {
    const r = cli(['launch', 'busybox', `${P}c`, '-c', 'cloud-init.user-data=#cloud-config']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/lxc backend/);
    expect(findInstance(`${P}c`)).toBeUndefined();
  });
});
