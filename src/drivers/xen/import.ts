// Translation of an existing domain's xl.cfg into a Hangar instance: config keys, disks, NIC, and everything that has no Hangar equivalent.
//
// translateXlConfig reads a parsed xl.cfg as xl would (the same defaults and refusals) and answers what Hangar makes
// of it: the instance name (made a valid Hangar name when needed), the guest type and UUID, Hangar config keys
// (limits.memory from maxmem, limits.memory.guarantee from memory, limits.cpu from vcpus, limits.cpu.weight from
// cpu_weight, limits.cpu.cap from cap, boot.kernel/initrd/cmdline, boot.firmware, boot.virt from type, limits.network.egress
// from the first NIC's rate), what Hangar does with each disk and
// NIC, and, for every other key, setting or device option, why it is not translated. Nothing is dropped silently: each
// setting of the file appears in `translated` or in `untranslated`. Pure: it needs no Xen host, for `--dry-run`.
import { validateConfig, validateConfigValues, type InstanceConfig } from '../../shared/config.js';
import { AppError, isAppError } from '../../shared/errors.js';
import { nameProblem } from '../../shared/names.js';
import { parseDiskSpec, type XlDiskSpec } from './disk-spec.js';
import { hangarWeight, XEN_DEFAULT_ACTIONS, XL_ACTIONS, type XenGuestType } from './render-config.js';
import { parseVifSpec, renderVifRate, XL_DEFAULT_RATE_INTERVAL_US, type XlVifSpec } from './vif-spec.js';
import { parseXlConfig, xlConfigError, xlNumber, xlString, type XlConfig, type XlValue } from './xl-cfg.js';

/** A key (or part of one) that became Hangar keys or fields. */
export interface XenTranslated {
  key: string;
  value: string;
  /** The Hangar config keys or import fields it became (empty: nothing is needed, e.g. a default). */
  to: string[];
  note?: string;
}

/** A key, setting or device option Hangar does not keep, and why. */
export interface XenUntranslated {
  key: string;
  value: string;
  reason: string;
}

/** What Hangar does with one disk of the domain. */
export interface XenImportDisk {
  index: number;
  /** The spec as written in the file. */
  spec: string;
  disk: XlDiskSpec;
  /** root: the instance's root disk, used in place; extra: kept as an extra disk, used in place; ignored: not attached. */
  use: 'root' | 'extra' | 'ignored';
  note: string;
}

/** What Hangar does with one NIC of the domain. */
export interface XenImportNic {
  index: number;
  spec: string;
  vif: XlVifSpec;
  /** primary: becomes the instance's NIC on Hangar's bridge (its MAC and IPv4 kept); ignored: not attached. */
  use: 'primary' | 'ignored';
  mac?: string;
  ipv4?: string;
  note: string;
}

/** The translation of one xl.cfg (what `hangar import xen FILE.cfg --dry-run` shows). */
export interface XenImport {
  name: string;
  type: 'vm';
  driver: 'xen';
  guestType: XenGuestType;
  uuid?: string;
  config: InstanceConfig;
  disks: XenImportDisk[];
  nics: XenImportNic[];
  translated: XenTranslated[];
  untranslated: XenUntranslated[];
}

