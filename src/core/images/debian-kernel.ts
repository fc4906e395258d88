// Fetches a Debian kernel package (apt-get download + dpkg-deb -x, never installed), extracts its ELF vmlinux and resolves modules.
import { posix } from 'node:path';
import { AppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';

/** Kernel flavours Debian ships for amd64: `cloud-amd64` (virtio-only, ELF vmlinux boots fastest) and the generic `amd64`. */
export type DebianKernelFlavour = 'cloud-amd64' | 'amd64';

/** A Debian kernel unpacked in the cache. */
export interface DebianKernel {
  /** Kernel release, as `uname -r` shows it (e.g. 6.1.0-56-cloud-amd64). */
  version: string;
  /** Debian package name and version it came from. */
  package: string;
  packageVersion: string;
  /** The bzImage. */
  vmlinuz: string;
  /** The ELF kernel extracted from the bzImage (QEMU -kernel boots it through the PVH entry). */
  vmlinux: string;
  /** True when vmlinux carries the PVH entry note. */
  pvh: boolean;
  /** /lib/modules/<version> inside the unpacked package. */
  modulesDir: string;
  /** /boot/config-<version> inside the unpacked package. */
  configFile: string;
}

/** Options for fetchDebianKernel. */
export interface DebianKernelOptions {
  /** Directory for downloaded and unpacked packages (created if missing); a second fetch downloads nothing. */
  cacheDir: string;
  /** Default cloud-amd64. */
  flavour?: DebianKernelFlavour;
  onProgress?: (msg: string) => void;
}

/** A Debian package unpacked in the cache. */
export interface UnpackedDeb {
  name: string;
  version: string;
  /** Directory the package's data was extracted into. */
  root: string;
}

/** Magic numbers of the compressors a bzImage payload may use, with the host tool that undoes each. */
export const KERNEL_COMPRESSORS = [
  { name: 'gzip', magic: Buffer.from('1f8b08', 'hex'), sizeSuffix: false },
  { name: 'xz', magic: Buffer.from('fd377a585a00', 'hex'), sizeSuffix: true },
  { name: 'zstd', magic: Buffer.from('28b52ffd', 'hex'), sizeSuffix: true },
  { name: 'lz4', magic: Buffer.from('02214c18', 'hex'), sizeSuffix: true },
  { name: 'bzip2', magic: Buffer.from('425a68', 'hex'), sizeSuffix: true },
  { name: 'lzma', magic: Buffer.from('5d000000', 'hex'), sizeSuffix: true },
] as const;

/** Name of one compressor in KERNEL_COMPRESSORS. */
export type KernelCompressor = (typeof KERNEL_COMPRESSORS)[number]['name'];

const ELF_MAGIC = Buffer.from('7f454c46', 'hex');

/** Reads the versioned package a meta package depends on from `apt-cache depends` output (e.g. linux-image-6.1.0-56-cloud-amd64). */
export function parseMetaDepends(output: string, prefix = 'linux-image-'): string | undefined {
  for (const line of output.split('\n')) {
    const m = /^\s*\|?Depends:\s*(\S+)/.exec(line);
    if (m?.[1]?.startsWith(prefix)) return m[1];
  }
  return undefined;
}

/** Reads the `Version:` field from `apt-cache show` output (the first record). */
export function parseAptVersion(output: string): string | undefined {
  return /^Version:\s*(\S+)\s*$/m.exec(output)?.[1];
}

/** A file-name-safe form of a package version (epoch colons and other odd characters become _). */
export function safeVersion(version: string): string {
  return version.replace(/[^A-Za-z0-9.+~-]/g, '_');
}

/** Where the bzImage's compressed payload lies according to its setup header, or undefined when the header is not a bzImage's. */
export function bzImagePayload(buf: Buffer): { offset: number; length: number } | undefined {
  if (buf.length < 0x250 || buf.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined;
  const setupSects = buf[0x1f1] || 4;
  const pm = (setupSects + 1) * 512;
  const offset = pm + buf.readUInt32LE(0x248);
  const length = buf.readUInt32LE(0x24c);
  if (offset <= pm || length === 0 || offset + length > buf.length) return undefined;
  return { offset, length };
}

/** Candidate compressed payloads of a bzImage, best first: the header's payload, then every compressor magic found (as scripts/extract-vmlinux does). */
export function payloadCandidates(buf: Buffer): { compressor: KernelCompressor; offset: number; length: number }[] {
  const out: { compressor: KernelCompressor; offset: number; length: number }[] = [];
  const hdr = bzImagePayload(buf);
  if (hdr) {
    const c = KERNEL_COMPRESSORS.find((k) => buf.subarray(hdr.offset, hdr.offset + k.magic.length).equals(k.magic));
    if (c) out.push({ compressor: c.name, offset: hdr.offset, length: c.sizeSuffix ? hdr.length - 4 : hdr.length });
  }
  for (const c of KERNEL_COMPRESSORS) {
    for (let i = buf.indexOf(c.magic); i >= 0; i = buf.indexOf(c.magic, i + 1)) {
      if (!out.some((o) => o.offset === i)) out.push({ compressor: c.name, offset: i, length: buf.length - i });
    }
  }
  return out;
}

/** True when buf is an ELF64 image with a Xen PHYS32_ENTRY note (the PVH entry point QEMU's -kernel uses). */
export function hasPvhNote(buf: Buffer): boolean {
  if (buf.length < 64 || !buf.subarray(0, 4).equals(ELF_MAGIC) || buf[4] !== 2 || buf[5] !== 1) return false;
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 0x28 > buf.length || buf.readUInt32LE(ph) !== 4 /* PT_NOTE */) continue;
    let p = Number(buf.readBigUInt64LE(ph + 8));
    const end = Math.min(buf.length, p + Number(buf.readBigUInt64LE(ph + 0x20)));
    while (p + 12 <= end) {
      const namesz = buf.readUInt32LE(p);
      const descsz = buf.readUInt32LE(p + 4);
      const type = buf.readUInt32LE(p + 8);
      const name = buf.toString('latin1', p + 12, p + 12 + Math.max(0, namesz - 1));
      if (name === 'Xen' && type === 18 /* XEN_ELFNOTE_PHYS32_ENTRY */) return true;
      p += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
    }
  }
  return false;
}

