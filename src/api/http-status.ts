// The one place where error codes become HTTP statuses.
import type { ErrorCode } from '../shared/errors.js';

/** HTTP status for an error code. */
export function httpStatusFor(code: ErrorCode): number {
  switch (code) {
    case 'INVALID_ARGUMENT': case 'INVALID_NAME': case 'INVALID_SIZE': case 'INVALID_ADDRESS': case 'INVALID_CONFIG': case 'INVALID_ARCHIVE':
    case 'UNSUPPORTED': case 'INSUFFICIENT_RESOURCES':
      return 400;
    case 'NOT_FOUND':
      return 404;
    case 'METHOD_NOT_ALLOWED':
      return 405;
    case 'ALREADY_EXISTS': case 'CONFLICT': case 'IN_USE': case 'INVALID_STATE': case 'BUSY':
      return 409;
    case 'TIMEOUT':
      return 504;
    case 'HOST_UNREACHABLE':
      return 503;
    default:
      return 500;
  }
}
