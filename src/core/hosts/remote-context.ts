// Opens what belongs to a remote host over its link: its facts, its drivers, a directory pool and a copy of the managed network there.
import { posix } from 'node:path';
import { causeChain } from '../../shared/errors.js';
import type { BackendEvent, Driver } from '../../drivers/driver.js';
import { DriverSet } from '../../drivers/registry.js';
import { ensureIdMap, readHostFacts } from '../../host/facts.js';
import type { Host } from '../../host/host.js';
import { FakeNetwork } from '../network/fake-network.js';
import { HostBridgeNetwork } from '../network/host-bridge.js';
import { NetworkManager } from '../network/manager.js';
import type { Network } from '../network/network.js';
import { DirectoryPool } from '../storage/directory-pool.js';
import type { HostContext } from './context.js';

/** What the daemon gives every remote host: where its state lives there, its drivers and the network to replicate. */
export interface RemoteContextOptions {
  /** The daemon's state directory: a remote host keeps its state under the same path on its own machine. */
  dir: string;
  runDir: string;
  prefix: string;
  /** The enabled drivers (HANGAR_DRIVERS), opened on the remote host as on the local one. */
  drivers: readonly Driver[];
  /** The daemon's environment, as drivers read their HANGAR_* settings from it. */
  settings: Readonly<Record<string, string | undefined>>;
  /** The managed network, set up the same on every host: one subnet, so addresses stay unique across hosts. */
  network: { bridge: string; subnet: string; nftTable: string; ifPrefix: string };
  onBackendEvent?: (instance: string, event: BackendEvent) => void;
  log: (msg: string) => void;
}

/** One line for an error and its causes. */
export function errorText(err: unknown): string {
  return [err instanceof Error ? err.message : String(err), ...causeChain(err)].join(': ');
}

/**
 * Opens a remote host: its directories, id maps and facts; every enabled driver (probed there); a directory pool (plain
 * copies, no quotas) under <dir>/hosts/<name>/pool; and the managed network replicated there, or the host's own bridge
 * when one is named. A network that cannot be set up (no nftables or dnsmasq, a bridge that is missing or has no
 * address) leaves the host usable for what needs no NIC, with the reason.
 */
export async function openRemoteContext(link: Host, name: string, o: RemoteContextOptions, bridge: string | null = null): Promise<HostContext> {
  const instancesDir = posix.join(o.dir, 'instances');
  const cacheDir = posix.join(o.dir, 'cache');
  // Searchable, not listable, as on the local host: LXC needs an unprivileged container's root to reach the lxc path.
  for (const [d, mode] of [[o.dir, 0o711], [instancesDir, 0o700], [cacheDir, 0o700], [o.runDir, 0o700]] as const) {
    await link.fs.mkdir(d, { recursive: true, mode });
    await link.fs.chmod(d, mode);
  }
  const facts = await readHostFacts(link, await ensureIdMap(link));
  const log = (m: string) => o.log(`host ${name}: ${m}`);
  const drivers = await DriverSet.open(o.drivers, () => ({
    host: link, facts, prefix: o.prefix, dataDir: o.dir, cacheDir, runDir: o.runDir, settings: o.settings, services: {}, log,
    ...(o.onBackendEvent ? { onBackendEvent: o.onBackendEvent } : {}),
  }));
  const pool = new DirectoryPool(link, { dir: posix.join(o.dir, 'hosts', name, 'pool') });
  await pool.ensure();
  let network: Network;
  let networkProblem: string | null = null;
  if (bridge) {
    try {
      network = await HostBridgeNetwork.open(link, bridge, o.network.ifPrefix);
    } catch (err) {
      // Reported like a managed network that failed: the host stays usable for what needs no NIC.
      network = new FakeNetwork({ bridge, subnet: o.network.subnet, ifPrefix: o.network.ifPrefix });
      networkProblem = `its bridge ${bridge} cannot be used: ${errorText(err)}`;
      log(networkProblem);
    }
  } else {
    const managed = new NetworkManager(link, { ...o.network, dnsmasqDir: posix.join(o.dir, 'dnsmasq') });
    network = managed;
    try {
      await managed.ensure();
    } catch (err) {
      networkProblem = `the managed network (bridge ${o.network.bridge}, ${o.network.subnet}) could not be set up there: ${errorText(err)}; a bridge of its own can be named with hangar host add --bridge`;
      log(networkProblem);
    }
  }
  return { name, local: false, host: link, facts, drivers, pool, network, networkProblem, instancesDir, poolSizeBytes: null };
}
