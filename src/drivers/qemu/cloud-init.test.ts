// Unit tests for the NoCloud seed renderer: exact meta-data, user-data and network-config text.
import { describe, expect, it } from 'vitest';
import { renderNoCloudSeed } from './cloud-init.js';

describe('renderNoCloudSeed', () => {
  it('renders a static address matched by MAC, DNS and a default cloud-config with keys', () => {
    const seed = renderNoCloudSeed({
      instanceId: 'i-0123', hostname: 'web1', ipv4: '10.199.86.20', prefixLength: 24, gateway: '10.199.86.1', dns: ['10.199.86.1'],
      mac: '52:54:00:AB:CD:EF', sshKeys: ['ssh-ed25519 AAAAC3Nza me@host'],
    });
    expect(seed['meta-data']).toBe('instance-id: "i-0123"\nlocal-hostname: "web1"\npublic-keys:\n  - "ssh-ed25519 AAAAC3Nza me@host"\n');
    expect(seed['user-data']).toBe('#cloud-config\nhostname: "web1"\nmanage_etc_hosts: true\nssh_authorized_keys:\n  - "ssh-ed25519 AAAAC3Nza me@host"\n');
    expect(seed['network-config']).toBe([
      'version: 2',
      'ethernets:',
      '  nic0:',
      '    match:',
      '      macaddress: "52:54:00:ab:cd:ef"',
      '    dhcp4: false',
      '    addresses:',
      '      - "10.199.86.20/24"',
      '    routes:',
      '      - to: "0.0.0.0/0"',
      '        via: "10.199.86.1"',
      '    nameservers:',
      '      addresses:',
      '        - "10.199.86.1"',
      '',
    ].join('\n'));
  });

  it('passes user-data through unchanged and falls back to DHCP on every ethernet name', () => {
    const userData = '#!/bin/sh\necho hi > /dev/ttyS0\n';
    const seed = renderNoCloudSeed({ instanceId: 'x', hostname: 'db.example.org', userData });
    expect(seed['user-data']).toBe(userData);
    expect(seed['meta-data']).toBe('instance-id: "x"\nlocal-hostname: "db.example.org"\n');
    expect(seed['network-config']).toBe('version: 2\nethernets:\n  nic0:\n    match:\n      name: "e*"\n    dhcp4: true\n');
  });

  it('splits an FQDN into hostname and fqdn and takes a prefix from the address', () => {
    const seed = renderNoCloudSeed({ instanceId: 'y', hostname: 'db.example.org', ipv4: '192.168.1.5/16', mac: '52:54:00:00:00:01' });
    expect(seed['user-data']).toBe('#cloud-config\nhostname: "db"\nfqdn: "db.example.org"\nmanage_etc_hosts: true\n');
    expect(seed['network-config']).toContain('      - "192.168.1.5/16"\n');
    expect(seed['network-config']).not.toContain('routes');
  });

  it('rejects bad hostnames, addresses, MACs and keys', () => {
    const base = { instanceId: 'i', hostname: 'h' };
    expect(() => renderNoCloudSeed({ ...base, hostname: 'bad_name' })).toThrow(/hostname/);
    expect(() => renderNoCloudSeed({ ...base, hostname: 'a\nb' })).toThrow(/hostname/);
    expect(() => renderNoCloudSeed({ ...base, instanceId: '' })).toThrow(/instance id/);
    expect(() => renderNoCloudSeed({ ...base, ipv4: '10.0.0.256' })).toThrow(/IPv4/);
    expect(() => renderNoCloudSeed({ ...base, ipv4: '10.0.0.1/33' })).toThrow(/IPv4/);
    expect(() => renderNoCloudSeed({ ...base, ipv4: '10.0.0.1', gateway: 'router' })).toThrow(/gateway/);
    expect(() => renderNoCloudSeed({ ...base, dns: ['x'] })).toThrow(/DNS/);
    expect(() => renderNoCloudSeed({ ...base, mac: '52:54:00:00:00' })).toThrow(/MAC/);
    expect(() => renderNoCloudSeed({ ...base, sshKeys: ['ssh-rsa AAA\nevil: 1'] })).toThrow(/SSH/);
  });

  it('quotes values so YAML specials stay text', () => {
    const seed = renderNoCloudSeed({ instanceId: 'id: "x" # y', hostname: 'h' });
    expect(seed['meta-data'].split('\n')[0]).toBe('instance-id: "id: \\"x\\" # y"');
  });
});
