// Builds the hangar CLI: dist/hangar.cjs (one CommonJS file) and, loaded only when needed, dist/cli/ (ESM chunks).
// Why two forms: Node's ESM loader costs ~10 ms and every further module file ~0.5 ms at each start (BENCHMARKS.md,
// issue 14), so --version, the everyday commands (src/cli/fast.ts) and the vz tools run from one CommonJS file; the
// commander tree, the zod schemas and yaml stay ESM with shared chunks and are imported from it only when used.
import { build } from 'esbuild';
import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The lazily loaded parts: the specifier src/ imports them by, and their entry in dist/cli/. */
const LAZY = [
  { spec: /^\.\/run\.js$/, entry: 'src/cli/run.ts', out: 'run' },
  { spec: /^\.\.\/shared\/route-schemas\.js$/, entry: 'src/shared/route-schemas.ts', out: 'route-schemas' },
  { spec: /^yaml$/, entry: 'node_modules/yaml/dist/index.js', out: 'yaml' },
];

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
  metafile: true,
};

/** Keeps the lazy parts out of the CommonJS file: each becomes an import() of its dist/cli/ entry, which must stay dynamic. */
const lazyParts = {
  name: 'hangar-cli-lazy',
  setup(b) {
    for (const part of LAZY) {
      b.onResolve({ filter: part.spec }, (args) => {
        if (args.kind !== 'dynamic-import') {
          return { errors: [{ text: `${args.path} is imported statically by ${args.importer}: the CLI's CommonJS file may only import() it (it is ESM in dist/cli/)` }] };
        }
        return { path: `./cli/${part.out}.mjs`, external: true };
      });
    }
  },
};

/** Builds the CLI into outdir (dist/ or a test's directory) with the given version; answers the files written. */
export async function buildCli(outdir, version) {
  const define = { __HANGAR_VERSION__: JSON.stringify(version) };
  const [main, lazy] = await Promise.all([
    build({ ...common, entryPoints: ['src/cli/main.ts'], outfile: join(outdir, 'hangar.cjs'), format: 'cjs', define, plugins: [lazyParts] }),
    build({
      ...common,
      entryPoints: LAZY.map((p) => ({ in: p.entry, out: p.out })),
      outdir: join(outdir, 'cli'),
      chunkNames: 'chunks/[name]-[hash]',
      outExtension: { '.js': '.mjs' },
      splitting: true,
      format: 'esm',
      define,
      // Bundled CommonJS dependencies call require(); give ESM output one.
      banner: { js: "import { createRequire as __hangarCreateRequire } from 'node:module'; const require = __hangarCreateRequire(import.meta.url);" },
    }),
  ]);
  // Earlier builds ran `node dist/hangar.mjs`: that name still starts the CLI (through the ESM loader, so slower).
  writeFileSync(join(outdir, 'hangar.mjs'), "// Former entry of the hangar CLI, kept so `node dist/hangar.mjs` still works: the CLI is dist/hangar.cjs.\nimport './hangar.cjs';\n");
  return [...Object.keys(main.metafile.outputs), ...Object.keys(lazy.metafile.outputs), join(outdir, 'hangar.mjs')];
}

/** Removes chunks of earlier builds once they are old enough that no CLI started before this build still loads them. */
export function removeStaleChunks(outdir, fresh) {
  const keep = new Set(fresh.map((f) => join(f)));
  for (const dir of [join(outdir, 'cli', 'chunks'), join(outdir, 'cli-chunks')]) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) {
      const path = join(dir, f);
      if (!keep.has(path) && Date.now() - statSync(path).mtimeMs > 10 * 60 * 1000) rmSync(path, { force: true });
    }
    if (readdirSync(dir).length === 0) rmSync(dir, { recursive: true, force: true });
  }
}
