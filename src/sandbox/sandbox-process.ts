/**
 * The Node end of a tsbox-sandbox control socket. Requests are JSON lines answered in
 * order (the sandbox handles one at a time); container stdio fds ride along as
 * SCM_RIGHTS through the addon, since Node cannot attach fds to a socket write. Exit
 * events arrive on the same socket and are emitted as 'exit'.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { native, SANDBOX_BINARY } from '../native/addon';
import { EngineError } from './errors';
import type { Status } from './status';

export interface ExitEvent {
  container: string;
  exec: string | null;
  pid: number;
  status: number;
}

/** A process as tsbox-sandbox reports it: the engine's statuses but `paused` (a cgroup's, not a process's). */
export interface ProcessState {
  pid: number;
  status: Exclude<Status, 'paused'>;
  exitStatus: number | null;
}

export interface SandboxState {
  pid: number;
  containers: Record<string, ProcessState & { execs: Record<string, ProcessState> }>;
}

interface WireError {
  step: string;
  errno: number;
  errnoName: string;
  field: string;
  message: string;
}

/** One sealed copy of each runtime binary per process, shared by every sandbox it starts. */
const sealed = new Map<string, number>();

/**
 * What to exec for `binary`: its sealed in-memory copy. A container process can see a
 * tsbox-sandbox child (an exec or init before execve) and open /proc/<pid>/exe; that is
 * then a memfd no one can write, not the file on the host (runc does the same with a
 * sealed copy of itself). One copy per daemon keeps the cost to one binary's size.
 */
function runnable(binary: string): string {
  let fd = sealed.get(binary);
  if (fd === undefined) {
    fd = native.sealedCopy(binary);
    sealed.set(binary, fd);
  }
  return `/proc/self/fd/${fd}`;
}

type Pending = { resolve(v: unknown): void; reject(e: Error): void };

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** One line from tsbox-sandbox, checked: an answer to request `id`, an exit or an OOM event. */
type WireMessage = { kind: 'answer'; id: number; ok: unknown; err: WireError | null } | { kind: 'exit'; event: ExitEvent } | { kind: 'oom'; container: string };

/** Parses and checks one line; null for anything that is not a message we know (skipped, as before). */
export function parseWireMessage(line: string): WireMessage | null {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    // Not JSON: not a message.
    return null;
  }
  if (!isRecord(msg)) return null;
  if (msg.event === 'oom') return typeof msg.container === 'string' ? { kind: 'oom', container: msg.container } : null;
  if (msg.event === 'exit') {
    const { container, exec, pid, status } = msg;
    if (typeof container !== 'string' || typeof pid !== 'number' || typeof status !== 'number') return null;
    return { kind: 'exit', event: { container, exec: typeof exec === 'string' ? exec : null, pid, status } };
  }
  if (typeof msg.id !== 'number') return null;
  return { kind: 'answer', id: msg.id, ok: msg.ok, err: isRecord(msg.err) ? wireError(msg.err) : null };
}

/** The sandbox's {step, errno, errnoName, field, message}; a missing field reads as empty. */
function wireError(e: Record<string, unknown>): WireError {
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  return { step: str(e.step), errno: typeof e.errno === 'number' ? e.errno : 0, errnoName: str(e.errnoName), field: str(e.field), message: str(e.message) };
}

export function sandboxError(e: WireError): EngineError {
  const kind =
    e.errnoName === 'EEXIST'
      ? 'AlreadyExists'
      : e.errnoName === 'ENOENT' && !e.field
        ? 'NotFound'
        : e.errnoName === 'ESRCH'
          ? 'NotFound'
          : 'FailedPrecondition';
  return new EngineError(kind, e.message, { step: e.step, errno: e.errnoName === 'errno' ? String(e.errno) : e.errnoName, field: e.field || undefined });
}

export class SandboxConnection extends EventEmitter {
  private readonly sock: net.Socket;
  private readonly fd: number;
  private nextId = 1;
  private buffered = '';
  private readonly pending = new Map<number, Pending>();
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(fd: number) {
    super();
    this.fd = fd;
    this.sock = new net.Socket({ fd, readable: true, writable: true });
    this.sock.on('data', (c: Buffer) => this.onData(c));
    this.sock.on('error', () => undefined);
    this.sock.on('close', () => this.onClose());
  }

