/**
 * The ttrpc server and client against each other and against hand-written frames, over
 * real unix sockets.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Client,
  ClosedError,
  Code,
  FrameDecoder,
  MessageType,
  RpcError,
  Server,
  encodeFrame,
  unary,
  callTyped,
  MAX_INFLIGHT,
  MAX_MESSAGE_LENGTH,
  MAX_UNSENT,
} from '../../src/ttrpc';
import { containerd, google, ttrpc } from '../../src/proto';

const SVC = 'test.v1.Echo';
let dir: string;
let sock: string;
let server: Server;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttrpc-'));
  sock = path.join(dir, 's');
  server = new Server();
  server.register(SVC, {
    Echo: (payload) => payload,
    Fail: () => {
      throw RpcError.notFound('no such thing');
    },
    Errno: () => {
      throw Object.assign(new Error('open /x: no such file'), { code: 'ENOENT' });
    },
    Metadata: (_p, ctx) => Buffer.from(JSON.stringify(Object.fromEntries(ctx.metadata))),
    Big: () => Buffer.alloc(MAX_MESSAGE_LENGTH + 1),
  });
  await server.listen(sock);
});

afterEach(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A raw connection: write frames by hand, read frames back. */
async function raw(): Promise<{ sock: net.Socket; next(): Promise<{ streamId: number; type: number; res: ttrpc.Response }> }> {
  const s = net.createConnection(sock);
  await new Promise((r) => s.once('connect', r));
  const decoder = new FrameDecoder();
  const queue: { streamId: number; type: number; res: ttrpc.Response }[] = [];
  const waiters: (() => void)[] = [];
  s.on('data', (c: Buffer) => {
    for (const f of decoder.push(c)) {
      if (f.kind !== 'frame') throw new Error('server sent an oversize frame');
      queue.push({ streamId: f.header.streamId, type: f.header.type, res: ttrpc.Response.decode(f.data) });
      waiters.splice(0).forEach((w) => w());
    }
  });
  return {
    sock: s,
    async next() {
      while (queue.length === 0) await new Promise<void>((r) => waiters.push(r));
      return queue.shift()!;
    },
  };
}

function request(method: string, payload = Buffer.alloc(0)): Uint8Array {
  return ttrpc.Request.encode({ service: SVC, method, payload }).finish();
}

