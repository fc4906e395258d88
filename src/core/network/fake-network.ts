// An in-memory Network for tests and the in-process daemon: a subnet and its reservations, checked like dnsmasq's, with no bridge, nftables or dnsmasq.
import { AppError } from '../../shared/errors.js';
import { checkAddress, isValidMac, parseSubnet, shortHash, type Subnet } from './ipam.js';
import type { Lease, Network, NetworkInfo } from './network.js';

/** Options of a FakeNetwork. */
export interface FakeNetworkOptions {
  /** The bridge name it reports (no bridge exists); default "fakebr0". */
  bridge?: string;
  /** Default 10.250.0.0/24. */
  subnet?: string;
  /** Prefix of host-side interface names; default "fk". */
  ifPrefix?: string;
}

/** A network that only keeps its reservations: what the instance service gave it can be read back with leases(). */
export class FakeNetwork implements Network {
  /** The parsed subnet. */
  readonly subnet: Subnet;
  private readonly bridge: string;
  private readonly ifPrefix: string;
  private current: Lease[] = [];

  constructor(opts: FakeNetworkOptions = {}) {
    this.subnet = parseSubnet(opts.subnet ?? '10.250.0.0/24');
    this.bridge = opts.bridge ?? 'fakebr0';
    this.ifPrefix = opts.ifPrefix ?? 'fk';
  }

  /** Bridge name, subnet and gateway. */
  info(): NetworkInfo {
    return { bridge: this.bridge, subnet: this.subnet.cidr, gateway: this.subnet.gateway };
  }

  /** Prefix + 8 hex characters of a hash of the name, as NetworkManager names them. */
  hostIfName(name: string): string {
    return `${this.ifPrefix}${shortHash(name)}`;
  }

  /** Replaces the reservations; refuses what dnsmasq would (a bad MAC, an address outside the subnet or reserved, one address or MAC twice). */
  async setLeases(leases: Lease[]): Promise<void> {
    const addresses = new Set<string>();
    const macs = new Set<string>();
    for (const l of leases) {
      if (!isValidMac(l.mac)) throw new AppError('INVALID_ARGUMENT', `Invalid MAC ${JSON.stringify(l.mac)} of instance "${l.name}"`);
      if (macs.has(l.mac.toLowerCase())) throw new AppError('CONFLICT', `MAC ${l.mac} of instance "${l.name}" is reserved twice`);
      checkAddress(this.subnet, l.ipv4, addresses);
      addresses.add(l.ipv4);
      macs.add(l.mac.toLowerCase());
    }
    this.current = leases.map((l) => ({ ...l }));
  }

  /** The current reservations. */
  leases(): Lease[] {
    return this.current.map((l) => ({ ...l }));
  }

  /** The address reserved for an instance, if any. */
  addressOf(name: string): string | undefined {
    return this.current.find((l) => l.name === name)?.ipv4;
  }
}
