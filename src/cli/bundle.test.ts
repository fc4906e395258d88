// Smoke test of the bundled CLI (built like scripts/build.mjs does, with code splitting) run as a real process.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeDaemon, type FakeDaemon } from '../../test/helpers/fake-daemon.js';

let fake: FakeDaemon;
let outdir: string;

beforeAll(async () => {
  fake = await startFakeDaemon();
  outdir = mkdtempSync(join(tmpdir(), 'hangar-cli-bundle-'));
  // The build the bootstrap runs, into this test's directory.
  const { buildCli } = (await import(pathToFileURL(join(import.meta.dirname, '../../scripts/build-cli.mjs')).href)) as { buildCli: (outdir: string, version: string) => Promise<string[]> };
  await buildCli(outdir, '9.8.7');
});
afterAll(async () => {
  await fake.close();
  rmSync(outdir, { recursive: true, force: true });
});

/** Runs the bundled CLI in a child process (asynchronously: the fake daemon lives in this process's event loop). */
function hangar(args: string[], input?: string, nodeArgs: string[] = [], entry = 'hangar.cjs'): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...nodeArgs, join(outdir, entry), ...args], { env: { ...process.env, HANGAR_SOCKET: fake.socketPath } });
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
  it('keeps commander, zod, yaml and ws out of the CommonJS file: they are in dist/cli/, or not in the CLI at all', () => {
    const entry = readFileSync(join(outdir, 'hangar.cjs'), 'utf8');
    expect(entry).toMatch(/node_modules\/|src\/cli\/fast\.ts/);
    expect(entry).not.toMatch(/node_modules\/(commander|zod|yaml|ws)\//);
    expect(entry).toContain('import("./cli/run.mjs")');
  });

  it('still starts from the former entry name', async () => {
    const r = await hangar(['--version'], undefined, [], 'hangar.mjs');
    expect(r).toMatchObject({ status: 0, stdout: '9.8.7\n' });
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

  it('loads no ESM part of the CLI for the everyday commands; the rest load the command tree, yaml its own part', async () => {
    // A loader hook (module.register) writes every ESM module URL the CLI loads into a file.
    const log = join(outdir, 'loaded.log');
    writeFileSync(join(outdir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';\nexport async function load(url, context, next) { appendFileSync(${JSON.stringify(log)}, url + '\\n'); return next(url, context); }\n`);
    writeFileSync(join(outdir, 'register.mjs'), `import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n`);
    const parts = async (args: string[], status: number, input?: string): Promise<string[]> => {
      writeFileSync(log, '');
      const r = await hangar(args, input, ['--import', join(outdir, 'register.mjs')]);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(status);
      return readFileSync(log, 'utf8').split('\n').filter((u) => u.startsWith(pathToFileURL(join(outdir, 'cli')).href)).map((u) => u.slice(pathToFileURL(outdir).href.length + 1));
    };
    for (const [args, status, input] of [[['list', '--format', 'json'], 0], [['info', 'web1'], 0], [['list'], 0], [['exec', 'web1', '--', 'cat'], 3, 'x'], [['stop', 'web1', '--force'], 1], [['vz', 'status', '101'], 0]] as Array<[string[], number, string?]>) {
      expect(await parts(args, status, input), args.join(' ')).toEqual([]);
    }
    const yaml = await parts(['list', '--format', 'yaml'], 0);
    expect(yaml).toContain('cli/yaml.mjs');
    expect(yaml).not.toContain('cli/run.mjs');
    // The hook sees the ESM parts when they load: a refused format, and a command the fast path does not take.
    expect(await parts(['list', '--format', 'xml'], 1)).toContain('cli/run.mjs');
    expect(await parts(['host', 'list', '--format', 'json'], 0)).toContain('cli/run.mjs');
    // And the command tree keeps zod out too: no chunk it loads for host list holds zod.
    const zod = readdirSync(join(outdir, 'cli', 'chunks')).filter((f) => f.endsWith('.mjs') && readFileSync(join(outdir, 'cli', 'chunks', f), 'utf8').includes('node_modules/zod/'));
    expect(zod.length).toBeGreaterThan(0);
    expect((await parts(['host', 'list', '--format', 'json'], 0)).filter((p) => zod.some((z) => p.endsWith(z)))).toEqual([]);
  });

  it('prints errors with causes and exits 1', async () => {
    const r = await hangar(['info', 'missing']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('Error: Instance "missing" not found\n  caused by: no row in instances\n  caused by: lookup by name\n');
  });
});
