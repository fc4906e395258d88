// Unit tests of the OpenVZ 7 parsers against recorded outputs of prlctl list -i -j, vzlist -j, vzpkg list -O and /proc/user_beancounters (test/fixtures/openvz7, written from the tools' documented formats).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { beancounterUnit, parsePrlctlInfo, parseToolVersion, parseUserBeancounters, parseVzlistCtids, parseVzlistJson, parseVzpkgList, prlSize, usageOfVzlist, vz7State } from './parse.js';

const fixture = (f: string) => readFileSync(join(import.meta.dirname, '../../../test/fixtures/openvz7', f), 'utf8');

describe('OpenVZ 7 parsers', () => {
  it('prlctl list -i -j: containers only, in Hangar\'s terms', () => {
    const cts = parsePrlctlInfo(fixture('prlctl-list-i-j.json'));
    expect(cts.map((c) => c.ctid)).toEqual(['201', '202']);
    expect(cts[0]).toEqual({
      uuid: '5f0c3a52-1b7e-4c0d-9a44-2f3d1e0b7a11', ctid: '201', name: 'web201', state: 'running', rawState: 'running', ostemplate: 'centos7', home: '/vz/private/201',
      memoryBytes: 2048 * 1024 ** 2, cpus: 2, cpuunits: 2000, cpulimitPct: 150, diskBytes: 10240 * 1024 ** 2, ips: ['192.0.2.21', '192.0.2.22'],
      hostname: 'web201.example.org', nameservers: ['192.0.2.53', '198.51.100.53'], searchdomains: ['example.org'], autostart: true, uptimeS: 86400,
    });
    expect(cts[1]).toMatchObject({ name: '202', state: 'stopped', memoryBytes: 512 * 1024 ** 2, diskBytes: 2 * 1024 ** 3, ips: [], hostname: null, autostart: false, cpulimitPct: null });
  });

  it('maps prlctl\'s states and sizes', () => {
    expect(['running', 'paused', 'stopped', 'suspended', 'mounted', 'starting', 'stopping', 'weird'].map(vz7State)).toEqual(['running', 'frozen', 'stopped', 'stopped', 'stopped', 'starting', 'stopping', 'unknown']);
    expect([prlSize('1024Mb'), prlSize('2Gb'), prlSize('512Kb'), prlSize('7'), prlSize('1.5Gb'), prlSize('lots'), prlSize(3)]).toEqual([1024 ** 3, 2 * 1024 ** 3, 512 * 1024, 7, 1.5 * 1024 ** 3, null, null]);
  });

  it('vzlist -j: the rows as printed, LONG_MAX included', () => {
    const rows = parseVzlistJson(fixture('vzlist-j.json'));
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ ctid: '201', status: 'running', physpages: { failcnt: 3, limit: 524288 } });
  });

  it('refuses what is no such output, naming the tool', () => {
    for (const [fn, text] of [[parsePrlctlInfo, 'not json'], [parsePrlctlInfo, '{}'], [parsePrlctlInfo, '[{"Type":"CT"}]'], [parseVzlistJson, '[1]']] as const) {
      let err: unknown;
      try { fn(text); } catch (e) { err = e; }
      expect(isAppError(err) && err.code === 'BACKEND_FAILED', text).toBe(true);
      expect((err as Error).message).toMatch(/prlctl|vzlist/);
    }
  });
});

describe('OpenVZ 7 parsers: templates, versions, beancounters, usage', () => {
  it('vzpkg list -O: the template names, cached or not', () => {
    expect(parseVzpkgList(fixture('vzpkg-list-O.txt'))).toEqual(['centos-7-x86_64', 'debian-11-x86_64', 'ubuntu-20.04-x86_64', 'vzlinux-8-x86_64']);
    expect(parseVzpkgList('\n')).toEqual([]);
  });

  it('the tools\' versions, in either wording', () => {
    expect([parseToolVersion('prlctl version 7.0.301\n'), parseToolVersion('vzctl v.7.0.271\n'), parseToolVersion('nothing here')]).toEqual(['7.0.301', '7.0.271', null]);
  });

  it('vzlist -a -j -o ctid: the CTIDs as strings, numbers too', () => {
    expect(parseVzlistCtids('[{"ctid": "101"}, {"ctid": 102}, {"ctid": null}]')).toEqual(['101', '102']);
  });

  it('/proc/user_beancounters: one CT\'s block, units by resource, LONG_MAX as unlimited, dummies left out', () => {
    const text = fixture('user_beancounters');
    const bc = parseUserBeancounters(text, '201')!;
    expect(bc).toHaveLength(21);
    expect(bc.map((b) => b.resource)).not.toContain('dummy');
    expect(bc.find((b) => b.resource === 'physpages')).toEqual({ resource: 'physpages', unit: 'pages', held: 51200, maxheld: 70000, barrier: 0, limit: 524288, failcnt: 3 });
    expect(bc.find((b) => b.resource === 'numproc')).toEqual({ resource: 'numproc', unit: 'items', held: 37, maxheld: 52, barrier: 400, limit: 400, failcnt: 0 });
    expect(bc.find((b) => b.resource === 'kmemsize')).toEqual({ resource: 'kmemsize', unit: 'bytes', held: 8650752, maxheld: 9437184, barrier: null, limit: null, failcnt: 0 });
    expect(bc.find((b) => b.resource === 'swappages')).toMatchObject({ unit: 'pages', limit: 262144 });
    // The next CT's rows are its own; a CT with no block (not running) has none.
    expect(parseUserBeancounters(text, '203')!.map((b) => b.resource)).toEqual(['kmemsize', 'numproc', 'physpages', 'swappages']);
    expect(parseUserBeancounters(text, '202')).toBeNull();
    expect(['tcpsndbuf', 'lockedpages', 'numfile'].map(beancounterUnit)).toEqual(['bytes', 'pages', 'items']);
  });

  it('usage from vzlist -j: RAM and its peak in bytes, processes, disk used; a stopped CT only its disk', () => {
    const [running, stopped] = parseVzlistJson(fixture('vzlist-usage-j.json'));
    expect(usageOfVzlist(running!)).toEqual({ memoryBytes: 51200 * 4096, memoryPeakBytes: 70000 * 4096, processes: 37, diskUsedBytes: 1843200 * 1024 });
    expect(usageOfVzlist(stopped!)).toEqual({ diskUsedBytes: 409600 * 1024 });
  });
});
