/**
 * ttrpc client over a unix socket: concurrent unary calls matched by stream id, per-call
 * timeouts (also sent to the server as timeoutNano), metadata, and a lazy connection that
 * is dialled again on the next call after the peer went away.
 */
import * as net from 'node:net';
import { ttrpc } from '../proto';
import { ClosedError, Code, RpcError } from './status';
import { FrameDecoder, MessageType, encodeFrame, oversizeMessage } from './frame';

export interface CallOptions {
  /** Give up after this long; the server is told the same deadline. */
  timeoutMs?: number;
  metadata?: Record<string, string | string[]>;
}

interface Pending {
  resolve(payload: Uint8Array): void;
  reject(err: Error): void;
  timer?: NodeJS.Timeout;
}

class ClientConnection {
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, Pending>();
  private nextStreamId = 1;
  closed = false;

  constructor(private readonly sock: net.Socket) {
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', () => undefined);
    sock.on('close', () => this.fail(new ClosedError()));
  }

  call(req: ttrpc.IRequest, timeoutMs: number | undefined): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new ClosedError());
    const streamId = this.nextStreamId;
    this.nextStreamId += 2;
    const data = ttrpc.Request.encode(req).finish();
    let frame: Buffer;
    try {
      frame = encodeFrame(streamId, MessageType.Request, 0, data);
    } catch {
      // encodeFrame throws only for a frame over the size limit.
      return Promise.reject(new RpcError(Code.RESOURCE_EXHAUSTED, oversizeMessage(data.length)));
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const p: Pending = { resolve, reject };
      if (timeoutMs !== undefined && timeoutMs > 0) {
        p.timer = setTimeout(() => {
          this.pending.delete(streamId);
          reject(new RpcError(Code.DEADLINE_EXCEEDED, 'context deadline exceeded'));
        }, timeoutMs);
      }
      this.pending.set(streamId, p);
      this.sock.write(frame);
    });
  }

  close(): void {
    this.sock.destroy();
    this.fail(new ClosedError());
  }

  private onData(chunk: Buffer): void {
    for (const frame of this.decoder.push(chunk)) {
      const p = this.pending.get(frame.header.streamId);
      if (!p) continue; // late answer to a call that timed out
      this.pending.delete(frame.header.streamId);
      clearTimeout(p.timer);
      if (frame.kind === 'oversize') {
        p.reject(new RpcError(Code.RESOURCE_EXHAUSTED, oversizeMessage(frame.header.length)));
        continue;
      }
      if (frame.header.type !== MessageType.Response) {
        p.reject(new RpcError(Code.INTERNAL, `ttrpc: unexpected frame type ${frame.header.type}`));
        continue;
      }
      let res: ttrpc.Response;
      try {
        res = ttrpc.Response.decode(frame.data);
      } catch (e) {
        p.reject(new RpcError(Code.INTERNAL, `ttrpc: bad response: ${(e as Error).message}`));
        continue;
      }
      const code: Code = res.status?.code ?? Code.OK;
      if (code !== Code.OK) p.reject(new RpcError(code, res.status?.message ?? ''));
      else p.resolve(res.payload);
    }
  }

  private fail(err: Error): void {
    this.closed = true;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }
}

export class Client {
  private conn: Promise<ClientConnection> | null = null;

  /** `address` is a socket path; a `unix://` prefix is accepted and dropped. */
  constructor(address: string) {
    this.path = address.startsWith('unix://') ? address.slice('unix://'.length) : address;
  }

  private readonly path: string;

  async call(service: string, method: string, payload: Uint8Array, opts: CallOptions = {}): Promise<Uint8Array> {
    const conn = await this.connection();
    const metadata: ttrpc.IKeyValue[] = [];
    for (const [key, value] of Object.entries(opts.metadata ?? {})) {
      for (const v of Array.isArray(value) ? value : [value]) metadata.push({ key, value: v });
    }
    const timeoutNano = opts.timeoutMs ? Math.round(opts.timeoutMs * 1e6) : 0;
    return conn.call({ service, method, payload, timeoutNano, metadata }, opts.timeoutMs);
  }

  close(): void {
    const conn = this.conn;
    this.conn = null;
    void conn?.then(
      (c) => c.close(),
      () => undefined,
    );
  }

  private connection(): Promise<ClientConnection> {
    if (this.conn) {
      const current = this.conn;
      return current.then((c) => {
        if (!c.closed) return c;
        if (this.conn === current) this.conn = null;
        return this.connection();
      });
    }
    const dialing = dial(this.path);
    this.conn = dialing;
    dialing.catch(() => {
      if (this.conn === dialing) this.conn = null;
    });
    return dialing;
  }
}

function dial(path: string): Promise<ClientConnection> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ path });
    sock.once('connect', () => {
      sock.off('error', onError);
      resolve(new ClientConnection(sock));
    });
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new RpcError(Code.UNAVAILABLE, `ttrpc: dial ${path}: ${err.code ?? err.message}`));
    };
    sock.once('error', onError);
  });
}
