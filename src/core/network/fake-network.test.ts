// Unit tests of the fake network: it keeps the reservations it is given and refuses what dnsmasq's hostsfile could not hold.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { FakeNetwork } from './fake-network.js';

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (e) { return isAppError(e) ? e.code : String(e); }
  return 'no error';
}

describe('FakeNetwork', () => {
  it('reports its subnet and names host interfaces like NetworkManager', () => {
    const n = new FakeNetwork({ subnet: '10.251.0.0/24', ifPrefix: 'hgp' });
    expect(n.info()).toEqual({ bridge: 'fakebr0', subnet: '10.251.0.0/24', gateway: '10.251.0.1' });
    expect(n.hostIfName('web1')).toMatch(/^hgp[0-9a-f]{8}$/);
    expect(n.hostIfName('web1').length).toBeLessThanOrEqual(15);
  });

  it('keeps leases, and refuses reserved, outside, duplicate addresses and bad or duplicate MACs', async () => {
    const n = new FakeNetwork();
    await n.setLeases([{ name: 'a', mac: '0a:00:00:00:00:01', ipv4: '10.250.0.2' }]);
    expect(n.addressOf('a')).toBe('10.250.0.2');
    expect(await code(n.setLeases([{ name: 'a', mac: '0a:00:00:00:00:01', ipv4: '10.250.0.1' }]))).toBe('INVALID_ADDRESS');
    expect(await code(n.setLeases([{ name: 'a', mac: '0a:00:00:00:00:01', ipv4: '10.9.0.2' }]))).toBe('INVALID_ADDRESS');
    expect(await code(n.setLeases([{ name: 'a', mac: 'nope', ipv4: '10.250.0.2' }]))).toBe('INVALID_ARGUMENT');
    expect(await code(n.setLeases([{ name: 'a', mac: '0a:00:00:00:00:01', ipv4: '10.250.0.2' }, { name: 'b', mac: '0a:00:00:00:00:02', ipv4: '10.250.0.2' }]))).toBe('CONFLICT');
    expect(await code(n.setLeases([{ name: 'a', mac: '0a:00:00:00:00:01', ipv4: '10.250.0.2' }, { name: 'b', mac: '0A:00:00:00:00:01', ipv4: '10.250.0.3' }]))).toBe('CONFLICT');
    // A refused set leaves the previous one.
    expect(n.leases()).toEqual([{ name: 'a', mac: '0a:00:00:00:00:01', ipv4: '10.250.0.2' }]);
    await n.setLeases([]);
    expect(n.addressOf('a')).toBeUndefined();
  });
});
