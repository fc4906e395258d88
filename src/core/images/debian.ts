// Debian image builder: debootstrap (minbase + systemd) into a directory, cached as a rootfs tarball, then made container-ready.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import { mountPointsUnder } from '../../host/mounts.js';

/** Options for buildDebianRootfs. */
export interface DebianBuildOptions {
  /** Debian suite codename (default bookworm). */
  release: string;
  /** Debian mirror URL, e.g. http://deb.debian.org/debian. */
  mirror: string;
  /** Directory holding cached rootfs tarballs (created if missing). */
  cacheDir: string;
  /** Ignore (and replace) an existing cached tarball. */
  refresh?: boolean;
  onProgress?: (msg: string) => void;
}

/** Suites known to work with this builder; other lower-case codenames are accepted but untested. */
export const KNOWN_DEBIAN_RELEASES = ['bullseye', 'bookworm', 'trixie', 'forky', 'sid'] as const;

/** Packages added to debootstrap's minbase variant. */
export const DEBIAN_INCLUDES = ['systemd-sysv', 'iproute2', 'procps', 'iputils-ping'] as const;

/** Units masked because they fight LXC or hang without real hardware. */
export const DEBIAN_MASKED_UNITS = ['sys-kernel-debug.mount', 'udev.service', 'systemd-udevd.service', 'systemd-udev-trigger.service', 'systemd-udev-settle.service', 'getty-static.service', 'systemd-networkd-wait-online.service'] as const;

/** Checks a release codename and mirror URL; throws INVALID_ARGUMENT. */
export function validateDebianOptions(release: string, mirror: string): void {
  if (!/^[a-z]{2,20}$/.test(release)) {
    throw new AppError('INVALID_ARGUMENT', `Invalid Debian release ${JSON.stringify(release)}: expected a codename such as ${KNOWN_DEBIAN_RELEASES.join(', ')}`);
  }
  if (!/^https?:\/\/[A-Za-z0-9.-]+(:\d+)?(\/[A-Za-z0-9._~%/+-]*)?$/.test(mirror)) {
    throw new AppError('INVALID_ARGUMENT', `Invalid Debian mirror ${JSON.stringify(mirror)}: expected an http(s) URL`);
  }
}

/** Name of the cached rootfs tarball for a release and architecture (the include list is part of the key). */
export function debianCacheName(release: string, arch: string): string {
  const key = createHash('sha256').update(DEBIAN_INCLUDES.join(',')).digest('hex').slice(0, 8);
  return `debian-${release}-${arch}-minbase-${key}.tar.zst`;
}

/** Renders /etc/apt/sources.list for a mirror (security from the matching debian-security path when the mirror ends in /debian). */
export function renderSourcesList(release: string, mirror: string): string {
  const base = mirror.replace(/\/+$/, '');
  const lines = [`deb ${base} ${release} main`];
  if (release !== 'sid') {
    lines.push(`deb ${base} ${release}-updates main`);
    if (base.endsWith('/debian')) lines.push(`deb ${base}-security ${release}-security main`);
  }
  return lines.join('\n') + '\n';
}

/** Extracts the interesting part of a debootstrap output line, or undefined for noise. */
export function parseDebootstrapLine(line: string): string | undefined {
  const m = /^([IWE]): (.*)$/.exec(line.trim());
  if (!m) return undefined;
  return m[1] === 'I' ? m[2] : `${m[1] === 'W' ? 'warning' : 'error'}: ${m[2]}`;
}

