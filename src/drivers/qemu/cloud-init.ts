// cloud-init NoCloud seed for VMs: a pure renderer of meta-data, user-data and network-config (v2), and the cidata ISO built with genisoimage.
import { posix } from 'node:path';
import type { Host } from '../../host/host.js';
import { AppError } from '../../shared/errors.js';

/** What renderNoCloudSeed needs to know about an instance. */
export interface NoCloudInput {
  /** Changes when the instance is re-created; cloud-init reruns its once-per-instance modules on a new id. */
  instanceId: string;
  hostname: string;
  /** Static IPv4 address, `a.b.c.d` (with prefixLength) or `a.b.c.d/nn`; absent means DHCP. */
  ipv4?: string;
  /** Prefix length for ipv4 without one (default 24). */
  prefixLength?: number;
  gateway?: string;
  dns?: readonly string[];
  /** The NIC's MAC: the network config matches it, so interface names do not matter. */
  mac?: string;
  /** User-data given by the user (`#cloud-config`, a script, ...), passed through unchanged. */
  userData?: string;
  /** SSH public keys for the image's default user. */
  sshKeys?: readonly string[];
}

/** The three files of a NoCloud seed, by their file name. */
export interface NoCloudSeed {
  'meta-data': string;
  'user-data': string;
  'network-config': string;
}

const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4_RE = /^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

// Double-quoted YAML scalars accept JSON string syntax, so any text is safe this way.
const q = (s: string): string => JSON.stringify(s);

/** Renders the NoCloud seed files; throws INVALID_ARGUMENT on a bad hostname, address or key. */
export function renderNoCloudSeed(input: NoCloudInput): NoCloudSeed {
  const { instanceId, hostname } = input;
  if (!instanceId || /[\r\n]/.test(instanceId)) throw new AppError('INVALID_ARGUMENT', `Invalid cloud-init instance id ${q(instanceId)}`);
  if (!HOSTNAME_RE.test(hostname)) throw new AppError('INVALID_ARGUMENT', `Invalid hostname ${q(hostname)} for cloud-init`);
  const keys = input.sshKeys ?? [];
  for (const k of keys) {
    if (!/^\S+ \S+/.test(k.trim()) || /[\r\n]/.test(k.trim())) throw new AppError('INVALID_ARGUMENT', `Invalid SSH public key ${q(k.slice(0, 40))}: expected one line "TYPE KEY [COMMENT]"`);
  }

  const meta = [`instance-id: ${q(instanceId)}`, `local-hostname: ${q(hostname)}`];
  if (keys.length > 0) meta.push('public-keys:', ...keys.map((k) => `  - ${q(k.trim())}`));

  let userData = input.userData;
  if (userData === undefined) {
    const lines = ['#cloud-config', `hostname: ${q(hostname.split('.')[0] ?? hostname)}`];
    if (hostname.includes('.')) lines.push(`fqdn: ${q(hostname)}`);
    lines.push('manage_etc_hosts: true');
    if (keys.length > 0) lines.push('ssh_authorized_keys:', ...keys.map((k) => `  - ${q(k.trim())}`));
    userData = lines.join('\n') + '\n';
  }

  return { 'meta-data': meta.join('\n') + '\n', 'user-data': userData, 'network-config': renderNetworkConfig(input) };
}

// Network config version 2 (netplan syntax, which cloud-init renders for networkd, ifupdown, ...).
function renderNetworkConfig(input: NoCloudInput): string {
  const mac = input.mac?.toLowerCase();
  if (mac !== undefined && !MAC_RE.test(mac)) throw new AppError('INVALID_ARGUMENT', `Invalid MAC address ${q(input.mac ?? '')}`);
  const lines = ['version: 2', 'ethernets:', '  nic0:', '    match:'];
  // Without a MAC, every ethernet-like name (en*, eth*) matches.
  lines.push(mac !== undefined ? `      macaddress: ${q(mac)}` : `      name: ${q('e*')}`);
  if (input.ipv4 === undefined) {
    lines.push('    dhcp4: true');
  } else {
    const [addr, prefixText] = input.ipv4.split('/', 2) as [string, string | undefined];
    const prefix = prefixText !== undefined ? Number(prefixText) : (input.prefixLength ?? 24);
    if (!IPV4_RE.test(addr) || !Number.isInteger(prefix) || prefix < 1 || prefix > 32 || (prefixText !== undefined && !/^\d+$/.test(prefixText))) {
      throw new AppError('INVALID_ADDRESS', `Invalid IPv4 address ${q(input.ipv4)} for cloud-init`);
    }
    lines.push('    dhcp4: false', '    addresses:', `      - ${q(`${addr}/${prefix}`)}`);
    if (input.gateway !== undefined) {
      if (!IPV4_RE.test(input.gateway)) throw new AppError('INVALID_ADDRESS', `Invalid IPv4 gateway ${q(input.gateway)} for cloud-init`);
      lines.push('    routes:', `      - to: ${q('0.0.0.0/0')}`, `        via: ${q(input.gateway)}`);
    }
  }
  const dns = input.dns ?? [];
  for (const d of dns) if (!IPV4_RE.test(d)) throw new AppError('INVALID_ADDRESS', `Invalid DNS server ${q(d)} for cloud-init`);
  if (dns.length > 0) lines.push('    nameservers:', '      addresses:', ...dns.map((d) => `        - ${q(d)}`));
  return lines.join('\n') + '\n';
}

/** Writes the seed files under dir/nocloud and packs them into dir/seed.iso (volume id cidata); returns the ISO's path. */
export async function buildSeedIso(host: Host, dir: string, files: NoCloudSeed): Promise<string> {
  const src = posix.join(dir, 'nocloud');
  await host.fs.rm(src, { recursive: true, force: true });
  await host.fs.mkdir(src, { recursive: true, mode: 0o700 });
  const paths: string[] = [];
  for (const name of ['meta-data', 'user-data', 'network-config'] as const) {
    const path = posix.join(src, name);
    await host.fs.writeAtomic(path, files[name], 0o600);
    paths.push(path);
  }
  const iso = posix.join(dir, 'seed.iso');
  const tmp = `${iso}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    const res = await host.exec(['genisoimage', '-quiet', '-output', tmp, '-volid', 'cidata', '-joliet', '-rock', ...paths], { allowFailure: true, timeoutMs: 60_000 });
    if (res.code !== 0) throw new AppError('HOST_FAILED', `Failed to build the cloud-init seed ISO ${iso}`, { cause: new Error(res.stderr.trim() || `genisoimage exited with code ${res.code}`) });
    await host.fs.rename(tmp, iso);
  } finally {
    await host.fs.rm(tmp, { force: true });
    await host.fs.rm(src, { recursive: true, force: true });
  }
  return iso;
}
