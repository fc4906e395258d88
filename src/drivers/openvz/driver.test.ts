// Unit tests of the openvz driver's pure parts: venet addresses, resolv.conf, the checkpoint verdict.
import { describe, expect, it } from 'vitest';
import { checkpointVerdict, renderResolvConf, venetAddresses } from './driver.js';

describe('openvz driver', () => {
  it('venet addresses: the instance\'s own first, then openvz.ipadd\'s, without repeating it', () => {
    const nic = { bridge: 'b', hostIfName: 'v', mac: '02:00:00:00:00:01', ipv4: '10.0.0.5', prefixLength: 24, gateway: '10.0.0.1' };
    expect(venetAddresses({ nic, config: {} })).toEqual(['10.0.0.5']);
    expect(venetAddresses({ nic, config: { 'openvz.ipadd': '10.0.0.6 10.0.0.5 10.0.0.7' } })).toEqual(['10.0.0.5', '10.0.0.6', '10.0.0.7']);
  });

  it('renders resolv.conf only when resolvers or search domains are set', () => {
    expect(renderResolvConf({})).toBeUndefined();
    expect(renderResolvConf({ 'openvz.nameserver': '192.0.2.1 192.0.2.2', 'openvz.searchdomain': 'a.org b.org' })).toBe('search a.org b.org\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n');
  });

  it('says why checkpoints cannot be taken: no CRIU, a CRIU older than 4.1, or one Hangar does not drive yet', () => {
    expect(checkpointVerdict(null, '6.18.44')).toMatch(/CRIU is not installed .*4\.1 or newer on kernel 6\.18\.44/);
    expect(checkpointVerdict('Version: 3.17.1\n', '6.18.44')).toBe('not available: CRIU 3.17 cannot checkpoint on kernel 6.18.44 (it needs CRIU 4.1 or newer)');
    expect(checkpointVerdict('Version: 4.1.1\nGitID: v4.1.1\n', '6.18.44')).toBe('not available: Hangar does not drive CRIU 4.1 yet');
  });
});