describe('ttrpc server + client', () => {
  it('round-trips a unary call', async () => {
    const c = new Client(`unix://${sock}`);
    expect(Buffer.from(await c.call(SVC, 'Echo', Buffer.from('ping'))).toString()).toBe('ping');
    c.close();
  });

  it('answers calls out of order: a blocked call does not hold up the others', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    server.register('test.v1.Slow', { Wait: async () => (await gate, Buffer.from('done')) });
    const c = new Client(sock);
    const wait = c.call('test.v1.Slow', 'Wait', Buffer.alloc(0));
    const quick = await Promise.all([1, 2, 3].map((i) => c.call(SVC, 'Echo', Buffer.from(String(i)))));
    expect(quick.map((b) => Buffer.from(b).toString())).toEqual(['1', '2', '3']);
    release();
    expect(Buffer.from(await wait).toString()).toBe('done');
    c.close();
  });

  it('maps handler errors to status codes', async () => {
    const c = new Client(sock);
    await expect(c.call(SVC, 'Fail', Buffer.alloc(0))).rejects.toMatchObject({ code: Code.NOT_FOUND, message: 'no such thing' });
    await expect(c.call(SVC, 'Errno', Buffer.alloc(0))).rejects.toMatchObject({ code: Code.NOT_FOUND });
    c.close();
  });

  it('answers UNIMPLEMENTED for an unknown service or method, as Go ttrpc does', async () => {
    const c = new Client(sock);
    await expect(c.call('no.Such', 'X', Buffer.alloc(0))).rejects.toMatchObject({
      code: Code.UNIMPLEMENTED,
      message: 'service no.Such',
    });
    await expect(c.call(SVC, 'Nope', Buffer.alloc(0))).rejects.toMatchObject({
      code: Code.UNIMPLEMENTED,
      message: 'method Nope',
    });
    await expect(c.call(SVC, 'toString', Buffer.alloc(0))).rejects.toMatchObject({ code: Code.UNIMPLEMENTED });
    c.close();
  });

  it('delivers metadata, repeated keys accumulating', async () => {
    const c = new Client(sock);
    const out = await c.call(SVC, 'Metadata', Buffer.alloc(0), { metadata: { a: ['1', '2'], b: 'x' } });
    expect(JSON.parse(Buffer.from(out).toString())).toEqual({ a: ['1', '2'], b: ['x'] });
    c.close();
  });

  it('enforces the deadline from timeout_nano and aborts the handler', async () => {
    let aborted: unknown = null;
    server.register('test.v1.Hang', {
      Hang: (_p, ctx) =>
        new Promise<Uint8Array>((resolve) =>
          ctx.signal.addEventListener('abort', () => {
            aborted = ctx.signal.reason;
            resolve(Buffer.from('too late'));
          }),
        ),
    });
    const s = await raw();
    const req = ttrpc.Request.encode({ service: 'test.v1.Hang', method: 'Hang', timeoutNano: 50e6 }).finish();
    s.sock.write(encodeFrame(1, MessageType.Request, 0, req));
    const got = await s.next();
    expect(got.res.status).toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    expect(aborted).toBeInstanceOf(RpcError);
    s.sock.destroy();
  });

  it('times out on the client side too and tells the server the deadline', async () => {
    let seenSignal: AbortSignal | null = null;
    server.register('test.v1.Never', {
      Never: (_p, ctx) => {
        seenSignal = ctx.signal;
        return new Promise<Uint8Array>(() => undefined);
      },
    });
    const c = new Client(sock);
    await expect(c.call('test.v1.Never', 'Never', Buffer.alloc(0), { timeoutMs: 30 })).rejects.toMatchObject({
      code: Code.DEADLINE_EXCEEDED,
    });
    expect(seenSignal).not.toBeNull();
    // The connection is still good after a timed-out call.
    expect(Buffer.from(await c.call(SVC, 'Echo', Buffer.from('ok'))).toString()).toBe('ok');
    c.close();
  });

  it('refuses an oversize request on its stream and keeps the connection', async () => {
    const s = await raw();
    const header = Buffer.alloc(10);
    header.writeUInt32BE(MAX_MESSAGE_LENGTH + 1, 0);
    header.writeUInt32BE(1, 4);
    header.writeUInt8(MessageType.Request, 8);
    s.sock.write(header);
    s.sock.write(Buffer.alloc(MAX_MESSAGE_LENGTH + 1));
    s.sock.write(encodeFrame(3, MessageType.Request, 0, request('Echo', Buffer.from('still here'))));
    const first = await s.next();
    expect(first).toMatchObject({ streamId: 1, type: MessageType.Response });
    expect(first.res.status).toMatchObject({
      code: Code.RESOURCE_EXHAUSTED,
      message: 'message length 4194305 exceed maximum message size of 4194304',
    });
    const second = await s.next();
    expect(second.streamId).toBe(3);
    expect(Buffer.from(second.res.payload).toString()).toBe('still here');
    s.sock.destroy();
  });

  it('refuses to send an oversize response', async () => {
    const c = new Client(sock);
    await expect(c.call(SVC, 'Big', Buffer.alloc(0))).rejects.toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    c.close();
  });

  it('rejects even stream ids and unparseable requests with INVALID_ARGUMENT, sending only responses', async () => {
    const s = await raw();
    s.sock.write(encodeFrame(2, MessageType.Request, 0, request('Echo')));
    s.sock.write(encodeFrame(5, MessageType.Request, 0, Buffer.from([0x0a, 0xff, 0x01])));
    const a = await s.next();
    const b = await s.next();
    expect([a.type, b.type]).toEqual([MessageType.Response, MessageType.Response]);
    expect(a).toMatchObject({ streamId: 2, res: { status: { code: Code.INVALID_ARGUMENT } } });
    expect(a.res.status?.message).toBe('StreamID must be odd for client initiated streams');
    expect(b).toMatchObject({ streamId: 5, res: { status: { code: Code.INVALID_ARGUMENT } } });
    s.sock.destroy();
  });

  it('closes only the connection that sent a malformed frame', async () => {
    const good = new Client(sock);
    await good.call(SVC, 'Echo', Buffer.from('a'));
    const bad = await raw();
    const closed = new Promise((r) => bad.sock.once('close', r));
    bad.sock.write(encodeFrame(1, 0x7f as MessageType, 0, Buffer.from('junk')));
    await closed;
    expect(Buffer.from(await good.call(SVC, 'Echo', Buffer.from('b'))).toString()).toBe('b');
    good.close();
  });

  it('finishes calls in flight on graceful shutdown and then refuses new connections', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    server.register('test.v1.Slow', { Wait: async () => (await gate, Buffer.from('finished')) });
    const c = new Client(sock);
    const inflight = c.call('test.v1.Slow', 'Wait', Buffer.alloc(0));
    await c.call(SVC, 'Echo', Buffer.alloc(0)); // the Wait request has certainly arrived
    const down = server.shutdown();
    release();
    expect(Buffer.from(await inflight).toString()).toBe('finished');
    await down;
    expect(server.connectionCount).toBe(0);
    await expect(new Client(sock).call(SVC, 'Echo', Buffer.alloc(0))).rejects.toMatchObject({ code: Code.UNAVAILABLE });
  });

  it('fails calls in flight with ClosedError ("ttrpc: closed") when the server goes away', async () => {
    server.register('test.v1.Never', { Never: () => new Promise<Uint8Array>(() => undefined) });
    const c = new Client(sock);
    const pending = c.call('test.v1.Never', 'Never', Buffer.alloc(0));
    await c.call(SVC, 'Echo', Buffer.alloc(0));
    await server.close();
    const err = await pending.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClosedError);
    expect((err as Error).message).toBe('ttrpc: closed');
    c.close();
  });

  it('dials again on the next call after the server restarted', async () => {
    const c = new Client(sock);
    await c.call(SVC, 'Echo', Buffer.alloc(0));
    await server.close();
    server = new Server();
    server.register(SVC, { Echo: () => Buffer.from('new server') });
    await server.listen(sock);
    // The first call may find the old connection dead; a retry must redial.
    const out = await c.call(SVC, 'Echo', Buffer.alloc(0)).catch(() => c.call(SVC, 'Echo', Buffer.alloc(0)));
    expect(Buffer.from(out).toString()).toBe('new server');
    c.close();
  });

  it('stops reading a client that sends without reading answers, and serves it all once it reads', async () => {
    const ANSWER = 64 << 10;
    const N = 2000; // 125 MiB of answers if nothing held the client back
    let handled = 0;
    let running = 0;
    let mostRunning = 0;
    server.register('test.v1.Flood', {
      Big: async () => {
        running++;
        mostRunning = Math.max(mostRunning, running);
        await new Promise((r) => setImmediate(r));
        running--;
        handled++;
        return Buffer.alloc(ANSWER, 1);
      },
    });
    const s = net.createConnection(sock);
    await new Promise((r) => s.once('connect', r));
    s.pause(); // a client that never reads
    const frames = Array.from({ length: N }, (_, i) =>
      encodeFrame(2 * i + 1, MessageType.Request, 0, ttrpc.Request.encode({ service: 'test.v1.Flood', method: 'Big' }).finish()),
    );
    s.write(Buffer.concat(frames));
    // Nothing to await but the server going quiet: sample until the count stops moving.
    let last = -1;
    for (const deadline = Date.now() + 10_000; handled !== last && Date.now() < deadline;) {
      last = handled;
      await new Promise((r) => setTimeout(r, 200));
    }
    // Held at the unsent-answer bound (plus what the kernel's socket buffers took).
    expect(handled).toBeLessThan(MAX_UNSENT / ANSWER + 200);
    expect(mostRunning).toBeLessThanOrEqual(MAX_INFLIGHT);
    // Reading again releases everything, in full.
    const decoder = new FrameDecoder();
    let answers = 0;
    await new Promise<void>((resolve) => {
      s.on('data', (c: Buffer) => {
        for (const f of decoder.push(c)) if (f.kind === 'frame' && ttrpc.Response.decode(f.data).payload.length === ANSWER) answers++;
        if (answers === N) resolve();
      });
      s.resume();
    });
    expect(handled).toBe(N);
    s.destroy();
  });

  it('does not count parked calls (a Wait per task) against the in-flight cap', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    server.register('test.v1.Park', {
      Wait: async (_p, ctx) => {
        ctx.park();
        await released;
        return Buffer.from('done');
      },
    });
    const client = new Client(sock);
    const waits = Array.from({ length: MAX_INFLIGHT + 10 }, () => client.call('test.v1.Park', 'Wait', new Uint8Array()));
    // With every Wait parked the connection still reads, and answers, other calls.
    expect(Buffer.from(await client.call(SVC, 'Echo', Buffer.from('still here'))).toString()).toBe('still here');
    release();
    expect((await Promise.all(waits)).length).toBe(MAX_INFLIGHT + 10);
    client.close();
  });

  it('carries typed messages with unary() and callTyped()', async () => {
    const T = containerd.task.v2;
    server.register('containerd.task.v2.Task', {
      Connect: unary(T.ConnectRequest, T.ConnectResponse, (req) => ({ shimPid: 42, taskPid: req.id === 'c1' ? 7 : 0 })),
      Wait: unary(T.WaitRequest, T.WaitResponse, () => ({ exitStatus: 137, exitedAt: { seconds: 1, nanos: 2 } })),
    });
    const c = new Client(sock);
    const res = await callTyped(c, 'containerd.task.v2.Task', 'Connect', T.ConnectRequest, { id: 'c1' }, T.ConnectResponse);
    expect(res).toMatchObject({ shimPid: 42, taskPid: 7 });
    const w = await callTyped(c, 'containerd.task.v2.Task', 'Wait', T.WaitRequest, { id: 'c1' }, T.WaitResponse);
    expect(w.exitStatus).toBe(137);
    expect(google.protobuf.Timestamp.encode(w.exitedAt!).finish().length).toBeGreaterThan(0);
    c.close();
  });
});