  /** Connects to a running sandbox; Unavailable when nothing listens there. */
  static connect(socketPath: string): SandboxConnection {
    try {
      return new SandboxConnection(native.unixConnect(socketPath));
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new EngineError('Unavailable', `tsbox-sandbox at ${socketPath} is not reachable: ${err.code ?? err.message}`, {
        step: 'connect',
        errno: err.code,
      });
    }
  }

  /**
   * Starts a tsbox-sandbox serving `socketPath`, detached (its own session, stdio off our
   * terminal) so it outlives the caller. Resolves once it accepts connections, with its pid
   * and a promise of its exit (for a caller that must not return while it still runs).
   */
  static spawn(socketPath: string, logPath: string, binary = SANDBOX_BINARY): Promise<{ pid: number; exited: () => Promise<void> }> {
    const exe = runnable(binary);
    const log = fs.openSync(logPath, 'a', 0o600);
    return new Promise((resolve, reject) => {
      const child = spawn(exe, ['--socket', socketPath], { argv0: binary, detached: true, stdio: ['ignore', 'pipe', log] });
      fs.closeSync(log);
      let ready = false;
      let out = '';
      const gone = new Promise<void>((done) => child.once('exit', () => done()));
      // The child is unref'd once ready (it outlives us); whoever waits for its exit must
      // keep the event loop alive until then, or Node would end mid-wait with status 0.
      const exited = (): Promise<void> => {
        child.ref();
        return gone;
      };
      const fail = (why: string) => {
        if (ready) return;
        let tail = '';
        try {
          tail = fs.readFileSync(logPath, 'utf8').trim().split('\n').slice(-3).join('; ');
        } catch {
          // no log yet
        }
        reject(new EngineError('Internal', `start tsbox-sandbox: ${why}${tail ? ` (${tail})` : ''}`, { step: 'start tsbox-sandbox' }));
      };
      child.on('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
      child.on('exit', (code, sig) => fail(`exited with ${code ?? sig} before it was ready`));
      child.stdout?.on('data', (c: Buffer) => {
        out += c.toString();
        if (!ready && out.includes('ready\n')) {
          ready = true;
          child.stdout?.destroy();
          child.unref();
          resolve({ pid: child.pid as number, exited });
        }
      });
    });
  }

  /** Sends one request (with fds) and resolves with its answer. Requests are serialized. */
  request<T>(op: Record<string, unknown>, fds: number[] = []): Promise<T> {
    const run = () => this.send<T>(op, fds);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private send<T>(op: Record<string, unknown>, fds: number[]): Promise<T> {
    if (this.closed) return Promise.reject(new EngineError('Unavailable', 'tsbox-sandbox connection is closed'));
    const id = this.nextId++;
    const line = Buffer.from(`${JSON.stringify({ id, ...op, fds: fds.length })}\n`);
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      let sent: number;
      try {
        sent = native.sendWithFds(this.fd, line, fds);
      } catch (e) {
        this.pending.delete(id);
        reject(new EngineError('Unavailable', `send to tsbox-sandbox: ${(e as Error).message}`));
        return;
      }
      // The fds went with the first byte; a large plan may need the rest queued.
      if (sent < line.length) this.sock.write(line.subarray(sent));
    });
  }

  private onData(chunk: Buffer): void {
    this.buffered += chunk.toString();
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      const msg = parseWireMessage(line);
      if (msg === null) continue;
      if (msg.kind === 'oom') {
        this.emit('oom', msg.container);
        continue;
      }
      if (msg.kind === 'exit') {
        this.emit('exit', msg.event);
        continue;
      }
      const p = this.pending.get(msg.id);
      if (!p) continue;
      this.pending.delete(msg.id);
      if (msg.err) p.reject(sandboxError(msg.err));
      else p.resolve(msg.ok);
    }
  }

  private onClose(): void {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new EngineError('Unavailable', 'tsbox-sandbox closed the connection'));
    this.pending.clear();
    this.emit('close');
  }

  /** Asks the sandbox to exit and resolves once it has (its end of the socket closed). */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    const gone = new Promise<void>((resolve) => this.once('close', resolve));
    await this.request({ op: 'shutdown' }).catch(() => undefined);
    await gone;
  }

  close(): void {
    // Before the fd goes: a queued request must not write to a number reused meanwhile.
    this.closed = true;
    this.sock.destroy();
  }
}
