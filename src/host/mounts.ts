// The mount table: /proc/self/mountinfo parsed once for everyone (the pool, image builds, lxcfs), pure or read through Host.
import type { Host } from './host.js';

/** One line of /proc/self/mountinfo. */
export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
  /** Per-mount options (rw, nosuid, nodev, ...). */
  options: string;
  /** File system options; "ro" here means the file system itself went read-only (btrfs after an aborted transaction). */
  superOptions: string;
}

/** Decodes the octal escapes (\040 for space, ...) the kernel uses in mountinfo fields. */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses /proc/self/mountinfo. */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (f.length < 10 || sep < 0) continue;
    out.push({ mountPoint: unescapeMountField(f[4]!), options: f[5]!, fsType: f[sep + 1]!, source: unescapeMountField(f[sep + 2]!), superOptions: f[sep + 3] ?? '' });
  }
  return out;
}

/** The mount whose mount point is exactly path (the last one wins, as it hides the others), or undefined. */
export function findMount(mountinfo: string, path: string): MountEntry | undefined {
  return parseMountInfo(mountinfo).filter((m) => m.mountPoint === path).pop();
}


/** Mount points strictly below dir (octal escapes decoded). */
export async function mountPointsUnder(host: Host, dir: string): Promise<string[]> {
  const root = dir.replace(/\/+$/, '');
  return parseMountInfo((await host.fs.readTextIfExists('/proc/self/mountinfo')) ?? '').map((m) => m.mountPoint).filter((mp) => mp.startsWith(`${root}/`));
}
