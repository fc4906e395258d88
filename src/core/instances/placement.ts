// Where and how an instance is placed on its host: its driver, whether its config fits the backend and the host, its CPUs, id map, root volume, address, MAC and lease, and the record its driver runs it from.
import { keyAllowed, resourcesOf, unsupportedKeys, validateConfig, type InstanceConfig } from '../../shared/config.js';
import { AppError } from '../../shared/errors.js';
import { formatSize } from '../../shared/units.js';
import type { InstanceType } from '../../shared/schemas.js';
import type { HostDriver, InstanceHandle, InstanceRecord } from '../../drivers/driver.js';
import { IDS_PER_CONTAINER } from '../../host/facts.js';
import type { InstanceRow } from '../db/database.js';
import type { HostContext } from '../hosts/context.js';
import { allocateAddress, checkAddress, isValidMac, macFor, subnetContains, type Subnet } from '../network/ipam.js';
import { hostOf, instanceDir, type InstanceServiceDeps } from './context.js';

/** The driver of a create request on a host: the one it names, else the default of its type (container when it names none); refuses a driver of another type. */
export function chooseDriver(h: HostContext, req: { driver?: string | undefined; type?: InstanceType | undefined }): { driver: HostDriver; type: InstanceType } {
  const chosen = req.driver !== undefined ? h.drivers.get(req.driver) : undefined;
  if (chosen && req.type !== undefined && chosen.driver.type !== req.type) throw new AppError('INVALID_ARGUMENT', `Driver "${req.driver}" runs ${chosen.driver.type}s, not ${req.type}s`);
  const type = req.type ?? chosen?.driver.type ?? 'container';
  return { driver: chosen ?? h.drivers.forType(type), type };
}

/** Validates a config for an instance on a backend and its host: sizes against RAM, CPUs and the pool, keys the backend honours, the backend's own checks. */
export function validateFor(d: InstanceServiceDeps, h: HostContext, driver: HostDriver, name: string, config: InstanceConfig): InstanceConfig {
  const validated = validateConfig(config);
  const r = resourcesOf(validated);
  const facts = h.facts;
  const where = h.local ? 'this host' : `host "${h.name}"`;
  const pool = memoryPoolOf(d, h, driver);
  if (r.memoryGuarantee !== undefined && r.memoryGuarantee > pool.capacity) throw new AppError('INVALID_SIZE', `limits.memory.guarantee ${validated['limits.memory.guarantee']} of instance "${name}" is larger than the ${formatSize(pool.capacity)} ${where} can guarantee (${pool.what})`);
  if (r.diskBytes !== undefined && driver.driver.storage === 'tree' && h.poolSizeBytes === null) {
    throw new AppError('UNSUPPORTED', `limits.disk of instance "${name}" cannot be enforced on ${where}: its instance volumes are plain directories (disk quotas need the btrfs pool of the daemon's own host)`);
  }
  // A backend that keeps the disk itself does not put it in the pool.
  if (r.diskBytes !== undefined && driver.driver.storage !== 'backend' && h.poolSizeBytes !== null && r.diskBytes > h.poolSizeBytes) throw new AppError('INVALID_SIZE', `limits.disk ${validated['limits.disk']} of instance "${name}" is larger than the storage pool (${formatSize(h.poolSizeBytes)})`);
  // A key this backend does not declare is refused, naming the backends that do honour it.
  // Sizes against the host's RAM and CPUs are the driver's check (hostFitProblems), so they are said once.
  const problems = unsupportedKeys(validated, driver.driver.keys).map((k) => {
    const others = h.drivers.all().filter((x) => keyAllowed(k, x.driver.keys)).map((x) => x.driver.name);
    return `${k} is not supported by the ${driver.driver.name} backend${others.length ? ` (it is a key of: ${others.join(', ')})` : ''}`;
  });
  problems.push(...driver.validate(validated));
  const ctid = validated['openvz.ctid'];
  // Hangar's own CTs are numbered across the daemon (vzctl finds a CT by its CTID alone, on any host); an OpenVZ 7
  // node numbers its own, so there a CTID is taken only by another CT of that node.
  const perNode = driver.driver.storage === 'backend';
  const holder = ctid === undefined ? undefined : d.db.listInstances().find((r) => r.name !== name && r.driver === driver.driver.name && (!perNode || r.host === h.name)
    && (r.config['openvz.ctid'] === ctid || r.pendingConfig['openvz.ctid'] === ctid));
  if (holder) throw new AppError('ALREADY_EXISTS', `CTID ${ctid} is taken by instance "${holder.name}"${h.local && holder.host === h.name ? '' : ` (on host ${holder.host})`}`);
  if (problems.length === 0 && validated['openvz.ipadd']) {
    // Extra venet addresses are routed from this host's subnet, like the instance's own, and are no one else's.
    const taken = takenAddresses(d, name);
    for (const a of validated['openvz.ipadd'].split(' ')) checkAddress(subnetOf(h), a, taken);
  }
  if (problems.length > 0) throw new AppError('UNSUPPORTED', `Invalid config for instance "${name}" on the ${driver.driver.name} backend: ${problems.join('; ')}`, { details: { problems } });
  return validated;
}

