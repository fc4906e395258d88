// What belongs to one host (its Host, facts, drivers, storage pool, network, directories) and how services find the host of an instance.
import type { DriverSet } from '../../drivers/registry.js';
import type { HostSnapshot } from '../../host/facts.js';
import type { Host } from '../../host/host.js';
import type { Network } from '../network/network.js';
import type { PoolInfo, StoragePool } from '../storage/pool.js';

/** The name of the daemon's own machine. */
export { LOCAL_HOST } from '../../shared/hosts.js';

/** Everything the services use of one host, opened there: the local machine, or a remote one over SSH. */
export interface HostContext {
  readonly name: string;
  readonly local: boolean;
  readonly host: Host;
  readonly facts: HostSnapshot;
  readonly drivers: DriverSet;
  /** Where its instance volumes (and, for a remote host, its copies of the daemon's images) live. */
  readonly pool: StoragePool & { info(): Promise<PoolInfo> };
  readonly network: Network;
  /** Why instances cannot get a NIC there (the managed network could not be set up), or null. */
  readonly networkProblem: string | null;
  /** Root of the per-instance directories on that host. */
  readonly instancesDir: string;
  /** The size limits.disk is checked against; null where the pool enforces no sizes (limits.disk is then refused for container roots). */
  readonly poolSizeBytes: number | null;
}

/** Why a host cannot be used right now, and since when. */
export interface HostProblem {
  reason: string;
  since: string;
}

/** How the services find hosts: the local one, the one an instance lives on, and which are up. */
export interface HostDirectory {
  /** The daemon's own machine (always up). */
  local(): HostContext;
  /** The context of a host that is up; NOT_FOUND for an unknown name, HOST_UNREACHABLE naming why for one that is not up. */
  get(name: string): HostContext;
  /** True when the daemon knows a host of this name ("local" or an added one). */
  has(name: string): boolean;
  /** Why the host cannot be used now, or undefined when it is up; a synchronous check, so listing never waits for a host. */
  problem(name: string): HostProblem | undefined;
  /** Every host that is up, the local one first. */
  up(): HostContext[];
}
