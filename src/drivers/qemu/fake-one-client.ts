// Base of the scripted QEMU socket peers for unit tests (QMP, guest agent): one client served at a time, later ones wait, as QEMU's socket chardevs do.
import type { Duplex } from 'node:stream';

/** A connection being served; `no` is its 1-based number. */
export interface PeerConn {
  no: number;
  sock: Duplex;
}

/** Serves one accepted connection at a time; the protocol lives in the subclass. */
export abstract class OneClientPeer<C extends PeerConn> {
  protected active: C | undefined;
  private readonly queue: Duplex[] = [];
  private accepted = 0;

  /** Starts serving sock (listeners, greeting) and answers its connection record. */
  protected abstract open(sock: Duplex, no: number): C;

  /** Called once the served client has gone, before a waiting one is served. */
  protected closed(_conn: C): void {}

  /** Hands a freshly accepted connection to the peer; it waits unserved while another client is connected. */
  accept(sock: Duplex): void {
    sock.on('error', () => undefined);
    if (this.active) {
      this.queue.push(sock);
      sock.on('close', () => { const i = this.queue.indexOf(sock); if (i >= 0) this.queue.splice(i, 1); });
      return;
    }
    this.serve(sock);
  }

  private serve(sock: Duplex): void {
    const conn = this.open(sock, ++this.accepted);
    this.active = conn;
    sock.on('close', () => {
      if (this.active !== conn) return;
      this.active = undefined;
      this.closed(conn);
      const next = this.queue.shift();
      if (next) this.serve(next);
    });
  }

  /** True while a client is being served. */
  get connected(): boolean {
    return this.active !== undefined;
  }

  /** Writes raw bytes to the current client in one write. */
  sendRaw(data: string | Buffer): void {
    this.active?.sock.write(data);
  }

  /** Writes data to the current client in pieces of size bytes, delayMs apart (to exercise reassembly). */
  async sendSplit(data: string | Buffer, size: number, delayMs = 2): Promise<void> {
    const bytes = Buffer.from(data);
    for (let i = 0; i < bytes.length; i += size) {
      this.active?.sock.write(bytes.subarray(i, i + size));
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }

  /** Drops the current client's connection, as an exiting QEMU would. */
  drop(): void {
    this.active?.sock.destroy();
  }

  /** Drops every connection, waiting ones included. */
  closeAll(): void {
    for (const s of this.queue.splice(0)) s.destroy();
    this.drop();
  }
}