const CONSOLE = 'Hangar sets up the consoles itself: the text console, and VNC on localhost for HVM domains';
const PLATFORM = 'an HVM platform setting with no Hangar key; Hangar\'s domains get xl\'s defaults';
const DEVICE = 'a device Hangar does not attach';
const REASONS: Record<string, string> = {
  cpus: 'vCPU pinning: Hangar chooses the host CPUs itself',
  cpus_soft: 'vCPU soft affinity: Hangar chooses the host CPUs itself',
  pool: 'CPU pools are not modelled by Hangar',
  bootloader: 'Hangar boots a kernel of the host (boot.kernel) or firmware (boot.firmware, HVM), or pygrub for a PV/PVH disk without one; there is no boot loader key',
  bootloader_args: 'Hangar has no boot loader key',
  seclabel: 'XSM security labels are not supported by Hangar',
  init_seclabel: 'XSM security labels are not supported by Hangar',
  vnuma: 'virtual NUMA is not modelled by Hangar',
  period: 'scheduler parameter of the sedf/rtds schedulers, not modelled', slice: 'scheduler parameter, not modelled', latency: 'scheduler parameter, not modelled', extratime: 'scheduler parameter, not modelled',
  pvshim: 'the PV shim is not supported by Hangar', pvshim_path: 'the PV shim is not supported by Hangar', pvshim_cmdline: 'the PV shim is not supported by Hangar', pvshim_extra: 'the PV shim is not supported by Hangar',
  ...Object.fromEntries(['vnc', 'vnclisten', 'vncdisplay', 'vncunused', 'vncpasswd', 'sdl', 'opengl', 'vfb', 'vkb', 'serial', 'keymap', 'stdvga', 'vga', 'videoram', 'nographic', 'spice', 'spicehost', 'spiceport', 'spicetls_port', 'spicedisable_ticketing', 'spicepasswd', 'spiceagent_mouse', 'spicevdagent', 'spice_clipboard_sharing', 'spiceusbredirection', 'gfx_passthru', 'display', 'xauthority'].map((k) => [k, CONSOLE])),
  ...Object.fromEntries(['pci', 'pci_permissive', 'pci_msitranslate', 'pci_seize', 'pci_power_mgmt', 'rdm', 'rdm_mem_boundary', 'ioports', 'iomem', 'irqs', 'dtdev', 'passthrough'].map((k) => [k, 'device passthrough is not supported by Hangar'])),
  ...Object.fromEntries(['usb', 'usbdevice', 'usbctrl', 'usbdev', 'usbversion', 'vtpm', 'channel', 'p9', 'pvcalls', 'vdispl', 'vsnd', 'soundhw', 'vif2', 'virtio'].map((k) => [k, DEVICE])),
  ...Object.fromEntries(['viridian', 'acpi', 'acpi_s3', 'acpi_s4', 'acpi_laptop_slate', 'apic', 'pae', 'hap', 'nestedhvm', 'hpet', 'localtime', 'rtc_timeoffset', 'tsc_mode', 'boot', 'device_model_version', 'device_model_override', 'device_model_stubdomain_override', 'device_model_user', 'device_model_args', 'device_model_args_hvm', 'device_model_args_pv', 'xen_platform_pci', 'hdtype', 'timer_mode', 'vpt_align', 'mmio_hole', 'altp2m', 'altp2mhvm', 'cpuid', 'smbios_firmware', 'acpi_firmware', 'bios_path_override', 'nomigrate', 'e820_host', 'shadow_memory', 'max_grant_frames', 'max_maptrack_frames', 'max_grant_version', 'claim_mode', 'driver_domain', 'vmtrace_buf_kb', 'vpmu', 'msr_relaxed', 'vcpu_hard_affinity', 'vcpu_soft_affinity', 'on_watchdog', 'on_soft_reset', 'xend_suspend_evtchn_compat', 'tee', 'gic_version', 'vuart', 'device_tree', 'dm_restrict', 'ioreq_server_pages', 'suppress_spurious_page_faults'].map((k) => [k, PLATFORM])),
};

const HANDLED = new Set(['name', 'type', 'builder', 'uuid', 'memory', 'maxmem', 'vcpus', 'maxvcpus', 'cpu_weight', 'cap', 'kernel', 'ramdisk', 'cmdline', 'root', 'extra', 'firmware', 'disk', 'vif', 'on_poweroff', 'on_reboot', 'on_crash']);

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

const plain = (v: XlValue): string | unknown[] => (v.kind === 'atom' ? v.value : v.items.map(plain));
/** An xl value for display: the text of a single value, JSON for a list. */
export function showXlValue(v: XlValue): string {
  const p = plain(v);
  return typeof p === 'string' ? p : JSON.stringify(p);
}

/** A Hangar name for an xl domain name: lower case, other characters made "-" ("example.pvlinux" becomes "example-pvlinux"). */
export function hangarNameFor(xlName: string): string {
  return xlName.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/-+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '');
}

