// `hangar monitor NAME COMMAND [ARGS-JSON]`: one command on a VM's QEMU monitor (QMP), like virsh qemu-monitor-command.
import { AppError } from '../../shared/errors.js';
import { assertName } from '../../shared/names.js';
import { MonitorRequestSchema, type MonitorRequest } from '../../shared/schemas.js';
import type { Ctx } from '../context.js';

/** Builds the request from the command line, checked against the API's own schema before anything is sent. */
export function monitorRequest(command: string, argsJson?: string): MonitorRequest {
  let args: unknown;
  if (argsJson !== undefined) {
    try {
      args = JSON.parse(argsJson);
    } catch (e) {
      throw new AppError('INVALID_ARGUMENT', `Invalid monitor arguments ${JSON.stringify(argsJson)}: expected a JSON object such as '{"path":"io0","property":"limits"}'`, { cause: e });
    }
  }
  const parsed = MonitorRequestSchema.safeParse(args === undefined ? { command } : { command, arguments: args });
  if (!parsed.success) {
    throw new AppError('INVALID_ARGUMENT', `Invalid monitor command: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

/** Prints the command's result as indented JSON. */
export async function monitorCommand(ctx: Ctx, name: string, command: string, argsJson?: string): Promise<void> {
  assertName(name);
  const res = await ctx.client.monitor(name, monitorRequest(command, argsJson));
  ctx.out(`${JSON.stringify(res.return, null, 2)}\n`);
}
