// The network contract of the core services: the subnet instances get addresses in, host-side interface names and DHCP reservations.
import type { Subnet } from './ipam.js';

/** A DHCP reservation: the instance name, its MAC and its address. */
export interface Lease {
  name: string;
  mac: string;
  ipv4: string;
}

/** Bridge name, subnet in CIDR form and gateway address. */
export interface NetworkInfo {
  bridge: string;
  subnet: string;
  gateway: string;
}

/** The managed network as the instance service uses it. */
export interface Network {
  /** The parsed subnet instance addresses come from. */
  readonly subnet: Subnet;
  /** Bridge, subnet and gateway. */
  info(): NetworkInfo;
  /** Host-side interface name (veth/tap) of an instance, at most 15 characters. */
  hostIfName(name: string): string;
  /** Replaces the DHCP reservations with these. */
  setLeases(leases: Lease[]): Promise<void>;
}
