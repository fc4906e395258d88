// Bundles the CLI, the daemon and the benchmarks with esbuild into dist/ (the CLI bundle keeps start-up lean).
import { build } from 'esbuild';
import { existsSync, readFileSync } from 'node:fs';
import { buildCli, removeStaleChunks } from './build-cli.mjs';

const version = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

const entries = [
  ['src/daemon/main.ts', 'dist/hangard.mjs'],
  ['bench/containers.ts', 'dist/bench-containers.mjs'],
  ['bench/cli.ts', 'dist/bench-cli.mjs'],
  ['bench/vms.ts', 'dist/bench-vms.mjs'],
  ['bench/vm-choices.ts', 'dist/bench-vm-choices.mjs'],
  ['bench/xen.ts', 'dist/bench-xen.mjs'],
  ['bench/openvz.ts', 'dist/bench-openvz.mjs'],
].filter(([src]) => existsSync(src));

// The CLI has its own build (scripts/build-cli.mjs): a CommonJS file for the everyday commands, ESM chunks for the rest.
const [cliFiles] = await Promise.all([
  buildCli('dist', version),
  ...entries.map(([src, out]) =>
    build({
      entryPoints: [src],
      outfile: out,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      sourcemap: 'linked',
      // Native addons cannot be bundled.
      external: ['better-sqlite3', 'node-pty'],
      // Bundled CommonJS dependencies call require(); give ESM output one.
      banner: { js: "import { createRequire as __hangarCreateRequire } from 'node:module'; const require = __hangarCreateRequire(import.meta.url);" },
      logLevel: 'warning',
      metafile: true,
    }),
  ),
]);

removeStaleChunks('dist', cliFiles);
