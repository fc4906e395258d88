// A small RFC 6455 websocket client over the daemon's unix socket (the CLI's exec, console and events streams).
// The `ws` package cost ~18 ms of start-up per command that streams (BENCHMARKS.md, issue 14); this client does what
// those streams need: the handshake with its accept check, masked frames out, fragmented messages, ping, close.
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { BodyDecoder, encodeRequest, parseHead } from './unix-http.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Messages larger than this close the connection (1009): the daemon's frames are far smaller. */
const MAX_MESSAGE = 64 * 1024 * 1024;
/** How long close() waits for the server's closing handshake before dropping the connection. */
const CLOSE_WAIT_MS = 1000;

const Op = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

/** Why the handshake failed: an HTTP answer other than 101 (status and body) or a broken upgrade. */
export class WebSocketRefused extends Error {
  constructor(readonly status: number, readonly body: string, message: string) {
    super(message);
  }
}

/** One open websocket: emits `message` (data, isBinary), `error` (err) and `close` (code). */
export class UnixWebSocket extends EventEmitter {
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readonly OPEN = 1;
  readonly CLOSING = 2;
  readonly CLOSED = 3;
  /** 1 open, 2 closing, 3 closed. */
  readyState = 1;
  private buf: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private fragmentOp = 0;
  private fragmentSize = 0;
  private paused = false;
  private closeCode = 1005;
  private closeTimer: NodeJS.Timeout | undefined;

  constructor(private readonly socket: Socket, head: Buffer) {
    super();
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err) => {
      if (this.readyState !== UnixWebSocket.CLOSED) this.emit('error', err);
    });
    socket.on('close', () => {
      clearTimeout(this.closeTimer);
      this.readyState = UnixWebSocket.CLOSED;
      this.emit('close', this.closeCode);
    });
    // After the caller's await has attached its listeners (a microtask), like the socket's own later data.
    if (head.length) setImmediate(() => this.receive(head));
  }

  /** Sends a text (string) or binary (Buffer) message; cb runs once it is written. */
  send(data: string | Buffer, cb?: (err?: Error | null) => void): void {
    if (this.readyState !== UnixWebSocket.OPEN) {
      if (cb) queueMicrotask(() => cb(new Error('websocket is not open')));
      return;
    }
    const payload = typeof data === 'string' ? Buffer.from(data) : data;
    this.socket.write(frame(typeof data === 'string' ? Op.text : Op.binary, payload), cb);
  }

  /** Starts the closing handshake (code 1000); the connection is dropped if the server does not answer in time. */
  close(code = 1000): void {
    if (this.readyState !== UnixWebSocket.OPEN) return;
    this.readyState = UnixWebSocket.CLOSING;
    const body = Buffer.alloc(2);
    body.writeUInt16BE(code);
    this.socket.write(frame(Op.close, body));
    this.closeTimer = setTimeout(() => this.socket.destroy(), CLOSE_WAIT_MS);
    this.closeTimer.unref();
  }

  /** Drops the connection at once. */
  terminate(): void {
    this.socket.destroy();
  }

  /** Stops delivering messages (and reading the socket) until resume(). */
  pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  /** Delivers what arrived meanwhile and reads on. */
  resume(): void {
    this.paused = false;
    this.socket.resume();
    this.receive(Buffer.alloc(0));
  }

  private receive(chunk: Buffer): void {
    if (chunk.length) this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (!this.paused && this.readyState !== UnixWebSocket.CLOSED) {
      const f = parseFrame(this.buf);
      if (f === null) return;
      if ('error' in f) return this.fail(f.code, f.error);
      this.buf = this.buf.subarray(f.size);
      this.handle(f.fin, f.op, f.payload);
    }
  }

  private handle(fin: boolean, op: number, payload: Buffer): void {
    if (op === Op.close) {
      this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      // Echo the close (unless we started it), then let the server end the connection, as RFC 6455 7.1.1 prefers.
      if (this.readyState === UnixWebSocket.OPEN) {
        this.readyState = UnixWebSocket.CLOSING;
        this.socket.write(frame(Op.close, payload.subarray(0, 2)));
      }
      this.socket.end();
      clearTimeout(this.closeTimer);
      this.closeTimer = setTimeout(() => this.socket.destroy(), CLOSE_WAIT_MS);
      this.closeTimer.unref();
      return;
    }
    if (op === Op.ping) {
      if (this.readyState === UnixWebSocket.OPEN) this.socket.write(frame(Op.pong, payload));
      return;
    }
    if (op === Op.pong) return;
    if (op === Op.continuation) {
      if (!this.fragmentOp) return this.fail(1002, 'continuation frame without a message');
    } else if (this.fragmentOp) {
      return this.fail(1002, 'new message inside a fragmented one');
    } else {
      this.fragmentOp = op;
    }
    this.fragments.push(payload);
    this.fragmentSize += payload.length;
    if (this.fragmentSize > MAX_MESSAGE) return this.fail(1009, 'message too large');
    if (!fin) return;
    const data = this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments);
    const binary = this.fragmentOp === Op.binary;
    this.fragments = [];
    this.fragmentOp = 0;
    this.fragmentSize = 0;
    if (this.readyState === UnixWebSocket.OPEN) this.emit('message', data, binary);
  }

  private fail(code: number, why: string): void {
    this.emit('error', new Error(`websocket protocol error: ${why}`));
    this.close(code);
    this.socket.destroy();
  }
}

