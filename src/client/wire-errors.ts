// Maps what hangard answers (error bodies, HTTP statuses, socket failures) to AppErrors with their cause chains.
import { AppError, ErrorCodes, type ErrorBody, type ErrorCode } from '../shared/errors.js';

/** Default socket path when neither the constructor nor HANGAR_SOCKET names one. */
export const DEFAULT_SOCKET = '/run/hangar/hangar.sock';

/** Hint shown when the daemon cannot be reached. */
export const START_HINT = 'Is hangard running? Start it with `npm start` (or `systemctl start hangard` after `hangar daemon install`), or point HANGAR_SOCKET at its socket.';

/** Rebuilds an AppError from its wire form; each cause becomes an Error in a cause chain, outermost first. */
export function appErrorFromBody(body: ErrorBody): AppError {
  let cause: Error | undefined;
  for (let i = body.causes.length - 1; i >= 0; i--) {
    cause = new Error(body.causes[i], cause === undefined ? undefined : { cause });
  }
  return new AppError(body.code, body.message, {
    ...(cause === undefined ? {} : { cause }),
    ...(body.details === undefined ? {} : { details: body.details }),
  });
}

/** Extracts an ErrorBody from a parsed JSON value shaped `{ error: {...} }` (or the bare inner object), or undefined. */
export function errorBodyOf(value: unknown): ErrorBody | undefined {
  const inner = isRecord(value) && isRecord(value.error) ? value.error : value;
  if (!isRecord(inner) || typeof inner.message !== 'string') return undefined;
  const code: ErrorCode = (ErrorCodes as readonly string[]).includes(String(inner.code)) ? (inner.code as ErrorCode) : 'INTERNAL';
  const causes = Array.isArray(inner.causes) ? inner.causes.map(String) : [];
  const details = isRecord(inner.details) ? inner.details : undefined;
  return { code, message: inner.message, causes, ...(details ? { details } : {}) };
}

/** The error code a bare HTTP status stands for, when the body carried no error. */
export function codeForStatus(status: number): ErrorCode {
  if (status === 400) return 'INVALID_ARGUMENT';
  if (status === 404) return 'NOT_FOUND';
  if (status === 409) return 'CONFLICT';
  if (status === 504) return 'TIMEOUT';
  return 'INTERNAL';
}

/** Turns a non-2xx answer into an AppError, preferring the error body when there is one. */
export function errorFromResponse(status: number, text: string, what: string): AppError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const body = errorBodyOf(parsed);
  if (body) return appErrorFromBody(body);
  const snippet = text.trim().slice(0, 200);
  return new AppError(codeForStatus(status), `hangard answered HTTP ${status} to ${what}`, snippet ? { cause: new Error(snippet) } : {});
}

/** Maps a socket-level failure (refused, missing, denied) to HOST_FAILED naming the socket; other errors pass through. */
export function connectionError(err: unknown, socketPath: string): unknown {
  const code = isRecord(err) ? err.code : undefined;
  if (code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES' || code === 'EPERM' || code === 'ENOTSOCK') {
    const hint = code === 'EACCES' || code === 'EPERM' ? `Permission denied on ${socketPath}: run hangar as root or as a member of the socket's group.` : START_HINT;
    return new AppError('HOST_FAILED', `Cannot reach hangard at ${socketPath}`, { cause: err, details: { hint } });
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') {
    return new AppError('HOST_FAILED', `Connection to hangard at ${socketPath} was cut`, { cause: err });
  }
  return err;
}

/** True for plain objects (not arrays). */
function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
