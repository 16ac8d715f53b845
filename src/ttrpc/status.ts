/**
 * gRPC status codes as ttrpc carries them in google.rpc.Status, and the typed error that
 * tsbox throws and catches across the wire. containerd turns these codes back into its
 * errdefs classes (NotFound, AlreadyExists, …), so the code is part of the contract.
 */

export enum Code {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

/** An error with a status code; what a handler throws and what a client call rejects with. */
export class RpcError extends Error {
  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(message);
    this.name = 'RpcError';
  }

  static notFound(message: string): RpcError {
    return new RpcError(Code.NOT_FOUND, message);
  }
  static alreadyExists(message: string): RpcError {
    return new RpcError(Code.ALREADY_EXISTS, message);
  }
  static failedPrecondition(message: string): RpcError {
    return new RpcError(Code.FAILED_PRECONDITION, message);
  }
  static invalidArgument(message: string): RpcError {
    return new RpcError(Code.INVALID_ARGUMENT, message);
  }
  static unimplemented(message: string): RpcError {
    return new RpcError(Code.UNIMPLEMENTED, message);
  }
  static unavailable(message: string): RpcError {
    return new RpcError(Code.UNAVAILABLE, message);
  }
}

/**
 * The connection to the peer is gone. containerd reacts to this exact text ("ttrpc: closed")
 * by cleaning up a dead shim, so the message is fixed.
 */
export class ClosedError extends RpcError {
  constructor() {
    super(Code.UNAVAILABLE, 'ttrpc: closed');
    this.name = 'ClosedError';
  }
}

/** errno → status code, the way ttrpc's Go server classifies os errors it did not wrap. */
const ERRNO_CODES: Record<string, Code> = {
  ENOENT: Code.NOT_FOUND,
  ESRCH: Code.NOT_FOUND,
  EEXIST: Code.ALREADY_EXISTS,
  EACCES: Code.PERMISSION_DENIED,
  EPERM: Code.PERMISSION_DENIED,
  EINVAL: Code.INVALID_ARGUMENT,
  EPIPE: Code.FAILED_PRECONDITION,
};

/** Any thrown value → {code, message} for the wire. */
export function toStatus(err: unknown): { code: Code; message: string } {
  if (err instanceof RpcError) return { code: err.code, message: err.message };
  if (err instanceof Error) {
    const errno = (err as NodeJS.ErrnoException).code;
    const code = errno !== undefined ? ERRNO_CODES[errno] : undefined;
    return { code: code ?? Code.UNKNOWN, message: err.message };
  }
  return { code: Code.UNKNOWN, message: String(err) };
}
