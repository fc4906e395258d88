// Websocket side of the client: the events stream and the exec/console channel framing (./websocket.ts, loaded lazily).
import type { Readable, Writable } from 'node:stream';
import { AppError } from '../shared/errors.js';
import { StreamChannel } from '../shared/exec-frames.js';
import { routePath } from '../shared/routes.js';
import type { EventType, HangarEvent } from '../shared/schemas.js';
import type { UnixWebSocket } from './websocket.js';
import { appErrorFromBody, connectionError, errorBodyOf, errorFromResponse } from './wire-errors.js';


/** Encodes one binary frame: channel byte then payload. */
export function encodeFrame(channel: number, payload: Buffer | string): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const out = Buffer.allocUnsafe(data.length + 1);
  out[0] = channel;
  data.copy(out, 1);
  return out;
}

/** Opens a websocket to `path` on the daemon's unix socket; resolves once open, rejects with a mapped AppError otherwise. */
export async function openSocket(socketPath: string, path: string): Promise<UnixWebSocket> {
  // Loaded here, not at import: the websocket client pulls in node:crypto (~3 ms), which list and info do not need.
  const { connectWebSocket, WebSocketRefused } = await import('./websocket.js');
  try {
    return await connectWebSocket(socketPath, path);
  } catch (err) {
    if (err instanceof WebSocketRefused && err.status !== 101) throw errorFromResponse(err.status, err.body, `GET ${path}`);
    if (err instanceof WebSocketRefused) throw new AppError('INTERNAL', `Failed to open GET ${path}`, { cause: err });
    throw connectionError(err, socketPath);
  }
}

/** Options of an events subscription. */
export interface EventsOptions {
  /** Only these event types (all when omitted). */
  types?: EventType[];
  /** Called for every event. */
  onEvent: (event: HangarEvent) => void;
  /** Called when the stream fails after it was open. */
  onError?: (err: unknown) => void;
}

/** A live events subscription. */
export interface EventStream {
  /** Resolves once the subscription is open (events from then on are delivered); rejects when it cannot open. */
  ready: Promise<void>;
  /** Resolves when the stream has closed, for whatever reason. */
  closed: Promise<void>;
  /** Closes the stream. */
  close(): void;
}

/** Subscribes to the daemon's events websocket. */
export function subscribeEvents(socketPath: string, opts: EventsOptions): EventStream {
  const path = routePath('events', {}, { type: opts.types && opts.types.length > 0 ? opts.types.join(',') : undefined });
  let ws: UnixWebSocket | undefined;
  let closing = false;
  let markClosed!: () => void;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));
  const ready = openSocket(socketPath, path).then(
    (sock) => {
      ws = sock;
      sock.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) return;
        let ev: unknown;
        try {
          ev = JSON.parse(data.toString('utf8'));
        } catch {
          return;
        }
        if (typeof ev === 'object' && ev !== null && typeof (ev as HangarEvent).type === 'string') opts.onEvent(ev as HangarEvent);
      });
      sock.on('error', (err: Error) => opts.onError?.(connectionError(err, socketPath)));
      sock.on('close', () => markClosed());
      if (closing) sock.close();
    },
    (err: unknown) => {
      markClosed();
      throw err;
    },
  );
  // A caller that never awaits `ready` must not crash the process with an unhandled rejection.
  ready.catch(() => undefined);
  return {
    ready,
    closed,
    close() {
      closing = true;
      if (ws) ws.close();
    },
  };
}

/** Local streams wired to a remote exec or console session. */
export interface StreamIo {
  /** Sent as channel-0 frames; a Buffer/string is sent whole; eof follows its end (or comes at once when absent). */
  stdin?: Readable | Buffer | string;
  /** Receives channel 1. */
  stdout: Writable;
  /** Receives channel 2 (unused with a tty). */
  stderr?: Writable;
  /** Subscribes to terminal size changes; returns an unsubscribe function. */
  onResize?: (send: (cols: number, rows: number) => void) => () => void;
  /** Subscribes to local signals to forward (e.g. SIGINT); returns an unsubscribe function. */
  onSignal?: (send: (signal: string) => void) => () => void;
  /** Closes the session from this side (console detach); the call then resolves without an exit code. */
  signal?: AbortSignal;
  /** Told the exec's id once it runs, for listExecs/signalExec (the POST path, used without a tty or streamed stdin). */
  onExecId?: (id: string) => void;
}

