// The driver registry: every backend Hangar has, by name (a new backend is its folder plus one line here), and the set a daemon opens.
import { AppError } from '../shared/errors.js';
import type { InstanceType } from '../shared/schemas.js';
import type { Driver, DriverEnv, HostDriver } from './driver.js';
import { fakeDriver } from './fake/driver.js';
import { lxcDriver } from './lxc/driver.js';
import { openvzDriver } from './openvz/driver.js';
import { openvz7Driver } from './openvz7/driver.js';
import { qemuDriver } from './qemu/driver.js';
import { xenDriver } from './xen/driver.js';

/** Every backend Hangar has. */
export const ALL_DRIVERS: readonly Driver[] = [lxcDriver, qemuDriver, fakeDriver, xenDriver, openvzDriver, openvz7Driver];

/**
 * The drivers a daemon runs when HANGAR_DRIVERS is not set; the first available one of each type is that type's default.
 * openvz7 is left out: it drives real OpenVZ 7 nodes only, and its probe would cost forks on every other host.
 */
export const DEFAULT_DRIVERS = 'lxc,qemu,xen,openvz';

/** The drivers named in a HANGAR_DRIVERS value ("lxc,qemu,fake"), in its order; unknown or repeated names are refused. */
export function selectDrivers(list: string | undefined): Driver[] {
  const names = (list ?? DEFAULT_DRIVERS).split(',').map((n) => n.trim()).filter(Boolean);
  const out: Driver[] = [];
  for (const n of names) {
    const d = ALL_DRIVERS.find((x) => x.name === n);
    if (!d) throw new AppError('INVALID_CONFIG', `Unknown driver "${n}" in HANGAR_DRIVERS (known: ${ALL_DRIVERS.map((x) => x.name).join(', ')})`);
    if (out.includes(d)) throw new AppError('INVALID_CONFIG', `Driver "${n}" is named twice in HANGAR_DRIVERS`);
    out.push(d);
  }
  if (out.length === 0) throw new AppError('INVALID_CONFIG', 'HANGAR_DRIVERS names no driver');
  return out;
}

/** The drivers opened on one host: looked up by name, and the default per instance type. */
export class DriverSet {
  private constructor(private readonly drivers: HostDriver[]) {}

  /** Opens each driver on the host (in order; each probes and keeps its own facts). */
  static async open(drivers: readonly Driver[], env: (d: Driver) => DriverEnv): Promise<DriverSet> {
    const opened: HostDriver[] = [];
    for (const d of drivers) opened.push(await d.open(env(d)));
    return new DriverSet(opened);
  }

  /** A set of already opened drivers (tests). */
  static of(drivers: HostDriver[]): DriverSet {
    return new DriverSet(drivers);
  }

  /** Every driver of the set, in its order. */
  all(): HostDriver[] {
    return [...this.drivers];
  }

  /** The driver with this name; NOT_FOUND, naming the ones there are, otherwise. */
  get(name: string): HostDriver {
    const d = this.drivers.find((x) => x.driver.name === name);
    if (!d) throw new AppError('NOT_FOUND', `Driver "${name}" is not enabled on this host (enabled: ${this.drivers.map((x) => x.driver.name).join(', ')}; HANGAR_DRIVERS)`);
    return d;
  }

  /** The default driver of an instance type: the first of that type available on the host, else the first of that type (whose launch says why it is not). */
  forType(type: InstanceType): HostDriver {
    const ofType = this.drivers.filter((x) => x.driver.type === type);
    const d = ofType.find((x) => x.probe.available) ?? ofType[0];
    if (!d) throw new AppError('UNSUPPORTED', `No driver for instance type "${type}" is enabled on this host`);
    return d;
  }

  /** True when this driver is the default of its type. */
  isDefault(d: HostDriver): boolean {
    return this.forType(d.driver.type) === d;
  }
}
