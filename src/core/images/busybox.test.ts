// Tests of the busybox rootfs builder against the host's busybox-static, in a temporary directory.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../host/local.js';
import { buildBusyboxRootfs } from './busybox.js';

const host = new LocalHost();
let dir = '';
let result: Awaited<ReturnType<typeof buildBusyboxRootfs>>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hangar-bbx-'));
  result = await buildBusyboxRootfs(host, join(dir, 'rootfs'));
});
afterAll(async () => {
  if (dir) await host.fs.rm(dir, { recursive: true, force: true });
});

describe('buildBusyboxRootfs', () => {
  it('returns the props the LXC driver needs', () => {
    expect(result.props.init).toBe('/sbin/init');
    expect(result.props.haltSignal).toBe('SIGUSR2');
    expect(result.description).toMatch(/^BusyBox \d/);
  });

  it('installs busybox, its applets and the base files', async () => {
    const root = join(dir, 'rootfs');
    expect((await host.fs.stat(join(root, 'bin/busybox')))?.mode! & 0o111).toBeTruthy();
    expect(await host.fs.readlink(join(root, 'sbin/init'))).toBe('/bin/busybox');
    expect(await host.fs.readlink(join(root, 'bin/sh'))).toBe('/bin/busybox');
    for (const f of ['passwd', 'group', 'shadow', 'hostname', 'hosts', 'resolv.conf', 'inittab']) expect(await host.fs.stat(join(root, 'etc', f))).toBeDefined();
    for (const d of ['proc', 'sys', 'dev', 'tmp', 'run', 'var', 'root']) expect((await host.fs.stat(join(root, d)))?.isDirectory).toBe(true);
    expect(((await host.fs.stat(join(root, 'tmp')))!.mode & 0o7777).toString(8)).toBe('1777');
    expect(await host.fs.readText(join(root, 'etc/passwd'))).toMatch(/^root:x:0:0:/);
  });

  it('has a boot script without DHCP and a fast shutdown action', async () => {
    const root = join(dir, 'rootfs');
    const inittab = await host.fs.readText(join(root, 'etc/inittab'));
    expect(inittab).toContain('::sysinit:/etc/init.d/rcS');
    expect(inittab).toContain('::shutdown:/etc/init.d/rcK');
    expect(await host.fs.readText(join(root, 'etc/init.d/rcS'))).not.toMatch(/udhcpc/);
    expect(await host.fs.readText(join(root, 'etc/init.d/rcK'))).toContain('poweroff -f');
    const syntax = await host.exec(['/bin/busybox', 'sh', '-n', join(root, 'etc/init.d/rcS')], { allowFailure: true });
    expect(syntax.code).toBe(0);
  });
});
