// The driver registry: every backend Hangar knows, by name.
import { AppError } from '../shared/errors.js';
import type { InstanceType } from '../shared/schemas.js';
import type { Driver } from './driver.js';
import { lxcDriver } from './lxc/driver.js';
import { qemuDriver } from './qemu/driver.js';

/** Looks drivers up by name and picks the default one per instance type. */
export class DriverRegistry {
  private readonly drivers = new Map<string, Driver>();

  constructor(drivers: Driver[]) {
    for (const d of drivers) this.drivers.set(d.name, d);
  }

  /** All registered drivers. */
  all(): Driver[] {
    return [...this.drivers.values()];
  }

  /** The driver with this name; NOT_FOUND otherwise. */
  get(name: string): Driver {
    const d = this.drivers.get(name);
    if (!d) throw new AppError('NOT_FOUND', `Driver "${name}" not found`);
    return d;
  }

  /** The default driver for an instance type. */
  forType(type: InstanceType): Driver {
    const d = this.all().find((x) => x.type === type);
    if (!d) throw new AppError('UNSUPPORTED', `No driver for instance type "${type}" on this host`);
    return d;
  }
}

/** The registry of real backends. */
export function defaultRegistry(): DriverRegistry {
  return new DriverRegistry([lxcDriver, qemuDriver]);
}
