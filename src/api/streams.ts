// Server side of the streaming routes: the framed POST exec stream, exec/console websocket sessions, the VGA relay and the events feed.
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import type { z } from 'zod';
import { AppError, toErrorBody } from '../shared/errors.js';
import { encodeExecFrame, ExecFrame, StreamChannel, STREAM_SIGNALS } from '../shared/exec-frames.js';
import { StreamControlFrameSchema, type StreamServerFrame } from '../shared/route-schemas.js';
import type { EventType, HangarEvent } from '../shared/schemas.js';
import type { HostProcess } from '../host/host.js';

/** What the events feed needs from the event bus. */
export interface EventSource {
  recent(): HangarEvent[];
  subscribe(fn: (e: HangarEvent) => void): () => void;
}

const toBuffer = (d: RawData): Buffer => (Buffer.isBuffer(d) ? d : Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d));

/** A process a stream serves, and what its client's going away does to it (SIGKILL unless said otherwise). */
export interface SessionProcess {
  proc: HostProcess;
  disconnected?: () => void;
}

/** The header of a POST exec answer that carries the exec's id (for GET .../execs and POST .../execs/{id}/signal). */
export const EXEC_ID_HEADER = 'x-hangar-exec-id';

const hangUp = (s: SessionProcess) => (s.disconnected ? s.disconnected() : s.proc.kill('SIGKILL'));

/** Streams a process's output as frames [channel][uint32 BE length][payload], ending with an exit frame (JSON). */
export function streamExec(res: ServerResponse, start: SessionProcess & { id: string; stdin?: Buffer | undefined }): void {
  const { proc } = start;
  res.writeHead(200, { 'Content-Type': 'application/vnd.hangar.exec-stream', [EXEC_ID_HEADER]: start.id });
  // At once, not with the first output: a VM's agent sends all output at the end, and the id is wanted before.
  res.flushHeaders();
  const frame = (ch: number, d: Buffer | string) => res.write(encodeExecFrame(ch, Buffer.isBuffer(d) ? d : Buffer.from(d)));
  proc.stdin?.end(start.stdin);
  proc.stdout?.on('data', (d: Buffer | string) => frame(ExecFrame.stdout, d));
  proc.stderr?.on('data', (d: Buffer | string) => frame(ExecFrame.stderr, d));
  res.on('close', () => { if (!res.writableFinished) hangUp(start); });
  void exitCodeOf(proc).then((code) => {
    frame(ExecFrame.exit, JSON.stringify({ code }));
    res.end();
  });
}

/** Resolves with a process's exit code once its output streams have ended too (128+signal when killed). */
function exitCodeOf(proc: HostProcess): Promise<number> {
  const ended = (s: NodeJS.ReadableStream | null) => new Promise<void>((r) => {
    if (!s) { r(); return; }
    s.on('end', () => r());
    s.on('close', () => r());
    s.on('error', () => r());
  });
  const signalNumber = (s: string): number => (STREAM_SIGNALS as Record<string, number>)[s] ?? 1;
  return Promise.all([proc.wait(), ended(proc.stdout), ended(proc.stderr)]).then(([exit]) => exit.code ?? (exit.signal ? 128 + signalNumber(exit.signal) : 1));
}

/** Sends the frame that ends a session and closes the socket. */
function endSession(ws: WebSocket, frame: StreamServerFrame): void {
  if (ws.readyState !== ws.OPEN) return;
  ws.send(JSON.stringify(frame));
  ws.close();
}

/** Ends a session with an error frame. */
export function failSession(ws: WebSocket, err: unknown): void {
  endSession(ws, { type: 'error', error: toErrorBody(err) });
}

