// Shared e2e helpers: JSON views through the CLI, /proc facts, bounded polling, the events websocket with replay, leftover checks.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Instance, HangarEvent } from '../../src/shared/schemas.js';
import { HangarClient } from '../../src/client/client.js';
import { loadSettings } from '../../src/core/settings.js';
import { shortHash } from '../../src/core/network/ipam.js';
import { cli, cliAsync, cliOk, TEST_ENV } from './daemon.js';

/** Settings of the test daemon (paths and host-level names). */
export const settings = loadSettings(TEST_ENV);

/** `hangar list --format json`. */
export function listJson(): Instance[] {
  return JSON.parse(cliOk(['list', '--format', 'json'])) as Instance[];
}

/** One instance from `hangar list --format json`, or undefined. */
export function findInstance(name: string): Instance | undefined {
  return listJson().find((i) => i.name === name);
}

/** Start time (field 22 of /proc/PID/stat, in clock ticks) of a process, or null when it is gone. */
export function procStartTime(pid: number): string | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Field 2 (comm) may contain spaces and parentheses: count from after the last ')'; that is field 3.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return rest[22 - 3] ?? null;
}

/** True while a process exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls fn until it answers a truthy value or `tries` polls of `everyMs` pass; answers the last value. */
export async function pollUntil<T>(fn: () => T | Promise<T>, tries = 100, everyMs = 100): Promise<T> {
  let v = await fn();
  for (let i = 0; i < tries && !v; i++) {
    await new Promise((r) => setTimeout(r, everyMs));
    v = await fn();
  }
  return v;
}

/** Polls (without blocking the worker) until the instance is listed in this state, every 200 ms; answers it as last seen. */
export async function instanceUntil(name: string, state: string, tries = 200): Promise<Instance | undefined> {
  let seen: Instance | undefined;
  await pollUntil(async () => {
    const r = await cliAsync(['list', '--format', 'json']);
    seen = r.code === 0 ? (JSON.parse(r.stdout) as Instance[]).find((i) => i.name === name) : undefined;
    return seen?.state === state;
  }, tries, 200);
  return seen;
}

/** Collects events from the events websocket (opened with `ws` directly so that replay=true can be asked for). */
export async function collectEvents(opts: { replay?: boolean; types?: string[] } = {}): Promise<{ events: HangarEvent[]; close: () => void }> {
  const { WebSocket } = await import('ws');
  const q = new URLSearchParams();
  if (opts.replay) q.set('replay', 'true');
  if (opts.types?.length) q.set('type', opts.types.join(','));
  const qs = q.toString();
  const ws = new WebSocket(`ws+unix://${TEST_ENV.HANGAR_SOCKET}:/1.0/events${qs ? `?${qs}` : ''}`);
  const events: HangarEvent[] = [];
  ws.on('message', (data) => events.push(JSON.parse(String(data)) as HangarEvent));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { events, close: () => ws.close() };
}

/** Pid of the running test daemon, asked with a fresh client (a long-lived one may hold a stale keep-alive socket). */
export async function daemonPid(): Promise<number> {
  const c = new HangarClient({ socketPath: TEST_ENV.HANGAR_SOCKET });
  try {
    return (await c.serverInfo()).pid;
  } finally {
    c.close();
  }
}

/** Deletes every instance whose name starts with prefix (force), ignoring errors; for afterAll. */
export function deleteAllWithPrefix(prefix: string): void {
  let names: string[] = [];
  try {
    names = listJson().map((i) => i.name).filter((n) => n.startsWith(prefix));
  } catch { /* daemon down: nothing to ask */ }
  for (const n of names) cli(['delete', n, '--force']);
}

/** Host interface name of an instance's veth (what NetworkManager.hostIfName answers). */
export function hostIfName(name: string): string {
  return `${settings.prefix}${shortHash(name)}`;
}

