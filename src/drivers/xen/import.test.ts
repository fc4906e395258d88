// Unit tests of the xl.cfg import translation: the reference examples, hand-made configs, refusals, and that nothing is dropped.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hangarNameFor, importXlConfigText, translateXlConfig, type XenImport } from './import.js';
import { parseXlConfig } from './xl-cfg.js';

const fixture = (name: string) => readFileSync(join(import.meta.dirname, '../../../test/fixtures/xen', name), 'utf8');

// Every setting of the file must be accounted for: its key translated or listed, and every replaced setting listed.
function expectNothingDropped(text: string, result: XenImport): void {
  const cfg = parseXlConfig(text);
  const accounted = new Set([...result.translated.map((t) => t.key), ...result.untranslated.map((u) => u.key.replace(/\[.*$/, ''))]);
  for (const key of cfg.values.keys()) expect([key, accounted.has(key)]).toEqual([key, true]);
  const replaced = cfg.settings.filter((s, i) => cfg.settings.slice(i + 1).some((t) => t.key === s.key && t.op === '='));
  for (const s of replaced) expect(result.untranslated.some((u) => u.key === s.key && u.reason.startsWith(`replaced by the setting on line`))).toBe(true);
}

describe('the reference examples', () => {
  it('xlexample.pvlinux', () => {
    const text = fixture('xlexample.pvlinux');
    const r = importXlConfigText(text, { source: 'xlexample.pvlinux' });
    expect(r).toMatchObject({
      name: 'example-pvlinux',
      type: 'vm',
      driver: 'xen',
      guestType: 'pv',
      config: { 'limits.memory': '128MiB', 'limits.memory.guarantee': '128MiB', 'limits.cpu': '2', 'boot.kernel': '/boot/vmlinuz', 'boot.cmdline': 'root=/dev/xvda1' },
    });
    expect(r.disks).toEqual([{
      index: 0,
      spec: '/dev/vg/guest-volume,raw,xvda,rw',
      disk: { target: '/dev/vg/guest-volume', format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' },
      use: 'root',
      note: 'the root disk: the block device /dev/vg/guest-volume is used in place (not copied); its size stays as it is',
    }]);
    expect(r.nics).toEqual([{ index: 0, spec: '', vif: {}, use: 'primary', note: "the instance's NIC on Hangar's bridge, with a MAC Hangar assigns and an address Hangar assigns" }]);
    expect(r.translated.map((t) => [t.key, t.to])).toEqual([
      ['name', ['name']], ['memory', ['limits.memory.guarantee', 'limits.memory']], ['vcpus', ['limits.cpu']],
      ['kernel', ['boot.kernel']], ['extra', ['boot.cmdline']], ['disk', ['disks']], ['vif', ['nics']],
    ]);
    expect(r.untranslated).toEqual([]);
    expectNothingDropped(text, r);
  });

  it('xlexample.pvhlinux', () => {
    const text = fixture('xlexample.pvhlinux');
    const r = importXlConfigText(text);
    expect(r).toMatchObject({ name: 'example-pvhlinux', guestType: 'pvh', config: { 'limits.memory': '512MiB', 'limits.memory.guarantee': '512MiB', 'limits.cpu': '4', 'boot.kernel': '/boot/vmlinuz', 'boot.cmdline': 'root=/dev/xvda1' } });
    expect(r.disks.map((d) => [d.use, d.disk.target])).toEqual([['root', '/dev/zvol/tank/guest-volume']]);
    expect(r.translated.find((t) => t.key === 'type')).toEqual({ key: 'type', value: 'pvh', to: ['guestType', 'boot.virt'] });
    expect(r.untranslated).toEqual([]);
    expectNothingDropped(text, r);
  });

  it('xlexample.hvm', () => {
    const text = fixture('xlexample.hvm');
    const r = importXlConfigText(text);
    expect(r).toMatchObject({ name: 'example-hvm', guestType: 'hvm', config: { 'limits.memory': '128MiB', 'limits.memory.guarantee': '128MiB', 'limits.cpu': '2' } });
    expect(Object.keys(r.config).sort()).toEqual(['boot.virt', 'limits.cpu', 'limits.memory', 'limits.memory.guarantee']);
    expect(r.untranslated).toEqual([{ key: 'sdl', value: '1', reason: 'Hangar sets up the consoles itself: the text console, and VNC on localhost for HVM domains' }]);
    expectNothingDropped(text, r);
  });
});

const full = `# a domain with a bit of everything
name = "Web_01"
type = "hvm"
uuid = "6F1C9A52-3B1E-4C8E-9A57-0D2F4E8B1C33"
memory = 512
maxmem = 0x800
vcpus = 2
maxvcpus = 4
cpu_weight = 512
cap = 150
firmware = "ovmf"
cpus = "0-3"
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "preserve"
disk = [ 'phy:/dev/vg0/web,xvda,w',
         'format=qcow2, vdev=xvdb, access=ro, discard, target=/srv/data.qcow2',
         '/srv/install.iso,raw,hdc,r,devtype=cdrom',
         '/srv/old.vhd,vhd,xvdc,w',
         'nbd:host:1234,xvdd,w', ]
vif = [ 'mac=00:16:3E:01:02:03, bridge=xenbr0, ip=192.0.2.10 fd00::10, rate=10Mb/s, vifname=web0, model=e1000',
        'bridge=xenbr1' ]
vnc = 1
viridian = 1
memory = 1024
frobnicate = "yes"
`;

describe('a hand-made HVM config', () => {
  const r = importXlConfigText(full, { source: 'web.cfg' });
  it('translates names, type, UUID, memory, vCPUs, weight, cap and firmware', () => {
    expect(r.name).toBe('web-01');
    expect(r.guestType).toBe('hvm');
    expect(r.uuid).toBe('6f1c9a52-3b1e-4c8e-9a57-0d2f4e8b1c33');
    expect(r.config).toEqual({
      'limits.memory': '2048MiB',
      'limits.memory.guarantee': '1024MiB',
      'limits.cpu': '2',
      'limits.cpu.weight': '200',
      'limits.cpu.cap': '150%',
      'boot.firmware': 'uefi',
      'boot.virt': 'hvm',
      'limits.network.egress': '1250000',
    });
    expect(r.translated.find((t) => t.key === 'name')!.note).toBe('Hangar names hold only a-z, 0-9 and "-": the instance is named "web-01"');
    expect(r.translated.find((t) => t.key === 'cpu_weight')!.note).toBe("Xen weight 512 is Hangar weight 200 (Xen's default 256 is Hangar's 100)");
  });
  it('says what happens to each disk', () => {
    expect(r.disks.map((d) => [d.use, d.disk.target, d.note])).toEqual([
      ['root', '/dev/vg0/web', 'the root disk: the block device /dev/vg0/web is used in place (not copied); its size stays as it is'],
      ['extra', '/srv/data.qcow2', 'an extra read-only disk: the file /srv/data.qcow2 is used in place as xvdb'],
      ['ignored', '/srv/install.iso', 'a CD-ROM drive: Hangar attaches none to Xen domains'],
      ['ignored', '/srv/old.vhd', "format vhd: Hangar's Xen disks are raw or qcow2 files, or block devices"],
      ['ignored', 'host:1234', 'its target is interpreted by the block script block-nbd, which Hangar does not run'],
    ]);
  });
  it('keeps the first NIC with its MAC and IPv4, and lists the rest', () => {
    expect(r.nics.map((n) => [n.use, n.mac, n.ipv4])).toEqual([['primary', '00:16:3e:01:02:03', '192.0.2.10'], ['ignored', undefined, undefined]]);
  });
  it('lists everything it does not translate, with a reason', () => {
    expect(r.untranslated.map((u) => [u.key, u.value])).toEqual([
      ['memory', '512'],
      ['maxvcpus', '4'],
      ['disk[1].discard', 'discard'],
      ['disk[2]', '/srv/install.iso,raw,hdc,r,devtype=cdrom'],
      ['disk[3]', '/srv/old.vhd,vhd,xvdc,w'],
      ['disk[4]', 'nbd:host:1234,xvdd,w'],
      ['vif[0].ip', 'fd00::10'],
      ['vif[0].bridge', 'xenbr0'],
      ['vif[0].vifname', 'web0'],
      ['vif[0].model', 'e1000'],
      ['vif[1]', 'bridge=xenbr1'],
      ['on_crash', 'preserve'],
      ['cpus', '0-3'],
      ['vnc', '1'],
      ['viridian', '1'],
      ['frobnicate', 'yes'],
    ]);
    const reason = (key: string) => r.untranslated.find((u) => u.key === key)!.reason;
    expect(reason('memory')).toBe('replaced by the setting on line 25 (xl uses the last one)');
    expect(reason('maxvcpus')).toBe('Hangar gives a domain limits.cpu (2) vCPUs, all online; the headroom to hot-add up to 4 is not kept');
    expect(r.translated.find((x) => x.key === 'vif[0].rate')).toEqual({ key: 'vif[0].rate', value: '1250KB/s', to: ['limits.network.egress'] });
    expect(reason('on_crash')).toBe('Hangar\'s domains always use on_crash="destroy" (it tracks power-offs, reboots and crashes itself)');
    expect(reason('cpus')).toBe('vCPU pinning: Hangar chooses the host CPUs itself');
    expect(reason('viridian')).toBe("an HVM platform setting with no Hangar key; Hangar's domains get xl's defaults");
    expect(reason('frobnicate')).toBe('no Hangar equivalent');
    expectNothingDropped(full, r);
  });
});

describe('hand-made PV configs', () => {
  const t = (text: string, opts: { name?: string } = {}) => translateXlConfig(parseXlConfig(text, { source: 't.cfg' }), opts);
  it('composes root= and extra= into the command line as xl does, and ignores them beside cmdline=', () => {
    expect(t('name="a"\nkernel="/k"\nroot="/dev/xvda1 ro"\nextra="quiet"\n').config['boot.cmdline']).toBe('root=/dev/xvda1 ro quiet');
    expect(t('name="a"\nkernel="/k"\nroot="/dev/xvda1"\n').config['boot.cmdline']).toBe('root=/dev/xvda1');
    const r = t('name="a"\nkernel="/k"\nramdisk="/i"\ncmdline="console=hvc0"\nroot="/dev/xvda1"\nextra="x"\n');
    expect(r.config).toMatchObject({ 'boot.kernel': '/k', 'boot.initrd': '/i', 'boot.cmdline': 'console=hvc0' });
    expect(r.untranslated.map((u) => [u.key, u.reason])).toEqual([['root', 'ignored by xl because cmdline= is set'], ['extra', 'ignored by xl because cmdline= is set']]);
  });
  it('lists boot settings that have no kernel, a boot loader, and PV firmware', () => {
    const r = t('name="a"\nbootloader="pygrub"\nbootloader_args=["-q"]\nextra="quiet"\nfirmware="pvgrub64"\n');
    expect(r.config).toEqual({ 'boot.virt': 'pv' });
    expect(r.untranslated.map((u) => u.key)).toEqual(['extra', 'firmware', 'bootloader', 'bootloader_args']);
    expect(r.untranslated[0]!.reason).toContain('there is no kernel= to pass it to');
    expect(r.untranslated[1]!.reason).toBe('boot.firmware is for HVM domains; Hangar boots a PV domain from a kernel or through pygrub');
  });
  it('lists values Hangar refuses, with its reason', () => {
    const r = t('name="a"\nkernel="boot/vmlinuz"\n');
    expect(r.untranslated).toEqual([{ key: 'kernel', value: 'boot/vmlinuz', reason: expect.stringContaining('not a valid boot.kernel: Invalid value "boot/vmlinuz" for boot.kernel: expected an absolute path') }]);
  });
  it('takes builder= as the old type=, and defaults to PV', () => {
    expect(t('name="a"\nbuilder="hvm"\n').guestType).toBe('hvm');
    expect(t('name="a"\nbuilder="generic"\n').guestType).toBe('pv');
    expect(t('name="a"\n').guestType).toBe('pv');
    const both = t('name="a"\ntype="pvh"\nbuilder="hvm"\n');
    expect(both.guestType).toBe('pvh');
    expect(both.untranslated).toEqual([{ key: 'builder', value: 'hvm', reason: 'ignored by xl because type= is set' }]);
  });
  it('fills memory and maxmem from each other, and vCPUs from maxvcpus alone', () => {
    expect(t('name="a"\nmaxmem=1024\n').config).toEqual({ 'boot.virt': 'pv', 'limits.memory': '1024MiB', 'limits.memory.guarantee': '1024MiB' });
    const r = t('name="a"\nmaxvcpus=1\n');
    expect(r.config).toEqual({ 'boot.virt': 'pv', 'limits.cpu': '1' });
    expect(r.translated.find((x) => x.key === 'maxvcpus')!.note).toBe('no vcpus=: one vCPU online, as xl does');
    expect(t('name="a"\nvcpus=0\n').config).toEqual({ 'boot.virt': 'pv', 'limits.cpu': '1' });
    expect(t('name="a"\ncap=0\n').translated.find((x) => x.key === 'cap')).toEqual({ key: 'cap', value: '0', to: [], note: '0 means no cap, as in Hangar by default' });
  });
  it('lists values xl cannot read (xl ignores them with a warning)', () => {
    const r = t('name="a"\nmemory="lots"\nvcpus=[1]\ndisk="/x,raw,xvda,w"\ncpu_weight=70000\n');
    expect(r.config).toEqual({ 'boot.virt': 'pv' });
    expect(r.untranslated.map((u) => [u.key, u.reason])).toEqual([
      ['memory', '"memory" is not a valid number: "lots" (decimal, 0x hex or 0 octal); xl ignores it with a warning'],
      ['vcpus', '"vcpus" is a list but should be a single value; xl ignores it with a warning'],
      ['cpu_weight', '"cpu_weight" = 70000 is above the maximum 65535; xl ignores it with a warning'],
      ['disk', 'a single value, not a list: xl ignores it with a warning'],
    ]);
  });
  it('keeps the MAC and IPv4 of the first NIC, lists its other settings', () => {
    const r = t("name='a'\nvif=['mac=00:16:3e:00:00:01,ip=fd00::9 10.0.0.9/24 10.0.0.10,script=vif-route,mtu=9000,trusted,colo_sock_mirror_id=1']\n");
    expect(r.nics[0]).toMatchObject({ use: 'primary', mac: '00:16:3e:00:00:01', ipv4: '10.0.0.9' });
    expect(r.untranslated.map((u) => [u.key, u.value])).toEqual([
      ['vif[0].ip', 'fd00::9'], ['vif[0].ip', '10.0.0.10'], ['vif[0].script', 'vif-route'], ['vif[0].mtu', '9000'], ['vif[0].trusted', 'trusted'], ['vif[0].colo_sock_mirror_id', '1'],
    ]);
  });
  it('takes a name from the caller, and makes xl names valid', () => {
    expect(t('name="Example.PV linux"\n').name).toBe('example-pv-linux');
    expect(t('name="x"\n', { name: 'web2' }).translated).toEqual([{ key: 'name', value: 'x', to: ['name'], note: 'imported under the name given, "web2"' }]);
    expect(t('memory=64\n', { name: 'web2' }).name).toBe('web2');
    expect(hangarNameFor('--A__b--')).toBe('a-b');
    expect(hangarNameFor('x'.repeat(70))).toHaveLength(63);
  });
});

describe('refuses what xl refuses, with the position', () => {
  const cases: [string, string, string][] = [
    ['no name', 'memory = 64\n', 't.cfg: the domain has no name= (xl requires one)'],
    ['a name that cannot become a Hangar name', 'name = "1234"\n', 'Cannot import domain "1234" as "1234": the name must not be all digits; give another name'],
    ['an unknown type', 'name="a"\ntype = "kvm"\n', 't.cfg:2:1: unknown domain type "kvm" (pv, pvh or hvm)'],
    ['an unknown builder', 'name="a"\nbuilder = "linux"\n', 't.cfg:2:1: unknown builder "linux"'],
    ['a bad uuid', 'name="a"\nuuid = "123"\n', 't.cfg:2:1: uuid "123" is not a UUID (xl refuses it)'],
    ['maxmem below memory', 'name="a"\nmemory=512\nmaxmem=256\n', 't.cfg:3:1: maxmem (256 MiB) is below memory (512 MiB): xl refuses this domain'],
    ['maxvcpus below vcpus', 'name="a"\nvcpus=4\nmaxvcpus=2\n', 't.cfg:3:1: maxvcpus (2) is below vcpus (4): xl refuses this domain'],
    ['a bad disk spec', "name='a'\ndisk = [ '/x,raw,xvda,w',\n  '/y,raw,vda,w' ]\n", 't.cfg:3:3: disk 2: Invalid disk spec "/y,raw,vda,w": invalid vdev "vda"'],
    ['a bad vif spec', "name='a'\nvif = [ 'mac=00:16:3e' ]\n", 't.cfg:2:9: vif 1: Invalid vif spec "mac=00:16:3e": malformed MAC address'],
    ['a nested disk list', "name='a'\ndisk = [ [ 'x' ] ]\n", 't.cfg:2:1: disk 1 is a list, not a disk spec string'],
    ['an unknown action', "name='a'\non_crash = 'explode'\n", 't.cfg:2:1: unknown on_crash action "explode"'],
    ['bad syntax', "name='a'\nmemory = 1.5\n", 't.cfg:2:11: unexpected ".": xl.cfg has no expressions'],
  ];
  for (const [what, text, message] of cases) {
    it(what, () => {
      expect(() => importXlConfigText(text, { source: 't.cfg' })).toThrow(message);
    });
  }
  it('carries line and column in the details, and the spec error as the cause', () => {
    const cause = expect.objectContaining({ code: 'INVALID_CONFIG', details: { spec: 'rate=1XB/s', part: 'rate=1XB/s' } });
    expect(() => importXlConfigText("name='a'\nvif = [ 'bridge=x', 'rate=1XB/s' ]\n", { source: 't.cfg' }))
      .toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', details: { source: 't.cfg', line: 2, column: 21 }, cause }));
  });
});
