// Unit tests for IPv4 address management: parsing, checks, stable allocation and MACs.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import {
  allocateAddress, checkAddress, intToIp, ipToInt, isValidIpv4, isValidMac, macFor, parseSubnet, randomMac, shortHash,
  subnetContains, subnetsOverlap,
} from './ipam.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isAppError(e) ? e.code : 'NOT_APP_ERROR';
  }
  return undefined;
}

describe('isValidIpv4', () => {
  it.each(['0.0.0.0', '10.123.0.1', '255.255.255.255', '192.168.1.10'])('accepts %s', (a) => {
    expect(isValidIpv4(a)).toBe(true);
  });
  it.each(['', '10.0.0', '10.0.0.0.1', '256.1.1.1', '10.01.0.1', ' 10.0.0.1', '10.0.0.1 ', 'a.b.c.d', '10.0.0.-1', '1e1.0.0.1', '10..0.1'])(
    'rejects %j',
    (a) => {
      expect(isValidIpv4(a)).toBe(false);
    },
  );
});

describe('ipToInt / intToIp', () => {
  it('round-trips', () => {
    expect(ipToInt('10.123.0.1')).toBe(10 * 2 ** 24 + 123 * 2 ** 16 + 1);
    expect(ipToInt('255.255.255.255')).toBe(0xffffffff);
    expect(intToIp(0xffffffff)).toBe('255.255.255.255');
    expect(intToIp(ipToInt('172.16.254.3'))).toBe('172.16.254.3');
  });
  it('rejects junk', () => {
    expect(codeOf(() => ipToInt('1.2.3'))).toBe('INVALID_ADDRESS');
  });
});

describe('parseSubnet', () => {
  it('parses a /24', () => {
    expect(parseSubnet('10.123.0.0/24')).toEqual({
      cidr: '10.123.0.0/24',
      network: '10.123.0.0',
      prefixLength: 24,
      netmask: '255.255.255.0',
      gateway: '10.123.0.1',
      broadcast: '10.123.0.255',
      firstHost: '10.123.0.1',
      lastHost: '10.123.0.254',
      size: 256,
    });
  });
  it('parses a /30 and a /8', () => {
    const s30 = parseSubnet('192.168.5.4/30');
    expect([s30.gateway, s30.lastHost, s30.broadcast, s30.netmask, s30.size]).toEqual(['192.168.5.5', '192.168.5.6', '192.168.5.7', '255.255.255.252', 4]);
    const s8 = parseSubnet('10.0.0.0/8');
    expect([s8.netmask, s8.broadcast, s8.size]).toEqual(['255.0.0.0', '10.255.255.255', 2 ** 24]);
  });
  it('parses a /20 with a high network', () => {
    const s = parseSubnet('172.16.240.0/20');
    expect([s.netmask, s.broadcast, s.lastHost]).toEqual(['255.255.240.0', '172.16.255.255', '172.16.255.254']);
  });
  it.each(['', 'junk', '10.123.0.0', '10.123.0.0/', '10.123.0.0/33', '10.123.0.0/7', '10.123.0.0/31', '10.123.0.0/32', '300.1.1.0/24', '10.123.0.0/24x', '10.123.0.0/-1'])(
    'rejects %j with INVALID_ADDRESS',
    (c) => {
      expect(codeOf(() => parseSubnet(c))).toBe('INVALID_ADDRESS');
    },
  );
  it('rejects host bits and suggests the network', () => {
    expect(() => parseSubnet('10.123.0.5/24')).toThrow(/10\.123\.0\.0\/24/);
  });
});

describe('subnetContains / subnetsOverlap', () => {
  const s = parseSubnet('10.123.0.0/24');
  it('contains', () => {
    expect(subnetContains(s, '10.123.0.0')).toBe(true);
    expect(subnetContains(s, '10.123.0.255')).toBe(true);
    expect(subnetContains(s, '10.123.1.0')).toBe(false);
    expect(subnetContains(s, '10.122.255.255')).toBe(false);
    expect(subnetContains(s, 'junk')).toBe(false);
  });
  it('overlaps', () => {
    expect(subnetsOverlap(s, parseSubnet('10.0.0.0/8'))).toBe(true);
    expect(subnetsOverlap(s, parseSubnet('10.123.0.128/25'))).toBe(true);
    expect(subnetsOverlap(s, parseSubnet('10.123.1.0/24'))).toBe(false);
    expect(subnetsOverlap(s, parseSubnet('10.122.255.252/30'))).toBe(false);
  });
});

describe('checkAddress', () => {
  const s = parseSubnet('10.123.0.0/24');
  const taken = new Set(['10.123.0.10']);
  it('accepts a free host address', () => {
    expect(() => checkAddress(s, '10.123.0.2', taken)).not.toThrow();
    expect(() => checkAddress(s, '10.123.0.254', taken)).not.toThrow();
  });
  it.each([
    ['junk', 'INVALID_ADDRESS'],
    ['10.123.0.01', 'INVALID_ADDRESS'],
    ['10.124.0.5', 'INVALID_ADDRESS'],
    ['10.123.0.0', 'INVALID_ADDRESS'],
    ['10.123.0.255', 'INVALID_ADDRESS'],
    ['10.123.0.1', 'INVALID_ADDRESS'],
    ['10.123.0.10', 'CONFLICT'],
  ])('%s → %s', (addr, code) => {
    expect(codeOf(() => checkAddress(s, addr, taken))).toBe(code);
  });
  it('names the address in messages', () => {
    expect(() => checkAddress(s, '10.123.0.10', taken)).toThrow(/10\.123\.0\.10/);
    expect(() => checkAddress(s, '10.124.0.5', taken)).toThrow(/10\.124\.0\.5.*10\.123\.0\.0\/24/);
    expect(() => checkAddress(s, '10.123.0.1', taken)).toThrow(/gateway/);
  });
});

