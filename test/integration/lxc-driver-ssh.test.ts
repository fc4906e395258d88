// Integration: the LXC driver conformance suite with the driver opened on an SshHost to this machine through a private sshd on 127.0.0.1: drivers run over SSH unchanged.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SshHost } from '../../src/host/ssh.js';
import { runDriverConformance } from '../conformance/driver-conformance.js';
import { lxcConformanceEnv, lxcHostEnv, setupLxcHostEnv, teardownLxcHostEnv, type LxcHostEnv } from '../helpers/lxc-host-env.js';
import { startSshd, type TestSshd } from '../helpers/sshd.js';

// HANGAR_TEST_ID (one digit) keeps side-by-side runs apart; "s" keeps these names apart from lxc-driver.test.ts's "t" ones.
const TEST_ID = /^[0-9]$/.test(process.env.HANGAR_TEST_ID ?? '') ? process.env.HANGAR_TEST_ID! : 'x';
const prefix = `s${TEST_ID}${randomBytes(2).toString('hex').slice(0, 3)}`;
let sshd: TestSshd | undefined;
let host: SshHost | undefined;
let env: LxcHostEnv | undefined;

beforeAll(async () => {
  sshd = await startSshd();
  host = await SshHost.connect({ name: 'ssh-localhost', host: '127.0.0.1', port: sshd.port, identityFile: sshd.identityFile, hostKeyFingerprint: sshd.hostKeyFingerprint });
  env = lxcHostEnv(host, prefix);
  await setupLxcHostEnv(env);
});

afterAll(async () => {
  try {
    if (env) await teardownLxcHostEnv(env);
  } finally {
    host?.close();
    await sshd?.stop();
  }
});

runDriverConformance({
  driverName: 'lxc',
  setup: async () => lxcConformanceEnv(env!),
  config: { 'limits.memory': '128MiB', 'limits.cpu': '1', 'limits.processes': '200' },
  restartOnly: { 'security.privileged': 'true' },
  // The busybox image runs getty on the console; root has no password there.
  consoleLogin: 'root',
  skips: { snapshot: 'container snapshots are taken by the storage pool (btrfs), not by the LXC driver' },
  instanceName: 'conf',
});

describe('lxc driver over ssh', () => {
  it('ran everything through the SSH connection', () => {
    expect(lxcConformanceEnv(env!).host).toBe(host);
    expect(host!.stats.connects).toBe(1);
    expect(host!.stats.sessions).toBeGreaterThan(20);
    expect(host!.stats.sftpRequests).toBeGreaterThan(100);
  });
});
