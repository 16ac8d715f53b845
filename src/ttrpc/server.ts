/**
 * ttrpc server: services registered by full name, unary calls multiplexed per connection.
 *
 * Invariants containerd depends on:
 * - only Response frames are ever written (the 1.6 client fails on any other type);
 * - a call that blocks (Wait can last hours) never delays other calls: every request is
 *   dispatched as its own promise the moment its frame is complete;
 * - a bad frame costs at most its own stream (oversize, unparseable, even stream id) or its
 *   own connection (unknown frame type), never the server;
 * - a client that sends faster than it reads is slowed, not buffered without bound: a
 *   connection stops being read while it has MAX_INFLIGHT calls running (parked ones
 *   aside) or more than MAX_UNSENT bytes of answers its peer has not taken.
 */
import * as net from 'node:net';
import * as fs from 'node:fs';
import { ttrpc } from '../proto';
import { Code, RpcError, toStatus } from './status';
import { DecodedFrame, FrameDecoder, MessageType, encodeFrame, oversizeMessage, MAX_MESSAGE_LENGTH } from './frame';

export interface CallContext {
  service: string;
  method: string;
  /** Request metadata; a key sent several times keeps every value in order. */
  metadata: Map<string, string[]>;
  /** Aborted when the deadline from timeoutNano passes or the client goes away. */
  signal: AbortSignal;
  /** Says the call now waits on an outside event (e.g. a process's exit) for however
   * long that takes: it no longer counts against the connection's MAX_INFLIGHT. */
  park(): void;
}

export type Handler = (payload: Uint8Array, ctx: CallContext) => Promise<Uint8Array> | Uint8Array;

export type ServiceMethods = Record<string, Handler>;

export interface ServerLogger {
  warn(obj: object, msg: string): void;
}

const SILENT: ServerLogger = { warn: () => undefined };

/**
 * Calls one connection may have running at once, not counting calls parked on an
 * outside event (`ctx.park()`: a Wait lasts as long as its task, and containerd keeps
 * one per live task on a daemon's one connection; counting those would stop reading the
 * Kill that ends them).
 */
export const MAX_INFLIGHT = 128;
/** Bytes of answers a connection may hold unsent before it stops reading requests. */
export const MAX_UNSENT = 4 << 20;

