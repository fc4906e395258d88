// Unit tests for virtualization detection against fixture root trees built in temporary directories.
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import type { ExecResult } from '../../host/host.js';
import { ScriptedHost } from '../../host/scripted.js';
import { LocalHost } from '../../host/local.js';
import { cpuidFamily, readCpuidSignature } from './cpuid.js';
import { analyzeSnapshot, analyzeVirt, detectVirt } from './detect.js';
import { readSnapshot } from './snapshot.js';

const host = new LocalHost();
const base = join(tmpdir(), `tdet${randomBytes(2).toString('hex')}`);
let counter = 0;

afterAll(async () => {
  await host.fs.rm(base, { recursive: true, force: true });
});

/** Builds a root tree; keys ending in "/" are directories, the rest files. */
async function tree(files: Record<string, string>): Promise<string> {
  const root = join(base, `r${counter++}`);
  await host.fs.mkdir(root, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    const full = join(root, path);
    if (path.endsWith('/')) {
      await host.fs.mkdir(full, { recursive: true });
    } else {
      await host.fs.mkdir(dirname(full), { recursive: true });
      await host.fs.writeAtomic(full, content);
    }
  }
  return root;
}

const ROOT_CGROUP = ['9:name=systemd:/', '4:memory:/', '1:cpu:/', '0::/'].join('\n') + '\n';
const PLAIN_MOUNTS = '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n22 27 0:21 / /proc rw,relatime - proc proc rw\n';
const BARE_CPU = 'processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu vme de pse tsc msr\n\n';
const VM_CPU = 'processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu vme de hypervisor lahf_lm\n\n';
const environ = (...vars: string[]) => vars.join('\0') + '\0';

/** A plain Linux machine: PID 1 in the root cgroup, plain disk root, no container variable. */
function machine(cpuinfo: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    'proc/1/environ': environ('HOME=/', 'TERM=linux'),
    'proc/1/cgroup': ROOT_CGROUP,
    'proc/self/cgroup': ROOT_CGROUP,
    'proc/self/mountinfo': PLAIN_MOUNTS,
    'proc/self/status': 'Name:\tnode\nPid:\t42\n',
    'proc/cpuinfo': cpuinfo,
    'proc/sys/kernel/osrelease': '6.1.0-28-amd64\n',
    ...extra,
  };
}

async function facts(files: Record<string, string>, cpuid?: string | null): Promise<string[]> {
  return (await detectVirt(host, { root: await tree(files), cpuid })).map((f) => f.fact);
}

