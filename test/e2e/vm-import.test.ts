// E2e of `hangar image import FILE --vm`: qcow2 and MBR raw disks import as VM images; backing files, text, corrupt qcow2 and vmdk are refused without leftovers.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Image } from '../../src/shared/schemas.js';
import { goodRootfsEntries, makeTar } from '../fixtures/archives/make-tar.js';
import { cli, cliOk, sharedDaemon, uniquePrefix } from '../helpers/daemon.js';
import { alive, deleteAllWithPrefix, findInstance, settings, waitForGuest } from '../helpers/e2e.js';

const P = uniquePrefix('vmi');
const imgVolDir = join(settings.poolDir, 'images');
let tmp = '';
const f = (name: string) => join(tmp, name);
const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { stdio: 'ignore' });

function imagesJson(): Image[] {
  return JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as Image[];
}
function image(alias: string, type: 'vm' | 'container'): Image | undefined {
  return imagesJson().find((i) => i.alias === alias && i.type === type);
}
function lsImageVolumes(): string[] {
  return existsSync(imgVolDir) ? readdirSync(imgVolDir).sort() : [];
}

/** Runs `image import FILE --vm`, expects failure with stderr matching re, and no new image or image volume. */
function refused(file: string, alias: string, re: RegExp): void {
  const before = { images: imagesJson().map((i) => [i.alias, i.type, i.fingerprint]), volumes: lsImageVolumes() };
  const r = cli(['image', 'import', file, '--alias', alias, '--vm']);
  expect(r.code, `import of ${file} should fail; stdout: ${r.stdout}`).not.toBe(0);
  expect(r.stderr).toMatch(re);
  expect({ images: imagesJson().map((i) => [i.alias, i.type, i.fingerprint]), volumes: lsImageVolumes() }).toEqual(before);
}

beforeAll(async () => {
  await sharedDaemon();
  tmp = await mkdtemp(join(tmpdir(), 'hangar-vmi-'));
  qemuImg('create', '-f', 'qcow2', f('good.qcow2'), '64M');
  const raw = Buffer.alloc(8 << 20);
  raw[510] = 0x55;
  raw[511] = 0xaa;
  await writeFile(f('mbr.img'), raw);
  qemuImg('create', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', f('evil.qcow2'));
  await writeFile(f('notes.txt'), 'not a disk at all\n'.repeat(100));
  // The first 4 KiB of a valid qcow2: its header and tables point past the end of the file.
  await writeFile(f('trunc.qcow2'), (await readFile(f('good.qcow2'))).subarray(0, 4096));
  await writeFile(f('garbage.qcow2'), Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(65536, 0x5a)]));
  qemuImg('create', '-f', 'vmdk', f('disk.vmdk'), '64M');
  // A vmdk named .qcow2: the format comes from the content, not the name.
  qemuImg('create', '-f', 'vmdk', f('vmdk-named.qcow2'), '64M');
  await writeFile(f('rootfs.tar'), makeTar(goodRootfsEntries()));
}, 600_000);

afterAll(async () => {
  deleteAllWithPrefix(P);
  for (const i of imagesJson().filter((x) => x.alias.startsWith(P))) cli(['image', 'delete', i.alias, ...(i.type === 'vm' ? ['--vm'] : [])]);
  if (tmp) await rm(tmp, { recursive: true, force: true });
}, 180_000);

