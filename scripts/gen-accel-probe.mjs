// Assembles native/accel-probe.S and writes its bytes into src/drivers/qemu/accel-probe-rom.ts (run after editing the source).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Assembles the probe source into its 64 KiB ROM image (needs binutils: as, ld). */
export function assembleProbe(source = new URL('../native/accel-probe.S', import.meta.url).pathname) {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-probe-'));
  try {
    execFileSync('as', ['--64', '-o', join(dir, 'p.o'), source]);
    execFileSync('ld', ['-m', 'elf_x86_64', '-Ttext=0', '-e', '0', '--oformat', 'binary', '-o', join(dir, 'p.rom'), join(dir, 'p.o')]);
    return readFileSync(join(dir, 'p.rom'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const RESET = 0xfff0;

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const rom = assembleProbe();
  if (rom.length !== 0x10000) throw new Error(`probe ROM is ${rom.length} bytes, expected 65536`);
  let end = RESET;
  while (end > 0 && rom[end - 1] === 0) end--;
  const hex = rom.subarray(0, end).toString('hex');
  const lines = hex.match(/.{1,96}/g).map((l) => `  '${l}'`).join(' +\n');
  writeFileSync(new URL('../src/drivers/qemu/accel-probe-rom.ts', import.meta.url), [
    '// The accelerator probe guest\'s machine code, generated from native/accel-probe.S by scripts/gen-accel-probe.mjs (do not edit).',
    '',
    '/** Code and data from the ROM\'s first byte (the rest up to the reset vector is zero). */',
    `export const PROBE_CODE_HEX =\n${lines};`,
    '',
    '/** The reset vector at offset 0xfff0: a far jump to the code. */',
    `export const PROBE_RESET_HEX = '${rom.subarray(RESET, RESET + 5).toString('hex')}';`,
    '',
  ].join('\n'));
  process.stdout.write(`accel-probe: ${end} bytes of code\n`);
}