describe('detectVirt on fixture trees', () => {
  it('reports nothing on bare metal', async () => {
    expect(await facts(machine(BARE_CPU, { 'sys/class/dmi/id/sys_vendor': 'Dell Inc.\n' }), null)).toEqual([]);
  });

  it('reports only bhyve for a bhyve VM with a stray empty /.dockerenv', async () => {
    const root = await tree(machine(VM_CPU, { '.dockerenv': '' }));
    const res = await analyzeVirt(host, { root, cpuid: 'bhyve bhyve ' });
    expect(res.facts).toEqual([{ fact: 'bhyve', evidence: ['cpuid: bhyve bhyve ', '/proc/cpuinfo: hypervisor flag'] }]);
    expect(res.notes.join('\n')).toMatch(/\/\.dockerenv.*ignored/);
  });

  it('does not trust an overlay root plus /.dockerenv without a Docker path', async () => {
    const mounts = '100 90 0:50 / / rw - overlay overlay rw,lowerdir=/lower,upperdir=/upper,workdir=/work\n';
    expect(await facts(machine(VM_CPU, { '.dockerenv': '', 'proc/self/mountinfo': mounts }), 'bhyve bhyve ')).toEqual(['bhyve']);
  });

  it('reports docker for /.dockerenv with a docker cgroup path, inside kvm', async () => {
    const cg = '12:memory:/docker/3f1c9e0a5b\n0::/docker/3f1c9e0a5b\n';
    const root = await tree(machine(VM_CPU, { '.dockerenv': '', 'proc/1/cgroup': cg, 'proc/self/cgroup': cg }));
    const res = await detectVirt(host, { root, cpuid: 'KVMKVMKVM' });
    expect(res.map((f) => f.fact)).toEqual(['kvm', 'docker']);
    expect(res[1]!.evidence).toEqual(['/proc/1/cgroup: 12:memory:/docker/3f1c9e0a5b', '/proc/self/cgroup: 12:memory:/docker/3f1c9e0a5b', '/.dockerenv: present']);
  });

  it('reports docker under a cgroup namespace from its mounts (root cgroup paths)', async () => {
    const mounts = [
      '600 500 0:60 / / rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC,upperdir=/var/lib/docker/overlay2/x/diff',
      '610 600 254:1 /var/lib/docker/containers/3f1c/hostname /etc/hostname rw - ext4 /dev/vda1 rw',
    ].join('\n') + '\n';
    expect(await facts(machine(BARE_CPU, { '.dockerenv': '', 'proc/self/mountinfo': mounts }), null)).toEqual(['docker']);
  });

  it('does not call a Docker host a container because of its containers’ mounts', async () => {
    const mounts = PLAIN_MOUNTS + '700 27 0:70 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A\n';
    expect(await facts(machine(BARE_CPU, { 'proc/self/mountinfo': mounts, 'proc/self/cgroup': '0::/system.slice/hangard.service\n' }), null)).toEqual([]);
  });

  it('reports Kubernetes pods as container-other, or as docker when Docker runs them', async () => {
    const pod = '0::/kubepods/burstable/pod1234/cri-containerd-ab12.scope\n';
    expect(await facts(machine(BARE_CPU, { 'proc/1/cgroup': pod }), null)).toEqual(['container-other']);
    const dockerPod = '4:memory:/kubepods/besteffort/pod9/docker-ab12.scope\n';
    expect(await facts(machine(BARE_CPU, { 'proc/1/cgroup': dockerPod, '.dockerenv': '' }), null)).toEqual(['docker']);
    expect(await facts(machine(BARE_CPU, { 'proc/self/cgroup': '0::/system.slice/containerd.service\n' }), null)).toEqual([]);
  });

  it('reports podman from /run/.containerenv and container=podman', async () => {
    const res = await detectVirt(host, {
      root: await tree(machine(BARE_CPU, { 'run/.containerenv': 'engine="podman-4.3.1"\n', 'proc/1/environ': environ('container=podman', 'HOME=/') })),
      cpuid: null,
    });
    expect(res).toEqual([{ fact: 'podman', evidence: ['/proc/1/environ: container=podman', '/run/.containerenv: engine="podman-4.3.1"'] }]);
  });

  it('reports kvm then lxc for an LXC container inside KVM', async () => {
    const res = await detectVirt(host, {
      root: await tree(machine(VM_CPU, { 'proc/1/environ': environ('PATH=/usr/bin', 'container=lxc', 'TERM=linux'), 'sys/class/dmi/id/sys_vendor': 'QEMU\n' })),
      cpuid: 'KVMKVMKVM',
    });
    expect(res).toEqual([
      { fact: 'kvm', evidence: ['cpuid: KVMKVMKVM', '/sys/class/dmi/id/sys_vendor: QEMU', '/proc/cpuinfo: hypervisor flag'] },
      { fact: 'lxc', evidence: ['/proc/1/environ: container=lxc'] },
    ]);
  });

  it('reports lxc from an lxc.payload cgroup path when PID 1 has no container variable', async () => {
    expect(await facts(machine(BARE_CPU, { 'proc/1/cgroup': '4:memory:/lxc.payload.web1\n0::/lxc.payload.web1\n' }), null)).toEqual(['lxc']);
  });

  it('orders an outer LXC (cgroup path) before the inner Docker container (PID 1 environment)', async () => {
    const files = machine(BARE_CPU, { 'proc/1/environ': environ('container=docker'), 'proc/1/cgroup': '4:memory:/lxc.payload.outer/docker/ab12\n' });
    expect(await facts(files, null)).toEqual(['lxc', 'docker']);
  });

  it('reports systemd-nspawn', async () => {
    const res = await detectVirt(host, {
      root: await tree(machine(BARE_CPU, { 'proc/1/environ': environ('container=systemd-nspawn'), 'run/host/container-manager': 'systemd-nspawn\n' })),
      cpuid: null,
    });
    expect(res).toEqual([{ fact: 'systemd-nspawn', evidence: ['/proc/1/environ: container=systemd-nspawn', '/run/host/container-manager: systemd-nspawn'] }]);
  });

  it('ignores a stale /run/systemd/container when PID 1’s environment is readable, and trusts it when not', async () => {
    const root = await tree(machine(BARE_CPU, { 'run/systemd/container': 'docker\n' }));
    const readable = await analyzeVirt(host, { root, cpuid: null });
    expect(readable.facts).toEqual([]);
    expect(readable.notes.join('\n')).toMatch(/run\/systemd\/container: docker.*ignored/);
    const snap = await readSnapshot(host, root);
    const unreadable = analyzeSnapshot({ ...snap, environ1: { kind: 'unreadable', code: 'EACCES' } }, null);
    expect(unreadable.facts.map((f) => f.fact)).toEqual(['docker']);
  });

  it('tells an OpenVZ container from an OpenVZ host', async () => {
    const ct = await analyzeVirt(host, { root: await tree(machine(BARE_CPU, { 'proc/vz/': '', 'proc/user_beancounters': 'Version: 2.5\n' })), cpuid: null });
    expect(ct.facts).toEqual([{ fact: 'openvz', evidence: ['/proc/vz: present', '/proc/bc: absent', '/proc/user_beancounters: present'] }]);
    const node = await analyzeVirt(host, { root: await tree(machine(BARE_CPU, { 'proc/vz/': '', 'proc/bc/': '' })), cpuid: null });
    expect(node.facts).toEqual([]);
    expect(node.notes.join('\n')).toMatch(/hardware node/);
  });

  it('reports Linux-VServer guests but not the host context', async () => {
    expect(await facts(machine(BARE_CPU, { 'proc/self/status': 'Name:\tbash\nVxID:\t40001\n' }), null)).toEqual(['linux_vserver']);
    expect(await facts(machine(BARE_CPU, { 'proc/self/status': 'Name:\tbash\nVxID:\t0\n' }), null)).toEqual([]);
  });

  it('reports a PV xen dom0 with its guest type', async () => {
    const files = machine(VM_CPU, { 'proc/xen/capabilities': 'control_d\n', 'sys/hypervisor/type': 'xen\n', 'sys/hypervisor/guest_type': 'PV\n' });
    const res = await detectVirt(host, { root: await tree(files), cpuid: 'XenVMMXenVMM' });
    expect(res.map((f) => f.fact)).toEqual(['xen', 'xen-dom0']);
    expect(res[1]!.evidence).toEqual(['guest type PV (/sys/hypervisor/guest_type)', '/proc/xen/capabilities: control_d']);
  });

  it('reports a PVH xen dom0 as xen-dom0, not xen-hvm', async () => {
    const files = machine(VM_CPU, { 'proc/xen/capabilities': 'control_d\n', 'sys/hypervisor/type': 'xen\n', 'sys/hypervisor/guest_type': 'PVH\n' });
    const res = await detectVirt(host, { root: await tree(files), cpuid: 'XenVMMXenVMM' });
    expect(res.map((f) => f.fact)).toEqual(['xen', 'xen-dom0']);
    expect(res[1]!.evidence).toEqual(['guest type PVH (/sys/hypervisor/guest_type)', '/proc/xen/capabilities: control_d']);
  });

  it('reports the outer hypervisor under a nested Xen dom0 from the DMI Xen passes through', async () => {
    const files = machine(VM_CPU, {
      'proc/xen/capabilities': 'control_d\n',
      'sys/hypervisor/type': 'xen\n',
      'sys/class/dmi/id/sys_vendor': 'QEMU\n',
      'sys/class/dmi/id/product_name': 'Standard PC (i440FX + PIIX, 1996)\n',
    });
    const res = await detectVirt(host, { root: await tree(files), cpuid: 'XenVMMXenVMM' });
    expect(res.map((f) => f.fact)).toEqual(['qemu', 'xen', 'xen-dom0']);
    // Without guest_type the type stays unknown.
    expect(res[2]!.evidence).toEqual(['/proc/xen/capabilities: control_d']);
  });

  it('does not take a dom0’s guest type from an outer Xen’s DMI', async () => {
    const files = machine(VM_CPU, { 'proc/xen/capabilities': 'control_d\n', 'sys/class/dmi/id/sys_vendor': 'Xen\n', 'sys/class/dmi/id/product_name': 'HVM domU\n' });
    const res = await detectVirt(host, { root: await tree(files), cpuid: 'XenVMMXenVMM' });
    expect(res.map((f) => f.fact)).toEqual(['xen', 'xen-dom0']);
    expect(res[1]!.evidence).toEqual(['/proc/xen/capabilities: control_d']);
  });

  it('reports a Xen PV domU with its guest type', async () => {
    const files = machine(BARE_CPU, { 'sys/hypervisor/type': 'xen\n', 'sys/hypervisor/guest_type': 'PV\n', 'proc/xen/capabilities': '' });
    const res = await detectVirt(host, { root: await tree(files), cpuid: null });
    expect(res.map((f) => f.fact)).toEqual(['xen', 'xen-domU']);
    expect(res[1]!.evidence).toEqual(['guest type PV (/sys/hypervisor/guest_type)', '/proc/xen/capabilities: no control_d']);
  });

  it('reports a Xen PVH domU as xen-domU, not xen-hvm', async () => {
    const files = machine(VM_CPU, { 'sys/hypervisor/type': 'xen\n', 'sys/hypervisor/guest_type': 'PVH\n' });
    const res = await detectVirt(host, { root: await tree(files), cpuid: 'XenVMMXenVMM' });
    expect(res.map((f) => f.fact)).toEqual(['xen', 'xen-domU']);
    expect(res[1]!.evidence).toEqual(['guest type PVH (/sys/hypervisor/guest_type)']);
  });

  it('reports a Xen HVM domU as xen-domU and xen-hvm, typed from guest_type or else from DMI', async () => {
    const dmi = { 'sys/class/dmi/id/sys_vendor': 'Xen\n', 'sys/class/dmi/id/product_name': 'HVM domU\n' };
    const files = machine(VM_CPU, dmi);
    const res = await detectVirt(host, { root: await tree(files), cpuid: 'XenVMMXenVMM' });
    expect(res.map((f) => f.fact)).toEqual(['xen', 'xen-domU', 'xen-hvm']);
    const fromDmi = ['guest type HVM (/sys/class/dmi/id)', '/sys/class/dmi/id/sys_vendor: Xen', '/sys/class/dmi/id/product_name: HVM domU'];
    expect(res[1]!.evidence).toEqual(fromDmi);
    expect(res[2]!.evidence).toEqual(fromDmi);
    // With viridian enabled Xen shows Hyper-V's signature first; DMI still says Xen.
    expect(await facts(files, 'Microsoft Hv')).toEqual(['xen', 'xen-domU', 'xen-hvm']);
    const sys = await detectVirt(host, { root: await tree({ ...files, 'sys/hypervisor/guest_type': 'HVM\n' }), cpuid: 'XenVMMXenVMM' });
    expect(sys.slice(1)).toEqual([
      { fact: 'xen-domU', evidence: ['guest type HVM (/sys/hypervisor/guest_type)'] },
      { fact: 'xen-hvm', evidence: ['guest type HVM (/sys/hypervisor/guest_type)'] },
    ]);
  });

  it('reports a domU from /proc/xen without control_d, and only xen from /sys/hypervisor/type alone', async () => {
    const res = await detectVirt(host, { root: await tree(machine(BARE_CPU, { 'proc/xen/capabilities': '' })), cpuid: null });
    expect(res).toEqual([
      { fact: 'xen', evidence: ['/proc/xen: present'] },
      { fact: 'xen-domU', evidence: ['/proc/xen: present', '/proc/xen/capabilities: no control_d'] },
    ]);
    expect(await facts(machine(BARE_CPU, { 'sys/hypervisor/type': 'xen\n' }), null)).toEqual(['xen']);
  });

  it('reports vmware, hyperv and virtualbox', async () => {
    expect(await facts(machine(VM_CPU, { 'sys/class/dmi/id/sys_vendor': 'VMware, Inc.\n', 'sys/class/dmi/id/product_name': 'VMware Virtual Platform\n' }))).toEqual(['vmware']);
    expect(await facts(machine(VM_CPU), 'Microsoft Hv')).toEqual(['hyperv']);
    expect(await facts(machine(VM_CPU, { 'sys/class/dmi/id/sys_vendor': 'Microsoft Corporation\n', 'sys/class/dmi/id/product_name': 'Virtual Machine\n' }))).toEqual(['hyperv']);
    const vbox = machine(VM_CPU, { 'sys/class/dmi/id/sys_vendor': 'innotek GmbH\n', 'sys/class/dmi/id/product_name': 'VirtualBox\n' });
    expect(await facts(vbox)).toEqual(['virtualbox']);
    // VirtualBox's KVM paravirtualisation interface is not KVM.
    expect(await facts(vbox, 'KVMKVMKVM')).toEqual(['virtualbox']);
  });

  it('tells qemu (TCG) from kvm', async () => {
    const dmi = { 'sys/class/dmi/id/sys_vendor': 'QEMU\n', 'sys/class/dmi/id/product_name': 'Standard PC (i440FX + PIIX, 1996)\n' };
    expect(await facts(machine(VM_CPU, dmi), 'TCGTCGTCGTCG')).toEqual(['qemu']);
    expect(await facts(machine(VM_CPU, dmi), 'KVMKVMKVM')).toEqual(['kvm']);
    expect(await facts(machine(VM_CPU, dmi))).toEqual(['qemu']);
  });

  it('reports parallels and bhyve from CPUID and DMI', async () => {
    expect(await facts(machine(VM_CPU), 'prl hyperv  ')).toEqual(['parallels']);
    expect(await facts(machine(VM_CPU), ' lrpepyh  vr')).toEqual(['parallels']);
    expect(await facts(machine(VM_CPU, { 'sys/class/dmi/id/bios_vendor': 'BHYVE\n' }))).toEqual(['bhyve']);
  });

  it('reports aws next to the hypervisor on EC2', async () => {
    expect(await facts(machine(VM_CPU, { 'sys/class/dmi/id/sys_vendor': 'Amazon EC2\n', 'sys/class/dmi/id/bios_vendor': 'Amazon EC2\n' }), 'KVMKVMKVM')).toEqual(['kvm', 'aws']);
  });

  it('reports wsl with hyperv, and uml', async () => {
    expect(await facts(machine(VM_CPU, { 'proc/sys/kernel/osrelease': '5.15.153.1-microsoft-standard-WSL2\n' }), 'Microsoft Hv')).toEqual(['hyperv', 'wsl']);
    const uml = 'processor\t: 0\nvendor_id\t: User Mode Linux\nmodel name\t: UML\nmode\t\t: skas\nhost\t\t: Linux x 6.1.0\n';
    expect(await facts(machine(uml), null)).toEqual(['uml']);
  });

  it('reports IBM System z partitions', async () => {
    const z = 'vendor_id       : IBM/S390\n# processors    : 2\n';
    expect(await facts(machine(z, { 'proc/sysinfo': 'LPAR Number: 1\nVM00 Control Program: z/VM    7.2.0\n' }))).toEqual(['ibm_systemz', 'ibm_systemz-zvm']);
    expect(await facts(machine(z, { 'proc/sysinfo': 'LPAR Number: 1\nLPAR Name: LP01\n' }))).toEqual(['ibm_systemz', 'ibm_systemz-lpar']);
  });

  it('reports vm-other for a hypervisor it cannot name, and nothing for an unprobed bare machine', async () => {
    expect(await facts(machine(VM_CPU), 'NotAHypervsr')).toEqual(['vm-other']);
    expect(await facts(machine(VM_CPU))).toEqual(['vm-other']);
    expect(await facts(machine(BARE_CPU))).toEqual([]);
  });

  it('rejects a root that does not exist', async () => {
    await expect(detectVirt(host, { root: join(base, 'missing') })).rejects.toSatisfy((e) => isAppError(e, 'NOT_FOUND'));
  });
});

