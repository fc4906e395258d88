// Shared state of one CLI run: its streams and environment, the lazily created client, output and error printing.
import type { Readable, Writable } from 'node:stream';
import { HangarClient } from '../client/client.js';
import { AppError, causeChain, isAppError } from '../shared/errors.js';

/** A readable that may be a terminal. */
export type CliStdin = Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
/** A writable that may be a terminal. */
export type CliStdout = Writable & { isTTY?: boolean; columns?: number; rows?: number };

/** The process surface a CLI run uses; tests pass their own. */
export interface CliIo {
  stdin: CliStdin;
  stdout: CliStdout;
  stderr: CliStdout;
  env: Record<string, string | undefined>;
  cwd: string;
  /** True when stdin is known to be empty (/dev/null): exec then sends no stream and needs no websocket. */
  stdinIsEmpty?: () => boolean;
  /** Catches local signals (to forward them to a remote command); answers the function that stops catching. */
  onSignal?: (signals: string[], handler: (signal: string) => void) => () => void;
}

/** Per-run context handed to every command. */
export class Ctx {
  private clientInstance?: HangarClient;

  constructor(readonly io: CliIo) {}

  /** The API client (created on first use, socket from HANGAR_SOCKET). */
  get client(): HangarClient {
    // Answers are not checked against the zod schemas here: hangard builds them from those schemas' types, and loading
    // zod (a 780 KB chunk) to check one answer cost ~70 ms of every command's ~190 ms (bench/cli, BENCHMARKS.md).
    this.clientInstance ??= new HangarClient({ validate: false, ...(this.io.env.HANGAR_SOCKET ? { socketPath: this.io.env.HANGAR_SOCKET } : {}) });
    return this.clientInstance;
  }

  /** Writes text to stdout, adding a final newline when missing. */
  out(text: string): void {
    this.io.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
  }

  /** Writes a line to stderr. */
  err(text: string): void {
    this.io.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** A progress printer for operations: rewrites one line on a terminal, prints lines otherwise; call the result's end() when done. */
  progress(): { update: (message: string) => void; end: () => void } {
    const tty = Boolean(this.io.stderr.isTTY);
    let shown = false;
    return {
      update: (message) => {
        if (tty) {
          this.io.stderr.write(`\r\x1b[2K${message}`);
          shown = true;
        } else {
          this.io.stderr.write(`${message}\n`);
        }
      },
      end: () => {
        if (tty && shown) this.io.stderr.write('\r\x1b[2K');
        shown = false;
      },
    };
  }

  /** Releases the client's connections. */
  close(): void {
    this.clientInstance?.close();
  }
}

/** Prints `Error: <message>`, each cause as `  caused by: <cause>`, and a hint when the error carries one. */
export function printError(err: unknown, stderr: Writable): void {
  const message = err instanceof Error ? err.message : String(err);
  const lines = [`Error: ${message}`, ...causeChain(err).map((c) => `  caused by: ${c}`)];
  if (isAppError(err) && typeof err.details?.hint === 'string') lines.push(`  hint: ${err.details.hint}`);
  stderr.write(lines.join('\n') + '\n');
}

/** An error for bad command-line input, caught before anything is sent. */
export function usageError(message: string): AppError {
  return new AppError('INVALID_ARGUMENT', message);
}
