// Interactive commands: exec (exit code passed through) and console (attach with Ctrl-a q to detach, or --show-log).
import { AppError } from '../../shared/errors.js';
import { assertName } from '../../shared/names.js';
import { STREAM_SIGNALS } from '../../shared/exec-frames.js';
import type { ExecInfo, ExecRequest, ExecSignal, Format } from '../../shared/schemas.js';
import type { StreamIo } from '../../client/client.js';
import type { CliIo, Ctx } from '../context.js';
import { renderList } from '../format.js';

/** Checks a signal name an exec may be sent (SIGTERM, or TERM). */
export function parseExecSignal(s: string): ExecSignal {
  const name = (s.toUpperCase().startsWith('SIG') ? s.toUpperCase() : `SIG${s.toUpperCase()}`) as ExecSignal;
  if (!(name in STREAM_SIGNALS)) throw new AppError('INVALID_ARGUMENT', `Invalid signal ${JSON.stringify(s)}: expected one of ${Object.keys(STREAM_SIGNALS).join(', ')}`);
  return name;
}

/** Parses `--env K=V` pairs into a map. */
export function parseEnvPairs(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new AppError('INVALID_ARGUMENT', `Invalid --env ${JSON.stringify(pair)}: expected NAME=value`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

/** Puts a terminal stdin in raw mode when asked and possible; answers the function that restores it. */
function rawMode(io: CliIo, wanted: boolean): () => void {
  if (!wanted || !io.stdin.isTTY || typeof io.stdin.setRawMode !== 'function') return () => undefined;
  io.stdin.setRawMode(true);
  return () => {
    io.stdin.setRawMode?.(false);
  };
}

/** Subscribes to the local terminal's size changes. */
function resizeSource(io: CliIo): StreamIo['onResize'] {
  const out = io.stdout;
  if (!out.isTTY) return undefined;
  return (send) => {
    const handler = (): void => send(out.columns || 80, out.rows || 24);
    out.on('resize', handler);
    return () => {
      out.off('resize', handler);
    };
  };
}

/** `hangar exec NAME [-t] [--env K=V] [--cwd DIR] -- CMD...`: answers the remote exit code. */
export async function execCommand(ctx: Ctx, name: string, command: string[], opts: { tty?: boolean; env: string[]; cwd?: string; disconnectSignal?: string }): Promise<number> {
  assertName(name);
  if (!command.length) throw new AppError('INVALID_ARGUMENT', 'exec needs a command: hangar exec NAME -- CMD [ARGS...]');
  const env = parseEnvPairs(opts.env);
  const tty = Boolean(opts.tty);
  const req: ExecRequest = { command };
  if (opts.disconnectSignal !== undefined) req.disconnectSignal = parseExecSignal(opts.disconnectSignal);
  if (Object.keys(env).length) req.env = env;
  if (opts.cwd !== undefined) req.cwd = opts.cwd;
  if (tty) {
    req.tty = true;
    req.cols = ctx.io.stdout.columns || 80;
    req.rows = ctx.io.stdout.rows || 24;
  }
  // An empty stdin (/dev/null: cron, scripts, CI) is sent as such, so the exec goes as one POST rather than a stream.
  const io: StreamIo = { stdin: !tty && ctx.io.stdinIsEmpty?.() ? Buffer.alloc(0) : ctx.io.stdin, stdout: ctx.io.stdout, stderr: ctx.io.stderr };
  const onResize = tty ? resizeSource(ctx.io) : undefined;
  if (onResize) io.onResize = onResize;
  // Without a tty, Ctrl-C must reach the remote command rather than kill the CLI.
  const signals = ctx.io.onSignal;
  if (!tty && signals) io.onSignal = (send) => signals(['SIGINT', 'SIGTERM', 'SIGHUP'], send);
  const restore = rawMode(ctx.io, tty);
  try {
    return await ctx.client.exec(name, req, io);
  } finally {
    restore();
  }
}

/** `hangar execs NAME`: the commands running in an instance through exec, with their ids. */
export async function execListCommand(ctx: Ctx, name: string, format: Format): Promise<void> {
  assertName(name);
  ctx.out(await renderList<ExecInfo>(await ctx.client.listExecs(name), format, [
    { header: 'ID', value: (e) => e.id },
    { header: 'COMMAND', value: (e) => e.command.join(' ') },
    { header: 'TTY', value: (e) => (e.tty ? 'yes' : 'no') },
    { header: 'STARTED', value: (e) => e.startedAt },
    { header: 'ON DISCONNECT', value: (e) => e.disconnectSignal },
  ]));
}

/** `hangar exec-signal NAME ID SIGNAL`: sends a signal to a running exec. */
export async function execSignalCommand(ctx: Ctx, name: string, id: string, signal: string): Promise<void> {
  assertName(name);
  await ctx.client.signalExec(name, id, parseExecSignal(signal));
}

/** Byte filter spotting the detach sequence Ctrl-a q; Ctrl-a Ctrl-a sends one Ctrl-a, Ctrl-a with anything else passes both. */
export function detachFilter(onDetach: () => void): (chunk: Buffer) => Buffer {
  let afterCtrlA = false;
  let detached = false;
  return (chunk) => {
    if (detached) return Buffer.alloc(0);
    const out: number[] = [];
    for (const byte of chunk) {
      if (afterCtrlA) {
        afterCtrlA = false;
        if (byte === 0x71 || byte === 0x51) {
          detached = true;
          onDetach();
          break;
        }
        out.push(0x01);
        if (byte !== 0x01) out.push(byte);
      } else if (byte === 0x01) {
        afterCtrlA = true;
      } else {
        out.push(byte);
      }
    }
    return Buffer.from(out);
  };
}

/** `hangar console NAME [--show-log]`. */
export async function consoleCommand(ctx: Ctx, name: string, opts: { showLog?: boolean }): Promise<void> {
  assertName(name);
  if (opts.showLog) {
    ctx.out(await ctx.client.consoleLog(name));
    return;
  }
  const { PassThrough } = await import('node:stream');
  const abort = new AbortController();
  let detached = false;
  const filter = detachFilter(() => {
    detached = true;
    abort.abort();
  });
  const input = new PassThrough();
  const stdin = ctx.io.stdin;
  const onData = (chunk: Buffer | string): void => {
    const bytes = filter(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    if (bytes.length) input.write(bytes);
  };
  const onEnd = (): void => {
    input.end();
  };
  stdin.on('data', onData);
  stdin.once('end', onEnd);
  const io: StreamIo = { stdin: input, stdout: ctx.io.stdout, signal: abort.signal };
  const onResize = resizeSource(ctx.io);
  if (onResize) io.onResize = onResize;
  ctx.err(`Attached to the console of ${name}; detach with Ctrl-a q.`);
  const restore = rawMode(ctx.io, true);
  try {
    await ctx.client.console(name, { cols: ctx.io.stdout.columns || 80, rows: ctx.io.stdout.rows || 24 }, io);
  } finally {
    restore();
    stdin.off('data', onData);
    stdin.off('end', onEnd);
    stdin.pause();
  }
  ctx.err(detached ? `\r\nDetached from ${name}.` : `\r\nConsole of ${name} closed.`);
}
