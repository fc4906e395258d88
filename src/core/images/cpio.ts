// A pure writer of newc cpio archives (the initramfs format): directories, files, symlinks and device nodes, owned by root.

/** One archive member; paths are relative ("bin/sh"), parents come before their children. */
export type CpioEntry =
  | { path: string; type: 'dir'; mode: number }
  | { path: string; type: 'file'; mode: number; data: Buffer }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'char'; mode: number; major: number; minor: number };

const TYPE_BITS = { dir: 0o040000, file: 0o100000, symlink: 0o120000, char: 0o020000 } as const;

const hex8 = (n: number) => n.toString(16).padStart(8, '0');
const pad4 = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);

/** Packs entries (plus the trailer) into one newc archive; every member is owned by 0:0 with mtime 0, so output is reproducible. */
export function packCpio(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const member = (ino: number, path: string, mode: number, data: Buffer, rdev: [number, number] = [0, 0], nlink = 1) => {
    if (path.startsWith('/') || path.split('/').includes('..')) throw new Error(`cpio member path must be relative without "..": ${path}`);
    const name = Buffer.from(`${path}\0`);
    const fields = [ino, mode, 0, 0, nlink, 0, data.length, 0, 0, rdev[0], rdev[1], name.length, 0];
    const header = Buffer.from(`070701${fields.map(hex8).join('')}`, 'ascii');
    parts.push(header, name, pad4(header.length + name.length), data, pad4(data.length));
  };
  entries.forEach((e, i) => {
    const ino = i + 1;
    switch (e.type) {
      case 'dir': member(ino, e.path, TYPE_BITS.dir | (e.mode & 0o7777), Buffer.alloc(0), [0, 0], 2); break;
      case 'file': member(ino, e.path, TYPE_BITS.file | (e.mode & 0o7777), e.data); break;
      case 'symlink': member(ino, e.path, TYPE_BITS.symlink | 0o777, Buffer.from(e.target)); break;
      case 'char': member(ino, e.path, TYPE_BITS.char | (e.mode & 0o7777), Buffer.alloc(0), [e.major, e.minor]); break;
    }
  });
  member(0, 'TRAILER!!!', 0, Buffer.alloc(0));
  return Buffer.concat(parts);
}
