// E2e of the driver registry through the daemon: three enabled backends (lxc, qemu and the fake), the default per type, --driver, per-driver keys.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostInfo, Instance } from '../../src/shared/schemas.js';
import { cli, cliOk, sharedDaemon, uniquePrefix } from '../helpers/daemon.js';
import { deleteAllWithPrefix, findInstance, leftovers } from '../helpers/e2e.js';

const P = uniquePrefix('drv');

beforeAll(async () => {
  await sharedDaemon();
}, 300_000);

afterAll(() => {
  deleteAllWithPrefix(P);
});

describe('drivers', () => {
  it('host info lists every enabled driver with its facts and features, and the default of each type', () => {
    const h = JSON.parse(cliOk(['host', 'info', '--format', 'json'])) as HostInfo;
    const by = Object.fromEntries(h.drivers.map((d) => [d.name, d]));
    expect(Object.keys(by)).toEqual(['lxc', 'qemu', 'xen', 'fake', 'openvz']);
    expect(by.openvz).toMatchObject({ type: 'container', default: false, available: true, features: { liveCopy: false } });
    expect(by.lxc).toMatchObject({ type: 'container', default: true, available: true, features: { execTty: true, liveCopy: true } });
    expect(by.qemu).toMatchObject({ type: 'vm', default: true, features: { monitor: true, liveCopy: false } });
    expect(by.fake).toMatchObject({ type: 'container', default: false, available: true });
    // No Xen here: the driver is listed, unavailable with the reason, and not the VM default.
    expect(by.xen).toMatchObject({ type: 'vm', default: false, available: false, reason: expect.stringMatching(/\S/) });
    expect(by.lxc!.details.lxcfs).toBeTruthy();
    expect(by.qemu!.details.uefi).toBeTruthy();
    expect(cliOk(['host', 'info'])).toMatch(/^ +fake +container +- +yes +0 /m);
  });

  it('runs an instance on the third backend chosen with --driver, through the same API, CLI and storage', () => {
    const name = `${P}f`;
    cliOk(['launch', 'busybox', name, '--driver', 'fake', '--memory', '64MiB']);
    const inst = findInstance(name) as Instance;
    expect(inst).toMatchObject({ driver: 'fake', type: 'container', state: 'running', technology: { isolation: 'none (fake driver for tests)' }, features: { console: true } });
    expect(cliOk(['exec', name, '--', 'echo', 'from', 'the', 'fake'])).toBe('from the fake\n');
    cliOk(['stop', name]);
    expect(findInstance(name)?.state).toBe('stopped');
    // The default container driver is still lxc.
    cliOk(['launch', 'busybox', `${P}l`]);
    expect(findInstance(`${P}l`)?.driver).toBe('lxc');
    const mac = inst.mac;
    cliOk(['delete', name]);
    expect(leftovers(name, mac)).toEqual([]);
  });

  it('refuses what a driver does not take, naming the drivers that do, and unknown or mismatched drivers', () => {
    const cases: [string[], RegExp][] = [
      [['launch', 'busybox', `${P}x`, '--driver', 'fake', '-c', 'limits.memory.swap=64MiB'], /limits\.memory\.swap is not supported by the fake backend \(it is a key of: lxc, openvz\)/],
      [['launch', 'busybox', `${P}x`, '-c', 'boot.kernel=/boot/vmlinuz'], /boot\.kernel is not supported by the lxc backend \(it is a key of: qemu, xen\)/],
      [['launch', 'busybox', `${P}x`, '--driver', 'nope'], /Driver "nope" is not enabled on this host \(enabled: lxc, qemu, xen, fake, openvz; HANGAR_DRIVERS\)/],
      [['launch', 'busybox', `${P}x`, '--vm', '--driver', 'lxc'], /Driver "lxc" runs containers, not vms/],
    ];
    for (const [args, msg] of cases) {
      const r = cli(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(leftovers(`${P}x`)).toEqual([]);
    }
  });
});
