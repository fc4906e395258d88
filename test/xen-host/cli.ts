// CLI entry: `npx vite-node test/xen-host/cli.ts [CACHE_ROOT]` builds (or finds) the Xen test host and prints its manifest and build time.
import { LocalHost } from '../../src/host/local.js';
import { buildXenHost } from './build.js';

const t0 = Date.now();
const art = await buildXenHost(new LocalHost(), { cacheRoot: process.argv[2], onProgress: (m) => process.stderr.write(`${m}\n`) });
process.stdout.write(`${JSON.stringify({ ...art, manifest: undefined, packages: art.manifest.packages.length, initrdBytes: art.manifest.initrdBytes, ms: Date.now() - t0 }, null, 2)}\n`);
