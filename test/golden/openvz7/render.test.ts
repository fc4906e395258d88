// Golden tests of the openvz7 argv renderer: test/golden/openvz7/<case>.argv, one argv element per line; UPDATE_GOLDEN=1 rewrites them.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { execCommandLine, renderCreateArgs, renderSetArgs, vz7Settings } from '../../../src/drivers/openvz7/render-args.js';

const dir = import.meta.dirname;

const FULL = {
  'limits.memory': '1536MiB', 'limits.memory.guarantee': '384MiB', 'limits.memory.swap': '1GiB', 'limits.cpu': '2', 'limits.cpu.weight': '150', 'limits.cpu.cap': '125.4%',
  'limits.processes': '512', 'limits.disk': '10000MiB', 'limits.disk.inodes': '655360', 'openvz.hostname': 'web.example.org',
  'openvz.nameserver': '192.0.2.53 198.51.100.53', 'openvz.searchdomain': 'example.org corp.example.org', 'openvz.ipadd': '10.123.0.21 10.123.0.22',
};
const full = vz7Settings(FULL, 'web', '10.123.0.20');
const minimal = vz7Settings({}, 'box', '10.123.0.30');

const cases: Record<string, string[]> = {
  'create-full': renderCreateArgs('4711', 'centos-7-x86_64', 'web', full),
  'create-minimal-odd-disk': renderCreateArgs('101', 'debian-11-x86_64', 'box', vz7Settings({ 'limits.disk': '1000000001' }, 'box', '10.123.0.30')),
  'set-new-full': renderSetArgs('4711', full, null)!,
  'set-new-minimal': renderSetArgs('101', minimal, null)!,
  'set-live-change': renderSetArgs('4711', vz7Settings({ ...FULL, 'limits.memory': '3GiB', 'limits.cpu.weight': '10000', 'openvz.ipadd': '10.123.0.22 10.123.0.23', 'openvz.nameserver': '192.0.2.54', 'limits.disk': '12GiB' }, 'web', '10.123.0.20'), full)!,
  'set-unset-to-defaults': renderSetArgs('4711', vz7Settings({ 'limits.memory': '1536MiB', 'limits.disk': '10000MiB', 'limits.disk.inodes': '655360', 'openvz.hostname': 'web.example.org' }, 'web', '10.123.0.20'), full)!,
  'exec2-awkward-words': ['exec2', '4711', execCommandLine({ command: ['sh', '-c', 'printf "%s\\n" "$HOME" | tr a-z A-Z; exit 3', 'it\'s', 'a  b', '*', '$(id)', ''], cwd: '/root/my dir', env: { LANG: 'C.UTF-8', NOTE: 'x=1; y' } })],
};

describe('openvz7 vzctl argv goldens', () => {
  for (const [name, args] of Object.entries(cases)) {
    it(name, () => {
      const file = join(dir, `${name}.argv`);
      const got = `${['vzctl', ...args].join('\n')}\n`;
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, got);
      expect(got).toBe(readFileSync(file, 'utf8'));
    });
  }

  it('gives no element with a line break, and nothing to set when nothing changed', () => {
    for (const args of Object.values(cases)) for (const a of args) expect(a).not.toMatch(/\n/);
    expect(renderSetArgs('4711', full, full)).toBeNull();
  });
});
