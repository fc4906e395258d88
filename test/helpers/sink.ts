// A writable that collects what is written to it, for tests that capture a command's output.
import { Writable } from 'node:stream';

/** A writable collecting everything written to it; text() answers it as UTF-8. */
export function sink(): Writable & { text: () => string } {
  const chunks: Buffer[] = [];
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  });
  return Object.assign(w, { text: () => Buffer.concat(chunks).toString('utf8') });
}