function decompressArgv(c: KernelCompressor, input: string, output: string): string[] {
  switch (c) {
    case 'gzip': return ['gzip', '-d', '-c', '-q', input];
    case 'xz': return ['xz', '-d', '-c', '-q', '--single-stream', input];
    case 'lzma': return ['xz', '--format=lzma', '-d', '-c', '-q', input];
    case 'zstd': return ['zstd', '-d', '-q', '-f', input, '-o', output];
    case 'lz4': return ['lz4', '-d', '-q', '-f', input, output];
    case 'bzip2': return ['bzip2', '-d', '-c', '-q', input];
  }
}

/** Extracts the ELF vmlinux from a bzImage into out, decompressing with the host's tools; returns the compressor used. */
export async function extractVmlinux(host: Host, vmlinuz: string, out: string): Promise<{ compressor: KernelCompressor; pvh: boolean }> {
  const buf = await host.fs.readFile(vmlinuz);
  // Unique names: two builds may extract the same cached kernel at once; the rename at the end is atomic.
  const tag = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const tmp = `${out}.payload-${tag}`;
  const tmpOut = `${out}.tmp-${tag}`;
  const tried: string[] = [];
  try {
    for (const cand of payloadCandidates(buf).slice(0, 64)) {
      await host.fs.writeAtomic(tmp, buf.subarray(cand.offset, cand.offset + cand.length));
      await host.fs.rm(tmpOut, { force: true });
      const argv = decompressArgv(cand.compressor, tmp, tmpOut);
      // gzip, xz and bzip2 have no output-file option; a trailing-garbage complaint still leaves a good image, so the exit code is not decisive.
      const res = argv.includes(tmpOut)
        ? await host.exec(argv, { allowFailure: true, timeoutMs: 120_000 }).then((r) => ({ err: r.stderr }))
        : await execToFile(host, argv, tmpOut);
      const st = await host.fs.stat(tmpOut);
      if (st?.isFile && st.size > 1024 * 1024) {
        const elf = await host.fs.readFile(tmpOut);
        if (elf.subarray(0, 4).equals(ELF_MAGIC)) {
          await host.fs.rename(tmpOut, out);
          return { compressor: cand.compressor, pvh: hasPvhNote(elf) };
        }
      }
      tried.push(`${cand.compressor}@${cand.offset}${res.err ? `: ${res.err.trim().split('\n')[0]}` : ''}`);
    }
  } finally {
    await host.fs.rm(tmp, { force: true });
    await host.fs.rm(tmpOut, { force: true });
  }
  throw new AppError('BACKEND_FAILED', `Failed to extract an ELF vmlinux from ${vmlinuz}`, { cause: new Error(tried.length ? `tried ${tried.join('; ')}` : 'no compressed payload found') });
}

