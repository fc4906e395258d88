// Entry of the `hangar` CLI: answers --version at once, loads the command tree only for real work.
import { VERSION } from './version.js';

/** Starts the CLI on process.argv and exits with its code. */
async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const { run } = await import('./run.js');
  const code = await run(argv, {
    stdin: process.stdin,
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
  });
  // Writes to pipes, files and terminals are synchronous on Linux, so exiting here loses no output.
  process.exit(code);
}

void main();
