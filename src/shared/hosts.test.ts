// Unit tests of host names and ssh:// URLs: what is accepted, in canonical form, and what is refused, with why.
import { describe, expect, it } from 'vitest';
import { assertHostName, assertHostRef, parseSshUrl, sshUrl } from './hosts.js';

describe('parseSshUrl', () => {
  it('reads user, address and port (22 by default), names, IPv4 and bracketed IPv6', () => {
    expect(parseSshUrl('ssh://root@127.0.0.1:2222')).toEqual({ user: 'root', address: '127.0.0.1', port: 2222 });
    expect(parseSshUrl('ssh://admin@dom0.example.org')).toEqual({ user: 'admin', address: 'dom0.example.org', port: 22 });
    expect(parseSshUrl('ssh://root@[2001:db8::1]:22/')).toEqual({ user: 'root', address: '2001:db8::1', port: 22 });
  });

  it('refuses, saying why: other schemes, no user, passwords, bad ports and addresses, paths', () => {
    const cases: Array<[string, RegExp]> = [
      ['http://root@h', /only ssh:\/\/ URLs are supported/],
      ['root@h', /only ssh:\/\/ URLs are supported/],
      ['ssh://h', /the user is missing/],
      ['ssh://@h', /the user is missing/],
      ['ssh://root:pw@h', /a password does not belong in the URL/],
      ['ssh://root@h:0', /port "0" is not a number from 1 to 65535/],
      ['ssh://root@h:65536', /port "65536"/],
      ['ssh://root@h:22x', /port "22x"/],
      ['ssh://root@', /the address is missing/],
      ['ssh://root@bad_name', /"bad_name" is not a host name or IP address/],
      ['ssh://root@[zz]', /"zz" is not a host name or IP address/],
      ['ssh://root@h/path', /it has a path, a query or stray characters/],
      ['ssh://root@h?x=1', /it has a path, a query or stray characters/],
      ['ssh://r oot@h', /"r oot" is not a user name/],
    ];
    for (const [url, msg] of cases) expect(() => parseSshUrl(url), url).toThrow(msg);
  });

  it('writes a target back as the user would, brackets and default port included', () => {
    expect(sshUrl({ user: 'root', address: '2001:db8::1', port: 22 })).toBe('ssh://root@[2001:db8::1]');
    expect(sshUrl({ user: 'root', address: '127.0.0.1', port: 2222 })).toBe('ssh://root@127.0.0.1:2222');
  });
});

describe('host names', () => {
  it('a remote host takes a Hangar name other than "local"; a reference may be "local"', () => {
    expect(assertHostName('dom0')).toBe('dom0');
    expect(() => assertHostName('local')).toThrow(/the daemon's own machine/);
    expect(() => assertHostName('Dom0')).toThrow(/Invalid host name "Dom0"/);
    expect(assertHostRef('local')).toBe('local');
    expect(() => assertHostRef('a b')).toThrow(/Invalid host name "a b"/);
  });
});
