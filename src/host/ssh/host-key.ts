// Host keys: SHA256 fingerprints as OpenSSH prints them, the key type inside a key blob, and probing a server's key for first contact.
import { createHash } from 'node:crypto';
import { AppError } from '../../shared/errors.js';
import { ssh2 } from './ssh2-module.js';

/** The fingerprint of a public key blob as `ssh-keygen -l -E sha256` prints it: "SHA256:" and unpadded base64. */
export function sshFingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type a public key blob names in its first field ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", ...). */
export function sshKeyType(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const len = blob.readUInt32BE(0);
  return len > 0 && 4 + len <= blob.length ? blob.subarray(4, 4 + len).toString('latin1') : 'unknown';
}

/** A fingerprint as OpenSSH writes it (SHA256:, 43 base64 characters); anything else is refused. */
export function parseFingerprint(text: string): string {
  const t = text.trim();
  if (!/^SHA256:[A-Za-z0-9+/]{43}$/.test(t)) throw new AppError('INVALID_ARGUMENT', `Invalid host key fingerprint ${JSON.stringify(text)}: expected SHA256: and 43 base64 characters, as ssh-keygen -l prints it`);
  return t;
}

/** Host key algorithms that present a key of this type (an RSA key signs with rsa-sha2-*), so a pinned key is the one offered. */
export function hostKeyAlgorithms(type: string): string[] {
  return type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [type];
}

/** What a server presents on first contact. */
export interface ProbedHostKey {
  type: string;
  fingerprint: string;
}

/** Connects to an SSH server only far enough to see its host key (no authentication); the caller decides whether to trust it. */
export function probeHostKey(opts: { host: string; port?: number; timeoutMs?: number }): Promise<ProbedHostKey> {
  const port = opts.port ?? 22;
  const where = `${opts.host}:${port}`;
  return new Promise((resolve, reject) => {
    const conn = new (ssh2().Client)();
    let seen: ProbedHostKey | undefined;
    const finish = (err?: unknown) => {
      conn.removeAllListeners();
      conn.on('error', () => undefined);
      conn.end();
      if (seen) resolve(seen);
      else reject(new AppError('HOST_UNREACHABLE', `Cannot read the host key of ${where}`, { cause: err, details: { address: opts.host, port } }));
    };
    conn.on('error', finish);
    conn.on('close', () => finish(new Error('connection closed before the key exchange')));
    conn.connect({
      host: opts.host, port, username: 'hangar-probe', readyTimeout: opts.timeoutMs ?? 10_000,
      // Refusing the key ends the connection right after the key exchange, before anything is authenticated.
      hostVerifier: (key: Buffer) => { seen = { type: sshKeyType(key), fingerprint: sshFingerprint(key) }; return false; },
    });
  });
}
