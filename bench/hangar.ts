// Hangar subject: drives hangard through the in-process API client (starting a private daemon when none answers).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { HangarClient } from '../src/client/client.js';
import { pidAlive, run, sleep, unixGet, until, waitPidExit, type Subject } from './util.js';

/** Where the Hangar subject works. */
export interface HangarOptions {
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
  for (const m of [join(dir, 'lxcfs'), join(dir, 'pool')]) {
    if (mounts.includes(` ${m} `)) run(['umount', m], { allowFail: true });
  }
  if (run(['ip', 'link', 'show', `${prefix}br0`], { allowFail: true }).status === 0) run(['ip', 'link', 'del', `${prefix}br0`], { allowFail: true });
  run(['nft', 'delete', 'table', 'inet', `${prefix}_nat`], { allowFail: true });
}

const IMAGE = 'busybox';
const NAME_PREFIX = 'hbnbench-r';

/** Discards everything written to it. */
function sink(): Writable {
  return new Writable({ write: (_c, _e, cb) => cb() });
}

/**
 * The only place that knows the client's method names and shapes: fix names here after integration.
 */
function adapter(client: HangarClient) {
  return {
    /** Launches name from image and waits for the operation. */
    launch: async (name: string, image: string): Promise<void> => {
      const op = await client.createInstance({ name, image, start: true });
      await client.waitOperation(op);
    },
    /** Runs argv inside; answers the exit code. */
    exec: (name: string, command: string[]): Promise<number> => client.exec(name, { command }, { stdout: sink(), stderr: sink() }),
    /** start / stop (force or graceful), waiting for the operation. */
    state: async (name: string, action: 'start' | 'stop', force?: boolean): Promise<void> => {
      const op = await client.changeState(name, { action, ...(force === undefined ? {} : { force }) });
      await client.waitOperation(op);
    },
    /** Deletes (force), waiting for the operation. */
    remove: async (name: string): Promise<void> => {
      const op = await client.deleteInstance(name, { force: true });
      await client.waitOperation(op);
    },
    /** Names of all instances. */
    names: async (): Promise<string[]> => (await client.listInstances()).map((i) => i.name),
    /** Aliases of all images. */
    images: async (): Promise<string[]> => (await client.listImages()).map((i) => i.alias),
    /** Builds the built-in busybox image under alias. */
    buildBusybox: async (alias: string): Promise<void> => {
      await client.waitOperation(await client.buildImage({ kind: 'busybox', alias }));
    },
    /** Daemon version string. */
    version: async (): Promise<string> => (await client.serverInfo()).serverVersion,
    close: (): void => client.close(),
  };
}

/** The Hangar subject. */
export class Hangar implements Subject {
  readonly id = 'hangar';
  label = 'Hangar (API client, in-process)';
  private api: ReturnType<typeof adapter> | null = null;
  private daemon: ChildProcess | null = null;
  private readonly live = new Set<string>();

  constructor(private readonly opts: HangarOptions) {}

  private async answers(): Promise<boolean> {
    try {
      const r = await unixGet(this.opts.socket, '/1.0', 1000);
      return r.status === 200;
    } catch {
      return false;
    }
  }

  async setup(): Promise<void> {
    if (!(await this.answers())) {
      const main = join(this.opts.distDir, 'hangard.mjs');
      if (!existsSync(main)) throw new Error(`No daemon answers on ${this.opts.socket} and ${main} does not exist (npm run build)`);
      mkdirSync(dirname(this.opts.socket), { recursive: true });
      mkdirSync(dirname(this.opts.logFile), { recursive: true });
      const log = openSync(this.opts.logFile, 'a');
      this.daemon = spawn(process.execPath, [main], {
        env: { ...process.env, ...this.opts.daemonEnv, HANGAR_SOCKET: this.opts.socket },
        detached: true,
        stdio: ['ignore', log, log],
      });
      closeSync(log);
      this.daemon.on('error', () => undefined);
      const pid = this.daemon.pid;
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
    this.api = adapter(new HangarClient({ socketPath: this.opts.socket }));
    this.label = `Hangar ${await this.api.version()} (API client, in-process${this.daemon ? ', bench-started hangard' : ''})`;
    // The daemon builds the busybox image on start when missing; wait a little for that, then ask for it.
    const api = this.api;
    const has = async (): Promise<boolean> => (await api.images()).includes(IMAGE);
    try {
      await until(`image "${IMAGE}" in hangard`, has, 15_000, 250);
    } catch {
      await api.buildBusybox(IMAGE);
      if (!(await has())) throw new Error(`hangard has no image "${IMAGE}" even after building it`);
    }
    for (const n of await api.names()) if (n.startsWith(NAME_PREFIX)) await api.remove(n).catch(() => undefined);
  }

  private get client(): ReturnType<typeof adapter> {
    if (!this.api) throw new Error('Hangar subject not set up');
    return this.api;
  }

  name(round: number): string {
    return `${NAME_PREFIX}${round}`;
  }

  private async firstExec(name: string): Promise<void> {
    await until(`first exec in ${name}`, async () => (await this.client.exec(name, ['true'])) === 0, 30_000, 1);
  }

  async launch(name: string): Promise<void> {
    this.live.add(name);
    await this.client.launch(name, IMAGE);
    await this.firstExec(name);
  }

  async exec(name: string): Promise<void> {
    const code = await this.client.exec(name, ['true']);
    if (code !== 0) throw new Error(`exec true in ${name} exited ${code}`);
  }

  async start(name: string): Promise<void> {
    await this.client.state(name, 'start');
    await this.firstExec(name);
  }

  async stop(name: string, force: boolean): Promise<void> {
    await this.client.state(name, 'stop', force);
  }

  async remove(name: string): Promise<void> {
    await this.client.remove(name);
    this.live.delete(name);
  }

  async cleanup(): Promise<void> {
    if (this.api) {
      for (const n of this.live) await this.api.remove(n).catch((e: unknown) => console.error(`cleanup: could not delete ${n}: ${String(e)}`));
      this.live.clear();
      this.api.close();
      this.api = null;
    }
    const pid = this.daemon?.pid;
    const started = this.daemon !== null;
    this.daemon = null;
    if (pid !== undefined && pidAlive(pid)) {
      process.kill(pid, 'SIGTERM');
      if (!(await waitPidExit(pid, 20_000))) {
        console.error(`cleanup: hangard ${pid} ignored SIGTERM for 20 s; sending SIGKILL`);
        process.kill(pid, 'SIGKILL');
        await sleep(200);
      }
    }
    if (started) await teardownDaemonState(this.opts.daemonEnv, this.opts.socket);
  }
}
