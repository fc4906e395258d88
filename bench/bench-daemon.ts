// The hangard a benchmark talks to: the one answering on its socket, or one started here and, at the end, stopped with the host state it leaves.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pidAlive, run, stopStartedProcess, unixGet, until, waitPidExit } from './util.js';

/** Where the daemon lives. */
export interface BenchDaemonOptions {
  /** Directory holding hangard.mjs (dist/). */
  distDir: string;
  /** Socket to try first and to give a daemon we start. */
  socket: string;
  /** Environment for a daemon we start ourselves. */
  daemonEnv: Record<string, string>;
  /** Log file for a daemon we start. */
  logFile: string;
}

/** Reads a pid from a pidfile, or null. */
function pidFrom(file: string): number | null {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 1 ? n : null;
  } catch {
    return null;
  }
}

/**
 * Host state a bench-started hangard leaves behind when it exits (helpers it spawned, mounts, bridge, nft table),
 * found by the names src/core/settings.ts derives from HANGAR_DIR/HANGAR_PREFIX; each is checked before it is touched.
 */
async function teardownDaemonState(env: Record<string, string>, socket: string): Promise<void> {
  const dir = env.HANGAR_DIR;
  const prefix = env.HANGAR_PREFIX;
  if (!dir || !prefix) return;
  const runDir = dirname(socket);
  for (const pidFile of [join(dir, 'dnsmasq', 'dnsmasq.pid'), join(runDir, 'lxcfs.pid')]) {
    const pid = pidFrom(pidFile);
    if (pid === null || !pidAlive(pid)) continue;
    // Only a helper that names our directories is ours.
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (!cmd.includes(dir) && !cmd.includes(runDir)) continue;
    process.kill(pid, 'SIGTERM');
    if (!(await waitPidExit(pid, 5000))) process.kill(pid, 'SIGKILL');
  }
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  // roots: the pool's second mount (src/core/settings.ts rootsDir), left mounted when the daemon exits.
  for (const m of [join(dir, 'lxcfs'), join(dir, 'roots'), join(dir, 'pool')]) {
    if (mounts.includes(` ${m} `)) run(['umount', m], { allowFail: true });
  }
  if (existsSync(`/sys/class/net/${prefix}br0`)) run(['ip', 'link', 'del', `${prefix}br0`], { allowFail: true });
  run(['nft', 'delete', 'table', 'inet', `${prefix}_nat`], { allowFail: true });
}

/** A daemon found on the socket, or started (detached, logging to logFile) when none answers. */
export class BenchDaemon {
  private child: ChildProcess | null = null;

  constructor(private readonly opts: BenchDaemonOptions) {}

  /** True when this run started the daemon (and so stops it). */
  get started(): boolean {
    return this.child !== null;
  }

  private async answers(): Promise<boolean> {
    try {
      return (await unixGet(this.opts.socket, '/1.0', 1000)).status === 200;
    } catch {
      return false;
    }
  }

  /** Makes sure a daemon answers on the socket, starting one when none does. */
  async ensure(): Promise<void> {
    if (await this.answers()) return;
    const main = join(this.opts.distDir, 'hangard.mjs');
    if (!existsSync(main)) throw new Error(`No daemon answers on ${this.opts.socket} and ${main} does not exist (npm run build)`);
    mkdirSync(dirname(this.opts.socket), { recursive: true });
    mkdirSync(dirname(this.opts.logFile), { recursive: true });
    const log = openSync(this.opts.logFile, 'a');
    this.child = spawn(process.execPath, [main], {
      env: { ...process.env, ...this.opts.daemonEnv, HANGAR_SOCKET: this.opts.socket },
      detached: true,
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    this.child.on('error', () => undefined);
    const pid = this.child.pid;
    await until(
      `hangard on ${this.opts.socket} (log: ${this.opts.logFile})`,
      async () => {
        if (pid === undefined || !pidAlive(pid)) throw new Error(`hangard exited early; see ${this.opts.logFile}`);
        return this.answers();
      },
      120_000,
      100,
    );
  }

  /** Stops a daemon this run started, and removes the host state it leaves; a daemon found running is left alone. */
  async stop(): Promise<void> {
    const pid = this.child?.pid;
    const started = this.child !== null;
    this.child = null;
    if (pid !== undefined) await stopStartedProcess(pid, 'hangard');
    if (started) await teardownDaemonState(this.opts.daemonEnv, this.opts.socket);
  }
}
