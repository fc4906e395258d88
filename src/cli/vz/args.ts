// vzctl/vzlist command-line parsing as getopt_long does it (--opt value, --opt=value, repeatable options), with vzctl's exit codes.
import { AppError, causeChain, isAppError } from '../../shared/errors.js';

/** vzctl's exit codes (vzctl(8) EXIT STATUS) that Hangar's front end gives. */
export const VZ_EXIT = {
  OK: 0,
  SYSTEM_ERROR: 3,
  NOT_FOUND_CONFIG: 14,
  CHKPNT_FAILED: 16,
  RESTORE_FAILED: 17,
  INVALID_PARAMETER_SYNTAX: 20,
  INVALID_PARAMETER_VALUE: 21,
  NO_OSTEMPLATE: 29,
  NOT_RUNNING: 31,
  RUNNING: 32,
  STOP_FAILED: 33,
  IP_ADD_FAILED: 34,
  NOT_MOUNTED: 40,
  MOUNTED: 41,
  PRIVATE_EXISTS: 44,
  NO_DISKSPACE: 46,
  CREATE_FAILED: 48,
  MOUNT_FAILED: 50,
  UMOUNT_FAILED: 51,
  DELETE_FAILED: 52,
  BAD_IP: 71,
  CHANGE_PASSWORD: 74,
  IP_IN_USE: 78,
  TEMPLATE_NOT_FOUND: 91,
  SET_NAME: 131,
} as const;

/** An error with the exit code vzctl gives for it. */
export class VzError extends Error {
  constructor(readonly exitCode: number, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

/** How an option takes its argument: none, one (last wins), or one per use (collected). */
export type VzOptKind = 'flag' | 'value' | 'multi';

/** Parsed options and the positional arguments among them. */
export interface VzParsed {
  flags: Set<string>;
  values: Map<string, string>;
  multi: Map<string, string[]>;
  positional: string[];
}

/** Parses argv against a spec of long options (without "--"); "--" ends options; an unknown option is exit 20. */
export function parseVzArgs(argv: readonly string[], spec: Readonly<Record<string, VzOptKind>>, opts: { stopAtPositional?: number } = {}): VzParsed {
  const out: VzParsed = { flags: new Set(), values: new Map(), multi: new Map(), positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (opts.stopAtPositional !== undefined && out.positional.length >= opts.stopAtPositional) {
      out.positional.push(...argv.slice(i));
      break;
    }
    if (a === '--') { out.positional.push(...argv.slice(i + 1)); break; }
    if (!a.startsWith('--') || a === '-') { out.positional.push(a); continue; }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    const kind = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (!kind) throw new VzError(VZ_EXIT.INVALID_PARAMETER_SYNTAX, `Invalid option: --${name}`);
    if (kind === 'flag') {
      if (eq >= 0) throw new VzError(VZ_EXIT.INVALID_PARAMETER_SYNTAX, `Option --${name} takes no argument`);
      out.flags.add(name);
      continue;
    }
    const value = eq >= 0 ? a.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new VzError(VZ_EXIT.INVALID_PARAMETER_SYNTAX, `Option --${name} requires an argument`);
    if (kind === 'value') out.values.set(name, value);
    else out.multi.set(name, [...(out.multi.get(name) ?? []), value]);
  }
  return out;
}

/** The exit code vzctl would give for one of Hangar's errors (when it is no VzError already). */
export function vzExitCode(err: unknown): number {
  if (err instanceof VzError) return err.exitCode;
  if (!isAppError(err)) return VZ_EXIT.SYSTEM_ERROR;
  // The whole chain: the service wraps the driver's words ("Failed to apply config ...: Failed to shrink ...").
  const m = [err.message, ...causeChain(err)].join(' ');
  switch (err.code) {
    case 'INVALID_ARGUMENT': return VZ_EXIT.INVALID_PARAMETER_SYNTAX;
    case 'INVALID_NAME': case 'INVALID_SIZE': case 'INVALID_CONFIG': case 'UNSUPPORTED': return /space|disk|private area/i.test(m) && err.code === 'INVALID_SIZE' ? VZ_EXIT.NO_DISKSPACE : VZ_EXIT.INVALID_PARAMETER_VALUE;
    case 'INVALID_ADDRESS': return VZ_EXIT.BAD_IP;
    case 'CONFLICT': return /[Aa]ddress/.test(m) ? VZ_EXIT.IP_IN_USE : VZ_EXIT.SYSTEM_ERROR;
    case 'NOT_FOUND': return /[Ii]mage|template/.test(m) ? VZ_EXIT.TEMPLATE_NOT_FOUND : VZ_EXIT.NOT_FOUND_CONFIG;
    case 'ALREADY_EXISTS': return VZ_EXIT.PRIVATE_EXISTS;
    case 'INSUFFICIENT_RESOURCES': return VZ_EXIT.INVALID_PARAMETER_VALUE;
    default: return VZ_EXIT.SYSTEM_ERROR;
  }
}

/** Re-throws an AppError as the VzError vzctl would give in this situation (exit code chosen by vzExitCode or given). */
export function asVzError(err: unknown, code?: number): VzError {
  if (err instanceof VzError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new VzError(code ?? vzExitCode(err), message, err);
}

/** Throws exit 21 for a value that does not parse. */
export function badValue(option: string, value: string, why: string): never {
  throw new VzError(VZ_EXIT.INVALID_PARAMETER_VALUE, `Invalid value for --${option}: ${JSON.stringify(value)}${why ? ` (${why})` : ''}`);
}

/** Maps an AppError thrown while parsing a value (parseVzNumber and friends) to exit 21. */
export function valueOf<T>(option: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof VzError) throw e;
    if (e instanceof AppError) throw new VzError(VZ_EXIT.INVALID_PARAMETER_VALUE, `Invalid value for --${option}: ${e.message}`, e);
    throw e;
  }
}
