// Pure layout of partitioned raw disks for VM images: MBR partition tables and sector offsets, written without loop devices.
import { AppError } from '../../shared/errors.js';

/** Bytes per sector of the disks Hangar builds. */
export const SECTOR = 512;

/** One MBR partition: the first sector and the length in sectors; type e.g. 0x83 (Linux), 0xef (EFI system). */
export interface MbrPartition {
  type: number;
  startSector: number;
  sectors: number;
  /** The active flag a BIOS boot loader (syslinux's mbr.bin) boots from. */
  bootable?: boolean;
}

/**
 * Sector 0 of an MBR disk: boot code (at most 440 bytes, e.g. syslinux's mbr.bin), a disk signature, up to four
 * partition entries (LBA only: CHS fields are the "beyond 8 GiB" marker FE FF FF) and the 55 AA signature.
 */
export function renderMbr(bootCode: Buffer, partitions: readonly MbrPartition[], diskSignature = 0): Buffer {
  if (bootCode.length > 440) throw new AppError('INVALID_ARGUMENT', `MBR boot code is ${bootCode.length} bytes; at most 440 fit before the partition table`);
  if (partitions.length > 4) throw new AppError('INVALID_ARGUMENT', `An MBR holds at most 4 partitions (${partitions.length} given)`);
  const mbr = Buffer.alloc(SECTOR);
  bootCode.copy(mbr, 0);
  mbr.writeUInt32LE(diskSignature >>> 0, 440);
  let end = 1;
  partitions.forEach((p, i) => {
    const fits = (n: number) => Number.isInteger(n) && n > 0 && n <= 0xffffffff;
    if (!fits(p.startSector) || !fits(p.sectors) || p.startSector < end) {
      throw new AppError('INVALID_ARGUMENT', `Partition ${i + 1} (start ${p.startSector}, ${p.sectors} sectors) overlaps or does not fit an MBR`);
    }
    end = p.startSector + p.sectors;
    const o = 446 + 16 * i;
    mbr[o] = p.bootable ? 0x80 : 0x00;
    mbr.set([0xfe, 0xff, 0xff], o + 1);
    mbr[o + 4] = p.type;
    mbr.set([0xfe, 0xff, 0xff], o + 5);
    mbr.writeUInt32LE(p.startSector, o + 8);
    mbr.writeUInt32LE(p.sectors, o + 12);
  });
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  return mbr;
}