/** Everything an instance may leave on the host; empty when nothing is left. */
export function leftovers(name: string, mac?: string | null): string[] {
  const out: string[] = [];
  if (listJson().some((i) => i.name === name)) out.push(`instance ${name} still listed`);
  for (const p of [join(settings.poolDir, 'instances', name), join(settings.lxcPath, name), join(settings.dir, 'instances', name)]) {
    if (existsSync(p)) out.push(`path ${p}`);
  }
  const ifName = hostIfName(name);
  if (spawnSync('ip', ['link', 'show', ifName], { encoding: 'utf8' }).status === 0) out.push(`host interface ${ifName}`);
  const hostsFile = join(settings.dnsmasqDir, 'hosts');
  const hosts = existsSync(hostsFile) ? readFileSync(hostsFile, 'utf8') : '';
  for (const line of hosts.split('\n')) {
    if (line.split(/[\s,]+/).includes(name) || (mac && line.toLowerCase().includes(mac.toLowerCase()))) out.push(`dnsmasq hosts line ${JSON.stringify(line)}`);
  }
  for (const ctrl of readdirSync('/sys/fs/cgroup')) {
    for (const rel of [`${settings.prefix}/${name}`, `${settings.prefix}.monitor/${name}`, `${settings.prefix}.vm/${name}`]) {
      const p = join('/sys/fs/cgroup', ctrl, rel);
      if (existsSync(p)) out.push(`cgroup ${p}`);
    }
  }
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd = '';
    try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim(); } catch { continue; }
    if (cmd.startsWith('[lxc monitor]') && cmd.includes(settings.lxcPath) && cmd.split(' ').at(-1) === name) out.push(`monitor process ${pid}: ${cmd}`);
    if (cmd.startsWith('qemu-system') && cmd.includes(` guest=${name},`)) out.push(`qemu process ${pid}`);
  }
  return out;
}

/** The persistent serial console log of an instance ('' before its first start). */
export function consoleLogText(name: string): string {
  const file = join(settings.dir, 'instances', name, 'console.log');
  return existsSync(file) ? readFileSync(file, 'latin1') : '';
}

/** What a VM's guest looks like from outside: its state and error, QEMU's run state, and the tail of its serial log. */
export function guestDiagnosis(name: string): string {
  const inst = findInstance(name);
  const qmp = cli(['monitor', name, 'query-status']);
  const tail = consoleLogText(name).split('\n').slice(-30).join('\n');
  return [
    `instance ${name}: ${inst ? `${inst.state}${inst.error ? ` (${inst.error.reason})` : ''}, ${inst.technology.isolation}` : 'not listed'}`,
    `QMP query-status: ${qmp.code === 0 ? qmp.stdout.trim() : qmp.stderr.trim()}`,
    `serial log tail:\n${tail}`,
  ].join('\n');
}

/**
 * Waits until a VM's guest is up: its serial log holds `marker` (`count` times, for later boots), or with `agent` an exec
 * through its guest agent answers. Fails within timeoutMs, at once when the VM is in error, with guestDiagnosis().
 */
export async function waitForGuest(name: string, opts: { marker?: string | RegExp; count?: number; agent?: boolean; timeoutMs?: number } = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  const marker = opts.marker === undefined ? undefined : typeof opts.marker === 'string' ? new RegExp(opts.marker.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g') : new RegExp(opts.marker.source, 'g');
  for (;;) {
    const inst = findInstance(name);
    if (inst?.state === 'error') throw new Error(`the guest of ${name} faulted\n${guestDiagnosis(name)}`);
    const logged = marker ? (consoleLogText(name).match(marker) ?? []).length >= (opts.count ?? 1) : true;
    if (logged && (!opts.agent || (await cliAsync(['exec', name, '--', 'true'])).code === 0)) return;
    if (Date.now() > deadline) throw new Error(`the guest of ${name} did not come up within ${Math.round((opts.timeoutMs ?? 120_000) / 1000)} s (waiting for ${marker ? `${String(opts.marker)} x${opts.count ?? 1}` : ''}${opts.agent ? ' its guest agent' : ''})\n${guestDiagnosis(name)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
