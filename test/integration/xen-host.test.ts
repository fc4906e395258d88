// Integration test: builds and boots the Xen test host (Xen 4.17 + Debian Dom0 in QEMU/TCG), detects it over an SshHost, then runs PV and PVH busybox domUs through xl over SSH.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.js';
import { SshHost } from '../../src/host/ssh.js';
import { analyzeVirt } from '../../src/core/detect/detect.js';
import { buildBusyboxVmImage, VM_READY_MARKER } from '../../src/core/images/busybox-vm.js';
import { buildXenHost, XEN_BRIDGE, XEN_IMAGES_DIR } from '../xen-host/build.js';
import { startXenHost, type XenHost } from '../helpers/xen-host.js';

const run = promisify(execFile);
const host = new LocalHost();
// Shared with the busybox VM image test: the cloud kernel and qemu-guest-agent are downloaded once.
const VM_CACHE = '/var/lib/hangar-test-cache/vm';
const PREFIX = `hgtx${Math.random().toString(36).slice(2, 6)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Parses `xl info` (key : value lines). */
function parseXlInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+)\s*:\s?(.*)$/.exec(line);
    if (m?.[1] !== undefined) out[m[1]] = (m[2] ?? '').trim();
  }
  return out;
}

describe('Xen test host (Xen 4.17 nested in QEMU/TCG, driven over SSH)', () => {
  const t0 = Date.now();
  const times: Record<string, number> = {};
  const created: string[] = [];
  let dir = '';
  let xen: XenHost | undefined;
  let info: Record<string, string> = {};
  const need = (): XenHost => {
    if (!xen) throw new Error('the Xen test host is not running');
    return xen;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `${PREFIX}-`));
    let t = Date.now();
    const art = await buildXenHost(host);
    times.buildXenHostMs = Date.now() - t;
    console.log(`Xen host ${art.cached ? 'found in the cache' : 'built'} in ${times.buildXenHostMs} ms (${art.dir}; first build took ${art.manifest.buildMs} ms)`);
    t = Date.now();
    await buildBusyboxVmImage(host, join(dir, 'image'), { cacheDir: VM_CACHE });
    // libxl gunzips a compressed kernel itself (PV and PVH) and the guest kernel a compressed initramfs: 16 MB instead of
    // 62 MB through SSH into a TCG Dom0, which takes ~4 MB/s.
    await run('gzip', ['-1', '-k', join(dir, 'image', 'vmlinux'), join(dir, 'image', 'initrd.img')]);
    times.busyboxImageMs = Date.now() - t;
    t = Date.now();
    xen = await startXenHost({ timeoutMs: 180_000 });
    times.startXenHostMs = Date.now() - t;
    times.qemuStartToXlListMs = xen.bootMs;
    console.log(`Xen host ${xen.reused ? 'reused' : 'booted'}: QEMU start → xl list answers in ${xen.bootMs} ms (pid ${xen.pid}, 127.0.0.1:${xen.sshPort})`);
  }, 900_000);

  afterAll(async () => {
    if (xen) {
      for (const name of created) await xen.ssh(['xl', 'destroy', name], { timeoutMs: 30_000 }).catch(() => undefined);
      await xen.stop();
    }
    if (dir) await rm(dir, { recursive: true, force: true });
    console.log('Xen host test timings (ms):', { ...times, wholeFileMs: Date.now() - t0 });
  });

  it('is built from Debian packages with a pinned host key, and a second build is a cache hit', async () => {
    const t = Date.now();
    const again = await buildXenHost(host);
    times.cachedBuildMs = Date.now() - t;
    expect(again.cached).toBe(true);
    expect(again.manifest.xenVersion).toBe('4.17');
    expect(again.manifest.packages.map((p) => p.name)).toEqual(expect.arrayContaining(['xen-hypervisor-4.17-amd64', 'xen-utils-4.17', 'dropbear-bin', 'libgcc-s1']));
    expect(again.manifest.kernel.release).toMatch(/^6\.1\.\d+-\d+-amd64$/);
    const fp = (await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(again.dir, 'ssh_host_ed25519_key.pub')])).stdout;
    expect(fp).toContain(again.hostKeyFingerprint);
    expect(need().hostKeyFingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  it('answers xl list over SSH and refuses a host key other than the pinned one', async () => {
    const h = need();
    expect(await h.sshOk(['xl', 'list'])).toMatch(/^Domain-0\s+0\s/m);
    const t = Date.now();
    await h.sshOk(['true']);
    times.sshRoundTripMs = Date.now() - t;
    // A fresh client (no shared connection) with another key pinned must not get in.
    const other = join(dir, 'other_key');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const kh = join(dir, 'wrong_known_hosts');
    await writeFile(kh, `[127.0.0.1]:${h.sshPort} ${(await readFile(`${other}.pub`, 'utf8')).trim()}\n`);
    const refused = await run('ssh', ['-F', '/dev/null', '-i', h.identityFile, '-o', `Port=${h.sshPort}`, '-o', `UserKnownHostsFile=${kh}`,
      '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'ControlPath=none', 'root@127.0.0.1', '--', 'true'])
      .then(() => ({ code: 0, stderr: '' }), (e: { code?: number; stderr?: string }) => ({ code: e.code ?? -1, stderr: e.stderr ?? '' }));
    expect(refused.code).toBe(255);
    expect(refused.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });

  it('xl info shows Xen 4.17 and its virt_caps', async () => {
    info = parseXlInfo(await need().sshOk(['xl', 'info']));
    console.log(`xl info: xen_version=${info.xen_version} virt_caps="${info.virt_caps}" xen_caps="${info.xen_caps}" scheduler=${info.xen_scheduler} total/free memory=${info.total_memory}/${info.free_memory} MiB nr_cpus=${info.nr_cpus}`);
    expect(info.xen_version).toMatch(/^4\.17\./);
    expect(info.virt_caps?.split(/\s+/)).toContain('pv');
    expect(Number(info.free_memory)).toBeGreaterThan(1024);
  });

  it('detects the Dom0 over an SshHost: the outer QEMU (its DMI), xen, and xen-dom0 of guest type PV', async () => {
    const h = need();
    const ssh = await SshHost.connect({ name: 'xen-detect', host: '127.0.0.1', port: h.sshPort, identityFile: h.identityFile, hostKeyFingerprint: h.hostKeyFingerprint });
    try {
      // No CPUID probe on the Dom0: DMI, /proc and /sys decide alone.
      const res = await analyzeVirt(ssh, { root: '/' });
      console.log('Dom0 detection:', JSON.stringify(res));
      expect(res.facts.map((f) => f.fact)).toEqual(['qemu', 'xen', 'xen-dom0']);
      expect(res.facts[0]!.evidence).toContain('/sys/class/dmi/id/sys_vendor: QEMU');
      expect(res.facts[2]!.evidence).toEqual(['guest type PV (/sys/hypervisor/guest_type)', '/proc/xen/capabilities: control_d']);
    } finally {
      ssh.close();
    }
  });

  it('copies files in over ssh and over SFTP (scp)', async () => {
    const h = need();
    const local = join(dir, 'probe.txt');
    await writeFile(local, 'hangar xen host\n');
    await h.copyTo(local, '/tmp/probe-cat');
    await run('scp', ['-q', ...h.sshArgs, local, 'root@127.0.0.1:/tmp/probe-scp']);
    expect(await h.sshOk(['cat', '/tmp/probe-cat', '/tmp/probe-scp'])).toBe('hangar xen host\nhangar xen host\n');
    const t = Date.now();
    for (const f of ['vmlinux.gz', 'initrd.img.gz']) await h.copyTo(join(dir, 'image', f), `${XEN_IMAGES_DIR}/${f}`);
    times.copyKernelAndInitrdMs = Date.now() - t;
    expect(await h.sshOk(['ls', XEN_IMAGES_DIR])).toMatch(/initrd\.img\.gz\s+vmlinux\.gz/);
  });

  // Creates a busybox domU of a type, waits for its console marker, checks xl list -l, pause/unpause, then destroys it.
  async function domainCycle(type: 'pv' | 'pvh'): Promise<void> {
    const h = need();
    const name = `${PREFIX}-${type}`;
    const cfg = [
      `type = '${type}'`, `name = '${name}'`,
      `kernel = '${XEN_IMAGES_DIR}/vmlinux.gz'`, `ramdisk = '${XEN_IMAGES_DIR}/initrd.img.gz'`,
      `extra = 'console=hvc0 quiet hangar.hostname=${name}'`,
      'memory = 128', 'vcpus = 1', `vif = [ 'bridge=${XEN_BRIDGE}' ]`, "on_poweroff = 'destroy'", "on_crash = 'destroy'",
      // A file disk runs the block hotplug script (bash, flock, losetup) in Dom0.
      `disk = [ 'format=raw,vdev=xvda,access=rw,target=${XEN_IMAGES_DIR}/${name}.img' ]`,
    ].join('\n') + '\n';
    await h.sshOk(['sh', '-c', 'cat > "$1"', 'write-cfg', `/tmp/${name}.cfg`], { input: cfg });
    await h.sshOk(['truncate', '-s', '16M', `${XEN_IMAGES_DIR}/${name}.img`]);
    const t = Date.now();
    created.push(name);
    await h.sshOk(['xl', 'create', `/tmp/${name}.cfg`], { timeoutMs: 120_000 });
    times[`${type}CreateReturnsMs`] = Date.now() - t;
    const consoleLog = `/var/log/xen/console/guest-${name}.log`;
    let text = '';
    for (;;) {
      text = (await h.ssh(['cat', consoleLog])).stdout;
      if (text.includes(`${VM_READY_MARKER} ${name}`)) break;
      if (Date.now() - t > 120_000) {
        const diag = await h.ssh(['sh', '-c', `xl list; tail -n 20 /var/log/xen/xl-${name}.log`]);
        throw new Error(`${type} domU printed no ${VM_READY_MARKER} within 120 s; console:\n${text.slice(-3000)}\n${diag.stdout}${diag.stderr}`);
      }
      await sleep(300);
    }
    times[`${type}CreateToMarkerMs`] = Date.now() - t;

    // xl list -l has the domain's id and config; the run state is in xl list's flags, one column each: r(unning) b(locked, i.e. idle) p(aused) s c d.
    const json = JSON.parse(await h.sshOk(['xl', 'list', '-l', name])) as { domid: number; config: { c_info: { type: string; name: string } } }[];
    expect(json).toHaveLength(1);
    expect(json[0]!.domid).toBeGreaterThan(0);
    expect(json[0]!.config.c_info).toMatchObject({ type, name });
    const state = async () => (await h.sshOk(['xl', 'list', name])).split('\n')[1]?.trim().split(/\s+/)[4] ?? '';
    expect(await state()).toMatch(/^[r-][b-]-{4}$/);
    await h.sshOk(['xl', 'pause', name]);
    expect(await state()).toMatch(/^[r-][b-]p---$/);
    await h.sshOk(['xl', 'unpause', name]);
    expect(await state()).toMatch(/^[r-][b-]-{4}$/);
    // Its vif joined the bridge (the busybox image loads no xen-netfront, so the link stays without carrier).
    expect(await h.sshOk(['ls', `/sys/class/net/${XEN_BRIDGE}/brif`])).toMatch(new RegExp(`^vif${json[0]!.domid}\\.0$`, 'm'));
    // The disk's backend exists (xvda is vdev 51712) on a loop device over the file.
    expect(await h.sshOk(['xl', 'block-list', name])).toMatch(/^51712\s/m);
    expect(await h.sshOk(['losetup', '-a'])).toContain(`${name}.img`);
    await h.sshOk(['xl', 'destroy', name]);
    created.splice(created.indexOf(name), 1);
    // The hotplug script detached the loop device again (it may finish just after xl destroy returns).
    for (let i = 0; i < 50 && (await h.sshOk(['losetup', '-a'])).includes(`${name}.img`); i++) await sleep(200);
    expect(await h.sshOk(['losetup', '-a'])).not.toContain(`${name}.img`);
    await h.sshOk(['rm', '-f', `${XEN_IMAGES_DIR}/${name}.img`]);
    const gone = await h.ssh(['xl', 'list', name]);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toMatch(/is an invalid domain identifier|not a valid domain/);
    console.log(`${type} domU: xl create returned after ${times[`${type}CreateReturnsMs`]} ms, ${VM_READY_MARKER} after ${times[`${type}CreateToMarkerMs`]} ms`);
  }

  it('boots a PV busybox domU (vif on the bridge, file disk) to its marker, pauses, unpauses and destroys it', async () => {
    await domainCycle('pv');
  }, 300_000);

  it('boots a PVH busybox domU the same way (needs HAP in virt_caps)', async (ctx) => {
    const caps = (info.virt_caps ?? '').split(/\s+/);
    if (!caps.includes('hap')) {
      // Debian's Xen has no shadow paging: without HAP a PVH domain cannot be built. Record what xl says.
      const h = need();
      const name = `${PREFIX}-pvh-nohap`;
      await h.sshOk(['sh', '-c', 'cat > "$1"', 'write-cfg', `/tmp/${name}.cfg`], { input: `type='pvh'\nname='${name}'\nkernel='${XEN_IMAGES_DIR}/vmlinux.gz'\nmemory=128\n` });
      created.push(name);
      const r = await h.ssh(['xl', 'create', `/tmp/${name}.cfg`]);
      expect(r.code).not.toBe(0);
      ctx.skip(`PVH needs HAP; virt_caps is "${info.virt_caps}" and xl create said: ${r.stderr.trim().split('\n').slice(-2).join(' / ')}`);
    }
    await domainCycle('pvh');
  }, 300_000);

  it('stops the host: QEMU exits and the port closes', async () => {
    const h = need();
    await h.stop();
    xen = undefined;
    // Gone, or at most a zombie waiting for whichever process spawned it (another test file's worker, when reused).
    const stat = await readFile(`/proc/${h.pid}/stat`, 'utf8').catch(() => '');
    expect(stat === '' || / Z /.test(stat.slice(stat.lastIndexOf(')')))).toBe(true);
    const open = await new Promise<boolean>((resolve) => {
      const s = connect(h.sshPort, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    expect(open).toBe(false);
    times.wholeTestMs = Date.now() - t0;
  });
});
