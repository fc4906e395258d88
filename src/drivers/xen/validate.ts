// Validation for the Xen driver: configs against the resource model's ranges and what this Xen host can run (virt_caps, device model, memory, CPUs).
import { parseSize } from '../../shared/units.js';
import { resourcesOf, unsupportedKeys, type InstanceConfig } from '../../shared/config.js';
import type { HostFacts } from '../../host/facts.js';
import type { InstanceRecord } from '../driver.js';
import { hostFitProblems } from '../host-fit.js';
import { guestTypeOf } from './domain.js';
import type { XenFacts } from './probe.js';
import { XEN_CONFIG_KEYS, xlConfigFor, type XenHostFacts } from './render-config.js';

/** The least limits.memory a domain gets: a Linux guest kernel and its initramfs must fit. */
export const XEN_MIN_MEMORY = 64 * 1024 ** 2;

const MIB = 1024 ** 2;

/** The facts xlConfigFor checks guest types against. */
export function renderFacts(facts: XenFacts | null): XenHostFacts {
  return facts ? { virtCaps: facts.info.virtCaps, hvmDeviceModel: facts.deviceModel !== null } : {};
}

// A stand-in record: xlConfigFor's own refusals (boot and type combinations, memory order) without an instance.
const probeRecord = (config: InstanceConfig): InstanceRecord => ({
  name: 'validate', host: 'validate', type: 'vm', driver: 'xen', image: 'validate', config, rootPath: '/validate/root.raw', instanceDir: '/validate',
  nic: { bridge: 'br0', hostIfName: 'vif0', mac: '02:00:00:00:00:01', ipv4: '10.0.0.2', prefixLength: 24, gateway: '10.0.0.1' },
  imageProps: { kernel: 'vmlinux' }, imagePath: '/validate/image',
});

/** Problems with a config for Xen domains on this host: ranges, guest types virt_caps cannot run, memory above what Xen has free, CPUs it does not have. */
export function validateXen(config: InstanceConfig, facts: XenFacts | null, hostFacts: HostFacts): string[] {
  const problems: string[] = [];
  let r: ReturnType<typeof resourcesOf>;
  try {
    r = resourcesOf(config);
    if (config['limits.network.egress'] !== undefined) parseSize(config['limits.network.egress'].replace(/\/s\s*$/, ''), 'limits.network.egress');
  } catch (e) {
    return [e instanceof Error ? e.message : String(e)];
  }
  for (const key of ['boot.initrd', 'boot.cmdline']) {
    if (config[key] !== undefined && config['boot.kernel'] === undefined) problems.push(`${key} needs boot.kernel (it applies to a directly booted kernel)`);
  }
  // Xen's own view of the machine (Dom0 may see fewer CPUs and less memory than the hypervisor has).
  const info = facts?.info;
  const fit: HostFacts = {
    ...hostFacts,
    ...(info?.nrCpus ? { cpus: info.nrCpus } : {}),
    ...(info?.totalMemoryMiB ? { memoryBytes: info.totalMemoryMiB * MIB } : {}),
  };
  problems.push(...hostFitProblems(config, r, fit, { name: 'xen', minMemoryBytes: XEN_MIN_MEMORY, why: 'a guest kernel and its initramfs must fit' }));
  // The memory a domain gets at start is taken from Xen's free memory at once (no overcommit).
  const atStart = r.memoryGuarantee ?? r.memoryMax;
  if (info?.freeMemoryMiB != null && atStart !== undefined && atStart <= fit.memoryBytes && atStart > info.freeMemoryMiB * MIB) {
    const key = r.memoryGuarantee !== undefined ? 'limits.memory.guarantee' : 'limits.memory';
    problems.push(`${key}=${config[key]} is more than the ${info.freeMemoryMiB} MiB Xen has free on this host (xl info free_memory); a domain gets that memory at start`);
  }
  if (facts && unsupportedKeys(config, XEN_CONFIG_KEYS).length === 0) {
    try {
      xlConfigFor(probeRecord(config), renderFacts(facts), { type: guestTypeOf(config, facts), rootDisk: null });
    } catch (e) {
      const msg = (e instanceof Error ? e.message : String(e)).replace(/^Instance "validate"(: )?/, (_m, colon: string | undefined) => (colon ? '' : 'The instance'));
      problems.push(config['boot.virt'] !== undefined && /needs an? (PV|PVH|HVM) domain/.test(msg) ? `boot.virt=${config['boot.virt']}: ${msg}` : msg);
    }
  }
  return problems;
}
