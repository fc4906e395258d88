// Probes a host for the Xen backend: a Dom0 (/proc/xen/capabilities says control_d) whose `xl info` answers, and the tools next to xl.
import { causeChain, isAppError } from '../../shared/errors.js';
import type { Host } from '../../host/host.js';
import type { DriverProbe } from '../driver.js';
import type { XlInfo } from './parse.js';
import type { Xl } from './xl.js';

/** What the Xen driver keeps about a Dom0: xl info's facts, and which helpers Dom0 has. */
export interface XenFacts {
  info: XlInfo;
  /** QEMU for Xen (the HVM device model, also the qdisk and channel backend), or null when Dom0 has none. */
  deviceModel: string | null;
  /** qemu-img on the Xen host (converts an image's qcow2 disk to raw there), or null. */
  qemuImg: string | null;
  /** Dom0's own memory (`xl list Domain-0`), or null when it could not be read: the rest of Xen's memory is the domUs'. */
  dom0MemoryMiB: number | null;
}

/** Where Debian and upstream builds install QEMU for Xen; the first that exists is the device model. */
export const DEVICE_MODEL_CANDIDATES = ['/usr/lib/xen-4.17/bin/qemu-system-i386', '/usr/lib/xen/bin/qemu-system-i386', '/usr/libexec/xen/bin/qemu-system-i386', '/usr/bin/qemu-system-i386'];

/** Where qemu-img may be. */
export const QEMU_IMG_CANDIDATES = ['/usr/bin/qemu-img', '/usr/local/bin/qemu-img'];

const message = (e: unknown) => [e instanceof Error ? e.message : String(e), ...causeChain(e)].join(': ');

async function firstFile(host: Host, paths: readonly string[]): Promise<string | null> {
  for (const p of paths) {
    const st = await host.fs.stat(p).catch(() => undefined);
    if (st && !st.isDirectory) return p;
  }
  return null;
}

/** Probes host; never throws: unavailable with the reason when xl is missing, the host is no Dom0, or xl info fails. */
export async function probeXen(host: Host, xl: Xl): Promise<{ probe: DriverProbe; facts: XenFacts | null }> {
  const down = (reason: string) => ({ probe: { available: false, version: null, reason }, facts: null });
  const [caps, info] = await Promise.all([
    host.fs.readTextIfExists('/proc/xen/capabilities').catch(() => undefined),
    xl.info().then((i) => ({ ok: true as const, i }), (e: unknown) => ({ ok: false as const, e })),
  ]);
  if (!info.ok) {
    const why = message(info.e);
    if (isAppError(info.e) && info.e.details?.xlNotFound === true) return down(`xl not found on host ${host.name} (install the xen-utils package in Dom0): ${why}`);
    if (caps === undefined) return down(`not a Xen Dom0: host ${host.name} has no /proc/xen/capabilities (not running on Xen, or xenfs is not mounted); xl info failed: ${why}`);
    return down(`xl info failed on host ${host.name}: ${why}`);
  }
  if (!caps?.includes('control_d')) {
    return down(`not a Xen Dom0: /proc/xen/capabilities on host ${host.name} ${caps === undefined ? 'is missing (xenfs not mounted, or not running on Xen)' : `says ${JSON.stringify(caps.trim())}, not control_d (a domU)`}`);
  }
  if (!info.i.xenVersion) return down(`xl info on host ${host.name} printed no xen_version`);
  const [deviceModel, qemuImg, dom0] = await Promise.all([
    firstFile(host, DEVICE_MODEL_CANDIDATES), firstFile(host, QEMU_IMG_CANDIDATES), xl.find('Domain-0').catch(() => null),
  ]);
  return { probe: { available: true, version: info.i.xenVersion, reason: null }, facts: { info: info.i, deviceModel, qemuImg, dom0MemoryMiB: dom0?.memMiB ?? null } };
}
