/**
 * One process's life as containerd sees it through the shim, init or exec: which phase
 * follows which, and what each phase allows. TaskService's ordering rules
 * (docs/protocol.md) are written against these phases, not against flags.
 *
 *   created ─begin─▶ starting ─started─▶ running ─reaped─▶ exited ─publishing─▶ draining ─published─▶ stopped
 *      │               │  ▲ an exit reaped while starting is held, handed back by
 *      │               │  │ started/startFailed, then reaped in order
 *      │               └──┴─startFailed─▶ created (init: may start again) / stopped (exec)
 *      ├─reaped─▶ exited (an init killed before Start; an exec has no exit before it starts)
 *      └─abandon─▶ stopped (never ran: an exec deleted or failed to start, a never-started init deleted)
 *
 * `exited`: the sandbox reported the exit; its TaskExit is not queued yet (an init waits
 * for its execs' exits, then for its output to drain). `draining`: the exit is being
 * published. `stopped`: its TaskExit is queued, or it never ran.
 */
export type Phase = 'created' | 'starting' | 'running' | 'exited' | 'draining' | 'stopped';
export type ProcKind = 'init' | 'exec';

type Transition = 'begin' | 'started' | 'startFailed' | 'reaped' | 'publishing' | 'published' | 'abandon';

const NEXT: Record<Phase, Partial<Record<Transition, Phase>>> = {
  created: { begin: 'starting', reaped: 'exited', abandon: 'stopped' },
  starting: { started: 'running', startFailed: 'created' },
  running: { reaped: 'exited' },
  exited: { publishing: 'draining' },
  draining: { published: 'stopped' },
  stopped: {},
};

/** A transition the process's phase does not allow: a bug in the caller, never a user error. */
export class IllegalTransition extends Error {
  constructor(
    readonly kind: ProcKind,
    readonly from: Phase,
    readonly transition: Transition,
  ) {
    super(`${kind} process: ${transition} is not allowed when ${from}`);
  }
}

/** What a Task RPC may do with the process now; `refused` carries why not. */
export type Verdict = { ok: true } | { ok: false; code: 'NotFound' | 'FailedPrecondition'; reason: string };

const OK: Verdict = { ok: true };
const refuse = (code: 'NotFound' | 'FailedPrecondition', reason: string): Verdict => ({ ok: false, code, reason });

export interface ExitRecord {
  status: number;
  at: Date;
}

/**
 * The phase and exit of one process, with the exit held while a start is in flight.
 * `X` is the sandbox's exit event (kept opaque: this module is pure).
 */
export class ProcLife<X extends { status: number }> {
  private current: Phase = 'created';
  private held: X | null = null;
  private reapedExit: X | null = null;
  private reapedAt: Date | null = null;
  private exitRecord: ExitRecord | null = null;
  private resolveWaiters!: () => void;
  /** Resolves when Wait may answer: an exec when reaped, an init when its exit is published. */
  readonly waited = new Promise<void>((r) => (this.resolveWaiters = r));

  /** `name` is how refusals name the process: an exec's id ('' for an init). */
  constructor(
    readonly kind: ProcKind,
    private readonly name = '',
  ) {}

  get phase(): Phase {
    return this.current;
  }

  /** The exit Wait, State and Delete report; null until Wait may answer. */
  get exit(): ExitRecord | null {
    return this.exitRecord;
  }

  /** The exit reaped and not yet published (phases exited and draining). */
  get pendingExit(): X | null {
    return this.reapedExit;
  }

  private go(t: Transition): void {
    const to = NEXT[this.current][t];
    if (!to) throw new IllegalTransition(this.kind, this.current, t);
    this.current = to;
  }

  private settle(status: number): void {
    if (this.exitRecord) return;
    // When it exited, not when its exit went out (an init's waits for its execs).
    this.exitRecord = { status, at: this.reapedAt ?? new Date() };
    this.resolveWaiters();
  }