describe('cpuid', () => {
  const fakeHost = (res: Partial<ExecResult>): { host: ScriptedHost } => ({ host: new ScriptedHost(() => res) });

  it('keeps trailing spaces of the signature and maps it', async () => {
    const { host: h } = fakeHost({ stdout: 'bhyve bhyve \n' });
    const sig = await readCpuidSignature(h, '/opt/hangar-cpuid');
    expect(sig).toBe('bhyve bhyve ');
    expect(h.commands('/opt/hangar-cpuid')).toEqual([['/opt/hangar-cpuid']]);
    expect(cpuidFamily(sig!)).toBe('bhyve');
  });

  it('returns null without a hypervisor and fails on other exits', async () => {
    expect(await readCpuidSignature(fakeHost({ code: 1 }).host, '/p')).toBeNull();
    expect(await readCpuidSignature(fakeHost({ code: 2 }).host, '/p')).toBe('');
    await expect(readCpuidSignature(fakeHost({ code: 3 }).host, '/p')).rejects.toSatisfy((e) => isAppError(e, 'UNSUPPORTED'));
    await expect(readCpuidSignature(fakeHost({ code: 139, stderr: 'boom' }).host, '/p')).rejects.toSatisfy((e) => isAppError(e, 'HOST_FAILED'));
  });

  it('maps every known signature', () => {
    expect(['KVMKVMKVM\0\0\0', 'TCGTCGTCGTCG', 'XenVMMXenVMM', 'Microsoft Hv', 'VMwareVMware', 'VBoxVBoxVBox'].map(cpuidFamily)).toEqual([
      'kvm', 'qemu', 'xen', 'hyperv', 'vmware', 'virtualbox',
    ]);
    expect(cpuidFamily('GenuineIntel')).toBeUndefined();
  });
});
