// Entry of the `hangar` CLI: answers --version at once, the everyday commands by a small parser, the rest by the command tree.
import { fstatSync } from 'node:fs';
import type { CliIo } from './context.js';
import { VERSION } from './version.js';

/** Device number of /dev/null (major 1, minor 3). */
const DEV_NULL = (1 << 8) | 3;

/** Starts the CLI on process.argv and exits with its code. */
async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const io: CliIo = {
    // process.stdin is made on first use: a command that reads no stdin does not open it.
    get stdin() {
      return process.stdin;
    },
    stdinIsEmpty: () => {
      try {
        const st = fstatSync(0);
        return st.isCharacterDevice() && st.rdev === DEV_NULL;
      } catch {
        return false;
      }
    },
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    onSignal: (signals, handler) => {
      // Forwarded signals no longer stop the CLI itself; the third one in a row still does.
      let count = 0;
      const wrapped = (signal: NodeJS.Signals): void => {
        if (++count >= 3) process.exit(128 + 2);
        handler(signal);
      };
      for (const s of signals) process.on(s, wrapped);
      return () => {
        for (const s of signals) process.off(s, wrapped);
      };
    },
  };
  // The everyday commands skip commander and the command tree (src/cli/fast.ts); the rest, help and errors go there.
  const code = (await (await import('./fast.js')).runFast(argv, io)) ?? (await (await import('./run.js')).run(argv, io));
  // Writes to pipes, files and terminals are synchronous on Linux, so exiting here loses no output.
  process.exit(code);
}

void main();
