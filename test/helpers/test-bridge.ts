// A bridge on a free 10.2xx.y.0/24 that a driver-level integration test owns, made and removed through the Host.
import { randomBytes } from 'node:crypto';
import type { Host } from '../../src/host/host.js';

/** Picks a 10.2xx.y.0/24 subnet no interface on this host uses (answers "10.2xx.y"). */
export async function freeSubnet(host: Host): Promise<string> {
  const used = (await host.exec(['ip', '-4', '-o', 'addr', 'show'])).stdout;
  for (;;) {
    const s = `10.${200 + (randomBytes(1)[0]! % 50)}.${randomBytes(1)[0]!}`;
    if (!used.includes(` ${s}.`)) return s;
  }
}

/** Creates bridge `name` with <subnet>.1/24 on a free subnet and brings it up; answers the subnet. */
export async function addTestBridge(host: Host, name: string): Promise<string> {
  const subnet = await freeSubnet(host);
  await host.exec(['ip', 'link', 'add', name, 'type', 'bridge']);
  await host.exec(['ip', 'addr', 'add', `${subnet}.1/24`, 'dev', name]);
  await host.exec(['ip', 'link', 'set', name, 'up']);
  return subnet;
}
