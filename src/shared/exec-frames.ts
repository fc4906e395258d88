// Channels of the framed exec stream of POST /1.0/instances/{name}/exec (kept free of zod so the CLI loads it cheaply).

/** Frame layout: [channel byte][uint32 big-endian length][payload]; exit carries JSON {"code": n}. */
export const ExecFrame = { stdout: 1, stderr: 2, exit: 3 } as const;
