// Unit tests of the OpenVZ 7 parsers against recorded outputs of prlctl list -i -j and vzlist -j (test/fixtures/openvz7, written from the tools' documented formats).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { parsePrlctlInfo, parseVzlistJson, prlSize, vz7State } from './parse.js';

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
