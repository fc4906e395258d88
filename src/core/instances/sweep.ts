// The first and last steps of a reconciliation: the tools an ended daemon left running are let finish (or ended), and what Hangar made on a host for instances it no longer has (directories, host-side interfaces, backend leftovers such as VM cgroups) is removed; volumes are only reported.
import { posix } from 'node:path';
import { nameProblem } from '../../shared/names.js';
import { procStatField } from '../../host/procfs.js';
import type { HostContext } from '../hosts/context.js';
import { instanceDir, lockKey, type InstanceServiceDeps } from './context.js';
import { handleIn } from './placement.js';

/** How long the tools an ended daemon left running get to finish before they are killed. */
export const ORPHAN_TOOL_GRACE_MS = 10_000;

/** Short-lived commands Hangar runs against its own files; services it starts (dnsmasq, lxcfs, QEMU, xl, an LXC monitor) and execs (journaled apart) are not among them. */
function isTool(argv0: string): boolean {
  const b = posix.basename(argv0);
  if (b.startsWith('lxc-')) return !['lxc-attach', 'lxc-console', 'lxc-monitord'].includes(b);
  return ['qemu-img', 'cp', 'rsync', 'tar', 'btrfs', 'mkfs.ext4', 'e2fsck', 'resize2fs', 'mount', 'umount', 'truncate'].includes(b);
}

/**
 * The tools a daemon that ended (killed) had started on this host and that still run: orphans (their parent is now
 * pid 1) whose arguments name a path under the host's state directory, e.g. an lxc-freeze of a snapshot's freeze,
 * which would go on freezing its container after the next daemon thawed it.
 */
async function orphanTools(h: HostContext): Promise<number[]> {
  const stateDir = posix.dirname(h.instancesDir);
  const pids = (await h.host.fs.readdir('/proc')).filter((p) => /^\d+$/.test(p));
  const files = await h.host.fs.readMany(pids.flatMap((p) => [`/proc/${p}/cmdline`, `/proc/${p}/stat`]));
  const out: number[] = [];
  pids.forEach((p, i) => {
    const argv = (files[2 * i] ?? '').split('\0').filter(Boolean);
    const stat = files[2 * i + 1];
    if (!stat || argv.length === 0 || !isTool(argv[0]!) || procStatField(stat, 4) !== 1) return;
    if (argv.some((a) => a === stateDir || a.startsWith(`${stateDir}/`))) out.push(Number(p));
  });
  return out;
}

/** Lets the tools an ended daemon left running finish (they may be mid-write), killing what is still there after the grace; reported as drift. */
export async function settleOrphanTools(d: InstanceServiceDeps, h: HostContext, graceMs = ORPHAN_TOOL_GRACE_MS): Promise<void> {
  let left = await orphanTools(h).catch(() => []);
  if (left.length === 0) return;
  const waited = left.length;
  for (const deadline = Date.now() + graceMs; left.length > 0 && Date.now() < deadline;) {
    await new Promise((r) => setTimeout(r, 50));
    const now = new Set(await orphanTools(h).catch(() => []));
    left = left.filter((p) => now.has(p));
  }
  for (const pid of left) await h.host.kill(pid, 'SIGKILL');
  d.events.emit({
    type: 'instance-drift',
    message: `${waited} command${waited === 1 ? '' : 's'} the previous hangard started on host "${h.name}" still ran: ${left.length === 0 ? 'waited for' : `${waited - left.length} waited for, ${left.length} killed after ${graceMs / 1000} s`}`,
    data: { host: h.name, repair: left.length === 0 ? 'tools-waited' : 'tools-killed', waited, killed: left },
  });
}

/** The host-side interface names of a network: its prefix and 8 hex digits (network.hostIfName). */
function hostIfPattern(h: HostContext): RegExp {
  const prefix = h.network.hostIfName('').slice(0, -8);
  return new RegExp(`^${prefix}[0-9a-f]{8}$`);
}

