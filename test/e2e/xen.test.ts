// E2e of Xen through the CLI and the test daemon: the nested Xen 4.17 Dom0 added as a host on its own bridge, a PVH busybox domU launched, listed, logged and pinged there; bad input refused leaving nothing; a hand-made domain imported and adopted; hangard killed (domain left running, adopted), the domain destroyed behind hangard's back (drift), deleted leaving nothing.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HangarEvent, HostRecord, Instance, XenImportTranslation } from '../../src/shared/schemas.js';
import { cliAsync, cliOk, cliOkAsync, setSharedDaemon, sharedDaemon, startDaemon, TEST_ENV, uniquePrefix } from '../helpers/daemon.js';
import { alive, collectEvents, daemonPid, findInstance, hostIfName, instanceUntil, pollUntil, settings } from '../helpers/e2e.js';
import { startXenHost, type XenHost } from '../helpers/xen-host.js';
import { VM_READY_MARKER } from '../../src/core/images/busybox-vm.js';
import { XEN_BRIDGE, XEN_BRIDGE_ADDRESS, XEN_IMAGES_DIR } from '../xen-host/build.js';

const P = uniquePrefix('xe');
const H = `${P}h`;
const VM = `${P}v`;
const IMP = `${P}i`;
const IMP_UUID = '5d0a1e2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b';
let scratch: string;
const subnet = XEN_BRIDGE_ADDRESS.split('.').slice(0, 3).join('.');
let xen: XenHost;

/** The Dom0's domains by name (`xl list`). */
async function domains(): Promise<Map<string, number>> {
  const out = await xen.sshOk(['xl', 'list']);
  const m = new Map<string, number>();
  for (const line of out.split('\n').slice(1)) {
    const [name, id] = line.trim().split(/\s+/);
    if (name && id) m.set(name, Number(id));
  }
  return m;
}

/** The domain of an instance: the one Hangar's xl name for it ends with. */
async function domainOf(name: string): Promise<{ name: string; id: number } | undefined> {
  for (const [n, id] of await domains()) if (n === name || n.endsWith(`-${name}`)) return { name: n, id };
  return undefined;
}

/** `hangar host info NAME --format json`. */
function hostInfo(name: string): { drivers: Array<{ name: string; available: boolean; details: Record<string, string> }>; host: HostRecord } {
  return JSON.parse(cliOk(['host', 'info', name, '--format', 'json'])) as { drivers: Array<{ name: string; available: boolean; details: Record<string, string> }>; host: HostRecord };
}

/** Waits until the console log of the instance holds the busybox VM's ready marker `count` times. */
async function guestReady(name: string, count = 1): Promise<string> {
  let log = '';
  await pollUntil(async () => {
    const r = await cliAsync(['console', name, '--show-log']);
    log = r.stdout;
    return (log.split(VM_READY_MARKER).length - 1) >= count;
  }, 900, 200);
  return log;
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'hangar-xen-e2e-'));
  await sharedDaemon();
  xen = await startXenHost({ onProgress: (m) => console.log(`xen host: ${m}`) });
  console.log(`xen host on 127.0.0.1:${xen.sshPort} (${xen.reused ? 'reused' : `booted in ${xen.bootMs} ms`})`);
}, 900_000);

