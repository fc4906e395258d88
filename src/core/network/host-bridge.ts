// A bridge the host already has (a Dom0's xenbr0, a Proxmox-style vmbr0): instances attach to it with static addresses from its subnet; Hangar runs no DHCP, NAT or firewall there.
import { AppError } from '../../shared/errors.js';
import { assertBridgeName } from '../../shared/hosts.js';
import type { Host } from '../../host/host.js';
import { intToIp, ipToInt, isValidIpv4, parseSubnet, shortHash, type Subnet } from './ipam.js';
import type { Lease, Network, NetworkInfo } from './network.js';

/** The first IPv4 address and prefix of `ip -4 -o addr show dev NAME` output (iproute2's and busybox's forms), or undefined. */
export function parseIpv4Addr(out: string): { address: string; prefixLength: number } | undefined {
  const m = /\binet\s+([0-9.]+)\/([0-9]{1,2})\b/.exec(out);
  if (!m || !isValidIpv4(m[1]!)) return undefined;
  return { address: m[1]!, prefixLength: Number(m[2]) };
}

/** The subnet of an address with its prefix, whose gateway is that address (the host's own, on the bridge). */
export function subnetAround(address: string, prefixLength: number): Subnet {
  const size = 2 ** (32 - prefixLength);
  const network = intToIp((ipToInt(address) - (ipToInt(address) % size)) >>> 0);
  return { ...parseSubnet(`${network}/${prefixLength}`), gateway: address };
}

/** A host's own bridge, read once when the host is opened. */
export class HostBridgeNetwork implements Network {
  private constructor(readonly subnet: Subnet, private readonly bridge: string, private readonly ifPrefix: string) {}

  /** Finds the bridge and its IPv4 address on the host; refuses a missing interface, one that is no bridge, or one without an address. */
  static async open(host: Host, bridge: string, ifPrefix: string): Promise<HostBridgeNetwork> {
    assertBridgeName(bridge);
    const sys = `/sys/class/net/${bridge}`;
    if (!(await host.fs.stat(sys))) throw new AppError('NOT_FOUND', `Host "${host.name}" has no interface ${bridge}`);
    if (!(await host.fs.stat(`${sys}/bridge`))) throw new AppError('INVALID_ARGUMENT', `Interface ${bridge} on host "${host.name}" is not a bridge`);
    const res = await host.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', bridge]);
    const addr = parseIpv4Addr(res.stdout);
    if (!addr) throw new AppError('INVALID_ARGUMENT', `Bridge ${bridge} on host "${host.name}" has no IPv4 address: instances would get addresses from no subnet`);
    if (addr.prefixLength < 8 || addr.prefixLength > 30) throw new AppError('INVALID_ARGUMENT', `Bridge ${bridge} on host "${host.name}" has address ${addr.address}/${addr.prefixLength}: the prefix must be between 8 and 30`);
    return new HostBridgeNetwork(subnetAround(addr.address, addr.prefixLength), bridge, ifPrefix);
  }

  /** Bridge, subnet and the host's address on it (the instances' gateway). */
  info(): NetworkInfo {
    return { bridge: this.bridge, subnet: this.subnet.cidr, gateway: this.subnet.gateway };
  }

  /** Prefix + 8 hex characters of a hash of the name, as on the managed network. */
  hostIfName(name: string): string {
    return `${this.ifPrefix}${shortHash(name)}`;
  }

  /** Addresses are static on a host's own bridge (the guest is told its address, the vif only lets that one through): nothing to reserve. */
  async setLeases(_leases: Lease[]): Promise<void> {}
}
