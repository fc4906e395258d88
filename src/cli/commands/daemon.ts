// `hangar daemon install`: writes a systemd unit for hangard (works without a running daemon).
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError } from '../../shared/errors.js';
import type { Ctx } from '../context.js';

/** Default location of the unit file. */
export const UNIT_PATH = '/etc/systemd/system/hangard.service';

/** Finds the Hangar package root (the nearest ancestor with a package.json named "hangar") of a file. */
export function findPackageRoot(from: string): string | undefined {
  let dir = dirname(from);
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'hangar') return dir;
      } catch {
        // An unreadable package.json is not ours; keep climbing.
      }
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** Quotes one Environment= assignment for systemd: backslashes and quotes escaped, % doubled. */
export function systemdQuote(assignment: string): string {
  if (/[\r\n]/.test(assignment)) throw new AppError('INVALID_ARGUMENT', `Cannot put a value with a newline into a unit file: ${JSON.stringify(assignment)}`);
  return `"${assignment.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%')}"`;
}

/** Renders the unit: node runs dist/hangard.mjs, HANGAR_* variables are kept, KillMode=process lets containers outlive restarts. */
export function renderUnit(nodePath: string, daemonPath: string, env: Record<string, string | undefined>): string {
  const envLines = Object.keys(env)
    .filter((k) => k.startsWith('HANGAR_') && env[k] !== undefined)
    .sort()
    .map((k) => `Environment=${systemdQuote(`${k}=${env[k]}`)}`);
  return [
    '[Unit]',
    'Description=Hangar virtualization manager daemon',
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${nodePath} ${daemonPath}`,
    ...envLines,
    'Restart=on-failure',
    'RestartSec=2s',
    '# Only the daemon is stopped on restart; the containers it started keep running.',
    'KillMode=process',
    '# Containers get their own cgroups below the service.',
    'Delegate=yes',
    'LimitNOFILE=1048576',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** Default directory of the vzctl, vzlist and vzmigrate links. */
export const TOOLS_DIR = '/usr/local/sbin';

/**
 * Links bin/vzctl, bin/vzlist and bin/vzmigrate into dir, unless a vzctl that is not Hangar's is on PATH (a real OpenVZ host keeps
 * its own) or dir holds another file of that name; answers one line per tool saying what was done.
 */
export function installVzTools(root: string, dir: string, path: string): string[] {
  const out: string[] = [];
  const ours = (p: string) => { try { return realpathSync(p).startsWith(`${realpathSync(root)}/`); } catch { return false; } };
  const real = path.split(':').filter(Boolean).map((d) => join(d, 'vzctl')).find((p) => existsSync(p) && !ours(p));
  if (real) return [`Not linking vzctl, vzlist and vzmigrate: ${real} is a real vzctl (OpenVZ's own tools stay in charge here)`];
  mkdirSync(dir, { recursive: true });
  for (const tool of ['vzctl', 'vzlist', 'vzmigrate']) {
    const link = join(dir, tool);
    const target = join(root, 'bin', tool);
    let present: string | undefined;
    try { present = lstatSync(link).isSymbolicLink() ? readlinkSync(link) : 'a file'; } catch { present = undefined; }
    if (present === target) { out.push(`${link} -> ${target} (already there)`); continue; }
    if (present !== undefined) { out.push(`Not linking ${link}: ${present === 'a file' ? 'a file' : `a link to ${present}`} is there`); continue; }
    symlinkSync(target, link);
    out.push(`Linked ${link} -> ${target}`);
  }
  return out;
}

/** `hangar daemon install [--output FILE] [--tools-dir DIR]`. */
export async function daemonInstallCommand(ctx: Ctx, opts: { output?: string; toolsDir?: string }): Promise<void> {
  const root = findPackageRoot(fileURLToPath(import.meta.url));
  if (!root) throw new AppError('NOT_FOUND', 'Cannot find the Hangar installation (no package.json named "hangar" above the CLI)');
  const daemonPath = join(root, 'dist', 'hangard.mjs');
  const target = opts.output !== undefined ? resolve(ctx.io.cwd, opts.output) : UNIT_PATH;
  const unit = renderUnit(process.execPath, daemonPath, ctx.io.env);
  try {
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, unit, { mode: 0o644 });
  } catch (err) {
    throw new AppError('HOST_FAILED', `Failed to write ${target}`, { cause: err });
  }
  ctx.out(`Wrote ${target}`);
  if (opts.toolsDir !== 'none') {
    try {
      for (const line of installVzTools(root, opts.toolsDir !== undefined ? resolve(ctx.io.cwd, opts.toolsDir) : TOOLS_DIR, ctx.io.env.PATH ?? '')) ctx.out(line);
    } catch (err) {
      throw new AppError('HOST_FAILED', 'Failed to link vzctl, vzlist and vzmigrate', { cause: err });
    }
  }
  if (!existsSync(daemonPath)) ctx.err(`Warning: ${daemonPath} does not exist yet; build it with: npm run build`);
  if (!existsSync('/run/systemd/system')) ctx.err('Note: systemd is not running on this machine; start the daemon with: npm start');
  ctx.out('Next: systemctl daemon-reload && systemctl enable --now hangard');
}