/** The rows of the instances on a host. */
function rowsOn(d: InstanceServiceDeps, h: HostContext): InstanceRow[] {
  return d.db.listInstances().filter((r) => r.host === h.name);
}

/** The memory a driver's guarantees come from on a host: its own (Xen's, beside Dom0) or the host's RAM minus the reserve. */
function memoryPoolOf(d: InstanceServiceDeps, h: HostContext, driver: HostDriver): { capacity: number; own: boolean; what: string } {
  const own = driver.memoryCapacityBytes?.();
  if (own !== undefined) return { capacity: own, own: true, what: `the memory ${driver.driver.name} has beside the host's own` };
  return { capacity: h.facts.memoryBytes - d.memoryReserveBytes, own: false, what: `RAM minus a ${formatSize(d.memoryReserveBytes)} reserve` };
}

/** Refuses a start (or a live change) that would overcommit the memory guarantees of its host (of its driver's own memory, where it has one). */
export function admit(d: InstanceServiceDeps, h: HostContext, name: string, config: InstanceConfig, driver: HostDriver): void {
  const want = resourcesOf(config).memoryGuarantee ?? 0;
  if (want === 0) return;
  const pool = memoryPoolOf(d, h, driver);
  let committed = 0;
  for (const r of rowsOn(d, h)) {
    if (r.name === name || r.expectedState === 'stopped') continue;
    // Guarantees from one memory: the driver's own pool holds only its instances; the host's RAM all the others.
    const same = pool.own ? r.driver === driver.driver.name : h.drivers.all().find((x) => x.driver.name === r.driver)?.memoryCapacityBytes?.() === undefined;
    if (same) committed += resourcesOf(r.config).memoryGuarantee ?? 0;
  }
  if (committed + want > pool.capacity) {
    throw new AppError('INSUFFICIENT_RESOURCES', `Cannot start instance "${name}": its memory guarantee of ${formatSize(want)} would raise the guarantees of running instances to ${formatSize(committed + want)}, above the ${formatSize(pool.capacity)} ${h.local ? 'this host' : `host "${h.name}"`} can guarantee (${pool.what})`);
  }
}

/** The cpuset for an instance limited to n CPUs: the n least-used CPUs of its host among running instances. */
export function chooseCpuset(d: InstanceServiceDeps, h: HostContext, name: string, n: number | undefined): string | undefined {
  if (n === undefined) return undefined;
  const load = new Map<number, number>(h.facts.cpuList.map((c) => [c, 0]));
  for (const r of rowsOn(d, h)) {
    if (r.name === name || r.expectedState === 'stopped') continue;
    const cpus = r.cpuset;
    if (!cpus) continue;
    for (const c of cpus.split(',').map(Number)) load.set(c, (load.get(c) ?? 0) + 1);
  }
  const chosen = [...load.entries()].sort((a, b) => a[1] - b[1] || a[0] - b[0]).slice(0, n).map(([c]) => c).sort((a, b) => a - b);
  return chosen.join(',');
}

