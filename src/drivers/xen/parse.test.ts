// Unit tests of the xl output parsers against samples shaped as Xen 4.17's xl prints them.
import { describe, expect, it } from 'vitest';
import { isNoSuchDomain, parseXlInfo, parseXlList, parseXlListLong, parseXlSched, parseXlState, parseXlVcpuList, xlMessage } from './parse.js';

/** `xl info` of a Debian 12 Dom0 (Xen 4.17) nested in QEMU. */
export const XL_INFO = `host                   : xenhost
release                : 6.1.0-28-amd64
version                : #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)
machine                : x86_64
nr_cpus                : 2
max_cpu_id             : 1
nr_nodes               : 1
cores_per_socket       : 1
threads_per_core       : 1
cpu_mhz                : 2399.998
hw_caps                : 078bfbff:f7f82203:2c100800:00000121:0000000f:009c07ab:00000000:00000100
virt_caps              : pv hvm hap gnttab-v1 gnttab-v2
total_memory           : 2047
free_memory            : 1460
sharing_freed_memory   : 0
sharing_used_memory    : 0
outstanding_claims     : 0
free_cpus              : 0
xen_major              : 4
xen_minor              : 17
xen_extra              : .5
xen_version            : 4.17.5
xen_caps               : xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64
xen_scheduler          : credit2
xen_pagesize           : 4096
platform_params        : virt_start=0xffff800000000000
xen_changeset          :
xen_commandline        : placeholder console=com1 dom0_mem=512M,max:512M dom0_max_vcpus=1
cc_compiler            : x86_64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0
cc_compile_by          : pkg-xen-devel
cc_compile_domain      : lists.alioth.debian.org
cc_compile_date        : Mon Oct  7 10:00:00 UTC 2024
build_id               : 0a8d7c1f2e3b4a5c6d7e8f9001122334
xend_config_format     : 4
`;

const UUID = '6f1c9a52-3b1e-4c8e-9a57-0d2f4e8b1c33';

/** `xl list -v` with Dom0, a running PV domain, a paused one, a crashed one kept by on_crash=preserve, and one dying. */
export const XL_LIST_V = `Name                                        ID   Mem VCPUs\tState\tTime(s)   UUID                            Reason-Code\tSecurity Label
Domain-0                                     0   512     1     r-----      41.3 00000000-0000-0000-0000-000000000000        -                -
web1                                         3   256     1     -b----       2.7 ${UUID}        -                -
frozen1                                      4   128     2     --p---       0.4 11111111-2222-4333-8444-555555555555        -                -
crashed1                                     5   128     1     ---sc-       0.1 22222222-2222-4333-8444-555555555555        3                -
going1                                       6     0     1     -----d       0.2 33333333-2222-4333-8444-555555555555        -                -
`;

/** `xl list -l web1`: libxl's JSON of a PV domain booted from a kernel, with a raw disk and a rate-limited vif. */
export const XL_LIST_LONG = `[
    {
        "domid": 3,
        "config": {
            "c_info": {
                "type": "pv",
                "name": "web1",
                "uuid": "${UUID}",
                "run_hotplug_scripts": "True"
            },
            "b_info": {
                "max_vcpus": 4,
                "avail_vcpus": [
                    0,
                    1
                ],
                "max_memkb": 262144,
                "target_memkb": 196608,
                "video_memkb": 0,
                "shadow_memkb": 3072,
                "sched_params": {
                    "sched": "credit2",
                    "weight": 512,
                    "cap": 50
                },
                "kernel": "/var/lib/hangar/xen/images/busybox-0011/vmlinux",
                "cmdline": "console=ttyS0 quiet console=hvc0 hangar.hostname=web1",
                "ramdisk": "/var/lib/hangar/xen/images/busybox-0011/initrd.img",
                "type.pv": {

                },
                "arch_arm": {

                }
            },
            "disks": [
                {
                    "pdev_path": "/var/lib/hangar/instances/web1/root.raw",
                    "vdev": "xvda",
                    "backend": "phy",
                    "format": "raw",
                    "readwrite": 1
                }
            ],
            "nics": [
                {
                    "devid": 0,
                    "mac": "02:48:47:00:00:07",
                    "ip": "10.123.0.7",
                    "bridge": "hgrbr0",
                    "ifname": "hgr0a1b2c3d",
                    "rate_bytes_per_interval": 524288,
                    "rate_interval_usecs": 50000
                }
            ],
            "on_reboot": "restart",
            "on_soft_reset": "soft_reset"
        }
    }
]
`;

