// CLI wall-time benchmark: `hangar list/info/exec/stop/start` (and --format json) against `node -e 0`, interleaved, on a running busybox container; writes BENCHMARKS.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HangarClient } from '../src/client/client.js';
import { Hangar } from './hangar.js';
import { Interrupt, machineNote, median, min, msSince, parseBenchFlags, positiveInt, writeSection } from './util.js';

const SECTION = '## CLI (bench/cli)';
const STATE_DIR = '/var/lib/hangar-bench';
const NAME = 'hbnbench-cli';
/** Issue 14's target: each command within this factor of `node -e 0` (medians). */
const TARGET = 1.2;

const bundleDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(bundleDir, existsSync(join(bundleDir, '..', 'package.json')) ? '..' : '../..');
const distDir = join(repoRoot, 'dist');

interface Args { runs: number; out: string | null }

function usage(): never {
  console.error(`usage: node dist/bench-cli.mjs [--runs N] [--out FILE]
  --runs N    interleaved rounds; each runs every command once, order rotated (default 20)
  --out FILE  write the section into FILE (default BENCHMARKS.md); --no-write only prints it`);
  process.exit(2);
}

/** One command line of the table: its label and the argv after `node`. */
interface Row { label: string; argv: string[]; pairOf?: string; /** Feed stdin from a pipe (empty) instead of /dev/null. */ piped?: boolean }

const interrupt = new Interrupt();

async function main(): Promise<number> {
  const args: Args = { runs: 20, out: join(repoRoot, 'BENCHMARKS.md') };
  parseBenchFlags(process.argv.slice(2), args, { '--runs': (next) => { args.runs = positiveInt(next(), '--runs'); } }, usage);
  if (process.getuid?.() !== 0) throw new Error('The CLI benchmark needs root (it runs a container through hangard)');
  const cli = join(distDir, 'hangar.cjs');
  if (!existsSync(cli)) throw new Error(`${cli} does not exist (npm run build)`);
  mkdirSync(STATE_DIR, { recursive: true });
  const socket = process.env.HANGAR_SOCKET ?? '/run/hangar-bench/hangar.sock';
  const h = new Hangar({
    distDir, socket,
    daemonEnv: { HANGAR_DIR: STATE_DIR, HANGAR_PREFIX: 'hbn', HANGAR_SUBNET: '10.124.0.0/24' },
    logFile: join(STATE_DIR, 'bench-logs', 'hangard.log'),
    cacheDir: join(STATE_DIR, 'bench-cache'),
  });
  interrupt.install();
  const env = { ...process.env, HANGAR_SOCKET: socket };
  const once = (argv: string[], piped = false): number => {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, argv, { stdio: [piped ? 'pipe' : 'ignore', 'pipe', 'pipe'], env, ...(piped ? { input: '' } : {}) });
    const ms = msSince(t0);
    if (r.status !== 0) throw new Error(`node ${argv.join(' ')} exited ${r.status}: ${String(r.stderr).trim()}`);
    return ms;
  };
  const rows: Row[] = [
    { label: '`node -e 0`', argv: ['-e', '0'] },
    { label: '`hangar --version`', argv: [cli, '--version'] },
    { label: '`hangar list`', argv: [cli, 'list'] },
    { label: '`hangar list --format json`', argv: [cli, 'list', '--format', 'json'] },
    { label: `\`hangar info ${NAME}\``, argv: [cli, 'info', NAME] },
    { label: `\`hangar exec ${NAME} -- true\``, argv: [cli, 'exec', NAME, '--', 'true'] },
    // A pipe may carry data: the command's stdin is streamed over the websocket, as from a terminal.
    { label: `\`hangar exec ${NAME} -- true\` (stdin a pipe)`, argv: [cli, 'exec', NAME, '--', 'true'], piped: true },
  ];
  // stop and start alternate on the same container: each round runs the pair in this order.
  const stopStart: Row[] = [
    { label: `\`hangar stop ${NAME} --force\``, argv: [cli, 'stop', NAME, '--force'] },
    { label: `\`hangar start ${NAME}\``, argv: [cli, 'start', NAME] },
  ];
  // The daemon's own share of stop and start: the same changes through the API client in this process.
  const API_STOP = 'API client: stop --force (in-process, for the daemon\'s share)';
  const API_START = 'API client: start (in-process)';
  const samples = new Map<string, number[]>([...[...rows, ...stopStart].map((r) => r.label), API_STOP, API_START].map((l) => [l, []]));
  const api = new HangarClient({ socketPath: socket, validate: false });
  const timed = async (fn: () => Promise<unknown>): Promise<number> => {
    const t0 = process.hrtime.bigint();
    await fn();
    return msSince(t0);
  };
  try {
    await h.setup();
    await h.launch(NAME);
    // Warm the page cache and the daemon's paths once.
    for (const r of rows) once(r.argv, r.piped);
    for (let round = 0; round < args.runs; round++) {
      interrupt.check();
      const k = rows.length;
      for (let i = 0; i < k; i++) {
        const r = rows[(i + round) % k]!;
        samples.get(r.label)!.push(once(r.argv, r.piped));
      }
      for (const r of stopStart) samples.get(r.label)!.push(once(r.argv));
      samples.get(API_STOP)!.push(await timed(() => api.runOperation(() => api.changeState(NAME, { action: 'stop', force: true }))));
      samples.get(API_START)!.push(await timed(() => api.runOperation(() => api.changeState(NAME, { action: 'start' }))));
      // The next round's exec needs the container's init up: the start operation returns once it runs.
      await new Promise((res) => setImmediate(res));
    }
  } finally {
    api.close();
    await h.remove(NAME).catch(() => undefined);
    await h.cleanup().catch((e: unknown) => console.error(`cleanup: ${String(e)}`));
  }
  const floor = median(samples.get('`node -e 0`')!);
  const floorMin = min(samples.get('`node -e 0`')!);
  const f1 = (x: number) => x.toFixed(1);
  const L: string[] = [SECTION, ''];
  L.push(`${new Date().toISOString().slice(0, 10)}; ${machineNote('').replace(/, accelerator .*? \(as Hangar chose it\)/, '')}. ${args.runs} interleaved rounds (order rotated per round; stop and start alternate at the end of each), wall time of the whole process as a shell sees it, in ms; the daemon was already running and the container running before each command but start.`);
  L.push('');
  L.push(`| command | median | min | ÷ \`node -e 0\` (medians) | ÷ (minimums) | ≤ ${TARGET}× (medians) |`);
  L.push('|---|---|---|---|---|---|');
  for (const [label, xs] of samples) {
    const q = median(xs) / floor;
    const verdict = label === '`node -e 0`' || label.startsWith('API client') ? '—' : q <= TARGET ? 'PASS' : 'FAIL';
    const ratios = label.startsWith('API client') ? '— | —' : `${q.toFixed(2)}× | ${(min(xs) / floorMin).toFixed(2)}×`;
    L.push(`| ${label} | ${f1(median(xs))} | ${f1(min(xs))} | ${ratios} | ${verdict} |`);
  }
  L.push('');
  const text = L.join('\n');
  console.log(text);
  if (args.out) {
    writeSection(args.out, SECTION, text);
    console.error(`wrote ${args.out}`);
  }
  return 0;
}

interrupt.exitWith(main);