/**
 * The isolated id map block of an unprivileged container (security.idmap.isolated, default true): its current one, or
 * the lowest no other instance holds; null for VMs, privileged containers and shared maps.
 */
export function idmapBlockFor(d: InstanceServiceDeps, h: HostContext, driver: HostDriver, config: InstanceConfig, current: number | null): number | null {
  if (driver.idmap?.(config) !== 'isolated') return null;
  if (current !== null) return current;
  const range = h.facts.idmapIsolated;
  const where = h.local ? 'This host' : `Host "${h.name}"`;
  if (!range) throw new AppError('INSUFFICIENT_RESOURCES', `${where} has no subordinate id range for isolated id maps (see /etc/subuid); set security.idmap.isolated=false to share one map`);
  // Blocks are a host's own: containers on different hosts may hold the same one.
  const used = new Set(rowsOn(d, h).map((r) => r.idmapBlock).filter((b): b is number => b !== null));
  for (let b = 0; b < range.blocks; b++) if (!used.has(b)) return b;
  throw new AppError('INSUFFICIENT_RESOURCES', `All ${range.blocks} isolated id maps of ${h.local ? 'this host' : `host "${h.name}"`} are in use; set security.idmap.isolated=false to share one map`);
}

/** The pool limit of a root volume: a container's disk limit is a quota on its volume; a VM's is the virtual size of its qcow2 (set by the driver). */
export function volumeLimit(driver: HostDriver, config: InstanceConfig): number | undefined {
  return driver.driver.storage === 'tree' ? resourcesOf(config).diskBytes : undefined;
}

/** The subnet instance addresses on a host come from: the managed network's (one subnet on every host, so addresses stay unique across hosts) or the host's own bridge's. */
export function subnetOf(h: HostContext): Subnet {
  return h.network.subnet;
}

/** Addresses held by instances (on any host): each one's own and its extra venet addresses (openvz.ipadd, set or pending); `except` leaves one instance's extras out. */
export function takenAddresses(d: InstanceServiceDeps, except?: string): Set<string> {
  const out = new Set<string>();
  for (const r of d.db.listInstances()) {
    out.add(r.ipv4);
    if (r.name === except) continue;
    for (const c of [r.config, r.pendingConfig]) for (const a of (c['openvz.ipadd'] ?? '').split(' ').filter(Boolean)) out.add(a);
  }
  return out;
}

/** Refuses a requested address that is malformed, outside the host's subnet, reserved or taken. */
export function checkRequestedAddress(d: InstanceServiceDeps, h: HostContext, ipv4: string, taken: ReadonlySet<string> = takenAddresses(d)): void {
  checkAddress(subnetOf(h), ipv4, taken);
}

/** The address of a new instance on host h: the requested one (checked), else a free one derived from its name. */
export function placeAddress(d: InstanceServiceDeps, h: HostContext, name: string, ipv4: string | undefined, config: InstanceConfig = {}): string {
  // The new instance's own extra venet addresses are not its primary address either.
  const taken = new Set([...takenAddresses(d), ...(config['openvz.ipadd'] ?? '').split(' ').filter(Boolean)]);
  if (ipv4) {
    checkRequestedAddress(d, h, ipv4, taken);
    return ipv4;
  }
  return allocateAddress(subnetOf(h), name, taken);
}

/** A MAC no other instance (on any host) has. */
export function uniqueMac(d: InstanceServiceDeps, name: string): string {
  const used = new Set(d.db.listInstances().map((r) => r.mac));
  for (let i = 0; ; i++) {
    const mac = macFor(`${d.prefix}/${name}/${i}/${Date.now()}`);
    if (!used.has(mac)) return mac;
  }
}