/**
 * Removes what no instance of this host owns: an instance directory without a row (under that name's lock, so no
 * create is in the middle of making it), a veth or tap of Hangar's naming whose instance is gone or stopped, and what
 * each driver's sweep finds; a root volume without a row is reported and kept (its data may be someone's). Every
 * repair is an instance-drift event with data.repair.
 */
export async function sweepHost(d: InstanceServiceDeps, h: HostContext): Promise<void> {
  const drift = (instance: string | undefined, message: string, data: Record<string, unknown>) =>
    d.events.emit({ type: 'instance-drift', ...(instance ? { instance } : {}), message, data: { host: h.name, ...data } });
  // One row lookup per name (names are unique across hosts), not a listing per directory or interface.
  const known = (name: string) => d.db.getInstance(name)?.host === h.name;

  for (const name of (await h.host.fs.stat(h.instancesDir)) ? await h.host.fs.readdir(h.instancesDir) : []) {
    if (nameProblem(name) !== undefined || known(name)) continue;
    await d.locks.withLock(lockKey(name), async () => {
      if (known(name)) return;
      await h.host.fs.rm(instanceDir(h, name), { recursive: true, force: true });
      const elsewhere = d.db.getInstance(name)?.host;
      drift(name, `Instance directory of "${name}" on host "${h.name}", ${elsewhere ? `which lives on host "${elsewhere}"` : 'which Hangar does not have'}, is removed`, { repair: 'directory-removed', path: instanceDir(h, name) });
    });
  }

  // The kernel's list of interfaces, read as files (no fork; over SFTP on a remote host).
  const ours = hostIfPattern(h);
  const links = (await h.host.fs.readdir('/sys/class/net').catch(() => [] as string[])).filter((n) => ours.test(n));
  const ownerOf = links.length === 0 ? new Map<string, { name: string }>() : new Map(d.db.listInstances().filter((r) => r.host === h.name).map((r) => [h.network.hostIfName(r.name), r] as const));
  for (const ifname of links) {
    const owner = ownerOf.get(ifname);
    const remove = async (why: string) => {
      const del = await h.host.exec(['ip', 'link', 'del', ifname], { allowFailure: true });
      if (del.code === 0) drift(owner?.name, `Interface ${ifname} ${why}: it is removed`, { repair: 'interface-removed', interface: ifname });
    };
    if (!owner) {
      await remove('belongs to no instance Hangar has');
      continue;
    }
    // Under the owner's lock: a start that is making the interface right now has finished by then.
    await d.locks.withLock(lockKey(owner.name), async () => {
      if (d.db.getInstance(owner.name)?.expectedState === 'stopped') await remove(`outlived instance "${owner.name}", which is stopped`);
    });
  }

  for (const hd of h.drivers.all()) {
    for (const name of await hd.leftovers?.().catch(() => []) ?? []) {
      await d.locks.withLock(lockKey(name), async () => {
        // Only an instance of this driver on this host that is not stopped keeps what it holds here.
        const found = d.db.getInstance(name);
        const row = found && found.host === h.name && found.driver === hd.driver.name ? found : undefined;
        if (row && (row.expectedState !== 'stopped' || (await handleIn(d, h, row).state()).state !== 'stopped')) return;
        for (const what of await hd.clearLeftovers?.(name).catch(() => []) ?? []) {
          drift(name, `${what}, left for ${row ? `stopped instance "${name}"` : 'an instance Hangar does not have'}, is removed`, { repair: 'backend-removed', driver: hd.driver.name, what });
        }
      });
    }
  }

  for (const vol of await h.pool.instanceNames().catch(() => [])) {
    if (!known(vol)) drift(vol, `Root volume "${vol}" in the storage pool belongs to no instance Hangar has: it is kept (delete it by hand if it is not needed)`, { repair: 'volume-kept', volume: vol });
  }
}
