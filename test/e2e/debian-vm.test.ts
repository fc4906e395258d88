// E2e: the Debian VM image is built (debootstrap, cached), boots under QEMU to a login prompt, runs cloud-init user-data and answers the guest agent.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliOk, cliOkAsync, sharedDaemon, uniquePrefix } from '../helpers/daemon.js';
import { deleteAllWithPrefix, findInstance, pollUntil, settings } from '../helpers/e2e.js';

const P = uniquePrefix('dvm');
const IMAGE = `${P}deb`;
const VM = `${P}a`;
const logText = () => {
  const f = join(settings.dir, 'instances', VM, 'console.log');
  return existsSync(f) ? readFileSync(f, 'latin1') : '';
};

beforeAll(async () => {
  await sharedDaemon();
});

afterAll(() => {
  deleteAllWithPrefix(P);
  cli(['image', 'delete', IMAGE, '--vm']);
}, 180_000);

describe('Debian VM', () => {
  it('image build debian --vm (debootstrap with a kernel, qemu-guest-agent and cloud-init)', async () => {
    const out = await cliOkAsync(['image', 'build', 'debian', '--vm', '--alias', IMAGE]);
    expect(out).toContain(IMAGE);
    const img = (JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as { alias: string; type: string }[]).find((i) => i.alias === IMAGE);
    expect(img?.type).toBe('vm');
  }, 1_200_000);

  it('boots to a login prompt, runs cloud-init user-data, gets its hostname and address, answers the agent', async () => {
    const userData = '#cloud-config\nruncmd:\n  - [sh, -c, "echo HANGAR-CLOUD-INIT-OK > /dev/ttyS0"]\n';
    cliOk(['launch', IMAGE, VM, '--vm', '--memory', '1GiB', '-c', `cloud-init.user-data=${userData}`]);
    const ip = findInstance(VM)!.ipv4!;
    // Under TCG the boot takes tens of seconds: poll the persistent console log.
    const login = await pollUntil(() => /login:/.test(logText()), 3000, 100);
    expect(login, logText().slice(-2000)).toBe(true);
    expect(await pollUntil(() => logText().includes('HANGAR-CLOUD-INIT-OK'), 1200, 100), logText().slice(-2000)).toBe(true);
    const agentUp = await pollUntil(() => cli(['exec', VM, '--', 'true']).code === 0, 120, 500);
    expect(agentUp).toBe(true);
    expect(cliOk(['exec', VM, '--', 'cat', '/etc/hostname']).trim()).toBe(VM);
    expect(cliOk(['exec', VM, '--', 'ip', '-4', '-o', 'addr'])).toContain(`${ip}/`);
  }, 900_000);

  it('cloud-init keys are refused for containers and for images without cloud-init', () => {
    const r = cli(['launch', 'busybox', `${P}c`, '-c', 'cloud-init.user-data=#cloud-config']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/lxc backend/);
    expect(findInstance(`${P}c`)).toBeUndefined();
  });
});