/** Refuses a MAC that is malformed or another instance's (an imported domain keeps its own). */
export function checkRequestedMac(d: InstanceServiceDeps, mac: string): string {
  if (!isValidMac(mac)) throw new AppError('INVALID_ADDRESS', `Invalid MAC address ${JSON.stringify(mac)}`);
  const owner = d.db.listInstances().find((r) => r.mac.toLowerCase() === mac.toLowerCase());
  if (owner) throw new AppError('INVALID_ADDRESS', `MAC address ${mac} is taken by instance "${owner.name}"`);
  return mac.toLowerCase();
}

/**
 * Gives the network of every host that is up the DHCP reservations of every instance (but `without`): one subnet, so a
 * reservation is harmless where its instance is not. The local network and `on` (the host just changed) must take
 * them; another remote host that fails is reported and caught up when it next comes up.
 */
export async function syncLeases(d: InstanceServiceDeps, on?: HostContext, without?: string): Promise<void> {
  const leases = d.db.listInstances().filter((r) => r.name !== without).map((r) => ({ name: r.name, mac: r.mac, ipv4: r.ipv4 }));
  for (const h of d.hosts.up()) {
    if (h.networkProblem) continue;
    // Each network reserves the addresses of its own subnet: the managed one's (shared by every managed host) or a host bridge's.
    const mine = leases.filter((l) => subnetContains(h.network.subnet, l.ipv4));
    if (h.local || h.name === on?.name) await h.network.setLeases(mine);
    else await h.network.setLeases(mine).catch((e: unknown) => d.log?.(`host ${h.name}: DHCP reservations not updated: ${e instanceof Error ? e.message : String(e)}`));
  }
}

/** The container rootfs policy: a tree-storage runtime mounts its root through the pool's second mount (set-uid allowed); image-storage backends get the volume itself. */
export function rootPathOf(h: HostContext, row: InstanceRow): string {
  return h.drivers.get(row.driver).driver.storage === 'tree' ? h.pool.containerRootPath(row.name) : h.pool.instancePath(row.name);
}

/** Everything the driver knows about an instance on its host: its root, directory, id map, NIC, image and CPUs. */
export function recordOf(d: InstanceServiceDeps, h: HostContext, row: InstanceRow): InstanceRecord {
  const subnet = h.network.subnet;
  const image = row.image === '' ? undefined : d.db.getImage(row.image, row.type);
  const iso = h.facts.idmapIsolated;
  const idmap = row.idmapBlock !== null && iso ? { uidStart: iso.uidStart + row.idmapBlock * IDS_PER_CONTAINER, gidStart: iso.gidStart + row.idmapBlock * IDS_PER_CONTAINER, count: IDS_PER_CONTAINER } : undefined;
  return {
    name: row.name, host: row.host, type: row.type, driver: row.driver, image: row.image, config: row.config,
    rootPath: rootPathOf(h, row), instanceDir: instanceDir(h, row.name),
    ...(idmap ? { idmap } : {}),
    nic: { bridge: h.network.info().bridge, hostIfName: h.network.hostIfName(row.name), mac: row.mac, ipv4: row.ipv4, prefixLength: subnet.prefixLength, gateway: subnet.gateway },
    imageProps: image?.props ?? {},
    // A remote host's copy of the image (made at create), in its own pool.
    imagePath: image ? h.pool.imagePath(image.fingerprint) : undefined,
    cpuset: row.cpuset ?? undefined,
    origin: row.origin,
  };
}

/** The instance bound to its driver on a host. */
export function handleIn(d: InstanceServiceDeps, h: HostContext, row: InstanceRow): InstanceHandle {
  return h.drivers.get(row.driver).load(recordOf(d, h, row));
}

/** The instance bound to its driver on its host; HOST_UNREACHABLE when that host is not up. */
export function handleOf(d: InstanceServiceDeps, row: InstanceRow): InstanceHandle {
  return handleIn(d, hostOf(d, row), row);
}
