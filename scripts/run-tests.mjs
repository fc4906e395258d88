// Runs every check and test (layering, types, vitest) and ends with one line "N passed, N failed".
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, existsSync, rmSync } from 'node:fs';

let passed = 0;
let failed = 0;
let skipped = 0;

function check(name, argv) {
  process.stdout.write(`\n== ${name}: ${argv.join(' ')}\n`);
  const res = spawnSync(argv[0], argv.slice(1), { stdio: 'inherit' });
  if (res.status === 0) { passed++; process.stdout.write(`== ${name}: ok\n`); } else { failed++; process.stdout.write(`== ${name}: FAILED\n`); }
}

check('layering (dependency-cruiser)', ['npx', 'depcruise', 'src', '--config', '.dependency-cruiser.cjs']);
check('types (tsc)', ['npx', 'tsc', '--noEmit', '-p', '.']);

mkdirSync('.cache', { recursive: true });
const report = '.cache/vitest-report.json';
rmSync(report, { force: true });
const extra = process.argv.slice(2);
process.stdout.write('\n== vitest\n');
const res = spawnSync('npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...extra], { stdio: 'inherit' });
if (existsSync(report)) {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  skipped += r.numPendingTests + (r.numTodoTests ?? 0);
  // A file that fails to load has no tests counted: count it as a failure.
  for (const f of r.testResults ?? []) if (f.status === 'failed' && (f.assertionResults ?? []).length === 0) failed++;
} else {
  failed++;
}
if (res.status !== 0 && failed === 0) failed++;
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
process.exit(failed === 0 ? 0 : 1);
