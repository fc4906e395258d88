// Unit tests of SshHost's construction: options from a stored host record, what is refused before any connection is tried.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../shared/errors.js';
import { SshHost, sshOptionsFromRecord } from './ssh.js';

const FP = `SHA256:${'A'.repeat(43)}`;

describe('SshHost construction', () => {
  it('builds its options from the record the daemon stores', () => {
    expect(sshOptionsFromRecord({ name: 'dom0', address: '192.0.2.7', port: 2222, user: 'root', identityFile: '/var/lib/hangar/ssh/id_ed25519', fingerprint: FP, keyType: 'ssh-ed25519' })).toEqual({
      name: 'dom0', host: '192.0.2.7', port: 2222, username: 'root', identityFile: '/var/lib/hangar/ssh/id_ed25519', hostKeyFingerprint: FP, hostKeyType: 'ssh-ed25519',
    });
    expect(sshOptionsFromRecord({ name: 'x', address: 'h', port: 22, user: 'u', identityFile: '/k', fingerprint: FP })).not.toHaveProperty('hostKeyType');
  });

  it('refuses a malformed fingerprint and a missing key before connecting', () => {
    const refused = (f: () => unknown) => { try { f(); return undefined; } catch (e) { return e; } };
    expect(isAppError(refused(() => new SshHost({ name: 'a', host: '127.0.0.1', hostKeyFingerprint: 'MD5:00', identityFile: '/k' })), 'INVALID_ARGUMENT')).toBe(true);
    expect(isAppError(refused(() => new SshHost({ name: 'a', host: '127.0.0.1', hostKeyFingerprint: FP })), 'INVALID_ARGUMENT')).toBe(true);
  });

  it('a missing identity file makes the host unreachable, naming the file; calls fail at once', async () => {
    const h = new SshHost({ name: 'nokey', host: '127.0.0.1', port: 9, hostKeyFingerprint: FP, identityFile: '/no/such/key' });
    try {
      const err = await SshHost.connect({ name: 'nokey', host: '127.0.0.1', port: 9, hostKeyFingerprint: FP, identityFile: '/no/such/key' }).then(() => undefined, (e: unknown) => e);
      expect(isAppError(err, 'HOST_UNREACHABLE')).toBe(true);
      expect((err as Error).message).toContain('/no/such/key');
      await expect(h.exec(['true'])).rejects.toMatchObject({ code: 'HOST_UNREACHABLE' });
      expect(h.connected).toBe(false);
    } finally {
      h.close();
    }
    await expect(h.fs.stat('/')).rejects.toMatchObject({ code: 'HOST_UNREACHABLE', message: expect.stringContaining('closed') });
  });
});
