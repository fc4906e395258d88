// Unit tests of the SSH host's quoting: what a real /bin/sh makes of the quoted words is exactly the argv.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { shellQuote, shellQuoteArgv } from './quote.js';

// printf prints each argument NUL-terminated: the argv the shell built, byte for byte.
function throughShell(shell: string[], argv: string[]): string[] {
  const r = spawnSync(shell[0]!, [...shell.slice(1), '-c', `printf '%s\\0' ${shellQuoteArgv(argv)}`], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split('\0').slice(0, -1);
}

const NASTY = [
  '', ' ', 'plain', 'two words', "it's", "'", "''", '"', '\\', '\\\'', '$(touch /tmp/hangar-quote-pwned)', '`id`', '${HOME}', '$HOME',
  '; rm -rf /', '&& echo hi', '| cat', '> /tmp/x', '*', '?', '[a]', '~', '~root', '#comment', 'line1\nline2', '\n', '\t', '\r\n',
  'a\'b"c$d`e\\f', '-n', '--', '!', '!!', '%s', 'ünïcødé ✓', '\x01\x1b[31m', "'\"'\"'",
];

describe('shellQuote', () => {
  it('quotes every word, even plain ones', () => {
    expect(shellQuote('ls')).toBe("'ls'");
    expect(shellQuote('')).toBe("''");
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    expect(shellQuoteArgv(['a', 'b c'])).toBe("'a' 'b c'");
  });

  // The remote login shell may be any of these (busybox ash on small Dom0s).
  const shells = [['/bin/sh'], ['/bin/bash'], ['/bin/dash'], ...(existsSync('/bin/busybox') ? [['/bin/busybox', 'sh']] : [])];
  for (const shell of shells) {
    it(`gives ${shell.join(' ')} back exactly the argv, injection attempts included`, () => {
      expect(throughShell(shell, NASTY)).toEqual(NASTY);
      for (const w of NASTY) expect(throughShell(shell, [w])).toEqual([w]);
      expect(existsSync('/tmp/hangar-quote-pwned')).toBe(false);
    });
  }

  it('refuses NUL bytes', () => {
    let err: unknown;
    try { shellQuote('a\0b'); } catch (e) { err = e; }
    expect(isAppError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect(() => shellQuoteArgv(['ok', '\0'])).toThrow(/NUL/);
  });
});