/** Runs one stream session: sends `first` as a text frame, pumps stdin, routes output; resolves with the exit code (null when closed without one). */
export async function runStreamSession(socketPath: string, path: string, first: unknown, io: StreamIo): Promise<number | null> {
  const ws = await openSocket(socketPath, path);
  return new Promise<number | null>((resolve, reject) => {
    const cleanups: Array<() => void> = [];
    let exitCode: number | null = null;
    let failure: unknown;
    let done = false;

    const finish = (): void => {
      if (done) return;
      done = true;
      for (const c of cleanups.splice(0)) c();
      if (failure !== undefined) reject(failure);
      else resolve(exitCode);
    };
    const sendJson = (msg: unknown): void => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg));
    };

    ws.on('message', (buf: Buffer, isBinary: boolean) => {
      if (isBinary) {
        if (buf.length === 0) return;
        const target = buf[0] === StreamChannel.stderr ? (io.stderr ?? io.stdout) : buf[0] === StreamChannel.stdout ? io.stdout : undefined;
        if (!target) return;
        // Backpressure: stop reading the socket while the local writer is full.
        if (!target.write(buf.subarray(1))) {
          ws.pause();
          target.once('drain', () => ws.resume());
        }
        return;
      }
      let msg: unknown;
      try {
        msg = JSON.parse(buf.toString('utf8'));
      } catch {
        return;
      }
      if (typeof msg !== 'object' || msg === null) return;
      const m = msg as { type?: unknown; code?: unknown; error?: unknown };
      // The server sends exit/error after the last data frame, so the session is complete here: not waiting for the
      // close handshake saves a round trip per exec.
      if (m.type === 'exit' && typeof m.code === 'number') {
        exitCode = m.code;
        finish();
      } else if (m.type === 'error') {
        failure = appErrorFromBody(errorBodyOf(m.error) ?? { code: 'INTERNAL', message: 'Remote session failed', causes: [] });
        finish();
      }
    });
    ws.on('error', (err: Error) => {
      if (failure === undefined && exitCode === null) failure = connectionError(err, socketPath);
    });
    ws.on('close', finish);

    if (io.signal) {
      const onAbort = (): void => ws.close();
      if (io.signal.aborted) onAbort();
      io.signal.addEventListener('abort', onAbort, { once: true });
      cleanups.push(() => io.signal?.removeEventListener('abort', onAbort));
    }
    if (io.onResize) {
      cleanups.push(io.onResize((cols, rows) => sendJson({ type: 'resize', cols, rows })));
    }
    if (io.onSignal) {
      cleanups.push(io.onSignal((signal) => sendJson({ type: 'signal', signal })));
    }

    ws.send(JSON.stringify(first));
    pumpStdin(ws, io.stdin, cleanups);
  }).finally(() => {
    if (ws.readyState === ws.OPEN) ws.terminate();
  });
}

/** Sends stdin as channel-0 frames, one in flight at a time, then `{type:"eof"}`. */
function pumpStdin(ws: UnixWebSocket, stdin: StreamIo['stdin'], cleanups: Array<() => void>): void {
  const eof = (): void => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'eof' }));
  };
  if (stdin === undefined) return eof();
  if (typeof stdin === 'string' || Buffer.isBuffer(stdin)) {
    const data = typeof stdin === 'string' ? Buffer.from(stdin) : stdin;
    if (data.length > 0) ws.send(encodeFrame(StreamChannel.stdin, data));
    return eof();
  }
  const onData = (chunk: Buffer | string): void => {
    if (ws.readyState !== ws.OPEN) return;
    stdin.pause();
    ws.send(encodeFrame(StreamChannel.stdin, typeof chunk === 'string' ? Buffer.from(chunk) : chunk), () => {
      if (ws.readyState === ws.OPEN) stdin.resume();
    });
  };
  const onEnd = (): void => eof();
  const onError = (): void => eof();
  stdin.on('data', onData);
  stdin.once('end', onEnd);
  stdin.once('error', onError);
  stdin.resume();
  cleanups.push(() => {
    stdin.off('data', onData);
    stdin.off('end', onEnd);
    stdin.off('error', onError);
    // Leave a shared stdin (the terminal) paused so the process can exit.
    stdin.pause();
  });
}

/** Error for a session that closed without telling how the command ended. */
export function noExitError(what: string): AppError {
  return new AppError('BACKEND_FAILED', `${what} ended without an exit status`);
}