/** A parsed server frame, null when more bytes are needed, or the protocol error it breaks. */
export function parseFrame(buf: Buffer): { fin: boolean; op: number; payload: Buffer; size: number } | { error: string; code: number } | null {
  if (buf.length < 2) return null;
  const b0 = buf[0]!;
  const b1 = buf[1]!;
  if (b0 & 0x70) return { error: 'reserved bits set (no extension was negotiated)', code: 1002 };
  if (b1 & 0x80) return { error: 'masked frame from the server', code: 1002 };
  const op = b0 & 0x0f;
  if (![0, 1, 2, 8, 9, 10].includes(op)) return { error: `unknown opcode ${op}`, code: 1002 };
  let len = b1 & 0x7f;
  let off = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    off = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    const big = buf.readBigUInt64BE(2);
    if (big > BigInt(MAX_MESSAGE)) return { error: 'frame too large', code: 1009 };
    len = Number(big);
    off = 10;
  }
  const fin = (b0 & 0x80) !== 0;
  if (op >= 8 && (!fin || len > 125)) return { error: 'fragmented or oversized control frame', code: 1002 };
  if (buf.length < off + len) return null;
  return { fin, op, payload: buf.subarray(off, off + len), size: off + len };
}

const maskPool = Buffer.alloc(4096);
let maskOffset = maskPool.length;

/** Encodes one client frame: FIN set, masked with a fresh random key as RFC 6455 requires of clients. */
export function frame(op: number, payload: Buffer): Buffer {
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const out = Buffer.allocUnsafe(2 + ext + 4 + len);
  out[0] = 0x80 | op;
  if (ext === 0) out[1] = 0x80 | len;
  else if (ext === 2) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(len), 2);
  }
  if (maskOffset + 4 > maskPool.length) {
    randomFillSync(maskPool);
    maskOffset = 0;
  }
  const k = 2 + ext;
  maskPool.copy(out, k, maskOffset, maskOffset + 4);
  maskOffset += 4;
  for (let i = 0; i < len; i++) out[k + 4 + i] = payload[i]! ^ out[k + (i & 3)]!;
  return out;
}

/** Opens a websocket to `path` on the unix socket; rejects with WebSocketRefused for a non-101 answer, or the socket error. */
export function connectWebSocket(socketPath: string, path: string): Promise<UnixWebSocket> {
  const key = randomBytes(16).toString('base64');
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let buf: Buffer = Buffer.alloc(0);
    let refused: { status: number; body: Buffer[]; decoder: BodyDecoder } | undefined;
    const settle = (err?: Error, ws?: UnixWebSocket): void => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onEnd);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve(ws!);
    };
    const refuse = (): void => {
      const r = refused!;
      settle(new WebSocketRefused(r.status, Buffer.concat(r.body).toString('utf8'), `GET ${path} answered ${r.status}`));
    };
    const onData = (chunk: Buffer): void => {
      try {
        if (refused) {
          refused.decoder.push(chunk);
          if (refused.decoder.done) refuse();
          return;
        }
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        const head = parseHead(buf);
        if (!head) return;
        const rest = buf.subarray(head.size);
        const { status, headers } = head.res;
        if (status !== 101) {
          const body: Buffer[] = [];
          refused = { status, body, decoder: new BodyDecoder(head.res, 'GET', (c) => body.push(c)) };
          refused.decoder.push(rest);
          if (refused.decoder.done) refuse();
          return;
        }
        const accept = createHash('sha1').update(key + GUID).digest('base64');
        if (headers['sec-websocket-accept'] !== accept || (headers.upgrade ?? '').toLowerCase() !== 'websocket') {
          return settle(new WebSocketRefused(101, '', 'The daemon answered the websocket upgrade with a wrong Sec-WebSocket-Accept'));
        }
        if (headers['sec-websocket-extensions']) return settle(new WebSocketRefused(101, '', 'The daemon negotiated a websocket extension nobody asked for'));
        settle(undefined, new UnixWebSocket(socket, rest));
      } catch (err) {
        settle(new WebSocketRefused(0, '', `Malformed answer to the websocket upgrade of GET ${path}: ${(err as Error).message}`));
      }
    };
    const onError = (err: Error): void => settle(err);
    const onEnd = (): void => {
      if (refused?.decoder.untilClose) return refuse();
      settle(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('end', onEnd);
    socket.write(encodeRequest({ method: 'GET', path, headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': key } }));
  });
}
