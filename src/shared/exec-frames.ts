// Channel numbers of the exec stream and the exec/console websockets, and the frame encoder (kept free of zod so the CLI loads it cheaply).

/** POST exec stream frames: [channel byte][uint32 big-endian length][payload]; exit carries JSON {"code": n}. */
export const ExecFrame = { stdout: 1, stderr: 2, exit: 3 } as const;

/** Binary websocket frames of the exec and console sessions: [channel byte][payload]; control carries a JSON control frame. */
export const StreamChannel = { stdin: 0, stdout: 1, stderr: 2, control: 255 } as const;

/** Signals a client may send to a running exec (the control frame {"type":"signal"}). */
export const STREAM_SIGNALS = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 } as const;

/** Encodes one frame of the exec stream. */
export function encodeExecFrame(channel: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = channel;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}
