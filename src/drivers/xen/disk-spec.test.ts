// Unit tests of the xl disk-spec parser and renderer: xl's accepted forms, its refusals, vdev decoding and the round trip.
import { describe, expect, it } from 'vitest';
import { driveLetters, parseDiskSpec, renderDiskSpec, vdevInfo, type XlDiskSpec } from './disk-spec.js';

const disk = (over: Partial<XlDiskSpec>): XlDiskSpec => ({ target: '/x.img', format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk', ...over });

describe('parseDiskSpec accepts what xl accepts', () => {
  const cases: [string, XlDiskSpec][] = [
    ['/dev/vg/guest-volume,raw,xvda,rw', disk({ target: '/dev/vg/guest-volume' })],
    ['/var/lib/xen/images/vm1.qcow2,qcow2,xvda,w', disk({ target: '/var/lib/xen/images/vm1.qcow2', format: 'qcow2' })],
    ['/x.img,,xvdb,ro', disk({ vdev: 'xvdb', access: 'ro' })],
    ['/x.img,raw,xvdb,r', disk({ vdev: 'xvdb', access: 'ro' })],
    ['/x.img,raw,xvda', disk({})],
    ['/x.img,raw,xvda,', disk({})],
    ['/x.vhd,vhd,hda,w', disk({ target: '/x.vhd', format: 'vhd', vdev: 'hda' })],
    ['/x.qed,qed,sdb3,rw', disk({ target: '/x.qed', format: 'qed', vdev: 'sdb3' })],
    ['/x.qcow,qcow,d0p0,rw', disk({ target: '/x.qcow', format: 'qcow', vdev: 'd0p0' })],
    ['/x.img,raw,51712,rw', disk({ vdev: '51712' })],
    ['/x.img,raw,0xca00,rw', disk({ vdev: '0xca00' })],
    // The old xm forms with prefixes: no format position after them.
    ['phy:/dev/vg/lv,xvda,w', disk({ target: '/dev/vg/lv' })],
    ['file:/x.img,xvda1,r', disk({ vdev: 'xvda1', access: 'ro' })],
    ['tap:aio:/x.img,xvda,w', disk({})],
    ['tap2:tapdisk:aio:/x.img,xvda,w', disk({})],
    ['tap:qcow2:/x.qcow2,xvda,w', disk({ target: '/x.qcow2', format: 'qcow2' })],
    ['qcow2:/x.qcow2,xvda,w', disk({ target: '/x.qcow2', format: 'qcow2' })],
    ['nbd:host:1234,xvdb,w', disk({ target: 'host:1234', vdev: 'xvdb', script: 'block-nbd' })],
    ['iscsi:iqn.2001-05.com.example:disk0,xvdb,w', disk({ target: 'iqn.2001-05.com.example:disk0', vdev: 'xvdb', script: 'block-iscsi' })],
    // key=value forms in any order, target last.
    ['format=qcow2, vdev=xvda, access=rw, target=/x.qcow2', disk({ target: '/x.qcow2', format: 'qcow2' })],
    ['vdev=xvdc,access=ro,target=/x.img', disk({ vdev: 'xvdc', access: 'ro' })],
    ['vdev=xvda,target=/path/with,commas, and spaces', disk({ target: '/path/with,commas, and spaces' })],
    ['vdev=xvda,target=/a,,', disk({ target: '/a,' })],
    ['vdev=xvda, target= /lead', disk({ target: ' /lead' })],
    // An empty positional target may be given again as target=.
    [',raw,xvda,rw,target=/x.img', disk({})],
    ['/x.img,raw,xvda,rw,backendtype=qdisk,direct-io-safe,no-discard,untrusted', disk({ backendtype: 'qdisk', directIoSafe: true, discard: false, trusted: false })],
    ['/dev/vg/lv,raw,xvda,rw,backendtype=phy,discard,trusted', disk({ target: '/dev/vg/lv', backendtype: 'phy', discard: true, trusted: true })],
    ['/x.img,raw,xvda,rw,backend=driverdom,script=/etc/xen/scripts/block-custom', disk({ backend: 'driverdom', script: '/etc/xen/scripts/block-custom' })],
    ['/x.img,raw,xvda,rw,specification=virtio,grant_usage=1', disk({ specification: 'virtio', grantUsage: true })],
    ['/x.img,raw,xvda,rw,backendtype=standalone,specification=virtio', disk({ backendtype: 'standalone', specification: 'virtio' })],
    ['/x.img,raw,xvda,rw,format=raw,backendtype=qdisk,backendtype=qdisk', disk({ backendtype: 'qdisk' })],
    ['/x.img,raw,xvda,rw,discard,no-discard', disk({ discard: false })],
    ['/x.img,raw,xvda,rw,colo,colo-host=10.0.0.2,colo-port=9000,colo-export=e1,active-disk=/a.img,hidden-disk=/h.img', disk({ colo: true, coloHost: '10.0.0.2', coloPort: 9000, coloExport: 'e1', activeDisk: '/a.img', hiddenDisk: '/h.img' })],
    // CD-ROMs: read-only whatever the access; an empty target is an empty drive.
    ['/x.iso,raw,hdc,r,devtype=cdrom', disk({ target: '/x.iso', vdev: 'hdc', access: 'ro', devtype: 'cdrom' })],
    ['/x.iso,raw,hdc,rw,cdrom', disk({ target: '/x.iso', vdev: 'hdc', access: 'ro', devtype: 'cdrom' })],
    [',,hdc,r,devtype=cdrom', disk({ target: '', format: 'empty', vdev: 'hdc', access: 'ro', devtype: 'cdrom' })],
    ['vdev=hdc,devtype=cdrom', disk({ target: '', format: 'empty', vdev: 'hdc', access: 'ro', devtype: 'cdrom' })],
    [',hdc:cdrom,r', disk({ target: '', format: 'empty', vdev: 'hdc', access: 'ro', devtype: 'cdrom' })],
    ['/x.iso,raw,hdc:cdrom,r', disk({ target: '/x.iso', vdev: 'hdc', access: 'ro', devtype: 'cdrom' })],
    ['/x.img,raw,xvda:disk,w', disk({})],
    ['/x.img,raw,xvda,rw,devtype=cdrom,devtype=disk', disk({})],
    ['  /x.img ,raw,xvda,rw', disk({ target: '/x.img ' })],
  ];
  for (const [spec, want] of cases) it(spec, () => expect(parseDiskSpec(spec)).toEqual(want));
});

describe('parseDiskSpec refuses what xl refuses, naming the part', () => {
  const cases: [string, string][] = [
    ['/x.img,xvda,w', 'unknown format "xvda" (raw, qcow, qcow2, vhd, qed or empty; positional parameters are target, format, vdev, access) (at "xvda")'],
    ['/x.img,qcow3,xvda,w', 'unknown format "qcow3"'],
    ['format=vmdk,vdev=xvda,target=/x', 'unknown format "vmdk" (raw, qcow, qcow2, vhd, qed or empty; positional parameters are target, format, vdev, access) (at "format=vmdk")'],
    ['/x.img,raw,xvda,rwx', 'unknown access mode "rwx" (r or ro for read-only, w or rw for read-write) (at "rwx")'],
    ['access=readonly,vdev=xvda,target=/x', 'unknown access mode "readonly"'],
    ['/x.img,raw,xvda,rw,extra', 'too many positional parameters (target, format, vdev, access) (at "extra")'],
    ['/x.img,raw', 'no vdev (the guest device, e.g. xvda) specified'],
    ['vdev=xvda', 'no target specified (and the device is not a removable cdrom)'],
    ['', 'no vdev'],
    ['/x.img,raw,xvda,rw,size=10G', 'unknown parameter "size" (xl knows target, format, vdev, access'],
    ['/x.img,raw,xvda,rw,cache=none', 'unknown parameter "cache"'],
    ['/x.img,raw,xvda,rw,a=b=c', 'unknown parameter "a"'],
    ['/x=y.img,raw,xvda,rw', '"=" in a positional parameter (a target containing "=" or "," must be given last, as target=...) (at "/x=y.img")'],
    ['/x.img,raw,xvda,rw,devtype=floppy', 'unknown devtype "floppy" (cdrom or disk)'],
    ['/x.img,raw,xvda,rw,backendtype=nbd', 'unknown backendtype "nbd" (phy, qdisk, tap or standalone)'],
    ['/x.img,raw,xvda,rw,specification=scsi', 'unknown specification "scsi" (xen or virtio)'],
    ['/x.img,raw,xvda,rw,grant_usage=2', 'grant_usage must be 0 or 1, not "2"'],
    ['/x.img,raw,xvda,rw,colo-port=0', 'colo-port must be a port number (1-65535), not "0"'],
    ['/x.img,raw,xvda,rw,backend=', 'backend= needs a value'],
    ['foo:/x.img,xvda,w', 'unknown deprecated prefix "foo:" (xl knows phy: file: tap: tap2: tapdisk: aio: ioemu: raw: qcow: qcow2: vhd: iscsi: nbd: enbd: drbd:) (at "foo:")'],
    ['/x.img,raw,xvda:floppy,w', 'unknown device type "floppy" after ":" (cdrom or disk)'],
    // Given twice.
    ['/x.img,raw,xvda,rw,target=/y.img', 'target given twice ("/x.img", then "/y.img") (at "target=/y.img")'],
    ['/x.img,raw,xvda,rw,vdev=xvdb', 'vdev given twice ("xvda", then "xvdb")'],
    ['/x.img,raw,xvda,rw,format=qcow2', 'format given twice (raw, then qcow2)'],
    ['qcow2:/x,xvda,w,format=raw', 'format given twice (qcow2, then raw)'],
    ['/x.img,raw,xvda,rw,backendtype=phy,backendtype=qdisk', 'backendtype given twice ("phy", then "qdisk")'],
    ['/x.img,raw,xvda,rw,script=a,script=b', 'script given twice ("a", then "b")'],
    ['nbd:h:1,xvda,w,script=block-x', 'script given twice ("block-nbd", then "block-x")'],
    // What libxl refuses.
    ['/x.img,raw,xvda0,rw', 'invalid vdev "xvda0": partition numbers have no leading zero'],
    ['/x.img,raw,xvd,rw', 'invalid vdev "xvd": "xvd" needs a drive letter (xvda, xvdb, ...)'],
    ['/x.img,raw,hde,rw', 'invalid vdev "hde": hde is beyond the last hd disk, hdd'],
    ['/x.img,raw,hda64,rw', 'invalid vdev "hda64": partition 64 is beyond the last hd partition, 63'],
    ['/x.img,raw,sdq,rw', 'invalid vdev "sdq": sdq is beyond the last sd disk, sdp'],
    ['/x.img,raw,sda16,rw', 'invalid vdev "sda16": partition 16 is beyond the last sd partition, 15'],
    ['/x.img,raw,xvda256,rw', 'invalid vdev "xvda256": partition 256 is beyond the last xvd partition, 255'],
    ['/x.img,raw,vda,rw', 'invalid vdev "vda": expected xvd<letters>[partition], hd[a-d][partition], sd[a-p][partition], d<disk>p<partition> or a device number'],
    ['/x.img,raw,d0p256,rw', 'invalid vdev "d0p256": partition 256 is too large (at most 255)'],
    ['/x.img,raw,0x80000000,rw', 'invalid vdev "0x80000000": device number 0x80000000 is too large'],
    ['/x.img,raw, xvda ,rw', 'invalid vdev "xvda "'],
    ['vdev=,target=/x', 'invalid vdev ""'],
    [',raw,xvda,rw', 'an empty target is only allowed for a cdrom drive'],
    ['/x.img,empty,xvda,rw', 'format "empty" is only for an empty cdrom drive'],
    ['/x.qcow2,qcow2,xvda,rw,backendtype=phy', 'backendtype=phy only serves raw disks, not qcow2'],
    ['/x.img,raw,xvda,rw,backendtype=standalone', 'backendtype=standalone needs specification=virtio'],
    ['/x.img,raw,xvda,rw,colo,colo-host=h', 'colo needs colo-port, colo-export, active-disk, hidden-disk'],
    ['/x.img,raw,xvda,rw\n,extra', 'control character U+000a (line breaks are not allowed in a disk spec)'],
  ];
  for (const [spec, message] of cases) {
    it(JSON.stringify(spec), () => {
      const error = { code: 'INVALID_CONFIG', details: expect.objectContaining({ spec }), message: expect.stringContaining(`Invalid disk spec ${JSON.stringify(spec)}: ${message}`) };
      expect(() => parseDiskSpec(spec)).toThrow(expect.objectContaining(error));
    });
  }
});

describe('vdevInfo', () => {
  it('decodes the names and numbers of xen-vbd-interface(7)', () => {
    const table: [string, object][] = [
      ['xvda', { kind: 'xvd', disk: 0, partition: 0, devid: 51712 }],
      ['xvdb2', { kind: 'xvd', disk: 1, partition: 2, devid: (202 << 8) | (1 << 4) | 2 }],
      ['xvdq', { kind: 'xvd', disk: 16, partition: 0, devid: (1 << 28) | (16 << 8) }],
      ['xvdtq37', { kind: 'xvd', disk: 536, partition: 37, devid: (1 << 28) | (536 << 8) | 37 }],
      ['d536p37', { kind: 'd', disk: 536, partition: 37, devid: (1 << 28) | (536 << 8) | 37 }],
      ['d0p0', { kind: 'd', disk: 0, partition: 0, devid: 51712 }],
      ['hda', { kind: 'hd', disk: 0, partition: 0, devid: 3 << 8 }],
      ['hdb1', { kind: 'hd', disk: 1, partition: 1, devid: (3 << 8) | 64 | 1 }],
      ['hdc2', { kind: 'hd', disk: 2, partition: 2, devid: (22 << 8) | 2 }],
      ['sdb3', { kind: 'sd', disk: 1, partition: 3, devid: (8 << 8) | 16 | 3 }],
      ['51712', { kind: 'number', devid: 51712 }],
      ['0xca00', { kind: 'number', devid: 51712 }],
      ['0145000', { kind: 'number', devid: 51712 }],
    ];
    for (const [vdev, want] of table) expect([vdev, vdevInfo(vdev)]).toEqual([vdev, want]);
  });
  it('names drive letters', () => {
    expect([0, 1, 25, 26, 27, 51, 52, 701, 702].map(driveLetters)).toEqual(['a', 'b', 'z', 'aa', 'ab', 'az', 'ba', 'zz', 'aaa']);
    for (const n of [0, 5, 26, 700, 18277]) expect(vdevInfo(`xvd${driveLetters(n)}`)).toMatchObject({ disk: n });
  });
});

describe('renderDiskSpec', () => {
  const samples: XlDiskSpec[] = [
    disk({}),
    disk({ target: '/var/lib/hangar/vm1/root.qcow2', format: 'qcow2', backendtype: 'qdisk' }),
    disk({ target: '/dev/vg0/vm1', backendtype: 'phy', access: 'ro', vdev: 'xvdb1' }),
    disk({ target: '/odd,path=with, commas,', vdev: 'd3p1' }),
    disk({ target: ' leading space', vdev: '0xca10' }),
    disk({ target: '', format: 'empty', vdev: 'hdc', access: 'ro', devtype: 'cdrom' }),
    disk({ target: '/x.iso', vdev: 'hdd', access: 'ro', devtype: 'cdrom' }),
    disk({ backend: 'dd', script: 'block-iscsi', specification: 'xen', grantUsage: false, directIoSafe: true, discard: true, trusted: false }),
    disk({ colo: true, coloHost: 'h', coloPort: 1, coloExport: 'e', activeDisk: '/a', hiddenDisk: '/b' }),
    disk({ colo: false }),
    disk({ backendtype: 'standalone', specification: 'virtio' }),
  ];
  it('renders the canonical key=value form, target last', () => {
    expect(renderDiskSpec(samples[1]!)).toBe('format=qcow2,vdev=xvda,access=rw,backendtype=qdisk,target=/var/lib/hangar/vm1/root.qcow2');
    expect(renderDiskSpec(samples[3]!)).toBe('format=raw,vdev=d3p1,access=rw,target=/odd,path=with, commas,,');
    expect(renderDiskSpec(samples[5]!)).toBe('format=empty,vdev=hdc,access=ro,devtype=cdrom,target=');
  });
  it('round-trips: parse(render(x)) equals x', () => {
    for (const d of samples) expect(parseDiskSpec(renderDiskSpec(d))).toEqual(d);
  });
  it('round-trips every accepted spec after one parse', () => {
    for (const spec of ['phy:/dev/vg/lv,xvda,w', 'nbd:host:1234,xvdb,w', ',hdc:cdrom,r', '/x.img,raw,xvda,rw,backendtype=qdisk,direct-io-safe,no-discard,untrusted']) {
      const once = parseDiskSpec(spec);
      expect(parseDiskSpec(renderDiskSpec(once))).toEqual(once);
    }
  });
  it('refuses what it could not write faithfully', () => {
    expect(() => renderDiskSpec(disk({ target: '/x\nvdev=xvdb' }))).toThrow('the target contains a line break or a control character');
    expect(() => renderDiskSpec(disk({ script: 'a,b' }))).toThrow('script "a,b" contains a comma or a control character');
    expect(() => renderDiskSpec(disk({ backend: ' dom' }))).toThrow('backend " dom" starts with white space');
    expect(() => renderDiskSpec(disk({ vdev: 'vda' }))).toThrow('Cannot render disk "/x.img" (vdev vda): invalid vdev "vda"');
    expect(() => renderDiskSpec(disk({ devtype: 'cdrom' }))).toThrow('a cdrom is read-only (access=ro)');
  });
});

describe('renderDiskSpec round trip on generated disks', () => {
  // A small seeded generator: the same disks on every run.
  let seed = 12345;
  const rand = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const pick = <T>(xs: readonly T[]): T => xs[rand(xs.length)]!;
  const maybe = <T>(v: T): T | undefined => (rand(2) ? v : undefined);
  const chars = 'abz09/._-:, =@"\'#';
  const text = (min = 1) => Array.from({ length: min + rand(12) }, () => pick([...chars])).join('');
  it('parses 500 generated disks back to themselves', () => {
    for (let i = 0; i < 500; i++) {
      const cdrom = rand(5) === 0;
      const emptyDrive = cdrom && rand(2) === 0;
      const format = emptyDrive ? 'empty' : pick(['raw', 'qcow', 'qcow2', 'vhd', 'qed'] as const);
      const backendtype = format === 'raw' ? maybe(pick(['phy', 'qdisk', 'tap'] as const)) : maybe(pick(['qdisk', 'tap'] as const));
      const d: XlDiskSpec = {
        target: emptyDrive ? '' : `/${text()}`,
        format,
        vdev: pick(['xvda', 'xvdb3', 'xvdaa', 'hda', 'hdd63', 'sdp15', 'd7p9', '51712', '0xca00']),
        access: cdrom ? 'ro' : pick(['ro', 'rw'] as const),
        devtype: cdrom ? 'cdrom' : 'disk',
      };
      const opt: Partial<XlDiskSpec> = {
        backendtype, backend: maybe(`dom${rand(9)}`), script: maybe(`block-${pick(['nbd', 'iscsi', 'drbd'])}`), specification: maybe('xen' as const),
        directIoSafe: maybe(true as const), discard: maybe(rand(2) === 0), trusted: maybe(rand(2) === 0), grantUsage: maybe(rand(2) === 0),
      };
      for (const [k, v] of Object.entries(opt)) if (v !== undefined) (d as unknown as Record<string, unknown>)[k] = v;
      expect(parseDiskSpec(renderDiskSpec(d))).toEqual(d);
    }
  });
});
