// The everyday commands (list, info, exec, start/stop/restart/freeze/unfreeze, delete, the vz tools) parsed without commander.
// Loading commander and building the whole command tree cost ~25 ms of each of these commands (BENCHMARKS.md, issue
// 14); here each is parsed by a small spec of its options. Anything else (help, unknown or bundled options, a missing
// or extra argument, a format commander would refuse) is left to the full command tree, which prints its usual errors.
import type { Format, StateChangeRequest } from '../shared/schemas.js';
import { Ctx, printError, type CliIo } from './context.js';
import { FORMATS } from './format.js';

/** What one option takes: a flag, a value, or a value that may repeat. */
type OptKind = 'flag' | 'value' | 'list';

/** A command's shape: its options (long and short spellings) and how many positional arguments it takes. */
interface Spec {
  opts: Record<string, { key: string; kind: OptKind }>;
  /** Exact count, or the least count when rest is true. */
  args: number;
  /** Takes any number of further arguments (exec's command); after `--` everything is one. */
  rest?: boolean;
}

/** Parsed options: flags as true, values as strings, repeatable ones as arrays. */
type Parsed = { args: string[]; opts: Record<string, string | true | string[]> };

const FORMAT_OPT = { '--format': { key: 'format', kind: 'value' as const } };
const STOP_OPTS = {
  '--timeout': { key: 'timeout', kind: 'value' as const },
  '--force': { key: 'force', kind: 'flag' as const },
  '--stateful': { key: 'stateful', kind: 'flag' as const },
};

/** Parses argv by spec the way commander does for these commands; null where commander could answer differently. */
function parse(argv: readonly string[], spec: Spec): Parsed | null {
  const out: Parsed = { args: [], opts: {} };
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (tok === '--') {
      if (!spec.rest) return null;
      out.args.push(...argv.slice(i + 1));
      break;
    }
    if (tok.startsWith('-')) {
      const eq = tok.startsWith('--') ? tok.indexOf('=') : -1;
      const flag = eq > 0 ? tok.slice(0, eq) : tok;
      const opt = Object.hasOwn(spec.opts, flag) ? spec.opts[flag]! : undefined;
      if (!opt) return null;
      if (opt.kind === 'flag') {
        if (eq > 0) return null;
        out.opts[opt.key] = true;
        continue;
      }
      let value: string;
      if (eq > 0) value = tok.slice(eq + 1);
      else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('-')) value = argv[++i]!;
      else return null;
      if (opt.kind === 'list') out.opts[opt.key] = [...((out.opts[opt.key] as string[] | undefined) ?? []), value];
      else out.opts[opt.key] = value;
      continue;
    }
    out.args.push(tok);
  }
  if (spec.rest ? out.args.length < spec.args : out.args.length !== spec.args) return null;
  return out;
}

/** The --format value, or null when it is not one commander accepts. */
function formatOf(p: Parsed): Format | null {
  const f = p.opts.format ?? 'table';
  return typeof f === 'string' && (FORMATS as string[]).includes(f) ? (f as Format) : null;
}

type Plan = (ctx: Ctx) => Promise<number | void>;

/** The plan for argv when it is one of the everyday commands in a form parsed here; null otherwise. */
export function planFast(argv: readonly string[]): Plan | null {
  const [command, ...rest] = argv;
  switch (command) {
    case 'list': {
      const p = parse(rest, { opts: { ...FORMAT_OPT, '--host': { key: 'host', kind: 'value' } }, args: 0 });
      const format = p && formatOf(p);
      if (!p || !format) return null;
      const host = p.opts.host as string | undefined;
      return async (ctx) => (await import('./commands/instances.js')).listCommand(ctx, format, host !== undefined ? { host } : {});
    }
    case 'info': {
      const p = parse(rest, { opts: FORMAT_OPT, args: 1 });
      const format = p && formatOf(p);
      if (!p || !format) return null;
      return async (ctx) => (await import('./commands/instances.js')).infoCommand(ctx, p.args[0]!, format);
    }
    case 'start':
    case 'freeze':
    case 'unfreeze':
    case 'stop':
    case 'restart': {
      const action: StateChangeRequest['action'] = command;
      const p = parse(rest, { opts: action === 'stop' || action === 'restart' ? STOP_OPTS : {}, args: 1 });
      if (!p) return null;
      const o = p.opts as { timeout?: string; force?: true; stateful?: true };
      return async (ctx) => (await import('./commands/instances.js')).stateCommand(ctx, p.args[0]!, action, o);
    }
    case 'delete': {
      const p = parse(rest, { opts: { '--force': { key: 'force', kind: 'flag' } }, args: 1 });
      if (!p) return null;
      return async (ctx) => (await import('./commands/instances.js')).deleteCommand(ctx, p.args[0]!, { force: p.opts.force === true });
    }
    case 'exec': {
      const p = parse(rest, {
        opts: {
          '-t': { key: 'tty', kind: 'flag' },
          '--tty': { key: 'tty', kind: 'flag' },
          '--env': { key: 'env', kind: 'list' },
          '--cwd': { key: 'cwd', kind: 'value' },
          '--disconnect-signal': { key: 'disconnectSignal', kind: 'value' },
        },
        args: 2,
        rest: true,
      });
      if (!p) return null;
      const o = p.opts as { tty?: true; env?: string[]; cwd?: string; disconnectSignal?: string };
      const [name, ...cmd] = p.args;
      return async (ctx) => (await import('./commands/exec.js')).execCommand(ctx, name!, cmd, { ...o, env: o.env ?? [] });
    }
    case 'vz':
      // OpenVZ's tools keep their own syntax (vzctl ACTION CTID --opt ..., vzlist -aHo ...), parsed as they parse it.
      if (rest[0] === 'list') return async (ctx) => (await import('./vz/vzlist.js')).vzlist(ctx, rest.slice(1));
      if (rest[0] === 'migrate') return async (ctx) => (await import('./vz/vzmigrate.js')).vzmigrate(ctx, rest.slice(1));
      return async (ctx) => (await import('./vz/vzctl.js')).vzctl(ctx, rest);
    default:
      return null;
  }
}

/** Runs argv when planFast() knows it, answering the exit code as run() would; undefined when run() must take it. */
export async function runFast(argv: readonly string[], io: CliIo): Promise<number | undefined> {
  const plan = planFast(argv);
  if (!plan) return undefined;
  const ctx = new Ctx(io);
  try {
    const code = await plan(ctx);
    return typeof code === 'number' ? code : 0;
  } catch (err) {
    printError(err, io.stderr);
    return 1;
  } finally {
    ctx.close();
  }
}