export class Server {
  private readonly services = new Map<string, ServiceMethods>();
  private readonly connections = new Set<Connection>();
  private listener: net.Server | null = null;
  private shuttingDown = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly log: ServerLogger = SILENT) {}

  register(service: string, methods: ServiceMethods): void {
    if (this.services.has(service)) throw new Error(`ttrpc: service ${service} registered twice`);
    this.services.set(service, methods);
  }

  /** Listens on a unix socket path (an old socket file is replaced) or an inherited fd. */
  listen(where: string | { fd: number }): Promise<void> {
    const listener = net.createServer({ allowHalfOpen: false }, (sock) => this.accept(sock));
    this.listener = listener;
    if (typeof where === 'string') {
      try {
        fs.unlinkSync(where);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    return new Promise((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(where, () => {
        listener.off('error', reject);
        resolve();
      });
    });
  }

  /** Stops accepting, lets every call in flight finish and answer, then closes. */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    const closed = this.stopListening();
    for (const c of this.connections) c.closeIfIdle();
    if (this.connections.size > 0) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
    await closed;
  }

  /** Closes every connection now; calls in flight are cancelled and never answered. */
  async close(): Promise<void> {
    this.shuttingDown = true;
    const closed = this.stopListening();
    for (const c of this.connections) c.destroy();
    await closed;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  private stopListening(): Promise<void> {
    const listener = this.listener;
    this.listener = null;
    if (!listener) return Promise.resolve();
    return new Promise((resolve) => listener.close(() => resolve()));
  }

  private accept(sock: net.Socket): void {
    if (this.shuttingDown) {
      sock.destroy();
      return;
    }
    const conn = new Connection(sock, this, this.log);
    this.connections.add(conn);
    sock.once('close', () => {
      this.connections.delete(conn);
      conn.cancelAll();
      if (this.shuttingDown && this.connections.size === 0) {
        for (const w of this.idleWaiters.splice(0)) w();
      }
    });
  }

  /** @internal */
  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** @internal Finds the handler or says what is missing the way Go's ttrpc does. */
  lookup(service: string, method: string): Handler {
    const methods = this.services.get(service);
    if (!methods) throw RpcError.unimplemented(`service ${service}`);
    const handler = Object.prototype.hasOwnProperty.call(methods, method) ? methods[method] : undefined;
    if (!handler) throw RpcError.unimplemented(`method ${method}`);
    return handler;
  }
}

class Connection {
  private readonly decoder = new FrameDecoder();
  private readonly inflight = new Map<number, AbortController>();
  /** Calls in flight that count against MAX_INFLIGHT (all but parked ones). */
  private readonly busy = new Set<number>();
  /** Frames read but not yet handled because the connection is at its limits. */
  private readonly waiting: DecodedFrame[] = [];
  private paused = false;

  constructor(
    private readonly sock: net.Socket,
    private readonly server: Server,
    private readonly log: ServerLogger,
  ) {
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('drain', () => this.flow());
    // A peer that vanishes is normal (containerd restarts); nothing to report.
    sock.on('error', () => undefined);
  }

  private atLimit(): boolean {
    return this.busy.size >= MAX_INFLIGHT || this.sock.writableLength > MAX_UNSENT;
  }

  /** Handles waiting frames while below the limits; reads again once all are handled. */
  private flow(): void {
    while (this.waiting.length > 0 && !this.atLimit() && !this.sock.destroyed) this.handle(this.waiting.shift() as DecodedFrame);
    const stop = this.waiting.length > 0 || this.atLimit();
    if (stop && !this.paused) this.sock.pause();
    if (!stop && this.paused) this.sock.resume();
    this.paused = stop;
  }

  /** Closes once every answer is flushed; the peer need not close its side first. */
  closeIfIdle(): void {
    if (this.inflight.size === 0) this.sock.end(() => this.sock.destroy());
  }

  destroy(): void {
    this.sock.destroy();
  }

  cancelAll(): void {
    for (const ac of this.inflight.values()) ac.abort(new RpcError(Code.CANCELLED, 'ttrpc: connection closed'));
    this.inflight.clear();
    this.busy.clear();
  }

  private onData(chunk: Buffer): void {
    this.waiting.push(...this.decoder.push(chunk));
    this.flow();
  }

  private handle(frame: DecodedFrame): void {
    const { streamId, type } = frame.header;
    if (frame.kind === 'oversize') {
      this.reply(streamId, Code.RESOURCE_EXHAUSTED, oversizeMessage(frame.header.length));
      return;
    }
    if (type === MessageType.Response || type === MessageType.Data) return; // not for a unary server
    if (type !== MessageType.Request) {
      this.log.warn({ type, streamId }, 'ttrpc: unknown frame type, closing connection');
      this.sock.destroy();
      return;
    }
    if (streamId % 2 === 0) {
      this.reply(streamId, Code.INVALID_ARGUMENT, 'StreamID must be odd for client initiated streams');
      return;
    }
    if (this.inflight.has(streamId)) {
      this.reply(streamId, Code.INVALID_ARGUMENT, `stream ${streamId} is already in use`);
      return;
    }
    let req: ttrpc.Request;
    try {
      req = ttrpc.Request.decode(frame.data);
    } catch (e) {
      this.reply(streamId, Code.INVALID_ARGUMENT, `unmarshal request error: ${(e as Error).message}`);
      return;
    }
    void this.dispatch(streamId, req);
  }

  private async dispatch(streamId: number, req: ttrpc.Request): Promise<void> {
    const ac = new AbortController();
    this.inflight.set(streamId, ac);
    this.busy.add(streamId);
    let timer: NodeJS.Timeout | undefined;
    const timeoutMs = Number(req.timeoutNano) / 1e6;
    const deadline =
      timeoutMs > 0
        ? new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              const err = new RpcError(Code.DEADLINE_EXCEEDED, 'context deadline exceeded');
              ac.abort(err);
              reject(err);
            }, timeoutMs);
          })
        : null;
    const metadata = new Map<string, string[]>();
    for (const { key, value } of req.metadata) {
      if (!key) continue;
      const list = metadata.get(key);
      if (list) list.push(value ?? '');
      else metadata.set(key, [value ?? '']);
    }
    const park = () => {
      if (this.busy.delete(streamId)) this.flow();
    };
    const ctx: CallContext = { service: req.service, method: req.method, metadata, signal: ac.signal, park };
    try {
      const handler = this.server.lookup(req.service, req.method);
      const work = Promise.resolve().then(() => handler(req.payload, ctx));
      const payload = await (deadline ? Promise.race([work, deadline]) : work);
      if (payload.length > MAX_MESSAGE_LENGTH) {
        throw new RpcError(Code.RESOURCE_EXHAUSTED, oversizeMessage(payload.length));
      }
      this.send(streamId, ttrpc.Response.encode({ payload }).finish());
    } catch (err) {
      const { code, message } = toStatus(err);
      this.reply(streamId, code, message);
    } finally {
      clearTimeout(timer);
      this.inflight.delete(streamId);
      this.busy.delete(streamId);
      if (this.server.isShuttingDown()) this.closeIfIdle();
      else this.flow();
    }
  }

  private reply(streamId: number, code: Code, message: string): void {
    this.send(streamId, ttrpc.Response.encode({ status: { code, message } }).finish());
  }

  private send(streamId: number, data: Uint8Array): void {
    if (this.sock.destroyed || !this.sock.writable) return;
    this.sock.write(encodeFrame(streamId, MessageType.Response, 0, data));
  }
}
