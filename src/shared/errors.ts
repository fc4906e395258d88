// Error codes and the AppError class shared by every layer; only src/api maps codes to HTTP statuses.

/** Every error code Hangar can report. */
export const ErrorCodes = [
  'INVALID_ARGUMENT',
  'INVALID_NAME',
  'INVALID_SIZE',
  'INVALID_ADDRESS',
  'INVALID_CONFIG',
  'INVALID_ARCHIVE',
  'NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  'ALREADY_EXISTS',
  'CONFLICT',
  'BUSY',
  'IN_USE',
  'INVALID_STATE',
  'UNSUPPORTED',
  'INSUFFICIENT_RESOURCES',
  'TIMEOUT',
  'BACKEND_FAILED',
  'HOST_FAILED',
  'HOST_UNREACHABLE',
  'INTERNAL',
  'INTERRUPTED',
] as const;

/** One of the error codes. */
export type ErrorCode = (typeof ErrorCodes)[number];

/** Serialisable form of an error and its cause chain, as sent over the wire. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
  causes: string[];
}

/** An error with a stable code, a message naming its subject, and an optional cause. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    if (opts.details) this.details = opts.details;
  }
}

/** True when err is an AppError (optionally with the given code). */
export function isAppError(err: unknown, code?: ErrorCode): err is AppError {
  return err instanceof AppError && (code === undefined || err.code === code);
}

/** The messages of err's cause chain, outermost first, without err's own message. */
export function causeChain(err: unknown): string[] {
  const out: string[] = [];
  let cur: unknown = err instanceof Error ? err.cause : undefined;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 16; depth++) {
    if (cur instanceof Error) {
      out.push(cur.message);
      cur = cur.cause;
    } else {
      out.push(String(cur));
      break;
    }
  }
  return out;
}

/** Turns anything thrown into the wire form, keeping AppError codes and INTERNAL for the rest. */
export function toErrorBody(err: unknown): ErrorBody {
  if (err instanceof AppError) {
    return { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}), causes: causeChain(err) };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'INTERNAL', message, causes: causeChain(err) };
}
