// SshHost against an in-process ssh2 server that refuses the first exec requests (as dropbear does right after a channel closed): the command is asked again and runs once.
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError } from '../../shared/errors.js';
import { SshHost } from '../ssh.js';
import { sshFingerprint } from './host-key.js';
import { ssh2 } from './ssh2-module.js';

const { Server, utils } = ssh2();
const hostKey = utils.generateKeyPairSync('ed25519');
const userKey = utils.generateKeyPairSync('ed25519');
const parsed = utils.parseKey(hostKey.public);
if (parsed instanceof Error) throw parsed;
const fingerprint = sshFingerprint(parsed.getPublicSSH());

// How many exec requests the server refuses before it runs one, per command text, and what it ran.
let refuseFirst = 0;
const seen: string[] = [];
const ran: string[] = [];
let server: InstanceType<typeof Server>;
let port = 0;

beforeAll(async () => {
  server = new Server({ hostKeys: [hostKey.private] }, (client) => {
    client.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])));
    client.on('ready', () => {
      client.on('session', (accept) => {
        const session = accept();
        session.on('exec', (acc, rej, info) => {
          seen.push(info.command);
          if (seen.filter((c) => c === info.command).length <= refuseFirst) { rej(); return; }
          ran.push(info.command);
          const ch = acc();
          ch.exit(0);
          ch.end();
        });
      });
    });
    client.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});

afterAll(() => { server.close(); });

const connect = () => SshHost.connect({ name: 'refusing', host: '127.0.0.1', port, username: 'root', privateKey: userKey.private, hostKeyFingerprint: fingerprint });

describe('SshHost and refused exec requests', () => {
  it('asks again when the server refuses an exec request, and the command runs once', async () => {
    refuseFirst = 3;
    seen.length = 0;
    ran.length = 0;
    const host = await connect();
    try {
      const res = await host.exec(['true']);
      expect(res.code).toBe(0);
      expect(seen.length).toBe(4);
      expect(ran.length).toBe(1);
    } finally {
      host.close();
    }
  });

  it('gives up with an error naming the host when the server keeps refusing', async () => {
    refuseFirst = 1000;
    seen.length = 0;
    const host = await connect();
    try {
      const err = await host.exec(['true']).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(String((err as Error).message) + String((err as Error).cause ?? '')).toMatch(/Unable to exec/);
      // Bounded: the first request and 20 retries.
      expect(seen.length).toBe(21);
      expect(isAppError(err, 'HOST_UNREACHABLE')).toBe(false);
    } finally {
      host.close();
    }
  }, 20_000);
});
