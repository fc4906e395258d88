// lxcfs management: one lxcfs per daemon at settings.lxcfsDir, started detached and adopted on restart.
import { join } from 'node:path';
import type { Host } from '../../host/host.js';
import { readMounts, type MountEntry } from '../../host/mounts.js';

/** Starts (or adopts) lxcfs; returns the mount point, or null when lxcfs is unavailable. */
export async function ensureLxcfs(host: Host, dir: string, runDir: string): Promise<string | null> {
  if (isLxcfsMounted(await readMounts(host), dir)) {
    // A mount whose lxcfs died answers ENOTCONN: drop it and start a new lxcfs.
    const alive = await host.fs.readTextIfExists(join(dir, 'proc/uptime')).then(() => true, () => false);
    if (alive) return dir;
    await host.exec(['umount', '-l', dir], { allowFailure: true });
  }
  const bin = await host.exec(['which', 'lxcfs'], { allowFailure: true });
  if (bin.code !== 0) return null;
  await host.fs.mkdir(dir, { recursive: true });
  // Own session, stdio to a log file: lxcfs outlives hangard; its pidfile lets us find it again.
  host.spawn(['lxcfs', '--foreground', '-p', join(runDir, 'lxcfs.pid'), dir], { detached: true, logFile: join(runDir, 'lxcfs.log') });
  for (let i = 0; i < 50; i++) {
    if (isLxcfsMounted(await readMounts(host), dir)) return dir;
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}

/** True when a fuse.lxcfs file system is mounted at dir. */
export function isLxcfsMounted(mounts: readonly MountEntry[], dir: string): boolean {
  return mounts.some((m) => m.mountPoint === dir && m.fsType === 'fuse.lxcfs');
}