describe('parseXlInfo', () => {
  it('reads the facts the driver uses', () => {
    const i = parseXlInfo(XL_INFO);
    expect(i).toMatchObject({
      host: 'xenhost', release: '6.1.0-28-amd64', xenVersion: '4.17.5', virtCaps: ['pv', 'hvm', 'hap', 'gnttab-v1', 'gnttab-v2'],
      totalMemoryMiB: 2047, freeMemoryMiB: 1460, nrCpus: 2, scheduler: 'credit2', commandLine: 'placeholder console=com1 dom0_mem=512M,max:512M dom0_max_vcpus=1',
    });
    expect(i.xenCaps).toContain('hvm-3.0-x86_64');
    expect(i.fields.xen_changeset).toBe('');
    expect(i.fields.cc_compile_date).toBe('Mon Oct  7 10:00:00 UTC 2024');
  });
  it('keeps an empty virt_caps empty (a host without VT-x or PV support) and unknown numbers null', () => {
    const i = parseXlInfo('virt_caps              :\nxen_version            : 4.17.5\ntotal_memory           : lots\n');
    expect(i.virtCaps).toEqual([]);
    expect(i.totalMemoryMiB).toBeNull();
    expect(i.nrCpus).toBeNull();
    expect(parseXlInfo('').xenVersion).toBeNull();
  });
});

describe('parseXlState', () => {
  it('reads the six flags and the shutdown reason letter', () => {
    expect(parseXlState('r-----')).toEqual({ running: true, blocked: false, paused: false, shutdown: false, reason: null, dying: false });
    expect(parseXlState('--p---')?.paused).toBe(true);
    expect(parseXlState('---s--')).toMatchObject({ shutdown: true, reason: 'poweroff' });
    expect(parseXlState('---sr-')?.reason).toBe('reboot');
    expect(parseXlState('---ss-')?.reason).toBe('suspend');
    expect(parseXlState('---sc-')?.reason).toBe('crash');
    expect(parseXlState('---sw-')?.reason).toBe('watchdog');
    expect(parseXlState('---sS-')?.reason).toBe('soft_reset');
    expect(parseXlState('-----d')?.dying).toBe(true);
  });
  it('refuses what is not a state column', () => {
    for (const bad of ['r----', 'x-----', 'r------', '', '512']) expect(parseXlState(bad)).toBeNull();
  });
});

describe('parseXlList', () => {
  it('reads every row of xl list -v, with UUIDs', () => {
    const rows = parseXlList(XL_LIST_V);
    expect(rows.map((r) => r.name)).toEqual(['Domain-0', 'web1', 'frozen1', 'crashed1', 'going1']);
    expect(rows[1]).toEqual({ name: 'web1', domid: 3, memMiB: 256, vcpus: 1, state: parseXlState('-b----'), cpuSeconds: 2.7, uuid: UUID });
    expect(rows[2]!.state.paused).toBe(true);
    expect(rows[3]!.state.reason).toBe('crash');
    expect(rows[4]!.state.dying).toBe(true);
  });
  it('reads the short form, and names longer than the 40-column pad', () => {
    const long = 'a-very-long-domain-name-that-overflows-the-column';
    const rows = parseXlList(`Name                                        ID   Mem VCPUs\tState\tTime(s)\n${long} 12  1024     4     r-----    1234.5\n`);
    expect(rows).toEqual([{ name: long, domid: 12, memMiB: 1024, vcpus: 4, state: parseXlState('r-----'), cpuSeconds: 1234.5 }]);
  });
  it('skips lines that are not rows', () => {
    expect(parseXlList('libxl: warning: something\n\n')).toEqual([]);
  });
});

