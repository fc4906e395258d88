// Unit tests of the LXC output, /proc/PID/cgroup and cgroup counter parsers.
import { describe, expect, it } from 'vitest';
import { lxcStateToInstanceState, parseCgroupNumber, parseFlatKeyed, parseLxcInfo, parseProcCgroup, tailLines } from './parse.js';

describe('parseLxcInfo', () => {
  it('reads state and pid', () => {
    expect(parseLxcInfo('State:          RUNNING\nPID:            16815\n')).toEqual({ state: 'RUNNING', pid: 16815 });
    expect(parseLxcInfo('State:          STOPPED\n')).toEqual({ state: 'STOPPED', pid: null });
  });
  it('maps LXC states', () => {
    expect(lxcStateToInstanceState('RUNNING')).toBe('running');
    expect(lxcStateToInstanceState('FROZEN')).toBe('frozen');
    expect(lxcStateToInstanceState('STOPPED')).toBe('stopped');
    expect(lxcStateToInstanceState('ABORTING')).toBe('stopping');
    expect(lxcStateToInstanceState(null)).toBe('unknown');
  });
});

describe('cgroups', () => {
  it('parses /proc/PID/cgroup on a hybrid host', () => {
    const c = parseProcCgroup('9:name=systemd:/hgr/web\n4:memory:/hgr/web\n1:cpu,cpuacct:/hgr/web\n0::/hgr/web\n');
    expect(c.v1.memory).toBe('/hgr/web');
    expect(c.v1.cpuacct).toBe('/hgr/web');
    expect(c.v1['name=systemd']).toBe('/hgr/web');
    expect(c.v2).toBe('/hgr/web');
  });
  it('parses counter files', () => {
    expect(parseFlatKeyed('oom_kill_disable 0\nunder_oom 0\noom_kill 2\n').oom_kill).toBe(2);
    expect(parseFlatKeyed('usage_usec 1500\nuser_usec 1000\n').usage_usec).toBe(1500);
    expect(parseCgroupNumber('67108864\n')).toBe(67108864);
    expect(parseCgroupNumber('max\n')).toBeNull();
    expect(parseCgroupNumber(undefined)).toBeNull();
  });
  it('tails lines', () => {
    expect(tailLines('a\n\nb\nc\n', 2)).toEqual(['b', 'c']);
  });
});
