// The one quoting function of the SSH host: an SSH exec request is a command string, so every argv element is single-quoted here.
import { AppError } from '../../shared/errors.js';

/** One word for a POSIX shell: always single-quoted, each ' written as '\'' ; refuses a NUL byte, which no argv can hold. */
export function shellQuote(word: string): string {
  if (word.includes('\0')) throw new AppError('INVALID_ARGUMENT', `Invalid argument ${JSON.stringify(word)}: contains a NUL byte`);
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** argv as one command line for a POSIX shell: every element quoted by shellQuote, joined by spaces. */
export function shellQuoteArgv(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}
