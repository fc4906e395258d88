// Smoke test of the bundled CLI (built like scripts/build.mjs does, with code splitting) run as a real process.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeDaemon, type FakeDaemon } from '../../test/helpers/fake-daemon.js';

let fake: FakeDaemon;
let outdir: string;

beforeAll(async () => {
  fake = await startFakeDaemon();
  outdir = mkdtempSync(join(tmpdir(), 'hangar-cli-bundle-'));
  await build({
    entryPoints: ['src/cli/main.ts'],
    outdir,
    entryNames: 'hangar',
    chunkNames: 'cli-chunks/[name]-[hash]',
    outExtension: { '.js': '.mjs' },
    splitting: true,
    define: { __HANGAR_VERSION__: '"9.8.7"' },
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    banner: { js: "import { createRequire as __hangarCreateRequire } from 'node:module'; const require = __hangarCreateRequire(import.meta.url);" },
    logLevel: 'warning',
  });
});
afterAll(async () => {
  await fake.close();
  rmSync(outdir, { recursive: true, force: true });
});

/** Runs the bundled CLI in a child process (asynchronously: the fake daemon lives in this process's event loop). */
function hangar(args: string[], input?: string, nodeArgs: string[] = []): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...nodeArgs, join(outdir, 'hangar.mjs'), ...args], { env: { ...process.env, HANGAR_SOCKET: fake.socketPath } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin.end(input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve) => {
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

describe('bundled hangar', () => {
  it('keeps the entry chunk tiny: commander, zod, yaml and ws load only on demand', () => {
    const entry = readFileSync(join(outdir, 'hangar.mjs'), 'utf8');
    expect(statSync(join(outdir, 'hangar.mjs')).size).toBeLessThan(4096);
    expect(entry).not.toMatch(/commander|zod|WebSocket/);
  });

  it('prints the injected version', async () => {
    const r = await hangar(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('9.8.7\n');
  });

  it('renders yaml through the lazily loaded yaml package', async () => {
    const r = await hangar(['list', '--format', 'yaml']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('- name: web1');
  });

  it('passes the exec exit code through and streams stdin', async () => {
    const r = await hangar(['exec', 'web1', '--', 'cat'], 'from stdin');
    expect(r.status).toBe(3);
    expect(r.stdout).toBe('from stdin');
    expect(r.stderr).toBe('warn\n');
  });

  it('loads no zod for the everyday commands: the answers are not checked against the schemas in the CLI', async () => {
    // A loader hook (module.register) writes every module URL the CLI loads into a file.
    const log = join(outdir, 'loaded.log');
    writeFileSync(join(outdir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';\nexport async function load(url, context, next) { appendFileSync(${JSON.stringify(log)}, url + '\\n'); return next(url, context); }\n`);
    writeFileSync(join(outdir, 'register.mjs'), `import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n`);
    const zodChunks = (urls: string[]) => urls.filter((u) => u.includes('/cli-chunks/') && /\$ZodType|zod\/v4/.test(readFileSync(new URL(u), 'utf8')));
    for (const args of [['list', '--format', 'json'], ['info', 'web1'], ['list']]) {
      writeFileSync(log, '');
      const r = await hangar(args, undefined, ['--import', join(outdir, 'register.mjs')]);
      expect(r.status, r.stderr).toBe(0);
      const urls = readFileSync(log, 'utf8').split('\n').filter((u) => u.startsWith('file:'));
      expect(urls.some((u) => u.includes('/cli-chunks/')), 'the hook saw the chunks').toBe(true);
      expect(zodChunks(urls), args.join(' ')).toEqual([]);
    }
    // The check itself can fail: zod is in the bundle, in a chunk the detector tells.
    const all = readdirSync(join(outdir, 'cli-chunks')).filter((f) => f.endsWith('.mjs')).map((f) => pathToFileURL(join(outdir, 'cli-chunks', f)).href);
    expect(zodChunks(all).length).toBeGreaterThan(0);
  });

  it('prints errors with causes and exits 1', async () => {
    const r = await hangar(['info', 'missing']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('Error: Instance "missing" not found\n  caused by: no row in instances\n  caused by: lookup by name\n');
  });
});