/** Runs a process for a stream websocket: the first text frame (checked by `first`) starts it; then channel and control frames. */
export function streamSession<T extends z.ZodType>(ws: WebSocket, first: T, start: (req: z.output<T>) => Promise<SessionProcess>): void {
  let session: SessionProcess | undefined;
  let proc: HostProcess | undefined;
  let started = false;
  const pending: Array<[Buffer, boolean]> = [];
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const buf = toBuffer(data);
    if (!started) {
      started = true;
      let json: unknown;
      try { json = JSON.parse(buf.toString('utf8')); } catch (e) { failSession(ws, new AppError('INVALID_ARGUMENT', 'The first frame must be a JSON request', { cause: e })); return; }
      const req = first.safeParse(json);
      if (!req.success) {
        failSession(ws, new AppError('INVALID_ARGUMENT', `Invalid first frame: ${req.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(frame)'}: ${i.message}`).join('; ')}`));
        return;
      }
      start(req.data).then((s) => {
        session = s;
        const p = s.proc;
        proc = p;
        if (ws.readyState !== ws.OPEN) { hangUp(s); return; }
        for (const [b, bin] of pending.splice(0)) handleFrame(p, b, bin);
        pump(ws, p);
      }, (err: unknown) => failSession(ws, err));
      return;
    }
    if (!proc) { pending.push([buf, isBinary]); return; }
    handleFrame(proc, buf, isBinary);
  });
  ws.on('close', () => {
    if (session) { session.proc.stdin?.end(); hangUp(session); }
  });
}

/** Applies one client frame: stdin data, or a control frame (text, or binary on the control channel); malformed ones are ignored. */
function handleFrame(proc: HostProcess, buf: Buffer, isBinary: boolean): void {
  if (isBinary && buf[0] !== StreamChannel.control) {
    if (buf[0] === StreamChannel.stdin) proc.stdin?.write(buf.subarray(1));
    return;
  }
  let json: unknown;
  try { json = JSON.parse((isBinary ? buf.subarray(1) : buf).toString('utf8')); } catch { return; }
  const msg = StreamControlFrameSchema.safeParse(json);
  if (!msg.success) return;
  const m = msg.data;
  if (m.type === 'eof') proc.stdin?.end();
  else if (m.type === 'resize') proc.resize?.(m.cols, m.rows);
  else proc.kill(m.signal);
}

function pump(ws: WebSocket, proc: HostProcess): void {
  const frame = (ch: number, d: Buffer | string) => {
    if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([ch]), Buffer.isBuffer(d) ? d : Buffer.from(d)]));
  };
  proc.stdout?.on('data', (d: Buffer | string) => frame(StreamChannel.stdout, d));
  proc.stderr?.on('data', (d: Buffer | string) => frame(StreamChannel.stderr, d));
  void exitCodeOf(proc).then((code) => endSession(ws, { type: 'exit', code }));
}

/** Relays a graphical console as raw RFB bytes in binary frames, as noVNC expects; errors arrive as a JSON text frame. */
export function relaySession(ws: WebSocket, open: () => Promise<Duplex>): void {
  const early: Buffer[] = [];
  const onEarly = (d: RawData) => { early.push(toBuffer(d)); };
  ws.on('message', onEarly);
  open().then((sock) => {
    ws.off('message', onEarly);
    if (ws.readyState !== ws.OPEN) { sock.destroy(); return; }
    for (const b of early) sock.write(b);
    sock.on('data', (d: Buffer) => { if (ws.readyState === ws.OPEN) ws.send(d); });
    sock.on('close', () => ws.close());
    sock.on('error', () => ws.close());
    ws.on('message', (d: RawData) => sock.write(toBuffer(d)));
    ws.on('close', () => sock.destroy());
  }, (err: unknown) => failSession(ws, err));
}

/** Feeds events to a websocket: recent history first when asked, then live ones, filtered by type. */
export function eventsSession(ws: WebSocket, events: EventSource, opts: { types?: EventType[] | undefined; replay?: boolean | undefined }): void {
  const wanted = opts.types && opts.types.length > 0 ? new Set<string>(opts.types) : null;
  if (opts.replay) {
    for (const e of events.recent()) if (!wanted || wanted.has(e.type)) ws.send(JSON.stringify(e));
  }
  const unsubscribe = events.subscribe((e) => {
    if (wanted && !wanted.has(e.type)) return;
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(e));
  });
  ws.on('close', unsubscribe);
  ws.on('error', unsubscribe);
}