afterAll(async () => {
  try {
    await daemonPid().catch(async () => setSharedDaemon(await startDaemon(TEST_ENV)));
    for (const n of [VM, IMP]) if (findInstance(n)) await cliAsync(['delete', n, '--force']);
    await cliAsync(['host', 'remove', H]);
  } finally {
    // Whatever the daemon could not remove: the test's domains on the Dom0.
    if (xen) {
      for (const [n] of await domains().catch(() => new Map<string, number>())) if (n.includes(P)) await xen.ssh(['xl', 'destroy', n]);
      await xen.ssh(['rm', '-rf', `${XEN_IMAGES_DIR}/${P}`, `/var/log/xen/console/guest-${IMP}.log`, `/var/log/xen/xl-${IMP}.log`]).catch(() => undefined);
    }
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}, 300_000);

describe('xen e2e', () => {
  it('the Dom0 is added on its own bridge: xen is available there, with its version and the host-bridge network', async () => {
    const out = await cliOkAsync(['host', 'add', H, `ssh://root@127.0.0.1:${xen.sshPort}`, '--identity', xen.identityFile, '--bridge', XEN_BRIDGE]);
    expect(out).toContain(`Host key: ssh-ed25519 ${xen.hostKeyFingerprint}`);
    expect(out).toMatch(new RegExp(`^Network: .*${XEN_BRIDGE}`, 'm'));
    const info = hostInfo(H);
    const x = info.drivers.find((d) => d.name === 'xen');
    expect(x, JSON.stringify(info.drivers)).toMatchObject({ available: true });
    expect(JSON.stringify(x!.details)).toMatch(/4\.17/);
    expect(info.host).toMatchObject({ state: 'up', network: { mode: 'host-bridge' } });
  });

  it('a PVH busybox domU is launched there: listed as a Xen VM with its address, its console logged, reachable on the bridge', async () => {
    const r = await cliAsync(['launch', 'busybox', VM, '--vm', '--driver', 'xen', '--host', H, '--memory', '256MiB']);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Launched ${VM} \\(${subnet.replace(/\./g, '\\.')}\\.\\d+\\) on host ${H}$`, 'm'));
    const inst = findInstance(VM)!;
    expect(inst).toMatchObject({ host: H, type: 'vm', driver: 'xen', state: 'running' });
    expect(inst.ipv4?.startsWith(`${subnet}.`)).toBe(true);
    expect(cliOk(['list'])).toMatch(new RegExp(`^${VM} +vm +xen +RUNNING +${subnet.replace(/\./g, '\\.')}\\.\\d+ +busybox +${H}$`, 'm'));
    // What the technology means for the user: its own kernel, RAM dedicated to it.
    expect(inst.technology).toMatchObject({ kernel: 'own', memory: 'dedicated', isolation: expect.stringMatching(/^Xen 4\.17\S* domain, hardware-assisted \(PVH/) });
    expect(cliOk(['info', VM])).toMatch(/^Technology: +own kernel, dedicated memory, isolation: Xen 4\.17/m);
    const dom = await domainOf(VM);
    expect(dom, `xl list: ${[...(await domains()).keys()].join(', ')}`).toBeDefined();
    // The guest's own words, logged by xenconsoled: its init names the instance (its hostname).
    expect(await guestReady(VM)).toContain(`${VM_READY_MARKER} ${VM}`);
    // The guest's static address answers on the Dom0's bridge.
    const ping = await pollUntil(async () => (await xen.ssh(['ping', '-c', '1', '-W', '2', inst.ipv4!])).code === 0, 30, 1000);
    expect(ping, `ping ${inst.ipv4} from the Dom0`).toBe(true);
  }, 600_000);

  it('what the Dom0 cannot run is refused before anything is made there: HVM without a device model, memory Xen does not have free', async () => {
    const before = [...(await domains()).keys()].sort();
    const cases: Array<[string[], RegExp]> = [
      [['-c', 'boot.virt=hvm'], /needs an HVM domain, and this Xen host has no device model \(qemu-system-i386 for Xen is not installed in Dom0\)/],
      [['--memory', '3000MiB'], /limits\.memory=3000MiB is more than the \d+ MiB Xen has free on this host \(xl info free_memory\)/],
      [['-c', 'boot.virt=pv', '-c', 'limits.memory.guarantee=512MiB', '--memory', '256MiB'], /limits\.memory\.guarantee \(512MiB\) must not exceed limits\.memory \(256MiB\)/],
    ];
    for (const [i, [extra, why]] of cases.entries()) {
      const name = `${P}b${i}`;
      const r = await cliAsync(['launch', 'busybox', name, '--vm', '--driver', 'xen', '--host', H, ...extra]);
      expect(r.code, r.stdout).not.toBe(0);
      expect(r.stderr).toMatch(why);
      expect(findInstance(name)).toBeUndefined();
      const leftover = await xen.ssh(['sh', '-c', `find / \\( -path /proc -o -path /sys \\) -prune -o -name '*${name}*' -print 2>/dev/null; true`]);
      expect(leftover.stdout.trim(), `left on the Dom0 by ${extra.join(' ')}`).toBe('');
    }
    expect([...(await domains()).keys()].sort()).toEqual(before);
  }, 300_000);

  it('hangard killed: the domain keeps running, and the next hangard reconnects and adopts it', async () => {
    const before = await domainOf(VM);
    const pid = await daemonPid();
    process.kill(pid, 'SIGKILL');
    await pollUntil(() => !alive(pid), 100, 50);
    expect(await domainOf(VM)).toEqual(before);
    setSharedDaemon(await startDaemon(TEST_ENV));
    const adopted = await instanceUntil(VM, 'running');
    expect(adopted, JSON.stringify(adopted)).toMatchObject({ host: H, driver: 'xen', state: 'running' });
    expect(await domainOf(VM)).toEqual(before);
  }, 300_000);

  it('the domain destroyed behind hangard\'s back while it runs is recorded stopped at once (xenstore\'s @releaseDomain), with an event; it starts again', async () => {
    const dom = (await domainOf(VM))!;
    const sub = await collectEvents({ types: ['instance-stopped'] });
    try {
      await xen.sshOk(['xl', 'destroy', dom.name]);
      // The bound is only there to fail rather than hang: the event comes from the xenstore watch.
      const seen = await pollUntil(() => sub.events.some((e) => e.instance === VM && e.type === 'instance-stopped'), 300, 100);
      expect(seen, JSON.stringify(sub.events)).toBe(true);
      expect(sub.events.find((e) => e.instance === VM && e.type === 'instance-stopped')?.data).toEqual({ by: 'outside', pid: dom.id });
      expect(findInstance(VM)).toMatchObject({ state: 'stopped', pid: null });
    } finally {
      sub.close();
    }
    const r = await cliAsync(['start', VM]);
    expect(r.code, r.stderr).toBe(0);
    expect(findInstance(VM)).toMatchObject({ state: 'running' });
    await guestReady(VM, 2);
  }, 300_000);

  it('the domain destroyed behind hangard\'s back is seen at the next start as stopped, with a drift event; it starts again', async () => {
    const pid = await daemonPid();
    process.kill(pid, 'SIGKILL');
    await pollUntil(() => !alive(pid), 100, 50);
    const dom = (await domainOf(VM))!;
    await xen.sshOk(['xl', 'destroy', dom.name]);
    setSharedDaemon(await startDaemon(TEST_ENV));
    const sub = await collectEvents({ replay: true, types: ['instance-drift'] });
    let drift: HangarEvent[] = [];
    try {
      await pollUntil(() => (drift = sub.events.filter((e) => e.instance === VM)).length > 0, 300, 200);
    } finally {
      sub.close();
    }
    expect(drift, 'drift events').toHaveLength(1);
    expect(drift[0]!.data).toMatchObject({ expected: 'running', actual: 'stopped' });
    expect(await instanceUntil(VM, 'stopped', 50)).toMatchObject({ state: 'stopped' });
    const r = await cliAsync(['start', VM]);
    expect(r.code, r.stderr).toBe(0);
    expect(findInstance(VM)).toMatchObject({ state: 'running' });
    // Its third boot: the first, the start after the destroy seen at once, this one.
    await guestReady(VM, 3);
  }, 600_000);

  it('a domain made by hand with xl create is imported from its xl.cfg: adopted running, stopped and started again with its own disk, deleted leaving that disk', async () => {
    const image = (JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as Array<{ alias: string; type: string; fingerprint: string }>).find((i) => i.alias === 'busybox' && i.type === 'vm')!;
    const dir = `${XEN_IMAGES_DIR}/${P}`;
    await xen.sshOk(['mkdir', '-p', dir]);
    for (const f of ['vmlinux', 'initrd.img']) await xen.copyTo(join(settings.poolDir, 'images', image.fingerprint, f), `${dir}/${f}`);
    await xen.sshOk(['truncate', '-s', '16M', `${dir}/disk.img`]);
    const ip = `${subnet}.250`;
    const cfg = [
      `# ${IMP}: made by hand`, `name = "${IMP}"`, 'type = "pvh"', `uuid = "${IMP_UUID}"`, 'memory = 128', 'vcpus = 1',
      `kernel = "${dir}/vmlinux"`, `ramdisk = "${dir}/initrd.img"`, `extra = "console=hvc0 quiet hangar.hostname=${IMP} hangar.ip=${ip}/24"`,
      `disk = [ "format=raw, vdev=xvda, access=rw, target=${dir}/disk.img" ]`, `vif = [ "mac=02:00:00:fa:00:01, bridge=${XEN_BRIDGE}, ip=${ip}" ]`,
      'on_poweroff = "destroy"', '',
    ].join('\n');
    const local = join(scratch, `${IMP}.cfg`);
    writeFileSync(local, cfg);
    await xen.copyTo(local, `${dir}/${IMP}.cfg`);
    await xen.sshOk(['xl', 'create', `${dir}/${IMP}.cfg`]);
    const log = `/var/log/xen/console/guest-${IMP}.log`;
    const marker = async (n: number) => pollUntil(async () => ((await xen.ssh(['cat', log])).stdout.split(`${VM_READY_MARKER} ${IMP}`).length - 1) >= n, 600, 200);
    expect(await marker(1), 'the hand-made domain boots').toBe(true);

    const dry = JSON.parse(cliOk(['import', 'xen', local, '--host', H, '--dry-run', '--format', 'json'])) as XenImportTranslation;
    expect(dry).toMatchObject({ name: IMP, guestType: 'pvh', uuid: IMP_UUID, disks: [{ use: 'root', disk: { target: `${dir}/disk.img` } }], nics: [{ use: 'primary', ipv4: ip }] });
    const r = await cliAsync(['import', 'xen', local, '--host', H]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Imported ${IMP} (xen) on host ${H} from ${local}`);
    const adopted = await instanceUntil(IMP, 'running', 50);
    expect(adopted, JSON.stringify(adopted)).toMatchObject({ host: H, driver: 'xen', state: 'running', ipv4: ip });
    const domid = (await domainOf(IMP))!.id;
    expect(adopted!.pid).toBe(domid);

    const seen = await collectEvents({});
    expect((await cliAsync(['stop', IMP, '--force'])).code).toBe(0);
    expect(await domainOf(IMP)).toBeUndefined();
    const started = await cliAsync(['start', IMP]);
    expect(started.code, started.stderr).toBe(0);
    const now = findInstance(IMP);
    // What the Dom0 says of a domain that is not running right after its start (its xl log, console, Xen's log), and
    // the events of the next moments too.
    let story = '';
    if (now?.state !== 'running') {
      await new Promise((r) => setTimeout(r, 3000));
      story = (await xen.ssh(['sh', '-c', `xl list -v; tail -n 40 /var/log/xen/xl-${IMP}.log; tail -c 2000 /var/log/xen/console/guest-${IMP}.log; xl dmesg | tail -n 30`])).stdout;
    }
    seen.close();
    expect(now, `${JSON.stringify(seen.events.filter((e) => e.instance === IMP).map((e) => [e.type, e.message, e.data]))}\n${story}`).toMatchObject({ state: 'running' });
    // Its own disk again, not a root disk of Hangar's.
    const disks = await xen.sshOk(['xl', 'block-list', IMP]);
    expect(disks.trim().split('\n')).toHaveLength(2);
    expect(await marker(2), 'booted again by Hangar').toBe(true);

    expect((await cliAsync(['delete', IMP, '--force'])).code).toBe(0);
    expect(findInstance(IMP)).toBeUndefined();
    expect(await domainOf(IMP)).toBeUndefined();
    expect((await xen.ssh(['test', '-f', `${dir}/disk.img`])).code, 'the imported disk stays where it was').toBe(0);
  }, 600_000);

  it('delete leaves nothing on the Dom0: no domain, no files, no vif; then the host is removed', async () => {
    const r = await cliAsync(['delete', VM, '--force']);
    expect(r.code, r.stderr).toBe(0);
    expect(findInstance(VM)).toBeUndefined();
    expect(await domainOf(VM)).toBeUndefined();
    const files = await xen.ssh(['sh', '-c', `find / \\( -path /proc -o -path /sys \\) -prune -o -name '*${VM}*' -print 2>/dev/null; ip -o link | grep -F ${hostIfName(VM)}; true`]);
    expect(files.stdout.trim()).toBe('');
    cliOk(['host', 'remove', H]);
    expect((JSON.parse(cliOk(['host', 'list', '--format', 'json'])) as HostRecord[]).some((h) => h.name === H)).toBe(false);
  }, 300_000);
});