/** Parses and translates the text of an xl.cfg file (for `hangar import xen FILE.cfg`). */
export function importXlConfigText(text: string, opts: { source?: string; name?: string } = {}): XenImport {
  return translateXlConfig(parseXlConfig(text, opts.source ? { source: opts.source } : {}), opts.name ? { name: opts.name } : {});
}

/** Translates a parsed xl.cfg into Hangar's terms; throws INVALID_CONFIG (with the position) for what xl itself refuses. */
export function translateXlConfig(cfg: XlConfig, opts: { name?: string } = {}): XenImport {
  const translated: XenTranslated[] = [];
  const untranslated: XenUntranslated[] = [];
  const config: InstanceConfig = {};
  const shown = (key: string) => {
    const v = cfg.values.get(key);
    return v === undefined ? '' : showXlValue(v);
  };
  const has = (key: string) => cfg.values.has(key);
  const done = (key: string, to: string[], note?: string) => translated.push({ key, value: shown(key), to, ...(note ? { note } : {}) });
  const skip = (key: string, reason: string, value = shown(key)) => untranslated.push({ key, value, reason });
  const refuse = (key: string, message: string, cause?: unknown): never => {
    throw xlConfigError(cfg.source, cfg.origins.get(key)?.pos, message, cause);
  };
  // A value xl cannot read as what the key needs is ignored by xl with a warning: listed here, not translated.
  const read = <T>(key: string, get: () => T): T | undefined => {
    try {
      return get();
    } catch (e) {
      if (!isAppError(e, 'INVALID_CONFIG')) throw e;
      skip(key, `${e.message.replace(/^[^:]*:\d+:\d+: /, '')}; xl ignores it with a warning`);
      return undefined;
    }
  };
  const setKey = (key: string, value: string): boolean => {
    try {
      Object.assign(config, validateConfigValues({ [key]: value }));
      return true;
    } catch (e) {
      if (!isAppError(e)) throw e;
      return false;
    }
  };

  // Settings a later "=" replaces never reach xl: listed so that no line of the file goes unaccounted for.
  cfg.settings.forEach((s, i) => {
    const later = cfg.settings.slice(i + 1).find((t) => t.key === s.key && t.op === '=');
    if (later) skip(s.key, `replaced by the setting on line ${later.pos.line} (xl uses the last one)`, showXlValue(s.value));
  });

  const xlName = read('name', () => xlString(cfg, 'name'));
  if (xlName === undefined && !opts.name) refuse('name', 'the domain has no name= (xl requires one)');
  const name = opts.name ?? hangarNameFor(xlName!);
  const problem = nameProblem(name);
  if (problem) throw new AppError('INVALID_NAME', `Cannot import domain ${JSON.stringify(xlName)} as ${JSON.stringify(name)}: the name ${problem}; give another name`);
  const renamed = opts.name ? `imported under the name given, "${name}"` : `Hangar names hold only a-z, 0-9 and "-": the instance is named "${name}"`;
  if (xlName !== undefined) done('name', ['name'], name !== xlName ? renamed : undefined);

  const guestType = typeOf();
  // Always kept: without it Hangar would pick PVH where the host allows it, and an imported PV domain must stay PV.
  setKey('boot.virt', guestType);
  function typeOf(): XenGuestType {
    const type = read('type', () => xlString(cfg, 'type'));
    const builder = read('builder', () => xlString(cfg, 'builder'));
    if (type !== undefined) {
      if (type !== 'pv' && type !== 'pvh' && type !== 'hvm') refuse('type', `unknown domain type ${JSON.stringify(type)} (pv, pvh or hvm)`);
      done('type', ['guestType', 'boot.virt']);
      if (builder !== undefined) skip('builder', 'ignored by xl because type= is set');
      return type as XenGuestType;
    }
    if (builder !== undefined) {
      if (builder !== 'generic' && builder !== 'hvm') refuse('builder', `unknown builder ${JSON.stringify(builder)} (generic or hvm; builder= is deprecated in favour of type=)`);
      done('builder', ['guestType', 'boot.virt'], 'builder= is the deprecated form of type=');
      return builder === 'hvm' ? 'hvm' : 'pv';
    }
    // xl's default on x86.
    return 'pv';
  }

  let uuid: string | undefined;
  if (has('uuid')) {
    const u = read('uuid', () => xlString(cfg, 'uuid'));
    if (u !== undefined) {
      if (!UUID.test(u)) refuse('uuid', `uuid ${JSON.stringify(u)} is not a UUID (xl refuses it)`);
      uuid = u.replace(/-/g, '').toLowerCase().replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');
      done('uuid', ['uuid'], 'the domain keeps its UUID');
    }
  }

  // Memory: maxmem is the ceiling (limits.memory), memory what the domain gets at start (limits.memory.guarantee); each defaults to the other.
  const memory = has('memory') ? read('memory', () => xlNumber(cfg, 'memory', { min: 1 })) : undefined;
  const maxmem = has('maxmem') ? read('maxmem', () => xlNumber(cfg, 'maxmem', { min: 1 })) : undefined;
  if (memory !== undefined && maxmem !== undefined && maxmem < memory) refuse('maxmem', `maxmem (${maxmem} MiB) is below memory (${memory} MiB): xl refuses this domain`);
  if (memory !== undefined || maxmem !== undefined) {
    const max = maxmem ?? memory!;
    setKey('limits.memory', `${max}MiB`);
    setKey('limits.memory.guarantee', `${memory ?? max}MiB`);
    if (memory !== undefined) done('memory', maxmem === undefined ? ['limits.memory.guarantee', 'limits.memory'] : ['limits.memory.guarantee'], maxmem === undefined ? 'no maxmem=: the domain cannot balloon above it' : undefined);
    if (maxmem !== undefined) done('maxmem', ['limits.memory'], memory === undefined ? 'no memory=: the domain starts with all of it' : undefined);
  }

  // vCPUs: vcpus are online at start (at least 1), maxvcpus the most it may have.
  const vcpusRead = has('vcpus') ? read('vcpus', () => xlNumber(cfg, 'vcpus', { min: 0 })) : undefined;
  const maxvcpus = has('maxvcpus') ? read('maxvcpus', () => xlNumber(cfg, 'maxvcpus', { min: 1 })) : undefined;
  if (vcpusRead !== undefined || maxvcpus !== undefined) {
    const vcpus = Math.max(1, vcpusRead ?? 1);
    if (maxvcpus !== undefined && maxvcpus < vcpus) refuse('maxvcpus', `maxvcpus (${maxvcpus}) is below vcpus (${vcpus}): xl refuses this domain`);
    setKey('limits.cpu', String(vcpus));
    if (vcpusRead !== undefined) done('vcpus', ['limits.cpu'], vcpusRead < 1 ? 'xl starts at least one vCPU' : undefined);
    if (maxvcpus !== undefined) {
      if (maxvcpus === vcpus) done('maxvcpus', ['limits.cpu'], vcpusRead === undefined ? 'no vcpus=: one vCPU online, as xl does' : 'equal to vcpus');
      else skip('maxvcpus', `Hangar gives a domain limits.cpu (${vcpus}) vCPUs, all online; the headroom to hot-add up to ${maxvcpus} is not kept`);
    }
  }

  if (has('cpu_weight')) {
    const w = read('cpu_weight', () => xlNumber(cfg, 'cpu_weight', { min: 1, max: 65535 }));
    if (w !== undefined) {
      setKey('limits.cpu.weight', String(hangarWeight(w)));
      done('cpu_weight', ['limits.cpu.weight'], `Xen weight ${w} is Hangar weight ${hangarWeight(w)} (Xen's default 256 is Hangar's 100)`);
    }
  }
  if (has('cap')) {
    const cap = read('cap', () => xlNumber(cfg, 'cap', { min: 0 }));
    if (cap === 0) done('cap', [], '0 means no cap, as in Hangar by default');
    else if (cap !== undefined) {
      setKey('limits.cpu.cap', `${cap}%`);
      done('cap', ['limits.cpu.cap'], 'a percentage of one CPU in both');
    }
  }

  translateBoot();
  function translateBoot(): void {
    const kernel = has('kernel') ? read('kernel', () => xlString(cfg, 'kernel')) : undefined;
    const keyOr = (key: string, hangarKey: string, value: string, note?: string) => {
      if (setKey(hangarKey, value)) done(key, [hangarKey], note);
      else skip(key, `not a valid ${hangarKey}: ${validationError(hangarKey, value)}`);
    };
    if (kernel !== undefined) keyOr('kernel', 'boot.kernel', kernel, 'a file of the Xen host (Dom0)');
    for (const key of ['ramdisk', 'cmdline', 'root', 'extra'] as const) {
      if (has(key) && kernel === undefined) skip(key, 'there is no kernel= to pass it to (Hangar keeps a command line only for a kernel it boots)');
    }
    if (kernel !== undefined) {
      const ramdisk = has('ramdisk') ? read('ramdisk', () => xlString(cfg, 'ramdisk')) : undefined;
      if (ramdisk !== undefined) keyOr('ramdisk', 'boot.initrd', ramdisk);
      const cmdline = has('cmdline') ? read('cmdline', () => xlString(cfg, 'cmdline')) : undefined;
      const root = has('root') ? read('root', () => xlString(cfg, 'root')) : undefined;
      const extra = has('extra') ? read('extra', () => xlString(cfg, 'extra')) : undefined;
      const identity = 'Hangar appends its hangar.hostname/ip/gw parameters';
      if (cmdline !== undefined) {
        keyOr('cmdline', 'boot.cmdline', cmdline, identity);
        if (root !== undefined) skip('root', 'ignored by xl because cmdline= is set');
        if (extra !== undefined) skip('extra', 'ignored by xl because cmdline= is set');
      } else if (root !== undefined || extra !== undefined) {
        // xl's own composition of the command line from root= and extra=.
        const composed = [root !== undefined ? `root=${root}` : undefined, extra].filter((s) => s !== undefined).join(' ');
        if (setKey('boot.cmdline', composed)) {
          if (root !== undefined) done('root', ['boot.cmdline'], `xl's command line "${composed}"; ${identity}`);
          if (extra !== undefined) done('extra', ['boot.cmdline'], `xl's command line "${composed}"; ${identity}`);
        } else {
          const reason = `not a valid boot.cmdline: ${validationError('boot.cmdline', composed)}`;
          if (root !== undefined) skip('root', reason);
          if (extra !== undefined) skip('extra', reason);
        }
      }
    }
    if (has('firmware')) {
      const fw = read('firmware', () => xlString(cfg, 'firmware'));
      if (fw === undefined) return;
      const hangar = guestType === 'hvm' ? ({ bios: 'bios', seabios: 'bios', uefi: 'uefi', ovmf: 'uefi' } as Record<string, string>)[fw] : undefined;
      if (hangar) keyOr('firmware', 'boot.firmware', hangar, hangar !== fw ? `${fw} is Hangar's ${hangar}` : undefined);
      else skip('firmware', guestType === 'hvm' ? `Hangar's HVM firmware is bios (SeaBIOS) or uefi (OVMF), not ${fw}` : `boot.firmware is for HVM domains; Hangar boots a ${guestType.toUpperCase()} domain from a kernel or through pygrub`);
    }
  }

  // The spec strings of a device list, each parsed: a spec xl cannot parse makes xl refuse the domain, so it is refused here, at its position.
  const specsOf = <T>(key: 'disk' | 'vif', parse: (spec: string) => T): { index: number; spec: string; parsed: T }[] | undefined => {
    const list = cfg.values.get(key);
    if (list === undefined) return undefined;
    if (list.kind !== 'list') {
      skip(key, 'a single value, not a list: xl ignores it with a warning');
      return undefined;
    }
    return list.items.map((item, index) => {
      if (item.kind !== 'atom') return refuse(key, `${key} ${index + 1} is a list, not a ${key} spec string`);
      try {
        return { index, spec: item.value, parsed: parse(item.value) };
      } catch (e) {
        throw xlConfigError(cfg.source, item.pos, `${key} ${index + 1}: ${(e as Error).message}`, e);
      }
    });
  };

  const disks = translateDisks();
  function translateDisks(): XenImportDisk[] {
    const specs = specsOf('disk', parseDiskSpec);
    if (!specs) return [];
    done('disk', ['disks']);
    let root = false;
    return specs.map(({ index, spec, parsed: disk }): XenImportDisk => {
      const key = `disk[${index}]`;
      const ignore = (note: string): XenImportDisk => { skip(key, note, spec); return { index, spec, disk, use: 'ignored', note }; };
      if (disk.devtype === 'cdrom') return ignore('a CD-ROM drive: Hangar attaches none to Xen domains');
      if (disk.format !== 'raw' && disk.format !== 'qcow2') return ignore(`format ${disk.format}: Hangar's Xen disks are raw or qcow2 files, or block devices`);
      if (disk.script !== undefined) return ignore(`its target is interpreted by the block script ${disk.script}, which Hangar does not run`);
      if (disk.backend !== undefined) return ignore(`its backend is the driver domain ${disk.backend}: Hangar serves disks from Dom0`);
      if (disk.specification === 'virtio') return ignore('a virtio disk: Hangar gives Xen domains Xen block devices');
      for (const [option, text] of diskOptions(disk)) skip(`${key}.${option}`, 'Hangar renders its disks itself (target, format, vdev, access); this option is not kept', text);
      const useRoot = !root && disk.access === 'rw';
      root ||= useRoot;
      const where = disk.target.startsWith('/dev/') ? 'block device' : 'file';
      return useRoot
        ? { index, spec, disk, use: 'root', note: `the root disk: the ${where} ${disk.target} is used in place (not copied); its size stays as it is` }
        : { index, spec, disk, use: 'extra', note: `an extra ${disk.access === 'ro' ? 'read-only ' : ''}disk: the ${where} ${disk.target} is used in place as ${disk.vdev}` };
    });
  }

  const nics = translateNics();
  function translateNics(): XenImportNic[] {
    const specs = specsOf('vif', parseVifSpec);
    if (!specs) return [];
    done('vif', ['nics'], specs.length === 0 ? 'no NICs: Hangar still gives the instance its own' : undefined);
    return specs.map(({ index, spec, parsed: vif }): XenImportNic => {
      const key = `vif[${index}]`;
      if (index > 0) {
        const note = 'Hangar gives an instance one NIC, on its managed bridge';
        skip(key, note, spec);
        return { index, spec, vif, use: 'ignored', note };
      }
      const drop = (option: string, reason: string, value: string) => skip(`${key}.${option}`, reason, value);
      // Hangar's NIC has one IPv4 address (its prefix is the bridge's): the first one given, the others listed.
      const ipv4Entry = vif.ip?.find((ip) => /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(ip));
      const ipv4 = ipv4Entry?.split('/')[0];
      for (const ip of vif.ip ?? []) if (ip !== ipv4Entry) drop('ip', 'Hangar gives the NIC one IPv4 address, on its bridge\'s subnet', ip);
      if (vif.bridge !== undefined) drop('bridge', 'Hangar attaches the NIC to its managed bridge on that host', vif.bridge);
      if (vif.rate !== undefined) {
        const rate = vif.rate;
        setKey('limits.network.egress', String(rate.bytesPerSecond));
        const interval = rate.intervalUs === XL_DEFAULT_RATE_INTERVAL_US ? undefined : `its credit interval of ${rate.intervalUs} µs is not kept: Hangar uses xl's default of 50 ms`;
        translated.push({ key: `${key}.rate`, value: renderVifRate(rate), to: ['limits.network.egress'], ...(interval ? { note: interval } : {}) });
      }
      if (vif.vifname !== undefined) drop('vifname', 'Hangar names the host interface itself', vif.vifname);
      if (vif.script !== undefined) drop('script', 'Hangar bridges the NIC itself (vif-bridge)', vif.script);
      for (const option of ['type', 'model', 'backend', 'gatewaydev', 'forwarddev', 'mtu', 'devid', 'vlan', 'accel'] as const) {
        if (vif[option] !== undefined) drop(option, 'Hangar renders its NIC itself; this setting is not kept', String(vif[option]));
      }
      if (vif.trusted !== undefined) drop('trusted', 'Hangar renders its NIC itself; this setting is not kept', vif.trusted ? 'trusted' : 'untrusted');
      for (const [k, v] of Object.entries(vif.colo ?? {})) drop(k, 'COLO is not supported by Hangar', v);
      const kept = [vif.mac ? `MAC ${vif.mac}` : 'a MAC Hangar assigns', ipv4 ? `address ${ipv4}` : 'an address Hangar assigns'];
      return { index, spec, vif, use: 'primary', ...(vif.mac ? { mac: vif.mac } : {}), ...(ipv4 ? { ipv4 } : {}), note: `the instance's NIC on Hangar's bridge, with ${kept.join(' and ')}` };
    });
  }

  for (const [key, hangarDefault] of [['on_poweroff', XEN_DEFAULT_ACTIONS.onPoweroff], ['on_reboot', XEN_DEFAULT_ACTIONS.onReboot], ['on_crash', XEN_DEFAULT_ACTIONS.onCrash]] as const) {
    if (!has(key)) continue;
    const action = read(key, () => xlString(cfg, key));
    if (action === undefined) continue;
    if (!(XL_ACTIONS as readonly string[]).includes(action)) refuse(key, `unknown ${key} action ${JSON.stringify(action)} (${XL_ACTIONS.join(', ')})`);
    if (action === hangarDefault) done(key, [], `${hangarDefault} is what Hangar's domains do`);
    else skip(key, `Hangar's domains always use ${key}="${hangarDefault}" (it tracks power-offs, reboots and crashes itself)`);
  }

  for (const key of cfg.values.keys()) {
    if (HANDLED.has(key)) continue;
    skip(key, Object.hasOwn(REASONS, key) ? REASONS[key]! : 'no Hangar equivalent');
  }

  let validated: InstanceConfig;
  try {
    validated = validateConfig(config);
  } catch (e) {
    throw new AppError('INVALID_CONFIG', `The translation of ${cfg.source} is not a valid Hangar config: ${(e as Error).message}`, { cause: e });
  }
  return { name, type: 'vm', driver: 'xen', guestType, ...(uuid ? { uuid } : {}), config: validated, disks, nics, translated, untranslated };
}

