// Bundles the CLI, the daemon and the benchmarks with esbuild into dist/ (the CLI bundle keeps start-up lean).
import { build } from 'esbuild';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';

const version = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

const entries = [
  ['src/cli/main.ts', 'dist/hangar.mjs'],
  ['src/daemon/main.ts', 'dist/hangard.mjs'],
  ['bench/containers.ts', 'dist/bench-containers.mjs'],
  ['bench/cli.ts', 'dist/bench-cli.mjs'],
  ['bench/vms.ts', 'dist/bench-vms.mjs'],
  ['bench/vm-choices.ts', 'dist/bench-vm-choices.mjs'],
  ['bench/xen.ts', 'dist/bench-xen.mjs'],
  ['bench/openvz.ts', 'dist/bench-openvz.mjs'],
].filter(([src]) => existsSync(src));

// The CLI is split: dist/hangar.mjs stays tiny (fast `--version`), commands, commander, zod, yaml and ws live in
// dist/cli-chunks/ and load on demand. Chunks of earlier builds are removed afterwards, once they are old enough
// that no CLI started before this build can still be loading them.
const cliSplit = (src) =>
  src === 'src/cli/main.ts'
    ? {
        outdir: 'dist',
        entryNames: 'hangar',
        chunkNames: 'cli-chunks/[name]-[hash]',
        outExtension: { '.js': '.mjs' },
        splitting: true,
        define: { __HANGAR_VERSION__: JSON.stringify(version) },
      }
    : undefined;
const results = await Promise.all(
  entries.map(([src, out]) =>
    build({
      entryPoints: [src],
      ...(cliSplit(src) ?? { outfile: out }),
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
);

const fresh = new Set(results.flatMap((r) => Object.keys(r.metafile.outputs)).map((f) => f.replace(/^dist\//, '')));
if (existsSync('dist/cli-chunks')) {
  for (const f of readdirSync('dist/cli-chunks')) {
    const rel = `cli-chunks/${f}`;
    if (!fresh.has(rel) && Date.now() - statSync(`dist/${rel}`).mtimeMs > 10 * 60 * 1000) rmSync(`dist/${rel}`, { force: true });
  }
}
