// Unit tests of the LXC output and /proc parsers.
import { describe, expect, it } from 'vitest';
import {
  cgroupLayoutOf, lxcStateToInstanceState, parseCgroupMounts, parseCgroupNumber, parseFlatKeyed, parseLxcInfo, parseProcCgroup,
  parseProcStatStartTime, tailLines,
} from './parse.js';

const HYBRID_MOUNTS = `sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0
`;

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

describe('parseProcStatStartTime', () => {
  it('takes field 22 even when comm has spaces and parentheses', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    fields[22 - 3] = '987654';
    expect(parseProcStatStartTime(`123 (my (odd) name) ${fields.join(' ')}`)).toBe(987654);
    expect(parseProcStatStartTime('garbage')).toBeNull();
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
  it('parses mounts and tells the layout', () => {
    const m = parseCgroupMounts(HYBRID_MOUNTS);
    expect(m.v2).toBe('/sys/fs/cgroup/unified');
    expect(m.v1.cpu).toBe('/sys/fs/cgroup/cpu,cpuacct');
    expect(m.v1.cpuacct).toBe('/sys/fs/cgroup/cpu,cpuacct');
    expect(m.v1.memory).toBe('/sys/fs/cgroup/memory');
    expect(m.v1.relatime).toBeUndefined();
    expect(cgroupLayoutOf(m)).toBe('hybrid');
    expect(cgroupLayoutOf(parseCgroupMounts('cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n'))).toBe('v2');
    expect(cgroupLayoutOf(parseCgroupMounts('cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n'))).toBe('v1');
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
