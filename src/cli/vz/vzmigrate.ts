// vzmigrate over Hangar's API: `vzmigrate [--offline] [-r yes] DESTINATION CTID` moves a CT to another of the daemon's hosts, with vzmigrate's exit codes.
import { isAppError } from '../../shared/errors.js';
import type { HostRecord } from '../../shared/schemas.js';
import type { Ctx } from '../context.js';
import { parseVzArgs, VzError } from './args.js';
import { ctidOf, findCt } from './vzctl.js';

/** vzmigrate's exit codes (MIG_ERR_* of vzctl 4's vzmigrate) that Hangar's front end gives. */
export const MIG_EXIT = {
  OK: 0,
  USAGE: 1,
  CANT_CONNECT: 4,
  COPY: 6,
  NOEXIST: 10,
  CHECKPOINT: 14,
} as const;

/** The usage vzmigrate prints. */
export const VZMIGRATE_USAGE = `Usage: vzmigrate [-r|--remove-area yes] [--offline] [--keep-dst] [-v] destination_address CTID
  destination_address is a host of this hangard (hangar host list): its name or its address.
  The CT is stopped if it runs, its private area and config are copied there, and it is started there if it ran.
  --live/--online needs a checkpoint (CRIU): refused where the host's CRIU cannot do it (host info says why).
`;

/** The host a destination names: a host's name, or the address of exactly one remote host. */
export function findDestination(hosts: readonly HostRecord[], dest: string): HostRecord | undefined {
  const byName = hosts.find((h) => h.name === dest);
  if (byName) return byName;
  const byAddress = hosts.filter((h) => h.address === dest || h.address === dest.replace(/^\[|\]$/g, ''));
  return byAddress.length === 1 ? byAddress[0] : undefined;
}

/** Runs one vzmigrate command line; answers vzmigrate's exit code. */
export async function vzmigrate(ctx: Ctx, argv: readonly string[]): Promise<number> {
  try {
    return await migrate(ctx, argv);
  } catch (err) {
    const e = err instanceof VzError ? err : new VzError(MIG_EXIT.COPY, err instanceof Error ? err.message : String(err), err);
    ctx.err(e.message);
    for (let c = (e.cause as { cause?: unknown } | undefined)?.cause; c instanceof Error; c = (c as Error & { cause?: unknown }).cause) ctx.err(`  caused by: ${c.message}`);
    return e.exitCode;
  }
}

async function migrate(ctx: Ctx, argv: readonly string[]): Promise<number> {
  // -r is getopt's short form of --remove-area.
  const args = argv.filter((a) => a !== '-v').map((a) => (a === '-r' ? '--remove-area' : a));
  if (args.includes('-h') || args.includes('--help') || args.includes('--usage')) { ctx.out(VZMIGRATE_USAGE); return MIG_EXIT.OK; }
  let o;
  try {
    o = parseVzArgs(args, { 'remove-area': 'value', offline: 'flag', online: 'flag', live: 'flag', 'keep-dst': 'flag', ssh: 'value', rsync: 'value' });
  } catch (e) {
    throw new VzError(MIG_EXIT.USAGE, `${e instanceof Error ? e.message : String(e)}\n${VZMIGRATE_USAGE}`);
  }
  if (o.positional.length !== 2) throw new VzError(MIG_EXIT.USAGE, `vzmigrate needs a destination and a CTID\n${VZMIGRATE_USAGE}`);
  const [dest, ref] = o.positional as [string, string];
  const remove = o.values.get('remove-area') ?? 'yes';
  if (remove !== 'yes' && remove !== 'no') throw new VzError(MIG_EXIT.USAGE, `Invalid value for --remove-area: ${JSON.stringify(remove)} (yes or no)`);
  // A CT is one instance of the daemon: names and CTIDs are unique across its hosts, so the source cannot stay.
  if (remove === 'no') throw new VzError(MIG_EXIT.USAGE, 'Cannot keep the private area on the source (-r no): a CT is one instance of this hangard, unique across its hosts; copy it with hangar copy instead');
  for (const opt of ['ssh', 'rsync']) if (o.values.has(opt)) throw new VzError(MIG_EXIT.USAGE, `--${opt} is not supported: hangard reaches its hosts over their own SSH links and copies with tar`);
  const ct = findCt(await ctx.client.listInstances(), ref);
  if (!ct) throw new VzError(MIG_EXIT.NOEXIST, `CT ${ref} does not exist (no openvz CT has this CTID or name)`);
  const host = findDestination(await ctx.client.listHosts(), dest);
  if (!host) throw new VzError(MIG_EXIT.CANT_CONNECT, `Cannot migrate CT ${ctidOf(ct)} to ${dest}: it is not a host of this hangard (hangar host list; add it with hangar host add)`);
  if (o.flags.has('online') || o.flags.has('live')) {
    const info = await ctx.client.hostInfo(ct.host === 'local' ? undefined : ct.host);
    const why = info.drivers.find((d) => d.name === 'openvz')?.details.checkpoint ?? 'not available: the openvz driver is not enabled there';
    throw new VzError(MIG_EXIT.CHECKPOINT, `Cannot migrate CT ${ctidOf(ct)} live: checkpointing is ${why}; vzmigrate --offline stops it, moves it and starts it there`);
  }
  if (host.name === ct.host) throw new VzError(MIG_EXIT.USAGE, `CT ${ctidOf(ct)} is on host ${host.name} already`);
  const running = ct.state === 'running' || ct.state === 'frozen';
  ctx.out(`Starting ${running ? 'offline ' : ''}migration of CT ${ctidOf(ct)} to ${host.name}`);
  const progress = ctx.progress();
  try {
    await ctx.client.runOperation(() => ctx.client.moveInstance(ct.name, { host: host.name }), { onProgress: progress.update });
  } catch (err) {
    progress.end();
    const words = err instanceof Error ? err.message : '';
    const code = isAppError(err) && ['NOT_FOUND', 'UNSUPPORTED', 'INVALID_ARGUMENT', 'INVALID_CONFIG', 'INVALID_STATE'].includes(err.code) ? MIG_EXIT.USAGE
      : isAppError(err) && err.code === 'HOST_UNREACHABLE' ? MIG_EXIT.CANT_CONNECT : MIG_EXIT.COPY;
    throw new VzError(code, `Migration of CT ${ctidOf(ct)} to ${host.name} failed: ${words}`, err);
  }
  progress.end();
  ctx.out(`Migration of CT ${ctidOf(ct)} to ${host.name} completed`);
  return MIG_EXIT.OK;
}