describe('allocateAddress', () => {
  const s = parseSubnet('10.123.0.0/24');
  it('is stable for a name and valid', () => {
    const a = allocateAddress(s, 'web1', new Set());
    expect(allocateAddress(s, 'web1', new Set())).toBe(a);
    expect(() => checkAddress(s, a, new Set())).not.toThrow();
  });
  it('spreads names over the range', () => {
    const addrs = new Set(Array.from({ length: 50 }, (_, i) => allocateAddress(s, `c${i}`, new Set())));
    // 50 names into 253 slots: a decent hash gives far more than 30 distinct starting points.
    expect(addrs.size).toBeGreaterThan(30);
  });
  it('probes past taken addresses and never returns a taken one', () => {
    const first = allocateAddress(s, 'web1', new Set());
    const second = allocateAddress(s, 'web1', new Set([first]));
    expect(second).not.toBe(first);
    const n1 = ipToInt(first);
    const expected = n1 === ipToInt(s.lastHost) ? ipToInt(s.gateway) + 1 : n1 + 1;
    expect(ipToInt(second)).toBe(expected);
  });
  it('wraps from the last host to just after the gateway', () => {
    const tiny = parseSubnet('192.168.9.0/29');
    // Hosts .1 (gateway) .. .6; candidates .2 .. .6.
    const taken = new Set<string>();
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const a = allocateAddress(tiny, 'x', taken);
      got.push(a);
      taken.add(a);
    }
    expect([...got].sort()).toEqual(['192.168.9.2', '192.168.9.3', '192.168.9.4', '192.168.9.5', '192.168.9.6']);
    expect(codeOf(() => allocateAddress(tiny, 'x', taken))).toBe('INSUFFICIENT_RESOURCES');
  });
  it('fills a subnet completely, then reports it full', () => {
    const taken = new Set<string>();
    for (let i = 0; i < 253; i++) {
      const a = allocateAddress(s, `n${i}`, taken);
      expect(taken.has(a)).toBe(false);
      taken.add(a);
    }
    expect(taken.has(s.gateway)).toBe(false);
    expect(taken.has(s.network)).toBe(false);
    expect(taken.has(s.broadcast)).toBe(false);
    expect(codeOf(() => allocateAddress(s, 'one-more', taken))).toBe('INSUFFICIENT_RESOURCES');
  });
  it('ignores taken addresses outside the subnet when deciding fullness', () => {
    const tiny = parseSubnet('192.168.9.4/30');
    expect(allocateAddress(tiny, 'a', new Set(['10.0.0.1', '10.0.0.2']))).toBe('192.168.9.6');
  });
  it('works in a /30 (one candidate)', () => {
    expect(allocateAddress(parseSubnet('192.168.9.4/30'), 'anything', new Set())).toBe('192.168.9.6');
  });
  it('is fast in a /8', () => {
    const big = parseSubnet('10.0.0.0/8');
    const a = allocateAddress(big, 'web1', new Set());
    expect(subnetContains(big, a)).toBe(true);
    expect(a).not.toBe(big.gateway);
  });
});

describe('MAC addresses', () => {
  it('macFor is stable, well-formed, locally administered unicast', () => {
    const m = macFor('web1');
    expect(macFor('web1')).toBe(m);
    expect(m).toMatch(/^0a(:[0-9a-f]{2}){5}$/);
    const first = parseInt(m.slice(0, 2), 16);
    expect(first & 1).toBe(0);
    expect(first & 2).toBe(2);
    expect(isValidMac(m)).toBe(true);
  });
  it('macFor differs between seeds', () => {
    const macs = new Set(Array.from({ length: 200 }, (_, i) => macFor(`inst${i}`)));
    expect(macs.size).toBe(200);
  });
  it('randomMac is well-formed and varies', () => {
    const a = randomMac();
    expect(a).toMatch(/^0a(:[0-9a-f]{2}){5}$/);
    const many = new Set(Array.from({ length: 20 }, () => randomMac()));
    expect(many.size).toBeGreaterThan(1);
  });
  it('isValidMac rejects junk', () => {
    expect(isValidMac('0a:11:22:33:44')).toBe(false);
    expect(isValidMac('0a-11-22-33-44-55')).toBe(false);
    expect(isValidMac('0a:11:22:33:44:5g')).toBe(false);
    expect(isValidMac('0A:11:22:33:44:55')).toBe(true);
  });
});

describe('shortHash', () => {
  it('is 8 hex chars and stable', () => {
    expect(shortHash('web1')).toMatch(/^[0-9a-f]{8}$/);
    expect(shortHash('web1')).toBe(shortHash('web1'));
    expect(shortHash('web1')).not.toBe(shortHash('web2'));
  });
});
