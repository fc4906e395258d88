// Unit tests for the pure parts of the Debian builder: option checks, cache naming, apt sources, debootstrap output parsing.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { debianCacheName, parseDebootstrapLine, renderSourcesList, validateDebianOptions } from './debian.js';

describe('validateDebianOptions', () => {
  it('accepts codenames and http(s) mirrors', () => {
    expect(() => validateDebianOptions('bookworm', 'http://deb.debian.org/debian')).not.toThrow();
    expect(() => validateDebianOptions('trixie', 'https://mirror.example.org:8080/debian/')).not.toThrow();
  });

  it('rejects odd releases and mirrors', () => {
    for (const [release, mirror] of [['Bookworm', 'http://x/debian'], ['bookworm;rm', 'http://x/debian'], ['../x', 'http://x/debian'], ['bookworm', 'ftp://x/debian'], ['bookworm', 'http://x/de bian'], ['bookworm', '--keyring=/x']]) {
      let err: unknown;
      try {
        validateDebianOptions(release!, mirror!);
      } catch (e) {
        err = e;
      }
      expect(isAppError(err, 'INVALID_ARGUMENT'), `${release} ${mirror}`).toBe(true);
    }
  });
});

describe('debianCacheName', () => {
  it('keys the cache on release and architecture', () => {
    expect(debianCacheName('bookworm', 'amd64')).toMatch(/^debian-bookworm-amd64-minbase-[0-9a-f]{8}\.tar\.zst$/);
    expect(debianCacheName('trixie', 'amd64')).not.toBe(debianCacheName('bookworm', 'amd64'));
  });
});

describe('renderSourcesList', () => {
  it('adds updates and security for stable releases', () => {
    expect(renderSourcesList('bookworm', 'http://deb.debian.org/debian/')).toBe(
      'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n',
    );
  });

  it('has only the suite itself for sid and no guessed security mirror', () => {
    expect(renderSourcesList('sid', 'http://m/debian')).toBe('deb http://m/debian sid main\n');
    expect(renderSourcesList('bookworm', 'http://proxy:3142/deb')).not.toContain('security');
  });
});

describe('parseDebootstrapLine', () => {
  it('keeps info, warning and error lines', () => {
    expect(parseDebootstrapLine('I: Retrieving libc6 2.36-9')).toBe('Retrieving libc6 2.36-9');
    expect(parseDebootstrapLine('W: Cannot check Release signature')).toBe('warning: Cannot check Release signature');
    expect(parseDebootstrapLine('E: Couldn\'t download packages')).toBe('error: Couldn\'t download packages');
    expect(parseDebootstrapLine('dpkg: warning: something')).toBeUndefined();
  });
});