describe('parseXlListLong', () => {
  it('reads what the domain really got', () => {
    const [d] = parseXlListLong(XL_LIST_LONG);
    expect(d).toEqual({
      domid: 3, name: 'web1', uuid: UUID, type: 'pv', maxMemKiB: 262144, targetMemKiB: 196608, maxVcpus: 4, availVcpus: 2, weight: 512, cap: 50,
      kernel: '/var/lib/hangar/xen/images/busybox-0011/vmlinux', ramdisk: '/var/lib/hangar/xen/images/busybox-0011/initrd.img',
      cmdline: 'console=ttyS0 quiet console=hvc0 hangar.hostname=web1',
      disks: [{ target: '/var/lib/hangar/instances/web1/root.raw', vdev: 'xvda', format: 'raw', backend: 'phy', readwrite: true }],
      nics: [{ mac: '02:48:47:00:00:07', bridge: 'hgrbr0', ifname: 'hgr0a1b2c3d', rate: { bytesPerInterval: 524288, intervalUs: 50000 } }],
      onPoweroff: null, onReboot: 'restart', onCrash: null,
    });
  });
  it('takes the boot files from type.pvh, scheduler defaults (-1) as null, and all vCPUs without an avail_vcpus bitmap', () => {
    const [d] = parseXlListLong(JSON.stringify([{ domid: 9, config: { c_info: { type: 'pvh', name: 'p' }, b_info: { max_vcpus: 2, max_memkb: 131072, sched_params: { weight: -1, cap: -1 }, 'type.pvh': { kernel: '/k', ramdisk: '/r' } } } }]));
    expect(d).toMatchObject({ type: 'pvh', kernel: '/k', ramdisk: '/r', availVcpus: 2, weight: null, cap: null, disks: [], nics: [] });
  });
  it('answers nothing for no output and throws on what is not its JSON', () => {
    expect(parseXlListLong('')).toEqual([]);
    expect(() => parseXlListLong('(domain (domid 3))')).toThrow();
    expect(() => parseXlListLong('{"domid": 3}')).toThrow('xl list -l did not print a JSON array');
  });
});

describe('parseXlSched and parseXlVcpuList', () => {
  it('reads a domain row of xl sched-credit2 -d', () => {
    expect(parseXlSched('Cpupool Pool-0: ratelimit=1000us\nName                                ID Weight  Cap\nweb1                                 3    512   50\n')).toEqual([{ name: 'web1', domid: 3, weight: 512, cap: 50 }]);
  });
  it('reads xl vcpu-list, offline vCPUs included', () => {
    const text = `Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)
web1                                 3     0    1   -b-       2.1  all / all
web1                                 3     1    0   r--       0.5  all / all
web1                                 3     2    -   --p       0.0  all / all
`;
    expect(parseXlVcpuList(text)).toEqual([
      { vcpu: 0, cpu: 1, state: '-b-', online: true, cpuSeconds: 2.1 },
      { vcpu: 1, cpu: 0, state: 'r--', online: true, cpuSeconds: 0.5 },
      { vcpu: 2, cpu: null, state: '--p', online: false, cpuSeconds: 0 },
    ]);
  });
});

describe('xl messages', () => {
  it('tells a missing domain from other failures', () => {
    expect(isNoSuchDomain('web9 is an invalid domain identifier (rc=-6)\n')).toBe(true);
    expect(isNoSuchDomain("Error: Domain 'web9' does not exist.\n")).toBe(true);
    expect(isNoSuchDomain('libxl: error: libxl.c:123:libxl_domain_pause: Domain 3:Pausing domain 3 failed\n')).toBe(false);
  });
  it('keeps what went wrong, without progress lines and source locations', () => {
    const stderr = `Parsing config from /var/lib/hangar/instances/web1/domain.cfg
libxl: error: libxl_create.c:1234:do_domain_create: Domain 7:Cannot create domain: out of memory
libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain 7:Non-existant domain
libxl: error: libxl_create.c:1234:do_domain_create: Domain 7:Cannot create domain: out of memory
`;
    expect(xlMessage(stderr)).toBe('libxl: error: Cannot create domain: out of memory, libxl: error: Non-existant domain');
    expect(xlMessage('Saving to /x/state.save new xl format (info 0x3/0x0/1287)\nxc: info: Saving domain 3, type x86 PV\n')).toBe('');
    expect(xlMessage('xc: progress: Frames: 52224/1044480    5%\nxc: error: Save failed (28 = No space left on device): Internal error\nFailed to save domain, resuming domain\n'))
      .toBe('xc: error: Save failed (28 = No space left on device): Internal error, Failed to save domain, resuming domain');
  });
});