// Runs a decompressor that only writes to stdout and streams its output into a file (Host.exec returns text, not bytes).
async function execToFile(host: Host, argv: string[], out: string): Promise<{ err: string }> {
  const proc = host.spawn(argv);
  proc.stdin?.end();
  const chunks: Buffer[] = [];
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
  const read = (async () => { if (proc.stdout) for await (const c of proc.stdout) chunks.push(c as Buffer); })();
  await Promise.all([proc.wait(), read]);
  await host.fs.writeAtomic(out, Buffer.concat(chunks));
  return { err };
}

/** Downloads (apt-get download, no install) and unpacks a Debian package into cacheDir/<name>_<version>/, reusing it when present. */
export async function fetchDebPackage(host: Host, name: string, cacheDir: string, onProgress?: (msg: string) => void): Promise<UnpackedDeb> {
  const progress = onProgress ?? (() => undefined);
  await host.fs.mkdir(cacheDir, { recursive: true });
  const show = await host.exec(['apt-cache', 'show', '--no-all-versions', name], { allowFailure: true });
  const version = show.code === 0 ? parseAptVersion(show.stdout) : undefined;
  if (!version) {
    // No apt lists (or no such package in them): an earlier download of the package still serves.
    const cached = await cachedVersions(host, cacheDir, name);
    const last = cached[cached.length - 1];
    if (last) return { name, version: last.version, root: last.root };
    throw new AppError('NOT_FOUND', `Failed to find the Debian package ${name}: apt-cache knows no candidate version (run apt-get update?)`, {
      cause: new Error(show.stderr.trim() || 'no Version field'),
    });
  }
  const root = posix.join(cacheDir, `${name}_${safeVersion(version)}`);
  if ((await host.fs.stat(root))?.isDirectory) return { name, version, root };

  const work = `${root}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await host.fs.mkdir(work, { recursive: true });
  try {
    progress(`Downloading ${name} ${version}`);
    // The sandbox user _apt cannot write into a root-owned cache directory; downloading as root is what apt does then anyway.
    await host.exec(['apt-get', 'download', '-q', '-o', 'APT::Sandbox::User=root', `${name}=${version}`], { cwd: work, timeoutMs: 600_000 }).catch((e: unknown) => {
      throw new AppError('HOST_FAILED', `Failed to download the Debian package ${name} ${version}`, { cause: e });
    });
    const deb = (await host.fs.readdir(work)).find((f) => f.endsWith('.deb'));
    if (!deb) throw new AppError('HOST_FAILED', `Failed to download the Debian package ${name} ${version}: apt-get left no .deb in ${work}`);
    progress(`Unpacking ${name} ${version}`);
    await host.exec(['dpkg-deb', '-x', posix.join(work, deb), posix.join(work, 'root')], { timeoutMs: 600_000 });
    try {
      await host.fs.rename(posix.join(work, 'root'), root);
    } catch (e) {
      // A concurrent build got there first: its copy is complete (renames are atomic).
      if (!(await host.fs.stat(root))?.isDirectory) throw e;
    }
  } finally {
    await host.fs.rm(work, { recursive: true, force: true });
  }
  return { name, version, root };
}

async function cachedVersions(host: Host, cacheDir: string, name: string): Promise<{ version: string; root: string }[]> {
  const names = await host.fs.readdir(cacheDir).catch(() => [] as string[]);
  return names
    .filter((n) => n.startsWith(`${name}_`) && !n.includes('.tmp-'))
    .sort()
    .map((n) => ({ version: n.slice(name.length + 1), root: posix.join(cacheDir, n) }));
}

/** Fetches the Debian kernel of a flavour into the cache and extracts its ELF vmlinux there (once). */
export async function fetchDebianKernel(host: Host, opts: DebianKernelOptions): Promise<DebianKernel> {
  const flavour = opts.flavour ?? 'cloud-amd64';
  const meta = `linux-image-${flavour}`;
  const progress = opts.onProgress ?? (() => undefined);
  const dep = await host.exec(['apt-cache', 'depends', '--no-recommends', '--no-suggests', meta], { allowFailure: true });
  let pkg = dep.code === 0 ? parseMetaDepends(dep.stdout) : undefined;
  if (!pkg) {
    const names = await host.fs.readdir(opts.cacheDir).catch(() => [] as string[]);
    const re = new RegExp(`^(linux-image-\\d[^_]*-${flavour.replace(/[-]/g, '\\-')})_`);
    pkg = names.filter((n) => re.test(n) && !n.includes('.tmp-')).sort().map((n) => re.exec(n)![1]).pop();
    if (!pkg) throw new AppError('NOT_FOUND', `Failed to resolve the Debian kernel package ${meta} (run apt-get update?)`, { cause: new Error(dep.stderr.trim() || 'no linux-image dependency') });
  }
  const deb = await fetchDebPackage(host, pkg, opts.cacheDir, progress);
  const version = pkg.slice('linux-image-'.length);
  const modulesDir = posix.join(deb.root, 'lib/modules', version);
  const vmlinuz = posix.join(deb.root, 'boot', `vmlinuz-${version}`);
  const configFile = posix.join(deb.root, 'boot', `config-${version}`);
  for (const p of [modulesDir, vmlinuz, configFile]) {
    if (!(await host.fs.stat(p))) throw new AppError('BACKEND_FAILED', `The Debian kernel package ${pkg} ${deb.version} has no ${p.slice(deb.root.length)}`);
  }
  const vmlinux = posix.join(deb.root, 'boot', `vmlinux-${version}`);
  let pvh: boolean;
  if ((await host.fs.stat(vmlinux))?.isFile) {
    pvh = hasPvhNote(await host.fs.readFile(vmlinux));
  } else {
    progress(`Extracting vmlinux from vmlinuz-${version}`);
    pvh = (await extractVmlinux(host, vmlinuz, vmlinux)).pvh;
  }
  return { version, package: pkg, packageVersion: deb.version, vmlinuz, vmlinux, pvh, modulesDir, configFile };
}

/** Parses a kernel .config into option → value (y, m, a string or number); unset options are absent. */
export function parseKernelConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined) out.set(m[1], m[2].replace(/^"(.*)"$/, '$1'));
  }
  return out;
}

/** Reads the fields of a .ko file's .modinfo section (key → values), e.g. depends, name, vermagic. */
export function parseModinfo(ko: Buffer): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const key of ['depends', 'name', 'vermagic', 'softdep']) {
    const needle = Buffer.from(`\0${key}=`);
    for (let i = ko.indexOf(needle); i >= 0; i = ko.indexOf(needle, i + 1)) {
      const start = i + needle.length;
      const end = ko.indexOf(0, start);
      if (end < 0) break;
      const list = out.get(key) ?? [];
      list.push(ko.toString('latin1', start, end));
      out.set(key, list);
    }
  }
  return out;
}

/** Normalises a module name (dashes and underscores are the same to the kernel). */
export function moduleName(nameOrPath: string): string {
  return posix.basename(nameOrPath).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** Modules to load for a set of names: load lists .ko paths (relative to modulesDir) dependencies first; builtin and missing list the rest. */
export interface ModulePlan {
  load: string[];
  builtin: string[];
  missing: string[];
}

/** Resolves module names against a kernel's modules.order/modules.builtin and each .ko's depends= field (no depmod needed). */
export async function resolveKernelModules(host: Host, modulesDir: string, names: readonly string[]): Promise<ModulePlan> {
  const index = new Map<string, string>();
  for (const rel of (await host.fs.readText(posix.join(modulesDir, 'modules.order'))).split('\n').map((l) => l.trim()).filter(Boolean)) {
    index.set(moduleName(rel), rel);
  }
  const builtinSet = new Set(((await host.fs.readTextIfExists(posix.join(modulesDir, 'modules.builtin'))) ?? '').split('\n').filter(Boolean).map(moduleName));
  const plan: ModulePlan = { load: [], builtin: [], missing: [] };
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = async (raw: string): Promise<void> => {
    const name = moduleName(raw);
    if (done.has(name) || visiting.has(name)) return;
    visiting.add(name);
    const rel = index.get(name);
    if (rel && (await host.fs.stat(posix.join(modulesDir, rel)))?.isFile) {
      if (!/\.ko$/.test(rel)) throw new AppError('UNSUPPORTED', `Kernel module ${rel} is compressed; only plain .ko files are supported`);
      const info = parseModinfo(await host.fs.readFile(posix.join(modulesDir, rel)));
      for (const d of (info.get('depends') ?? []).flatMap((v) => v.split(',')).filter(Boolean)) await visit(d);
      plan.load.push(rel);
    } else if (builtinSet.has(name)) {
      plan.builtin.push(name);
    } else {
      plan.missing.push(name);
    }
    done.add(name);
  };
  for (const n of names) await visit(n);
  return plan;
}
