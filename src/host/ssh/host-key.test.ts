// Unit tests of host key helpers: fingerprints equal ssh-keygen's, key types, what a pinned fingerprint may look like.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { hostKeyAlgorithms, parseFingerprint, sshFingerprint, sshKeyType } from './host-key.js';

describe('host keys', () => {
  it('fingerprints and types keys exactly as ssh-keygen does', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hangar-hostkey-'));
    try {
      for (const [type, name] of [['ed25519', 'ssh-ed25519'], ['ecdsa', 'ecdsa-sha2-nistp256'], ['rsa', 'ssh-rsa']] as const) {
        const f = join(dir, type);
        expect(spawnSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', f]).status).toBe(0);
        const blob = Buffer.from(readFileSync(`${f}.pub`, 'utf8').split(' ')[1]!, 'base64');
        const printed = spawnSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${f}.pub`], { encoding: 'utf8' }).stdout.split(' ')[1];
        expect(sshFingerprint(blob)).toBe(printed);
        expect(parseFingerprint(` ${printed}\n`)).toBe(printed);
        expect(sshKeyType(blob)).toBe(name);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses what is no SHA256 fingerprint', () => {
    for (const bad of ['', 'MD5:aa:bb', 'SHA256:short', `SHA256:${'A'.repeat(43)}=`, 'sha256:' + 'A'.repeat(43)]) {
      let err: unknown;
      try { parseFingerprint(bad); } catch (e) { err = e; }
      expect(isAppError(err, 'INVALID_ARGUMENT'), bad).toBe(true);
    }
    expect(sshKeyType(Buffer.alloc(2))).toBe('unknown');
  });

  it('asks for the algorithms that present the pinned key type', () => {
    expect(hostKeyAlgorithms('ssh-ed25519')).toEqual(['ssh-ed25519']);
    expect(hostKeyAlgorithms('ssh-rsa')).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
  });
});
