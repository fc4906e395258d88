// Channels of the framed exec stream of POST /1.0/instances/{name}/exec (kept free of zod so the CLI loads it cheaply).

/** Frame layout: [channel byte][uint32 big-endian length][payload]; exit carries JSON {"code": n}. */
export const ExecFrame = { stdout: 1, stderr: 2, exit: 3 } as const;

/** Encodes one frame of the exec stream. */
export function encodeExecFrame(channel: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = channel;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}