  begin(): void {
    this.go('begin');
  }

  /** The start succeeded; returns an exit that came while it was in flight, to be reaped now. */
  started(): X | null {
    this.go('started');
    return this.takeHeld();
  }

  /**
   * The start failed. An exec never ran: it is stopped with 255 so its Wait does not hang
   * (runc closes its wait too). An init stays created (Delete still needs it).
   */
  startFailed(): X | null {
    this.go('startFailed');
    if (this.kind === 'exec') this.abandon(255);
    return this.takeHeld();
  }

  private takeHeld(): X | null {
    const x = this.held;
    this.held = null;
    return x;
  }

  /**
   * The sandbox reported the exit. Returns false when it is not taken now: held while a
   * start is in flight, or a repeat (a process exits once).
   */
  reaped(exit: X): boolean {
    if (this.current === 'starting') {
      this.held ??= exit;
      return false;
    }
    if (this.current !== 'created' && this.current !== 'running') return false;
    // An exec that never started has no exit of its own (a stale event for a reused id).
    if (this.current === 'created' && this.kind === 'exec') return false;
    this.go('reaped');
    this.reapedExit = exit;
    this.reapedAt = new Date();
    if (this.kind === 'exec') this.settle(exit.status);
    return true;
  }

  /** Claims the pending exit for publication (once). */
  publishing(): X {
    const exit = this.reapedExit;
    if (!exit) throw new IllegalTransition(this.kind, this.current, 'publishing');
    this.go('publishing');
    return exit;
  }

  /** The TaskExit is queued: the exit is now what everyone sees. */
  published(): void {
    const exit = this.reapedExit;
    this.go('published');
    this.reapedExit = null;
    if (exit) this.settle(exit.status);
  }

  /** A process that never ran leaves: stopped with `status`, no TaskExit. */
  abandon(status: number): void {
    this.go('abandon');
    this.settle(status);
  }

  /** Whether this process still holds up its init's exit (ordering rule: execs first). */
  get holdsInitExit(): boolean {
    return this.current === 'starting' || this.current === 'running' || this.current === 'exited' || this.current === 'draining';
  }

  /** Whether the process has exited (reported or not). */
  get ended(): boolean {
    return this.current === 'exited' || this.current === 'draining' || this.current === 'stopped';
  }

  /** Whether containerd sees the process as running (an init whose exit is not out yet still is). */
  get live(): boolean {
    return this.current === 'running' || (this.kind === 'init' && (this.current === 'exited' || this.current === 'draining'));
  }

  mayStart(): Verdict {
    if (this.current === 'starting') return refuse('FailedPrecondition', 'the process is already starting');
    return this.current === 'created' ? OK : refuse('FailedPrecondition', `cannot start a ${this.shown} process`);
  }

  /** Kill: an init is signalled in any phase before its exit (the sandbox decides); an exec once running. */
  mayKill(): Verdict {
    if (this.ended) return refuse('NotFound', 'process already finished');
    if (this.kind === 'exec' && this.current !== 'running') return refuse('FailedPrecondition', `exec ${this.name} has not started`);
    return OK;
  }

  mayDelete(): Verdict {
    if (this.current === 'starting') return refuse('FailedPrecondition', 'cannot delete a process while it is starting');
    if (this.kind === 'exec' && this.current === 'running') return refuse('FailedPrecondition', `cannot delete a running exec ${this.name}`);
    if (this.kind === 'init' && this.live) return refuse('FailedPrecondition', 'cannot delete a running process');
    return OK;
  }

  /** Whether the container can take a new exec, judged on its init. */
  acceptsExec(): boolean {
    return this.kind === 'init' && this.current === 'running';
  }

  /** The phase named the way containerd's State names it. */
  get shown(): 'created' | 'running' | 'stopped' {
    if (this.current === 'created' || this.current === 'starting') return 'created';
    return this.live ? 'running' : 'stopped';
  }
}
