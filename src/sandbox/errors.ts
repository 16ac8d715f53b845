/**
 * One error type through the engine (crun's habit): what kind of failure it is (so the
 * shim can map it to containerd's error classes), the failing step, the errno, and the
 * spec field that asked for it.
 */

export type ErrorKind = 'NotFound' | 'AlreadyExists' | 'FailedPrecondition' | 'InvalidArgument' | 'Unavailable' | 'Internal';

export class EngineError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    /** status: the container's state when that refused the operation ("stopped"). */
    readonly detail: { step?: string; errno?: string; field?: string; status?: string } = {},
  ) {
    super(message);
    this.name = 'EngineError';
  }

  static notFound(message: string): EngineError {
    return new EngineError('NotFound', message);
  }
  static alreadyExists(message: string): EngineError {
    return new EngineError('AlreadyExists', message);
  }
  static failedPrecondition(message: string): EngineError {
    return new EngineError('FailedPrecondition', message);
  }
  static invalidArgument(message: string, field?: string): EngineError {
    return new EngineError('InvalidArgument', message, { field });
  }
}
