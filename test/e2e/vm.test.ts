// E2e of QEMU VMs through the CLI: the busybox VM image boots (TCG or KVM), exec through the guest agent, network, ACPI and forced stops, daemon restarts, bad input.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { PassThrough, Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HangarClient } from '../../src/client/client.js';
import type { HostInfo, Instance } from '../../src/shared/schemas.js';
import { cli, cliAsync, cliOk, cliOkAsync, sharedDaemon, setSharedDaemon, startDaemon, TEST_ENV, uniquePrefix } from '../helpers/daemon.js';
import { collectEvents, daemonPid, deleteAllWithPrefix, findInstance, consoleLogText, hostIfName, leftovers, pollUntil, settings, waitForGuest } from '../helpers/e2e.js';

const P = uniquePrefix('vm');
const VM = `${P}a`;
const CT = `${P}c`;

const started = new Date().toISOString();

beforeAll(async () => {
  await sharedDaemon();
  // No busybox VM image: the first launch must build it (the Debian kernel and agent packages are cached once downloaded).
  cli(['image', 'delete', 'busybox', '--vm']);
}, 900_000);

afterAll(() => {
  deleteAllWithPrefix(P);
}, 180_000);

describe('QEMU VMs', () => {
  it('launches the busybox VM (building the missing built-in VM image first): own kernel, serial console log, its address', async () => {
    expect((JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as { alias: string; type: string }[]).some((i) => i.alias === 'busybox' && i.type === 'vm')).toBe(false);
    await cliOkAsync(['launch', 'busybox', VM, '--vm', '--memory', '256MiB']);
    const img = (JSON.parse(cliOk(['image', 'list', '--format', 'json'])) as { alias: string; type: string; createdAt: string }[]).find((i) => i.alias === 'busybox' && i.type === 'vm');
    expect(img && img.createdAt >= started).toBe(true);
    const vm = findInstance(VM);
    expect(vm?.type).toBe('vm');
    expect(vm?.driver).toBe('qemu');
    expect(vm?.state).toBe('running');
    expect(vm?.technology.kernel).toBe('own');
    expect(vm?.technology.memory).toBe('dedicated');
    expect(vm?.technology.isolation).toMatch(/KVM|TCG/);
    // The guest's own marker on its serial console, kept in the persistent log.
    await waitForGuest(VM, { marker: `HANGAR-READY ${VM}` });
    const info = JSON.parse(cliOk(['info', VM, '--format', 'json'])) as { usage?: { cpuTimeNs?: number; memoryBytes?: number }; details?: Record<string, string> };
    expect(info.usage?.cpuTimeNs).toBeGreaterThan(0);
    expect(info.usage?.memoryBytes).toBeGreaterThan(0);
    // What QEMU runs: the pinned Q35 machine, the accelerator, the image's kernel booted directly, the balloon's view of RAM.
    expect(info.details).toMatchObject({ machine: expect.stringMatching(/^pc-q35-\d+\.\d+$/) as unknown, accelerator: expect.stringMatching(/^(kvm|tcg) \(/) as unknown, boot: expect.stringMatching(/^kernel .*vmlinux \(image\)$/) as unknown, 'guest memory': '256 MiB (balloon)' });
    expect(readFileSync(join(settings.dir, 'instances', VM, 'machine'), 'utf8').trim()).toBe(info.details?.machine);
    expect(cliOk(['info', VM])).toMatch(/Backend:\n(  .*\n)*  machine: pc-q35-/);
  }, 180_000);

  it('the console websocket attaches to the VM\'s serial console (a shell answers), its output also lands in the log, and detaching leaves the VM running', async () => {
    const client = new HangarClient({ socketPath: TEST_ENV.HANGAR_SOCKET });
    try {
      let out = '';
      const stdin = new PassThrough();
      const ac = new AbortController();
      const stdout = new Writable({ write(c, _e, cb) { out += String(c); cb(); } });
      const session = client.console(VM, { cols: 80, rows: 24 }, { stdin, stdout, signal: ac.signal });
      // Arithmetic the guest's shell must do: the answer cannot be an echo of what was typed.
      stdin.write('echo CONSOLE-$((6*7))\r');
      const answered = await pollUntil(() => out.includes('CONSOLE-42'), 100, 100);
      ac.abort();
      await session;
      expect(answered, out).toBe(true);
      expect(consoleLogText(VM)).toContain('CONSOLE-42');
      expect((await client.getInstance(VM)).state).toBe('running');
    } finally {
      client.close();
    }
  });

  it('runs commands through the guest agent: output, exit code, stdin; refuses -t', () => {
    expect(cliOk(['exec', VM, '--', 'uname', '-n']).trim()).toBe(VM);
    expect(cli(['exec', VM, '--', 'sh', '-c', 'exit 3']).code).toBe(3);
    expect(cliOk(['exec', VM, '--', 'cat'], { input: 'through the agent\n' })).toBe('through the agent\n');
    expect(cliOk(['exec', VM, '--cwd', '/proc', '--', 'pwd']).trim()).toBe('/proc');
    const t = cli(['exec', '-t', VM, '--', 'sh']);
    expect(t.code).not.toBe(0);
    expect(t.stderr).toMatch(/terminal|-t/);
  });

  it('an exec in the VM is signalled by id through a guest kill of its process group, and ended when its client goes', async () => {
    const tag = String(700 + Math.floor(Math.random() * 200));
    const script = `sleep ${tag} & sleep ${tag}; true`;
    const guestSleeps = () => cliOk(['exec', VM, '--', 'ps']).split('\n').filter((l) => new RegExp(`\\ssleep ${tag}$`).test(l.trimEnd())).length;
    const c = new HangarClient({ socketPath: TEST_ENV.HANGAR_SOCKET });
    try {
      let id: string | undefined;
      const run = c.exec(VM, { command: ['sh', '-c', script] }, { stdin: '', stdout: new PassThrough(), stderr: new PassThrough(), onExecId: (x) => { id = x; } });
      expect(await pollUntil(() => id !== undefined && guestSleeps() === 2, 100, 200), 'both sleeps run in the guest').toBe(true);
      expect((await c.signalExec(VM, id!, 'SIGTERM')).id).toBe(id);
      expect(await run).toBe(128 + 15);
      expect(await pollUntil(() => guestSleeps() === 0, 50, 200), 'the background sleep went with its group').toBe(true);
    } finally {
      c.close();
    }
    const gone = new HangarClient({ socketPath: TEST_ENV.HANGAR_SOCKET });
    const hung = gone.exec(VM, { command: ['sh', '-c', script] }, { stdin: '', stdout: new PassThrough(), stderr: new PassThrough() }).catch(() => undefined);
    expect(await pollUntil(() => guestSleeps() === 2, 100, 200)).toBe(true);
    gone.close();
    await hung;
    expect(await pollUntil(() => guestSleeps() === 0, 50, 200), 'the guest commands ended with their client').toBe(true);
  }, 120_000);

  it('kill -9 while an exec runs in the VM: the next hangard ends the command its agent still runs in the guest (exec-ended drift)', async () => {
    const tag = String(900 + Math.floor(Math.random() * 90));
    const guestSleeps = () => cliOk(['exec', VM, '--', 'ps']).split('\n').filter((l) => new RegExp(`\\ssleep ${tag}$`).test(l.trimEnd())).length;
    const c = new HangarClient({ socketPath: TEST_ENV.HANGAR_SOCKET });
    const run = c.exec(VM, { command: ['sleep', tag] }, { stdin: '', stdout: new PassThrough(), stderr: new PassThrough() }).catch(() => -1);
    expect(await pollUntil(() => guestSleeps() === 1, 100, 200), 'the sleep runs in the guest').toBe(true);
    const pid = findInstance(VM)!.pid;
    process.kill(await daemonPid(), 'SIGKILL');
    await pollUntil(() => !existsSync(TEST_ENV.HANGAR_SOCKET) || cli(['list']).code !== 0, 50, 100);
    await run;
    c.close();
    setSharedDaemon(await startDaemon(TEST_ENV));
    expect(findInstance(VM)?.pid).toBe(pid);
    expect(await pollUntil(() => guestSleeps() === 0, 50, 200), 'the guest command ended by the next daemon').toBe(true);
    const sub = await collectEvents({ replay: true, types: ['instance-drift'] });
    try {
      expect(await pollUntil(() => sub.events.some((e) => e.instance === VM && e.data?.repair === 'exec-ended'), 50, 100), JSON.stringify(sub.events)).toBe(true);
    } finally {
      sub.close();
    }
  }, 180_000);

  it('is on the managed bridge: host <-> VM <-> container', () => {
    const vmIp = findInstance(VM)!.ipv4!;
    cliOk(['launch', 'busybox', CT]);
    const ctIp = findInstance(CT)!.ipv4!;
    expect(spawnSync('ping', ['-c1', '-W5', vmIp]).status).toBe(0);
    expect(cli(['exec', VM, '--', 'ping', '-c1', '-W5', ctIp]).code).toBe(0);
    expect(cli(['exec', CT, '--', 'ping', '-c1', '-W5', vmIp]).code).toBe(0);
  });

  it('freeze pauses the vCPUs (the guest clock stops advancing), unfreeze resumes', async () => {
    cliOk(['freeze', VM]);
    expect(findInstance(VM)?.state).toBe('frozen');
    const before = consoleLogText(VM).length;
    await new Promise((r) => setTimeout(r, 1500));
    // A paused guest prints nothing, and the agent cannot answer until it resumes.
    expect(consoleLogText(VM).length).toBe(before);
    cliOk(['unfreeze', VM]);
    expect(findInstance(VM)?.state).toBe('running');
    const up1 = Number(cliOk(['exec', VM, '--', 'cut', '-d', ' ', '-f1', '/proc/uptime']));
    await new Promise((r) => setTimeout(r, 1000));
    const up2 = Number(cliOk(['exec', VM, '--', 'cut', '-d', ' ', '-f1', '/proc/uptime']));
    expect(up2).toBeGreaterThan(up1);
  });

  it('survives hangard kill -9: the next daemon reconnects to the same QEMU', async () => {
    const pid = findInstance(VM)!.pid!;
    process.kill(await daemonPid(), 'SIGKILL');
    await pollUntil(() => !existsSync(TEST_ENV.HANGAR_SOCKET) || cli(['list']).code !== 0, 50, 100);
    setSharedDaemon(await startDaemon(TEST_ENV));
    const again = findInstance(VM);
    expect(again?.state).toBe('running');
    expect(again?.pid).toBe(pid);
    expect(cliOk(['exec', VM, '--', 'echo', 'still here']).trim()).toBe('still here');
  }, 120_000);

  it('stop powers the guest off through ACPI (its own power-down message, QMP SHUTDOWN from the guest), then start boots it again', async () => {
    const stream = await collectEvents({ types: ['instance-shutdown'] });
    try {
      cliOk(['stop', VM, '--timeout', '60']);
      expect(await pollUntil(() => stream.events.some((e) => e.instance === VM), 50, 100)).toBe(true);
      // guest: true means the guest shut itself down (the ACPI path), not QEMU quitting on the forced path.
      expect(stream.events.find((e) => e.instance === VM)?.data).toMatchObject({ guest: true });
    } finally {
      stream.close();
    }
    expect(findInstance(VM)?.state).toBe('stopped');
    const log = consoleLogText(VM);
    expect(log).toContain(`HANGAR-POWERDOWN ${VM}`);
    expect(log).toMatch(/reboot: Power down/);
    cliOk(['start', VM]);
    await waitForGuest(VM, { marker: 'HANGAR-READY', count: 2 });
  }, 180_000);

  it('a guest that powers itself off is seen at once through QMP: shutdown event, then stopped with its tap released', async () => {
    const stream = await collectEvents({ types: ['instance-shutdown', 'instance-stopped'] });
    try {
      // The agent's answer may be lost as the guest goes down: the outcome is what counts.
      cli(['exec', VM, '--', 'poweroff']);
      const seen = await pollUntil(() => stream.events.some((e) => e.instance === VM && e.type === 'instance-stopped'), 300, 100);
      expect(seen, JSON.stringify(stream.events)).toBe(true);
      const shutdown = stream.events.find((e) => e.instance === VM && e.type === 'instance-shutdown');
      expect(shutdown?.data?.guest).toBe(true);
      expect(stream.events.find((e) => e.instance === VM && e.type === 'instance-stopped')?.data?.by).toBe('guest');
    } finally {
      stream.close();
    }
    expect(findInstance(VM)?.state).toBe('stopped');
    expect(spawnSync('ip', ['link', 'show', hostIfName(VM)]).status).not.toBe(0);
    cliOk(['start', VM]);
    await waitForGuest(VM, { marker: 'HANGAR-READY', count: 3 });
  }, 180_000);

  it('a QEMU killed from outside is seen at once (its pidfd): stopped with an event and its tap released; boot.autorestart=on-failure boots it again', async () => {
    const boots = (consoleLogText(VM).match(/HANGAR-READY/g) ?? []).length;
    const stream = await collectEvents({ types: ['instance-stopped', 'instance-restarted'] });
    try {
      const pid0 = findInstance(VM)!.pid!;
      process.kill(pid0, 'SIGKILL');
      // The bound is only there to fail rather than hang: the event comes from the pidfd's wake-up.
      const seen = await pollUntil(() => stream.events.some((e) => e.instance === VM && e.type === 'instance-stopped'), 100, 50);
      expect(seen, JSON.stringify(stream.events)).toBe(true);
      expect(stream.events.find((e) => e.instance === VM && e.type === 'instance-stopped')?.data).toEqual({ by: 'outside', pid: pid0 });
      expect(findInstance(VM)).toMatchObject({ state: 'stopped', pid: null });
      expect(spawnSync('ip', ['link', 'show', hostIfName(VM)]).status).not.toBe(0);
      cliOk(['config', 'set', VM, 'boot.autorestart=on-failure']);
      cliOk(['start', VM]);
      // Killed once it has booted: the automatic boot must print its own marker.
      await waitForGuest(VM, { marker: 'HANGAR-READY', count: boots + 1 });
      const pid1 = findInstance(VM)!.pid!;
      process.kill(pid1, 'SIGKILL');
      const restarted = await pollUntil(() => stream.events.some((e) => e.instance === VM && e.type === 'instance-restarted'), 150, 100);
      expect(restarted, JSON.stringify(stream.events)).toBe(true);
      expect(stream.events.find((e) => e.instance === VM && e.type === 'instance-restarted')?.data).toMatchObject({ by: 'autorestart', attempt: 1 });
      const now = findInstance(VM)!;
      expect(now.state).toBe('running');
      expect(now.pid).not.toBe(pid1);
      expect(spawnSync('ip', ['link', 'show', hostIfName(VM)]).status).toBe(0);
    } finally {
      stream.close();
      cli(['config', 'set', VM, 'boot.autorestart=no']);
    }
    // Two boots more: the start by hand and the automatic one.
    await waitForGuest(VM, { marker: 'HANGAR-READY', count: boots + 2 });
  }, 360_000);

  it('a guest kernel panic is seen at once through pvpanic: panicked event, then stopped', async () => {
    const name = `${P}pan`;
    cliOk(['launch', 'busybox', name, '--vm']);
    await waitForGuest(name, { agent: true });
    const stream = await collectEvents({ types: ['instance-panicked', 'instance-shutdown', 'instance-stopped'] });
    try {
      // The agent never answers: the guest kernel dies under it.
      void cliOkAsync(['exec', name, '--', 'sh', '-c', 'echo c > /proc/sysrq-trigger']).catch(() => undefined);
      const seen = await pollUntil(() => stream.events.some((e) => e.instance === name && e.type === 'instance-stopped'), 300, 100);
      expect(seen, JSON.stringify(stream.events)).toBe(true);
      const types = stream.events.filter((e) => e.instance === name).map((e) => e.type);
      expect(types.indexOf('instance-panicked')).toBeGreaterThanOrEqual(0);
      expect(types.indexOf('instance-panicked')).toBeLessThan(types.indexOf('instance-stopped'));
      expect(stream.events.find((e) => e.instance === name && e.type === 'instance-shutdown')?.data?.reason).toBe('guest-panic');
    } finally {
      stream.close();
    }
    expect(findInstance(name)?.state).toBe('stopped');
    expect(consoleLogText(name)).toMatch(/Kernel panic/);
    cliOk(['delete', name]);
  }, 180_000);

  it('stop --stateful saves the RAM; start resumes exactly there (uptime continues, RAM token kept, no new boot)', async () => {
    const token = `token-${Date.now()}`;
    cliOk(['exec', VM, '--', 'sh', '-c', `echo ${token} > /run/hangar-token`]);
    const up1 = Number(cliOk(['exec', VM, '--', 'cut', '-d', ' ', '-f1', '/proc/uptime']));
    const boots = (consoleLogText(VM).match(/HANGAR-READY/g) ?? []).length;
    const pid = findInstance(VM)!.pid!;
    cliOk(['stop', '--stateful', VM]);
    expect(findInstance(VM)?.state).toBe('stopped');
    const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
    expect(stat === '' || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')).toBe(true);
    await new Promise((r) => setTimeout(r, 2000));
    cliOk(['start', VM]);
    expect(findInstance(VM)?.pid).not.toBe(pid);
    expect(cliOk(['exec', VM, '--', 'cat', '/run/hangar-token']).trim()).toBe(token);
    const up2 = Number(cliOk(['exec', VM, '--', 'cut', '-d', ' ', '-f1', '/proc/uptime']));
    // The guest's clock continued from where it was saved: no reboot (which would restart it near zero).
    expect(up2).toBeGreaterThanOrEqual(up1);
    expect((consoleLogText(VM).match(/HANGAR-READY/g) ?? []).length).toBe(boots);
    expect(existsSync(join(settings.dir, 'instances', VM, 'state.bin'))).toBe(false);
  }, 180_000);

  it('disk snapshots (qcow2, taken live) restore file contents on the data disk', () => {
    cliOk(['exec', VM, '--', 'sh', '-c', 'echo one > /data/f && sync']);
    cliOk(['snapshot', 'create', VM, 'd1']);
    cliOk(['exec', VM, '--', 'sh', '-c', 'echo two > /data/f && sync']);
    expect(cliOk(['exec', VM, '--', 'cat', '/data/f']).trim()).toBe('two');
    cliOk(['snapshot', 'restore', VM, 'd1']);
    expect(findInstance(VM)?.state).toBe('running');
    expect(cliOk(['exec', VM, '--', 'cat', '/data/f']).trim()).toBe('one');
    const list = JSON.parse(cliOk(['snapshot', 'list', VM, '--format', 'json'])) as { name: string; stateful: boolean }[];
    expect(list).toEqual([expect.objectContaining({ name: 'd1', stateful: false })]);
    cliOk(['snapshot', 'delete', VM, 'd1']);
    expect(JSON.parse(cliOk(['snapshot', 'list', VM, '--format', 'json']))).toEqual([]);
  }, 180_000);

  it('stateful snapshots restore the running state (RAM) without a reboot', () => {
    cliOk(['exec', VM, '--', 'sh', '-c', 'echo before > /run/state-token']);
    const pid = findInstance(VM)!.pid;
    const boots = (consoleLogText(VM).match(/HANGAR-READY/g) ?? []).length;
    cliOk(['snapshot', 'create', VM, 's1', '--stateful']);
    cliOk(['exec', VM, '--', 'sh', '-c', 'echo after > /run/state-token']);
    cliOk(['snapshot', 'restore', VM, 's1']);
    expect(cliOk(['exec', VM, '--', 'cat', '/run/state-token']).trim()).toBe('before');
    expect(findInstance(VM)?.pid).toBe(pid);
    expect((consoleLogText(VM).match(/HANGAR-READY/g) ?? []).length).toBe(boots);
    cliOk(['snapshot', 'delete', VM, 's1']);
  }, 180_000);

  it('the VNC websocket relays RFB: handshake, then a framebuffer update of the guest screen geometry', async () => {
    const { WebSocket } = await import('ws');
    const ws = new WebSocket(`ws+unix://${TEST_ENV.HANGAR_SOCKET}:/1.0/instances/${VM}/console?type=vga`);
    let buf = Buffer.alloc(0);
    let waiter: (() => void) | undefined;
    ws.on('message', (d: Buffer, binary: boolean) => {
      if (!binary) throw new Error(`unexpected text frame ${String(d)}`);
      buf = Buffer.concat([buf, d]);
      waiter?.();
    });
    const need = async (n: number): Promise<Buffer> => {
      while (buf.length < n) await new Promise<void>((r) => { waiter = r; setTimeout(r, 200); });
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return out;
    };
    try {
      await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
      expect((await need(12)).toString('latin1')).toMatch(/^RFB 003\.00\d\n$/);
      ws.send(Buffer.from('RFB 003.008\n', 'latin1'));
      const nTypes = (await need(1))[0]!;
      const types = [...(await need(nTypes))];
      expect(types).toContain(1);
      ws.send(Buffer.from([1]));
      expect((await need(4)).readUInt32BE(0)).toBe(0);
      ws.send(Buffer.from([1]));
      const init = await need(24);
      const width = init.readUInt16BE(0);
      const height = init.readUInt16BE(2);
      expect(width).toBeGreaterThan(0);
      expect(height).toBeGreaterThan(0);
      await need(init.readUInt32BE(20));
      // FramebufferUpdateRequest for the whole screen, not incremental.
      const req = Buffer.alloc(10);
      req[0] = 3;
      req.writeUInt16BE(width, 6);
      req.writeUInt16BE(height, 8);
      ws.send(req);
      const head = await need(4);
      expect(head[0]).toBe(0);
      expect(head.readUInt16BE(2)).toBeGreaterThan(0);
      const rect = await need(12);
      expect(rect.readUInt16BE(4)).toBe(width);
      expect(rect.readUInt16BE(6)).toBe(height);
    } finally {
      ws.close();
    }
  });

  it('stop --force ends QEMU at once, without the guest powering off', () => {
    const pid = findInstance(VM)!.pid!;
    const downs = (consoleLogText(VM).match(/HANGAR-POWERDOWN/g) ?? []).length;
    cliOk(['stop', '--force', VM]);
    expect(findInstance(VM)?.state).toBe('stopped');
    // Gone, or a zombie waiting for a PID 1 that reaps late: either way no longer running.
    const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
    expect(stat === '' || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')).toBe(true);
    expect((consoleLogText(VM).match(/HANGAR-POWERDOWN/g) ?? []).length).toBe(downs);
  });

  it('qcow2 snapshot tables are reconciled with the rows: a row without an entry is refused for restore (the VM keeps running) and dropped at start, an entry without a row listed again', async () => {
    const disk = join(settings.poolDir, 'instances', VM, 'root.qcow2');
    const table = () => (JSON.parse(spawnSync('qemu-img', ['info', '--output=json', '-U', disk], { encoding: 'utf8' }).stdout) as { snapshots?: { name: string }[] }).snapshots?.map((x) => x.name) ?? [];
    expect(findInstance(VM)?.state).toBe('stopped');
    cliOk(['snapshot', 'create', VM, 'kept']);
    expect(table()).toContain('kept');
    // What a crash between the table and the row leaves, both ways round.
    expect(spawnSync('qemu-img', ['snapshot', '-d', 'kept', disk]).status).toBe(0);
    expect(spawnSync('qemu-img', ['snapshot', '-c', 'stray', disk]).status).toBe(0);
    cliOk(['start', VM]);
    const pid = findInstance(VM)!.pid;
    const r = cli(['snapshot', 'restore', VM, 'kept']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/is not in its disk's snapshot table/);
    expect(findInstance(VM)).toMatchObject({ state: 'running', pid });
    process.kill(await daemonPid(), 'SIGKILL');
    await pollUntil(() => !existsSync(TEST_ENV.HANGAR_SOCKET) || cli(['list']).code !== 0, 50, 100);
    setSharedDaemon(await startDaemon(TEST_ENV));
    const list = JSON.parse(cliOk(['snapshot', 'list', VM, '--format', 'json'])) as { name: string }[];
    expect(list.map((x) => x.name)).toEqual(['stray']);
    const sub = await collectEvents({ replay: true, types: ['instance-drift'] });
    try {
      await pollUntil(() => sub.events.filter((e) => e.instance === VM).length >= 2, 50, 100);
      expect(sub.events.filter((e) => e.instance === VM).map((e) => [e.data?.repair, e.data?.snapshot])).toEqual([['snapshot-forgotten', 'kept'], ['snapshot-adopted', 'stray']]);
    } finally {
      sub.close();
    }
    // The adopted entry is Hangar's now: deleted live through QMP.
    cliOk(['snapshot', 'delete', VM, 'stray']);
    expect(table()).toEqual([]);
    expect(findInstance(VM)).toMatchObject({ state: 'running', pid });
    cliOk(['stop', '--force', VM]);
  }, 180_000);

  it('limits.cpu.cap and limits.cpu.weight hold the whole QEMU process in a cgroup, changed live', async () => {
    const name = `${P}cpu`;
    cliOk(['launch', 'busybox', name, '--vm', '-c', 'limits.cpu.cap=50%', '-c', 'limits.cpu.weight=200']);
    const dir = join('/sys/fs/cgroup/cpu', `${settings.prefix}.vm`, name);
    expect(readFileSync(join(dir, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('50000');
    expect(readFileSync(join(dir, 'cpu.shares'), 'utf8').trim()).toBe('2048');
    const pid = findInstance(name)!.pid!;
    expect(readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')).toContain(String(pid));
    // Busy guest vCPU: QEMU's CPU time over wall time stays near the cap (a ratio, not a duration).
    await waitForGuest(name, { agent: true });
    // The loop is the exec itself, running beside the test: a background job of an agent exec is not sure to survive it.
    const busy = cliAsync(['exec', name, '--', 'timeout', '8', 'sh', '-c', 'while :; do :; done']);
    const ticks = () => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8'); const x = f.slice(f.lastIndexOf(')') + 2).split(' '); return Number(x[11]) + Number(x[12]); };
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = Date.now(); const c0 = ticks();
    await new Promise((r) => setTimeout(r, 2500));
    const ratio = ((ticks() - c0) * 10) / (Date.now() - t0);
    expect(ratio).toBeLessThan(0.7);
    // ...and the loop really ran, so the bound above measured the cap; the agent ran it to the end (not hangar's 126).
    expect(ratio).toBeGreaterThan(0.3);
    expect((await busy).code).not.toBe(126);
    const out = cliOk(['config', 'set', name, 'limits.cpu.cap=30%']);
    expect(out).toMatch(/Applied live: .*limits\.cpu\.cap/);
    expect(readFileSync(join(dir, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('30000');
    cliOk(['delete', '--force', name]);
    // Gone once the killed QEMU is reaped (by pid 1, which may take seconds here): bounded, never timed.
    expect(await pollUntil(() => !existsSync(dir), 150, 100), `${dir} removed`).toBe(true);
  }, 180_000);

  it('limits.memory moves the balloon live, never below limits.memory.guarantee', async () => {
    const name = `${P}mem`;
    cliOk(['launch', 'busybox', name, '--vm', '--memory', '256MiB', '-c', 'limits.memory.guarantee=128MiB']);
    await waitForGuest(name, { agent: true });
    // With deflate-on-oom the guest counts ballooned pages as used: MemFree shows the balloon.
    const memTotal = () => Number(/MemFree:\s+(\d+)/.exec(cliOk(['exec', name, '--', 'cat', '/proc/meminfo']))?.[1]) * 1024;
    const before = memTotal();
    expect(cliOk(['config', 'set', name, 'limits.memory=160MiB'])).toMatch(/Applied live: .*limits\.memory/);
    const shrunk = await pollUntil(() => memTotal() <= before - 64 * 1024 ** 2, 100, 100);
    expect(shrunk, `MemFree ${memTotal()} (was ${before})`).toBe(true);
    // Below the guarantee is refused outright, and the guest keeps what it has.
    const low = cli(['config', 'set', name, 'limits.memory=96MiB']);
    expect(low.code).not.toBe(0);
    expect(low.stderr).toMatch(/guarantee/);
    expect(memTotal()).toBeGreaterThan(before - 112 * 1024 ** 2);
    // Back up to the boot size, live as well.
    expect(cliOk(['config', 'set', name, 'limits.memory=256MiB'])).toMatch(/Applied live: .*limits\.memory/);
    expect(await pollUntil(() => memTotal() >= before - 16 * 1024 ** 2, 100, 100)).toBe(true);
    cliOk(['delete', '--force', name]);
  }, 180_000);

  it('limits.disk.read/write throttle all disks through one QEMU throttle group, changed live; the monitor reads it back', async () => {
    const name = `${P}io`;
    cliOk(['launch', 'busybox', name, '--vm', '-c', 'limits.disk.read=50MiB']);
    const limits = () => JSON.parse(cliOk(['monitor', name, 'qom-get', '{"path":"io0","property":"limits"}'])) as Record<string, number>;
    expect(limits()).toMatchObject({ 'bps-read': 50 * 1024 ** 2, 'bps-write': 0, 'iops-read': 0, 'iops-write': 0 });
    expect(cliOk(['config', 'set', name, 'limits.disk.write=100iops'])).toMatch(/Applied live: .*limits\.disk\.write/);
    expect(limits()).toMatchObject({ 'bps-read': 50 * 1024 ** 2, 'iops-write': 100 });
    expect(cliOk(['config', 'unset', name, 'limits.disk.read'])).toMatch(/Applied live: .*limits\.disk\.read/);
    expect(limits()).toMatchObject({ 'bps-read': 0, 'iops-write': 100 });
    // The root disk's device reads through the group's filter node.
    const nodes = JSON.parse(cliOk(['monitor', name, 'query-named-block-nodes'])) as { 'node-name': string; drv: string }[];
    expect(nodes.find((n) => n['node-name'] === 'root-io')?.drv).toBe('throttle');
    // The busybox VM image asks for Q35 (measured faster under TCG); the guest's firmware tables say which machine it got.
    await waitForGuest(name, { agent: true });
    expect(cliOk(['exec', name, '--', 'cat', '/sys/class/dmi/id/product_name'])).toMatch(/Q35/);
    // Bad monitor input is refused by the CLI or named by QEMU; a container has no monitor.
    expect(cli(['monitor', name, 'qom-get', '{not json']).stderr).toMatch(/Invalid monitor arguments/);
    expect(cli(['monitor', name, 'no such command']).stderr).toMatch(/Invalid monitor command/);
    const unknown = cli(['monitor', name, 'no-such-command']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/no-such-command.*failed|CommandNotFound|not found/s);
    cliOk(['launch', 'busybox', `${name}ct`]);
    expect(cli(['monitor', `${name}ct`, 'query-status']).stderr).toMatch(/has no backend monitor/);
    cliOk(['delete', '--force', name]);
    cliOk(['delete', '--force', `${name}ct`]);
  }, 180_000);

  it('config device add/remove hot-plugs qcow2 disks into a running VM (PCIe ports), seen by the guest with their name as serial; size grows live', async () => {
    const name = `${P}dsk`;
    cliOk(['launch', 'busybox', name, '--vm', '-c', 'devices.cold.type=disk', '-c', 'devices.cold.size=16MiB']);
    await waitForGuest(name, { agent: true });
    // serial + size (512-byte sectors) of every virtio disk the guest kernel sees; vda is the root disk.
    const disks = () => cliOk(['exec', name, '--', 'sh', '-c', 'for d in /sys/block/vd*; do echo "$(cat $d/serial 2>/dev/null) $(cat $d/size)"; done']);
    const sectors = (bytes: number) => bytes / 512;
    expect(disks()).toContain(`cold ${sectors(16 * 1024 ** 2)}`);
    const bootPid = findInstance(name)!.pid;
    const out = cliOk(['config', 'device', 'add', name, 'data2', 'disk', 'size=32MiB']);
    expect(out).toMatch(/Applied live: .*devices\.data2\.size/);
    expect(await pollUntil(() => disks().includes(`data2 ${sectors(32 * 1024 ** 2)}`), 100, 100), disks()).toBe(true);
    expect((JSON.parse(cliOk(['info', name, '--format', 'json'])) as { details?: { disks?: string } }).details?.disks).toMatch(/^cold on hp0, data2 on hp1$/);
    const list = JSON.parse(cliOk(['config', 'device', 'list', name, '--format', 'json'])) as { name: string; size: string; pending: string }[];
    expect(list).toEqual([{ name: 'cold', type: 'disk', size: '16MiB', pending: 'no' }, { name: 'data2', type: 'disk', size: '32MiB', pending: 'no' }]);
    // The guest can use it at once.
    expect(cliOk(['exec', name, '--', 'sh', '-c', 'd=$(grep -l data2 /sys/block/vd*/serial | cut -d/ -f4); echo hotplugged | dd of=/dev/$d bs=512 conv=sync 2>/dev/null; dd if=/dev/$d bs=512 count=1 2>/dev/null | head -n1'])).toBe('hotplugged\n');
    expect(cliOk(['config', 'device', 'set', name, 'data2', 'size=48MiB'])).toMatch(/Applied live: .*devices\.data2\.size/);
    expect(await pollUntil(() => disks().includes(`data2 ${sectors(48 * 1024 ** 2)}`), 100, 100), disks()).toBe(true);
    // A shrink is refused before anything of the same change applies: the CPU cap asked for with it is not set.
    const cpuQuota = join('/sys/fs/cgroup/cpu', `${settings.prefix}.vm`, name, 'cpu.cfs_quota_us');
    const quotaBefore = readFileSync(cpuQuota, 'utf8').trim();
    expect(cli(['config', 'set', name, 'limits.cpu.cap=40%', 'devices.data2.size=8MiB']).stderr).toMatch(/cannot shrink/);
    expect(readFileSync(cpuQuota, 'utf8').trim()).toBe(quotaBefore);
    const shown = JSON.parse(cliOk(['config', 'show', name, '--format', 'json'])) as { config: Record<string, string>; pendingConfig: Record<string, string> };
    expect([shown.config['limits.cpu.cap'], shown.pendingConfig['limits.cpu.cap'], shown.config['devices.data2.size']]).toEqual([undefined, undefined, '48MiB']);
    // Unplugging asks the guest through the PCIe attention button (a 5 s grace period in the guest), also a disk plugged at boot.
    expect(cliOk(['config', 'device', 'remove', name, 'cold'])).toMatch(/Applied live: .*devices\.cold\.type/);
    expect(disks()).not.toContain('cold ');
    expect(findInstance(name)!.pid).toBe(bootPid);
    // The root disk (vda, no serial) grows live too; shrinking it is refused.
    expect(cliOk(['config', 'set', name, 'limits.disk=96MiB'])).toMatch(/Applied live: .*limits\.disk/);
    expect(await pollUntil(() => disks().includes(` ${sectors(96 * 1024 ** 2)}`), 100, 100), disks()).toBe(true);
    expect(cli(['config', 'set', name, 'limits.disk=32MiB']).stderr).toMatch(/cannot shrink/);
    // A saved state finds every disk where it was: the hot-plugged one keeps its port when the VM is resumed.
    const up = () => Number(cliOk(['exec', name, '--', 'cut', '-d', ' ', '-f1', '/proc/uptime']));
    const up1 = up();
    cliOk(['stop', '--stateful', name]);
    cliOk(['start', name]);
    expect(up()).toBeGreaterThanOrEqual(up1);
    expect(disks()).toContain(`data2 ${sectors(48 * 1024 ** 2)}`);
    // Nothing pending, and the next boot has the same disks as the running VM had; a stopped VM's disk grows too.
    cliOk(['stop', '--force', name]);
    expect(cliOk(['config', 'set', name, 'limits.disk=128MiB'])).toMatch(/limits\.disk/);
    cliOk(['start', name]);
    await waitForGuest(name, { agent: true });
    expect(disks()).toContain(`data2 ${sectors(48 * 1024 ** 2)}`);
    expect(disks()).toContain(` ${sectors(128 * 1024 ** 2)}`);
    expect(disks()).not.toContain('cold ');
    const bad = cli(['config', 'device', 'add', name, 'data3', 'floppy', 'size=1MiB']);
    expect(bad.code).not.toBe(0);
    expect(existsSync(join(settings.poolDir, 'instances', name, 'disk-data2.qcow2'))).toBe(true);
    cliOk(['delete', '--force', name]);
  }, 240_000);

  it('copies a stopped VM: its own address, MAC and hostname, the disk contents, independent afterwards; a running one is refused', async () => {
    const a = `${P}cpa`;
    const b = `${P}cpb`;
    cliOk(['launch', 'busybox', a, '--vm']);
    await waitForGuest(a, { agent: true });
    cliOk(['exec', a, '--', 'sh', '-c', 'echo copied > /data/copyme && sync']);
    expect(cli(['copy', a, b]).stderr).toMatch(/while it runs: stop it first/);
    cliOk(['stop', a]);
    cliOk(['copy', a, b]);
    const ia = findInstance(a)!;
    const ib = findInstance(b)!;
    expect(ib.type).toBe('vm');
    expect(ib.ipv4).not.toBe(ia.ipv4);
    expect(ib.mac).not.toBe(ia.mac);
    cliOk(['start', a]);
    cliOk(['start', b]);
    for (const n of [a, b]) await waitForGuest(n, { agent: true });
    expect(cliOk(['exec', b, '--', 'hostname'])).toBe(`${b}\n`);
    expect(cliOk(['exec', b, '--', 'cat', '/data/copyme'])).toBe('copied\n');
    cliOk(['exec', b, '--', 'sh', '-c', 'echo mine > /data/copyme && sync']);
    expect(cliOk(['exec', a, '--', 'cat', '/data/copyme'])).toBe('copied\n');
    expect(cli(['exec', b, '--', 'ping', '-c1', '-W5', ia.ipv4!]).code).toBe(0);
    cliOk(['delete', '--force', a]);
    cliOk(['delete', '--force', b]);
  }, 240_000);

  it('refuses bad input before creating anything', () => {
    const cases: [string[], RegExp][] = [
      [['launch', 'busybox', `${P}x`, '--vm', '-c', 'limits.memory.swap=64MiB'], /qemu backend/],
      [['launch', 'busybox', `${P}x`, '--vm', '-c', 'limits.processes=100'], /qemu backend/],
      [['launch', 'busybox', `${P}x`, '--vm', '--memory', '100TiB'], /larger than|exceeds/],
      [['launch', 'busybox', `${P}x`, '--vm', '--cpus', '999'], /CPUs/],
      [['launch', 'busybox', `${P}x`, '--vm', '--disk', '1MiB'], /smaller|only grow/],
    ];
    for (const [args, msg] of cases) {
      const r = cli(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(findInstance(`${P}x`)).toBeUndefined();
      expect(existsSync(join(settings.poolDir, 'instances', `${P}x`))).toBe(false);
    }
  });

  it('refuses a container image for a VM and a VM image for a container', () => {
    cliOk(['image', 'build', 'busybox', '--alias', `${P}ctonly`]);
    try {
      const r = cli(['launch', `${P}ctonly`, `${P}y`, '--vm']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/container image and cannot be used for a vm/);
    } finally {
      cli(['image', 'delete', `${P}ctonly`]);
    }
    expect(findInstance(`${P}y`)).toBeUndefined();
  });

  it('a launch whose kernel QEMU refuses (missing, or garbage after real side effects) fails with QEMU\'s message and leaves nothing behind', async () => {
    // The probe must see every trace of a running VM, or an empty answer below would prove nothing.
    const probe = `${P}lp`;
    cliOk(['launch', 'busybox', probe, '--vm']);
    const found = leftovers(probe, findInstance(probe)?.mac).join('\n');
    for (const kind of ['still listed', `${settings.poolDir}/instances/${probe}`, `${settings.dir}/instances/${probe}`, 'host interface', 'dnsmasq hosts line', `/sys/fs/cgroup/cpu/${settings.prefix}.vm/${probe}`, 'qemu process']) {
      expect(found, kind).toContain(kind);
    }
    cliOk(['delete', '--force', probe]);
    expect(leftovers(probe)).toEqual([]);

    const garbage = join(tmpdir(), `${P}-garbage-kernel`);
    writeFileSync(garbage, randomBytes(256 * 1024));
    try {
      const cases: [string[], RegExp][] = [
        [['-c', `boot.kernel=${garbage}`, '-c', 'boot.initrd=/etc/hostname'], /linux kernel too old to load a ram disk/],
        [['-c', `boot.kernel=${garbage}-missing`], /could not open kernel file/],
      ];
      for (const [i, [extra, msg]] of cases.entries()) {
        const name = `${P}bk${i}`;
        const sub = await collectEvents({ types: ['instance-created', 'instance-starting', 'instance-started'] });
        let r: ReturnType<typeof cli>;
        try {
          r = cli(['launch', 'busybox', name, '--vm', ...extra]);
          // cli() blocks the event loop: let the buffered frames arrive before closing.
          await pollUntil(() => sub.events.some((e) => e.instance === name && e.type === 'instance-starting'), 50, 100);
        } finally {
          sub.close();
        }
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(new RegExp(`Failed to (launch|start) instance "${name}"`));
        expect(r.stderr).toMatch(msg);
        // It got as far as a row, an overlay, a tap and a lease before QEMU refused the kernel.
        const seen = sub.events.filter((e) => e.instance === name).map((e) => e.type);
        expect(seen).toEqual(['instance-created', 'instance-starting']);
        expect(leftovers(name)).toEqual([]);
      }
    } finally {
      rmSync(garbage, { force: true });
    }
  }, 180_000);

  it('a QEMU failure at start fails with QEMU\'s own message and leaves no process or tap behind', () => {
    // Injected after real side effects: the tap is created before QEMU starts, and QEMU refuses a corrupt root disk.
    const name = `${P}k`;
    cliOk(['create', 'busybox', name, '--vm']);
    writeFileSync(join(settings.poolDir, 'instances', name, 'root.qcow2'), 'this is not a qcow2 image\n'.repeat(100));
    const r = cli(['start', name]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(name);
    expect(r.stderr).toMatch(/qcow2|Image is not|Could not open|format/i);
    expect(findInstance(name)?.state).toBe('stopped');
    expect(spawnSync('ip', ['link', 'show', hostIfName(name)]).status).not.toBe(0);
    expect(existsSync(join(settings.dir, 'instances', name, 'qemu.pid'))).toBe(false);
    cliOk(['delete', name]);
    expect(findInstance(name)).toBeUndefined();
    expect(existsSync(join(settings.poolDir, 'instances', name))).toBe(false);
  });
});

describe('the accelerator: chosen by running guest code, shown, chosen per VM; a faulted guest is an error', () => {
  const hostInfo = () => (JSON.parse(cliOk(['host', 'info', '--format', 'json'])) as HostInfo);
  const accelOf = (h: HostInfo) => h.drivers.find((d) => d.name === 'qemu')!.accelerator!;

  it('host info and GET /1.0/host say kvm or tcg and why, in agreement with the KVM verdict', () => {
    const h = hostInfo();
    const a = accelOf(h);
    expect(a.checking).toBe(false);
    expect(a.default).toBe(a.kvmUsable ? 'kvm' : 'tcg');
    expect(h.kvm.usable).toBe(a.kvmUsable);
    if (!a.kvmUsable) expect(a.reason).toMatch(/^\/dev\/kvm (does not exist|is present but (guests fail under it|QEMU cannot run a guest with it)).*; using software emulation \(TCG\)$/);
    else expect(a.reason).toMatch(/^hardware virtualization \(KVM\): KVM runs guests here/);
    expect(cliOk(['host', 'info'])).toMatch(new RegExp(`VM accelerator \\(qemu\\): +${a.default} — `));
  });

  it('boot.accel=tcg runs a VM with software emulation whatever KVM does; boot.accel=kvm runs under KVM or is refused before anything exists', async () => {
    const t = `${P}tcg`;
    cliOk(['launch', 'busybox', t, '--vm', '-c', 'boot.accel=tcg']);
    await waitForGuest(t, { marker: `HANGAR-READY ${t}` });
    const info = JSON.parse(cliOk(['info', t, '--format', 'json'])) as Instance;
    expect(info.details?.accelerator).toBe('tcg (asked for tcg; software emulation (TCG), as boot.accel=tcg asks)');
    const argv = readFileSync(`/proc/${info.pid!}/cmdline`, 'utf8').split('\0');
    expect(argv[argv.indexOf('-accel') + 1]).toBe('tcg');
    expect(argv[argv.indexOf('-cpu') + 1]).toBe('qemu64');
    expect(cliOk(['exec', t, '--', 'uname', '-n']).trim()).toBe(t);
    cliOk(['delete', t, '--force']);

    const k = `${P}kvm`;
    const r = cli(['launch', 'busybox', k, '--vm', '-c', 'boot.accel=kvm']);
    if (accelOf(hostInfo()).kvmUsable) {
      expect(r.code, r.stderr).toBe(0);
      expect((JSON.parse(cliOk(['info', k, '--format', 'json'])) as Instance).details?.accelerator).toMatch(/^kvm /);
      cliOk(['delete', k, '--force']);
    } else {
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/boot\.accel=kvm, but KVM is not usable on this host: \/dev\/kvm/);
      expect(leftovers(k)).toEqual([]);
    }
    for (const [args, msg] of [
      [['launch', 'busybox', `${P}x`, '--vm', '-c', 'boot.accel=fast'], /Invalid value "fast" for boot\.accel: expected auto, kvm or tcg/],
      [['launch', 'busybox', `${P}x`, '-c', 'boot.accel=tcg'], /boot\.accel is not supported by the lxc backend/],
    ] as [string[], RegExp][]) {
      const bad = cli(args);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(msg);
      expect(leftovers(`${P}x`)).toEqual([]);
    }
  }, 180_000);

  it('a guest that faults is in error with the reason (instance-error at once); exec, console and freeze fail at once with it; stop --force, restart and delete work', async () => {
    const name = `${P}flt`;
    cliOk(['launch', 'busybox', name, '--vm']);
    await waitForGuest(name, { agent: true });
    // Held paused after a panic (instead of powered off) QEMU's run state is guest-panicked: a fault the user must look at.
    cliOk(['monitor', name, 'set-action', '{"panic":"pause"}']);
    const stream = await collectEvents({ types: ['instance-error'] });
    try {
      void cliAsync(['exec', name, '--', 'sh', '-c', 'echo c > /proc/sysrq-trigger']);
      expect(await pollUntil(() => stream.events.some((e) => e.instance === name), 300, 100), JSON.stringify(stream.events)).toBe(true);
    } finally {
      stream.close();
    }
    const ev = stream.events.find((e) => e.instance === name)!;
    expect(ev.data).toMatchObject({ runState: 'guest-panicked', reason: expect.stringMatching(/^the guest kernel panicked: Kernel panic - not syncing: sysrq triggered crash/) as unknown });
    const inst = findInstance(name)!;
    expect(inst.state).toBe('error');
    expect(inst.error?.reason).toBe(ev.data!.reason);
    expect(cliOk(['list'])).toMatch(new RegExp(`${name} +vm +qemu +ERROR`));
    expect(cliOk(['info', name])).toMatch(/^Error: +the guest kernel panicked: .*stop --force, restart or delete it$/m);
    for (const args of [['exec', name, '--', 'true'], ['freeze', name], ['console', name]]) {
      const r = cli(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(/is in error \(the guest kernel panicked/);
    }
    // The monitor stays reachable: where the fault can be looked at.
    expect(JSON.parse(cliOk(['monitor', name, 'query-status']))).toMatchObject({ status: 'guest-panicked', running: false });
    cliOk(['stop', name, '--force']);
    expect(findInstance(name)?.state).toBe('stopped');
    cliOk(['start', name]);
    await waitForGuest(name, { agent: true });
    cliOk(['monitor', name, 'set-action', '{"panic":"pause"}']);
    void cliAsync(['exec', name, '--', 'sh', '-c', 'echo c > /proc/sysrq-trigger']);
    expect(await pollUntil(() => findInstance(name)?.state === 'error', 300, 100)).toBe(true);
    cliOk(['restart', name]);
    await waitForGuest(name, { agent: true });
    expect(findInstance(name)?.state).toBe('running');
    cliOk(['monitor', name, 'set-action', '{"panic":"pause"}']);
    void cliAsync(['exec', name, '--', 'sh', '-c', 'echo c > /proc/sysrq-trigger']);
    expect(await pollUntil(() => findInstance(name)?.state === 'error', 300, 100)).toBe(true);
    const mac = findInstance(name)!.mac;
    cliOk(['delete', name]);
    expect(leftovers(name, mac)).toEqual([]);
  }, 240_000);
});

