// Unit tests of the MBR renderer: byte positions of boot code, entries and signature; bad layouts refused.
import { describe, expect, it } from 'vitest';
import { renderMbr } from './disk-layout.js';

describe('renderMbr', () => {
  it('places boot code, the active flag, types, LBA start and length, and 55 AA', () => {
    const code = Buffer.alloc(440, 0x90);
    const mbr = renderMbr(code, [
      { type: 0xef, startSector: 2048, sectors: 131072, bootable: true },
      { type: 0x83, startSector: 133120, sectors: 4061184 },
    ], 0x12345678);
    expect(mbr).toHaveLength(512);
    expect(mbr.subarray(0, 440).equals(code)).toBe(true);
    expect(mbr.readUInt32LE(440)).toBe(0x12345678);
    expect([...mbr.subarray(446, 462)]).toEqual([0x80, 0xfe, 0xff, 0xff, 0xef, 0xfe, 0xff, 0xff, 0x00, 0x08, 0, 0, 0x00, 0x00, 0x02, 0x00]);
    expect(mbr[462]).toBe(0x00);
    expect(mbr[466]).toBe(0x83);
    expect(mbr.readUInt32LE(470)).toBe(133120);
    expect(mbr.readUInt32LE(474)).toBe(4061184);
    expect(mbr.subarray(478, 510).every((b) => b === 0)).toBe(true);
    expect([mbr[510], mbr[511]]).toEqual([0x55, 0xaa]);
  });
  it('refuses oversized boot code, overlapping or out-of-range partitions, and a fifth partition', () => {
    expect(() => renderMbr(Buffer.alloc(441), [])).toThrow(/at most 440/);
    expect(() => renderMbr(Buffer.alloc(0), [{ type: 0x83, startSector: 2048, sectors: 100 }, { type: 0x83, startSector: 2100, sectors: 10 }])).toThrow(/Partition 2 .*overlaps/);
    expect(() => renderMbr(Buffer.alloc(0), [{ type: 0x83, startSector: 0, sectors: 10 }])).toThrow(/Partition 1/);
    expect(() => renderMbr(Buffer.alloc(0), [{ type: 0x83, startSector: 1, sectors: 2 ** 32 }])).toThrow(/does not fit/);
    expect(() => renderMbr(Buffer.alloc(0), Array.from({ length: 5 }, (_, i) => ({ type: 0x83, startSector: 1 + i, sectors: 1 })))).toThrow(/at most 4/);
  });
});