describe('image import --vm', () => {
  it('imports a qcow2 and an MBR raw disk as VM images', () => {
    for (const [file, alias] of [['good.qcow2', `${P}q`], ['mbr.img', `${P}r`]] as const) {
      const out = cliOk(['image', 'import', f(file), '--alias', alias, '--vm']);
      expect(out).toMatch(new RegExp(`Imported image ${alias}`));
      const img = image(alias, 'vm');
      expect(img, alias).toBeDefined();
      expect(img!.type).toBe('vm');
      expect(image(alias, 'container')).toBeUndefined();
      const disk = join(imgVolDir, img!.fingerprint, 'disk.qcow2');
      const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', disk], { encoding: 'utf8' })) as Record<string, unknown>;
      expect(info.format).toBe('qcow2');
      expect(info['backing-filename']).toBeUndefined();
      expect(info['virtual-size']).toBe(file === 'good.qcow2' ? 64 << 20 : 8 << 20);
    }
  });

  it('refuses an alias that already exists as a VM image', () => {
    refused(f('good.qcow2'), `${P}q`, /already exists/);
  });

  it('refuses a qcow2 with a backing file', () => {
    refused(f('evil.qcow2'), `${P}evil`, /backing file.*\/etc\/passwd/);
  });

  it('refuses a text file', () => {
    refused(f('notes.txt'), `${P}text`, /not a disk image/);
  });

  it('refuses truncated and garbled qcow2 files', () => {
    refused(f('trunc.qcow2'), `${P}trunc`, /corrupt/);
    refused(f('garbage.qcow2'), `${P}garb`, /not a disk image qemu-img can read/);
  });

  it('refuses vmdk, whatever the file is called', () => {
    refused(f('disk.vmdk'), `${P}vmdk`, /vmdk.*only qcow2 and raw/);
    refused(f('vmdk-named.qcow2'), `${P}vmdk2`, /vmdk.*only qcow2 and raw/);
  });

  it('keeps container and VM images of one alias apart; delete --vm removes only the VM one', () => {
    const alias = `${P}both`;
    cliOk(['image', 'import', f('rootfs.tar'), '--alias', alias]);
    const ct = image(alias, 'container');
    expect(ct).toBeDefined();
    cliOk(['image', 'import', f('good.qcow2'), '--alias', alias, '--vm']);
    const vm = image(alias, 'vm');
    expect(vm?.type).toBe('vm');
    expect(image(alias, 'container')).toEqual(ct);
    cliOk(['image', 'delete', alias, '--vm']);
    expect(image(alias, 'vm')).toBeUndefined();
    expect(existsSync(join(imgVolDir, vm!.fingerprint))).toBe(false);
    expect(image(alias, 'container')).toEqual(ct);
    expect(existsSync(join(imgVolDir, ct!.fingerprint))).toBe(true);
    cliOk(['image', 'delete', alias]);
    expect(image(alias, 'container')).toBeUndefined();
  });

  it('launches a VM from an imported empty disk: QEMU starts (no OS to boot), exec says there is no guest agent', () => {
    const name = `${P}v`;
    cliOk(['launch', `${P}q`, name, '--vm', '--memory', '128MiB']);
    const inst = findInstance(name);
    expect(inst?.type).toBe('vm');
    expect(inst?.driver).toBe('qemu');
    expect(inst?.state).toBe('running');
    expect(inst?.pid).toBeGreaterThan(0);
    expect(alive(inst!.pid!)).toBe(true);
    // No OS, so no guest agent: exec gives up after its wait with a message that says why.
    const exec = cli(['exec', name, '--', 'true']);
    expect(exec.code).not.toBe(0);
    expect(exec.stderr).toMatch(/guest agent .* did not answer .*qemu-guest-agent is not installed or not running/);
    const del = cli(['image', 'delete', `${P}q`, '--vm']);
    expect(del.code).not.toBe(0);
    expect(del.stderr).toMatch(/used by/);
    cliOk(['delete', name, '--force']);
    expect(findInstance(name)).toBeUndefined();
  }, 180_000);

  it('boot.firmware=uefi boots the imported disk through OVMF with the instance\'s own variable store', async () => {
    const name = `${P}u`;
    const refusedBoth = cli(['launch', `${P}q`, name, '--vm', '-c', 'boot.firmware=uefi', '-c', 'boot.kernel=/boot/none']);
    expect(refusedBoth.code).not.toBe(0);
    expect(refusedBoth.stderr).toMatch(/boot\.firmware=uefi applies to booting from the disk/);
    expect(findInstance(name)).toBeUndefined();
    cliOk(['launch', `${P}q`, name, '--vm', '--memory', '256MiB', '-c', 'boot.firmware=uefi']);
    expect((JSON.parse(cliOk(['info', name, '--format', 'json'])) as { details?: { boot?: string } }).details?.boot).toBe('disk, UEFI (OVMF)');
    const vars = join(settings.poolDir, 'instances', name, 'efivars.fd');
    expect(statSync(vars).size).toBe(statSync('/usr/share/OVMF/OVMF_VARS_4M.fd').size);
    // OVMF's boot manager reports on the serial console that the empty disk has nothing to boot, then falls back to its shell.
    await waitForGuest(name, { marker: /BdsDxe/ });
    cliOk(['delete', name, '--force']);
    expect(existsSync(vars)).toBe(false);
  }, 240_000);
});
