import { EngineError } from './errors';

/** A container's life, in one place: which status may follow which. */
export type Status = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

const NEXT: Record<Status, readonly Status[]> = {
  creating: ['created', 'stopped'],
  created: ['running', 'stopped'],
  running: ['paused', 'stopped'],
  paused: ['running', 'stopped'],
  stopped: [],
};

/** The new status, or FailedPrecondition naming the operation that cannot happen now. */
export function transition(id: string, from: Status, to: Status, operation: string): Status {
  if (!NEXT[from].includes(to)) {
    throw EngineError.failedPrecondition(`cannot ${operation} container ${id}: it is ${from}`);
  }
  return to;
}

/** Checks that `operation` is allowed in `status` without changing it. */
export function expectStatus(id: string, status: Status, allowed: readonly Status[], operation: string): void {
  if (!allowed.includes(status)) {
    throw new EngineError('FailedPrecondition', `cannot ${operation} container ${id}: it is ${status}`, { status });
  }
}