// The options of a disk beyond target, format, vdev, access and devtype, as xl's spec syntax names and writes them.
function diskOptions(d: XlDiskSpec): [string, string][] {
  const out: [string, string][] = [];
  const flag = (name: string, on: boolean | undefined, off: string) => { if (on !== undefined) out.push([name, on ? name : off]); };
  if (d.backendtype !== undefined) out.push(['backendtype', `backendtype=${d.backendtype}`]);
  flag('direct-io-safe', d.directIoSafe, '');
  flag('discard', d.discard, 'no-discard');
  flag('trusted', d.trusted, 'untrusted');
  if (d.grantUsage !== undefined) out.push(['grant_usage', `grant_usage=${d.grantUsage ? 1 : 0}`]);
  flag('colo', d.colo, 'no-colo');
  for (const [name, value] of [['colo-host', d.coloHost], ['colo-port', d.coloPort], ['colo-export', d.coloExport], ['active-disk', d.activeDisk], ['hidden-disk', d.hiddenDisk]] as const) {
    if (value !== undefined) out.push([name, `${name}=${value}`]);
  }
  return out;
}

function validationError(key: string, value: string): string {
  try {
    validateConfigValues({ [key]: value });
    return 'refused';
  } catch (e) {
    return (e as Error).message;
  }
}
