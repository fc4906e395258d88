// How the host service reaches a remote machine: a link (a Host that keeps its connection) and the SSH connector that makes links.
import type { Host } from '../../host/host.js';
import { probeHostKey, SshHost, sshOptionsFromRecord } from '../../host/ssh.js';
import type { HostRow } from '../db/database.js';

/** A remote machine's Host with its connection: reconnects with backoff after a drop; calls fail fast with HOST_UNREACHABLE while it is down. */
export interface RemoteLink extends Host {
  /** Resolves at the next successful connection (at once when up); rejects once the link is closed. */
  ready(): Promise<void>;
  /** True while connected. */
  readonly connected: boolean;
  /** Ends the connection for good; what runs detached on the machine keeps running. */
  close(): void;
}

/** The key a server presents on first contact. */
export interface PresentedKey {
  type: string;
  fingerprint: string;
}

/** How hosts are reached: SSH in the daemon, a stand-in in tests. */
export interface HostConnector {
  /** The host key the server at address:port presents (nothing is authenticated); HOST_UNREACHABLE when it cannot be read. */
  probeKey(target: { address: string; port: number }): Promise<PresentedKey>;
  /** A link whose first connection was made (HOST_UNREACHABLE, nothing left open, when it fails): for adding and trusting. */
  connect(row: HostRow): Promise<RemoteLink>;
  /** A link that connects in the background: for hosts the daemon already knows. */
  link(row: HostRow): RemoteLink;
}

/** The options of an SshHost for a host row (its pinned key, and only keys of that type asked for). */
function sshOptions(row: HostRow) {
  return sshOptionsFromRecord({ name: row.name, address: row.address, port: row.port, user: row.user, identityFile: row.identityFile, fingerprint: row.fingerprint, keyType: row.keyType });
}

/** Hosts reached over one kept-alive SSH connection each (src/host/ssh.ts). */
export const sshConnector: HostConnector = {
  probeKey: (t) => probeHostKey({ host: t.address, port: t.port, timeoutMs: 10_000 }),
  connect: (row) => SshHost.connect(sshOptions(row)),
  link: (row) => new SshHost(sshOptions(row)),
};
