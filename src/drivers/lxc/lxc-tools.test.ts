// Unit tests of the lxc-* argv builders.
import { describe, expect, it } from 'vitest';
import { DEFAULT_PATH, lxcAttachArgv, lxcConsoleArgv, lxcInfoArgv, lxcStartArgv, lxcStopArgv } from './lxc-tools.js';

const t = { lxcPath: '/var/lib/hangar/lxc', name: 'web1' };

describe('lxc-tools argv', () => {
  it('builds start/stop/info', () => {
    expect(lxcStartArgv(t, { logFile: '/x/lxc.log', logLevel: 'ERROR' })).toEqual(['lxc-start', '-d', '-P', t.lxcPath, '-n', 'web1', '-o', '/x/lxc.log', '-l', 'ERROR']);
    expect(lxcStopArgv(t, { kill: true })).toEqual(['lxc-stop', '-P', t.lxcPath, '-n', 'web1', '-k']);
    expect(lxcStopArgv(t, { timeoutS: 2.5 })).toEqual(['lxc-stop', '-P', t.lxcPath, '-n', 'web1', '-t', '3', '--nokill']);
    expect(lxcInfoArgv(t)).toEqual(['lxc-info', '-P', t.lxcPath, '-n', 'web1', '-s', '-p', '-H']);
    expect(lxcConsoleArgv(t)).toEqual(['lxc-console', '-P', t.lxcPath, '-n', 'web1', '-t', '0']);
  });

  it('refuses a relative lxc path (the command socket name depends on it)', () => {
    expect(() => lxcInfoArgv({ lxcPath: 'lxc', name: 'x' })).toThrow(/absolute/);
  });

  it('attaches with a clean env and passes user data only as separate arguments', () => {
    const argv = lxcAttachArgv(t, { command: ['ls', '-l', '$(rm -rf /)'], env: { FOO: 'a b;c' }, cwd: '/srv/my dir' });
    expect(argv.slice(0, 6)).toEqual(['lxc-attach', '-P', t.lxcPath, '-n', 'web1', '--clear-env']);
    expect(argv).toContain(`PATH=${DEFAULT_PATH}`);
    expect(argv).toContain('FOO=a b;c');
    const dash = argv.indexOf('--');
    expect(argv.slice(dash + 1)).toEqual(['/bin/sh', '-c', 'cd "$1" || exit 126; shift; exec "$@"', 'hangar-cwd', '/srv/my dir', 'ls', '-l', '$(rm -rf /)']);
    expect(lxcAttachArgv(t, { command: ['true'] }).slice(-2)).toEqual(['--', 'true']);
    expect(lxcAttachArgv(t, { command: ['sh'], tty: true })).toContain('TERM=xterm-256color');
  });

  it('rejects bad env names, relative cwd and empty commands', () => {
    expect(() => lxcAttachArgv(t, { command: ['x'], env: { 'A=B': '1' } })).toThrow(/environment variable name/);
    expect(() => lxcAttachArgv(t, { command: ['x'], cwd: 'tmp' })).toThrow(/absolute/);
    expect(() => lxcAttachArgv(t, { command: [] })).toThrow(/Empty command/);
  });
});
