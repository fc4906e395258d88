// Unit tests of the CTID.conf rendering: vzctl's value forms, a faithful merge into the user's file, and a round trip through the importer.
import { describe, expect, it } from 'vitest';
import { resourcesOf } from '../../shared/config.js';
import { VzConf } from './conf.js';
import { importVzConfText } from './import.js';
import { renderCtConf, type CtConfInput } from './render-conf.js';

const input: CtConfInput = {
  name: 'web', ctid: '101', ostemplate: 'debian-12-x86_64', root: '/var/lib/hangar/openvz/root/web', private: '/var/lib/hangar/pool/instances/web',
  venet: ['10.0.0.5', '10.0.0.6'],
  config: {
    'openvz.ctid': '101', 'limits.memory': '512MiB', 'limits.memory.swap': '1GiB', 'limits.memory.guarantee': '256MiB', 'limits.disk': '2GiB',
    'limits.disk.inodes': '144179', 'limits.processes': '240', 'limits.cpu.weight': '200', 'limits.cpu.cap': '150%', 'limits.cpu': '2',
    'openvz.hostname': 'web.example.org', 'openvz.nameserver': '192.0.2.53', 'openvz.searchdomain': 'example.org', 'boot.autostart': 'true', 'user.description': 'my web',
  },
};

describe('CTID.conf of a CT', () => {
  it('writes vzctl\'s forms: pages, 1 KiB blocks, barrier:limit pairs, units, yes/no', () => {
    const conf = VzConf.parse(renderCtConf(input));
    expect(Object.fromEntries(conf.entries())).toEqual({
      NAME: 'web', OSTEMPLATE: 'debian-12-x86_64', VE_ROOT: input.root, VE_PRIVATE: input.private, ONBOOT: 'yes',
      PHYSPAGES: '0:131072', SWAPPAGES: '0:262144', VMGUARPAGES: '65536:unlimited', DISKSPACE: '2097152:2097152', DISKINODES: '144179:144179',
      NUMPROC: '240:240', CPUUNITS: '2000', CPULIMIT: '150', CPUS: '2', IP_ADDRESS: '10.0.0.5 10.0.0.6', HOSTNAME: 'web.example.org',
      NAMESERVER: '192.0.2.53', SEARCHDOMAIN: 'example.org', DESCRIPTION: 'my web',
    });
    expect(VzConf.parse(renderCtConf({ ...input, config: {}, venet: [] })).get('PHYSPAGES')).toBe('0:unlimited');
    const veth = VzConf.parse(renderCtConf({ ...input, netif: { ifname: 'eth0', mac: '02:00:00:00:00:05', hostIf: 'hgr1234abcd', bridge: 'hgrbr0' } }));
    expect(veth.get('NETIF')).toBe('ifname=eth0,mac=02:00:00:00:00:05,host_ifname=hgr1234abcd,bridge=hgrbr0');
  });

  it('keeps the user\'s comments, order and other keys; rewrites managed keys in place and drops unset ones', () => {
    const mine = '# my notes\nX_LOCAL="keep me"\nCPUUNITS="1000"   # old\nKMEMSIZE="14372700:14790164"\nHOSTNAME="old"\n';
    const out = renderCtConf({ ...input, config: { 'limits.cpu.weight': '50' } }, VzConf.parse(mine));
    const lines = out.split('\n');
    expect(lines.slice(0, 4)).toEqual(['# my notes', 'X_LOCAL="keep me"', 'CPUUNITS="500"', 'KMEMSIZE="14372700:14790164"']);
    expect(out).not.toContain('HOSTNAME');
    // Rendering what it wrote changes nothing.
    expect(renderCtConf({ ...input, config: { 'limits.cpu.weight': '50' } }, VzConf.parse(out))).toBe(out);
  });

  it('reads back through the importer to the same resources, addresses and names', () => {
    const t = importVzConfText(renderCtConf(input), { source: '101.conf' });
    expect(t).toMatchObject({ ctid: 101, name: 'web', addresses: ['10.0.0.5', '10.0.0.6'], hostname: 'web.example.org', ostemplate: 'debian-12-x86_64', private: input.private });
    expect(resourcesOf(t.config)).toEqual(resourcesOf(input.config));
    for (const k of ['limits.disk.inodes', 'openvz.nameserver', 'openvz.searchdomain', 'boot.autostart', 'user.description']) expect(t.config[k], k).toBe(input.config[k]);
    expect(t.untranslated).toEqual([]);
  });
});