/** Builds a Debian rootfs into destDir (which must exist and be empty); returns image properties and a description. */
export async function buildDebianRootfs(host: Host, destDir: string, opts: DebianBuildOptions): Promise<{ props: Record<string, string>; description: string }> {
  const release = opts.release || 'bookworm';
  validateDebianOptions(release, opts.mirror);
  const progress = opts.onProgress ?? (() => undefined);
  const existing = await host.fs.readdir(destDir).catch((e: unknown) => {
    throw new AppError('NOT_FOUND', `Image directory ${destDir} does not exist`, { cause: e });
  });
  if (existing.length > 0) throw new AppError('INVALID_STATE', `Image directory ${destDir} is not empty`);

  const arch = (await host.exec(['dpkg', '--print-architecture'])).stdout.trim();
  await host.fs.mkdir(opts.cacheDir, { recursive: true });
  const cacheFile = `${opts.cacheDir}/${debianCacheName(release, arch)}`;
  const cached = !opts.refresh && (await host.fs.stat(cacheFile))?.isFile === true;

  if (!cached) {
    // debootstrap makes device nodes in its target, which the pool (mounted nodev) refuses: it runs in a staging
    // directory beside the cache, whose tarball the image is then unpacked from like any cached one.
    const stage = `${opts.cacheDir}/.debootstrap-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    try {
      await host.fs.mkdir(stage, { mode: 0o755 });
      await runDebootstrap(host, stage, { release, mirror: opts.mirror, includes: DEBIAN_INCLUDES, what: `Debian ${release}` }, progress);
      await cleanBuildLeftovers(host, stage);
      progress(`Saving Debian ${release} rootfs to the cache`);
      const tmp = `${cacheFile}.${Date.now()}-${Math.random().toString(36).slice(2, 8)}.tmp`;
      try {
        await host.exec(['tar', '-c', '--zstd', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', stage, '-f', tmp, '.']);
        await host.fs.rename(tmp, cacheFile);
      } catch (e) {
        await host.fs.rm(tmp, { force: true });
        throw new AppError('HOST_FAILED', `Failed to save the Debian ${release} rootfs to the cache ${cacheFile}`, { cause: e });
      }
    } finally {
      await unmountUnder(host, stage);
      await host.fs.rm(stage, { recursive: true, force: true });
    }
  }
  progress(`Unpacking ${cached ? 'cached ' : ''}Debian ${release} rootfs`);
  try {
    await host.exec(['tar', '-x', '--zstd', '--numeric-owner', '-p', '--xattrs', '--xattrs-include=*', '-C', destDir, '-f', cacheFile]);
  } catch (e) {
    throw new AppError('HOST_FAILED', `Failed to unpack the cached Debian ${release} rootfs ${cacheFile}`, { cause: e });
  }

  progress('Preparing the rootfs for containers');
  await makeContainerReady(host, destDir, release, opts.mirror);
  return {
    props: { haltSignal: 'SIGRTMIN+3', init: '/sbin/init', os: 'debian', release, architecture: arch },
    description: `Debian ${release} ${arch} (minbase, systemd)`,
  };
}

/** Runs debootstrap (minbase plus includes) into dir, reporting its progress lines; never leaves host mounts behind. */
export async function runDebootstrap(host: Host, dir: string, opts: { release: string; mirror: string; includes: readonly string[]; what: string }, progress: (msg: string) => void): Promise<void> {
  const argv = ['debootstrap', '--variant=minbase', `--include=${opts.includes.join(',')}`, '--components=main', opts.release, dir, opts.mirror];
  progress(`Running debootstrap for ${opts.what} (a few minutes)`);
  const proc = host.spawn(argv, { env: { DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' } });
  proc.stdin?.end();
  const tail: string[] = [];
  const onLine = (line: string) => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
    const msg = parseDebootstrapLine(line);
    if (msg !== undefined) progress(msg);
  };
  const [exit] = await Promise.all([proc.wait(), readLines(proc.stdout, onLine), readLines(proc.stderr, onLine)]);
  // debootstrap unmounts what it mounted, but a killed run may not; never leave host mounts inside an image.
  await unmountUnder(host, dir);
  if (exit.code !== 0) {
    throw new AppError('HOST_FAILED', `debootstrap of ${opts.what} from ${opts.mirror} failed (${exit.signal ?? `exit code ${exit.code}`})`, {
      cause: new Error(tail.join('\n').trim() || 'no output'),
    });
  }
}

async function readLines(stream: Readable | null, onLine: (line: string) => void): Promise<void> {
  if (!stream) return;
  let buf = '';
  stream.setEncoding('utf8');
  for await (const chunk of stream as AsyncIterable<string>) {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  }
  if (buf) onLine(buf);
}

/** Unmounts anything mounted at or below dir (deepest first). */
export async function unmountUnder(host: Host, dir: string): Promise<void> {
  const mounts = await mountPointsUnder(host, dir);
  for (const m of mounts.sort((a, b) => b.length - a.length)) {
    await host.exec(['umount', '-l', m], { allowFailure: true });
  }
}

/** Removes downloaded packages, apt lists and debootstrap's own files from a finished tree. */
export async function cleanBuildLeftovers(host: Host, root: string): Promise<void> {
  for (const dir of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
    const names = await host.fs.readdir(`${root}/${dir}`).catch(() => [] as string[]);
    for (const n of names) {
      if (n.endsWith('.deb') || (dir === 'var/lib/apt/lists' && n !== 'partial' && n !== 'lock')) await host.fs.rm(`${root}/${dir}/${n}`, { force: true });
    }
  }
  await host.fs.rm(`${root}/debootstrap`, { recursive: true, force: true });
}

/** Writes a file inside a tree, creating its directory and replacing (never following) whatever is there. */
export async function writeInRoot(host: Host, root: string, rel: string, data: string, mode = 0o644): Promise<void> {
  const path = `${root}/${rel}`;
  await host.fs.mkdir(path.slice(0, path.lastIndexOf('/')), { recursive: true });
  await host.fs.rm(path, { force: true });
  await host.fs.writeAtomic(path, data, mode);
}

async function makeContainerReady(host: Host, root: string, release: string, mirror: string): Promise<void> {
  // An empty machine-id makes systemd generate a fresh one on first boot, so copies of the image differ.
  await writeInRoot(host, root, 'etc/machine-id', '', 0o444);
  await host.fs.rm(`${root}/var/lib/dbus/machine-id`, { force: true });
  // debootstrap copies the build host's hostname and resolv.conf; the instance service writes real ones.
  await writeInRoot(host, root, 'etc/hostname', 'localhost\n');
  await writeInRoot(host, root, 'etc/hosts', '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n');
  await writeInRoot(host, root, 'etc/resolv.conf', '');
  await writeInRoot(host, root, 'etc/fstab', '# Mounts are set up by the container manager.\n');
  await writeInRoot(host, root, 'etc/apt/sources.list', renderSourcesList(release, mirror));
  // debootstrap creates device nodes; LXC mounts its own /dev, and images with devices would not pass import checks.
  for (const name of await host.fs.readdir(`${root}/dev`).catch(() => [] as string[])) {
    const st = await host.fs.stat(`${root}/dev/${name}`);
    if (st && !st.isDirectory) await host.fs.rm(`${root}/dev/${name}`, { force: true });
  }
  const unitDir = `${root}/etc/systemd/system`;
  await host.fs.mkdir(unitDir, { recursive: true });
  for (const unit of DEBIAN_MASKED_UNITS) {
    await host.fs.rm(`${unitDir}/${unit}`, { force: true });
    await host.fs.symlink('/dev/null', `${unitDir}/${unit}`);
  }
  await host.fs.rm(`${unitDir}/default.target`, { force: true });
  await host.fs.symlink('/lib/systemd/system/multi-user.target', `${unitDir}/default.target`);
  const init = await host.fs.stat(`${root}/sbin/init`);
  if (!init) throw new AppError('BACKEND_FAILED', `The Debian ${release} rootfs in ${root} has no /sbin/init`);
}
