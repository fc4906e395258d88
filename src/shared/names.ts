// Validation of instance, image, snapshot and network names.
import { AppError } from './errors.js';

const NAME_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Returns a problem description for an invalid name, or undefined when it is valid. */
export function nameProblem(name: string): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'must not be empty';
  if (name.length > 63) return `must be at most 63 characters (got ${name.length})`;
  if (/^[0-9]+$/.test(name)) return 'must not be all digits';
  if (name.startsWith('-') || name.endsWith('-')) return 'must not start or end with "-"';
  if (!NAME_RE.test(name)) return 'may only contain lower-case letters a-z, digits and "-"';
  return undefined;
}

/** Throws INVALID_NAME when name is not a valid Hangar name; `what` names the kind (instance, image, ...). */
export function assertName(name: string, what = 'instance'): string {
  const problem = nameProblem(name);
  if (problem) throw new AppError('INVALID_NAME', `Invalid ${what} name ${JSON.stringify(name)}: ${problem}`);
  return name;
}
