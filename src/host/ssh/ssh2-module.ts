// Loads the ssh2 library at run time: bundles (dist/hangard.mjs) then take it from node_modules as it is, with its optional native parts.
import { createRequire } from 'node:module';

type Ssh2 = typeof import('ssh2');
let loaded: Ssh2 | undefined;

/** The ssh2 module, required on first use (esbuild cannot bundle its optional cpu-features addon, as with node-pty). */
export function ssh2(): Ssh2 {
  loaded ??= createRequire(import.meta.url)('ssh2') as Ssh2;
  return loaded;
}
