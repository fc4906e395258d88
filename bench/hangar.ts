// Hangar subject: drives hangard through the in-process API client (starting a private daemon when none answers).
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { HangarClient } from '../src/client/client.js';
import { buildBusyboxRootfs } from '../src/core/images/busybox.js';
import { LocalHost } from '../src/host/local.js';
import { loadSettings } from '../src/core/settings.js';
import { parseQgroupShow } from '../src/core/storage/parse.js';
import { BenchDaemon, type BenchDaemonOptions } from './bench-daemon.js';
import { run, until, type Subject } from './util.js';

/** Where the Hangar subject works. */
export interface HangarOptions extends BenchDaemonOptions {
  /** Cache kept across runs (the big image's tarball). */
  cacheDir: string;
}

/** Size of the incompressible payload of the big image: 200 MiB (≈ 210 MB). */
export const BIG_PAYLOAD_MIB = 200;
const BIG_IMAGE = 'hbn-big200';
const BIG_NAME_PREFIX = 'hbnbench-big-r';
// Bump when the tarball's content changes so a stale cached one is rebuilt.
const BIG_TARBALL = `hangar-big-${BIG_PAYLOAD_MIB}mib-v1.tar`;

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
    /** Imports a rootfs tarball on this host under alias, waiting for the operation. */
    importImage: async (path: string, alias: string): Promise<void> => {
      await client.waitOperation(await client.importImage({ path, alias }));
    },
    /** Deletes an image, waiting for the operation. */
    deleteImage: async (alias: string): Promise<void> => {
      await client.waitOperation(await client.deleteImage(alias));
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
  private readonly daemon: BenchDaemon;
  private readonly live = new Set<string>();
  /** Set once the big image is imported (this run); null with bigSkipped explaining why not. */
  private bigImported = false;
  /** Why the big-image launch is not measured, or null. */
  bigSkipped: string | null = null;
  /** How the big image came to be: tarball size, whether cached, import time. */
  bigInfo = '';
  /** Pool mount point of the bench daemon, when we know it (we started the daemon). */
  private poolDir: string | null = null;

  constructor(private readonly opts: HangarOptions) {
    this.daemon = new BenchDaemon(opts);
  }

  async setup(): Promise<void> {
    await this.daemon.ensure();
    this.api = adapter(new HangarClient({ socketPath: this.opts.socket }));
    this.label = `Hangar ${await this.api.version()} (API client, in-process${this.daemon.started ? ', bench-started hangard' : ''})`;
    // The daemon builds the busybox image on start when missing; wait a little for that, then ask for it.
    const api = this.api;
    const has = async (): Promise<boolean> => (await api.images()).includes(IMAGE);
    try {
      await until(`image "${IMAGE}" in hangard`, has, 15_000, 250);
    } catch {
      await api.buildBusybox(IMAGE);
      if (!(await has())) throw new Error(`hangard has no image "${IMAGE}" even after building it`);
    }
    for (const n of await api.names()) if (n.startsWith(NAME_PREFIX) || n.startsWith(BIG_NAME_PREFIX)) await api.remove(n).catch(() => undefined);
    if (this.daemon.started) this.poolDir = loadSettings({ ...this.opts.daemonEnv, HANGAR_SOCKET: this.opts.socket }).poolDir;
    try {
      await this.importBigImage();
    } catch (e) {
      this.bigSkipped = e instanceof Error ? e.message : String(e);
      console.error(`hangar: no 200 MB image, skipping its launch metric: ${this.bigSkipped}`);
    }
  }

  /** Builds (once, cached across runs) a plain rootfs tarball of busybox + BIG_PAYLOAD_MIB of random data. */
  private async bigTarball(): Promise<{ path: string; cached: boolean }> {
    const path = join(this.opts.cacheDir, BIG_TARBALL);
    if (existsSync(path)) return { path, cached: true };
    mkdirSync(this.opts.cacheDir, { recursive: true });
    const work = join(this.opts.cacheDir, 'hangar-big-work');
    rmSync(work, { recursive: true, force: true });
    const root = join(work, 'rootfs');
    try {
      await buildBusyboxRootfs(new LocalHost(), root);
      mkdirSync(join(root, 'opt/bench'), { recursive: true });
      // Random data: neither compression nor deduplication can shrink it.
      run(['dd', 'if=/dev/urandom', `of=${join(root, 'opt/bench/random.bin')}`, 'bs=1M', `count=${BIG_PAYLOAD_MIB}`, 'status=none'], { timeoutMs: 300_000 });
      const top = readdirSync(root).sort();
      run(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', root, '-cf', `${path}.tmp`, ...top], { timeoutMs: 300_000 });
      renameSync(`${path}.tmp`, path);
    } finally {
      rmSync(`${path}.tmp`, { force: true });
      rmSync(work, { recursive: true, force: true });
    }
    return { path, cached: false };
  }

  /** Imports the big tarball under BIG_IMAGE (replacing a leftover of an interrupted run). */
  private async importBigImage(): Promise<void> {
    const t0 = process.hrtime.bigint();
    const { path, cached } = await this.bigTarball();
    const tBuilt = process.hrtime.bigint();
    const api = this.client;
    if ((await api.images()).includes(BIG_IMAGE)) await api.deleteImage(BIG_IMAGE);
    await api.importImage(path, BIG_IMAGE);
    this.bigImported = true;
    const mb = (statSync(path).size / 1e6).toFixed(0);
    const importS = (Number(process.hrtime.bigint() - tBuilt) / 1e9).toFixed(1);
    this.bigInfo = `bench-cache/${BIG_TARBALL}: ${mb} MB plain tar, ${cached ? 'cached from an earlier run' : `built in ${(Number(tBuilt - t0) / 1e9).toFixed(1)} s`}; imported once per run in ${importS} s`;
    console.error(`hangar: image ${BIG_IMAGE}: ${this.bigInfo}`);
  }

  /** True when the big-image launch can be measured. */
  get hasBigImage(): boolean {
    return this.bigImported && this.api !== null;
  }

  bigName(round: number): string {
    return `${BIG_NAME_PREFIX}${round}`;
  }

  /** Launches from the 200 MB image; returns when the first exec of `true` succeeded. */
  async launchBig(name: string): Promise<void> {
    this.live.add(name);
    await this.client.launch(name, BIG_IMAGE);
    await this.firstExec(name);
  }

  /** Exclusive bytes of the instance volume (`btrfs qgroup show --sync`), or null when the pool is not ours to read. */
  async ownStorageBytes(name: string): Promise<number | null> {
    if (!this.poolDir) return null;
    const path = join(this.poolDir, 'instances', name);
    const r = run(['btrfs', 'qgroup', 'show', '-re', '--raw', '--sync', '-f', path], { allowFail: true });
    if (r.status !== 0) return null;
    return parseQgroupShow(r.stdout).find((q) => q.level === 0)?.exclusiveBytes ?? null;
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
      if (this.bigImported) {
        await this.api.deleteImage(BIG_IMAGE).catch((e: unknown) => console.error(`cleanup: could not delete image ${BIG_IMAGE}: ${String(e)}`));
        this.bigImported = false;
      }
      this.api.close();
      this.api = null;
    }
    await this.daemon.stop();
  }
}
