// Pure rendering of a CT's config into its CTID.conf (OpenVZ's format), merged into the file as it is: comments and keys Hangar does not manage stay.
import { resourcesOf, type InstanceConfig } from '../../shared/config.js';
import { weightCpuunits } from '../../shared/vz-samples.js';
import { formatVzPair, VZ_PAGE_BYTES, VzConf } from './conf.js';

/** What a CT's conf is rendered from. */
export interface CtConfInput {
  name: string;
  ctid: string;
  config: InstanceConfig;
  /** The venet addresses (IP_ADDRESS), the CT's own first unless a veth carries it. */
  venet: readonly string[];
  /** The --netif_add veth: its inside name, MAC, host end and bridge. */
  netif?: { ifname: string; mac: string; hostIf: string; bridge: string };
  ostemplate: string;
  /** VE_ROOT and VE_PRIVATE: where the private area mounts, and the directory of its image. */
  root: string;
  private: string;
}

/** The keys Hangar writes (and removes when unset); every other line of a CTID.conf is the user's. */
export const MANAGED_KEYS = [
  'NAME', 'OSTEMPLATE', 'VE_ROOT', 'VE_PRIVATE', 'ONBOOT', 'PHYSPAGES', 'SWAPPAGES', 'VMGUARPAGES', 'DISKSPACE', 'DISKINODES', 'NUMPROC',
  'CPUUNITS', 'CPULIMIT', 'CPUS', 'IP_ADDRESS', 'NETIF', 'HOSTNAME', 'NAMESERVER', 'SEARCHDOMAIN', 'DESCRIPTION',
] as const;

/** The managed keys' values for a CT: as vzctl writes them (pages, 1 KiB blocks, barrier:limit pairs); undefined for what is unset. */
export function ctConfValues(input: CtConfInput): Record<(typeof MANAGED_KEYS)[number], string | undefined> {
  const r = resourcesOf(input.config);
  const c = input.config;
  const pages = (b: number) => BigInt(Math.floor(b / VZ_PAGE_BYTES));
  const same = (n: bigint) => formatVzPair({ barrier: n, limit: n });
  return {
    NAME: input.name,
    OSTEMPLATE: input.ostemplate,
    VE_ROOT: input.root,
    VE_PRIVATE: input.private,
    ONBOOT: c['boot.autostart'] === undefined ? undefined : c['boot.autostart'] === 'true' ? 'yes' : 'no',
    PHYSPAGES: formatVzPair({ barrier: 0n, limit: r.memoryMax === undefined ? null : pages(r.memoryMax) }),
    SWAPPAGES: r.memorySwap === undefined ? undefined : formatVzPair({ barrier: 0n, limit: pages(r.memorySwap) }),
    // vSwap's guarantee is VMGUARPAGES's barrier (OpenVZ 7 calls it MEMGUARANTEE, in percent of RAM).
    VMGUARPAGES: r.memoryGuarantee === undefined ? undefined : formatVzPair({ barrier: pages(r.memoryGuarantee), limit: null }),
    DISKSPACE: r.diskBytes === undefined ? undefined : same(BigInt(Math.floor(r.diskBytes / 1024))),
    DISKINODES: c['limits.disk.inodes'] === undefined ? undefined : same(BigInt(c['limits.disk.inodes'])),
    NUMPROC: r.processes === undefined ? undefined : same(BigInt(r.processes)),
    CPUUNITS: r.cpuWeight === undefined ? undefined : String(weightCpuunits(r.cpuWeight)),
    CPULIMIT: r.cpuCapPct === undefined ? undefined : String(r.cpuCapPct),
    CPUS: r.cpuCount === undefined ? undefined : String(r.cpuCount),
    IP_ADDRESS: input.venet.length ? input.venet.join(' ') : undefined,
    NETIF: input.netif ? `ifname=${input.netif.ifname},mac=${input.netif.mac},host_ifname=${input.netif.hostIf},bridge=${input.netif.bridge}` : undefined,
    HOSTNAME: c['openvz.hostname'],
    NAMESERVER: c['openvz.nameserver'],
    SEARCHDOMAIN: c['openvz.searchdomain'],
    DESCRIPTION: c['user.description'],
  };
}

/**
 * The CTID.conf text of a CT: the file as it is (`existing`, parsed: its comments, order and other keys kept) with the
 * managed keys set or removed; a new file starts with a header saying so.
 */
export function renderCtConf(input: CtConfInput, existing?: VzConf): string {
  const conf = existing ?? VzConf.parse(`# CT ${input.ctid}: written by Hangar from instance "${input.name}". Hangar rewrites the keys it manages\n# (set them with vzctl set); comments and other keys are kept.\n`);
  const values = ctConfValues(input);
  for (const key of MANAGED_KEYS) {
    const v = values[key];
    if (v === undefined) conf.delete(key);
    // Values with quotes or line breaks cannot be in this format: a description keeps them in Hangar only.
    else if (!/["\r\n]/.test(v)) conf.set(key, v);
  }
  return conf.toString();
}
