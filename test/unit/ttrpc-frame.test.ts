import { FrameDecoder, encodeFrame, MessageType, MAX_MESSAGE_LENGTH, HEADER_LENGTH } from '../../src/ttrpc';

function frames(decoder: FrameDecoder, ...chunks: Buffer[]) {
  return chunks.flatMap((c) => decoder.push(c));
}

describe('ttrpc framing', () => {
  it('writes the 10-byte big-endian header of docs/protocol.md', () => {
    const f = encodeFrame(0x01020304, MessageType.Response, 0x05, Buffer.from('abc'));
    expect([...f.subarray(0, HEADER_LENGTH)]).toEqual([0, 0, 0, 3, 1, 2, 3, 4, 2, 5]);
    expect(f.subarray(HEADER_LENGTH).toString()).toBe('abc');
  });

  it('reassembles a frame split at every possible byte', () => {
    const frame = encodeFrame(7, MessageType.Request, 0, Buffer.from('hello, ttrpc'));
    for (let cut = 0; cut <= frame.length; cut++) {
      const d = new FrameDecoder();
      const got = frames(d, frame.subarray(0, cut), frame.subarray(cut));
      expect(got).toHaveLength(1);
      expect(got[0]).toMatchObject({ kind: 'frame', header: { streamId: 7, type: 1, length: 12 } });
      expect(got[0].kind === 'frame' && got[0].data.toString()).toBe('hello, ttrpc');
      expect(d.pending).toBe(0);
    }
  });

  it('splits coalesced frames, including zero-length ones, in order', () => {
    const all = Buffer.concat([
      encodeFrame(1, MessageType.Request, 0, Buffer.alloc(0)),
      encodeFrame(3, MessageType.Request, 0, Buffer.from('x')),
      encodeFrame(5, MessageType.Request, 0, Buffer.alloc(0)),
    ]);
    const got = frames(new FrameDecoder(), all);
    expect(got.map((f) => [f.header.streamId, f.kind === 'frame' ? f.data.length : -1])).toEqual([
      [1, 0],
      [3, 1],
      [5, 0],
    ]);
  });

  it('feeds byte by byte', () => {
    const all = Buffer.concat([encodeFrame(1, 1, 0, Buffer.from('ab')), encodeFrame(3, 1, 0, Buffer.from('cd'))]);
    const d = new FrameDecoder();
    const got = [...all].flatMap((b) => d.push(Buffer.from([b])));
    expect(got.map((f) => (f.kind === 'frame' ? f.data.toString() : '?'))).toEqual(['ab', 'cd']);
  });

  it('accepts exactly 4 MiB and refuses one byte more on both sides', () => {
    const max = Buffer.alloc(MAX_MESSAGE_LENGTH, 1);
    const got = frames(new FrameDecoder(), encodeFrame(1, 1, 0, max));
    expect(got[0].kind).toBe('frame');
    expect(() => encodeFrame(1, 1, 0, Buffer.alloc(MAX_MESSAGE_LENGTH + 1))).toThrow('message length 4194305 exceed maximum message size of 4194304');
  });

  it('skips an oversize frame in pieces and decodes the frame after it', () => {
    const len = MAX_MESSAGE_LENGTH + 100;
    const header = Buffer.alloc(HEADER_LENGTH);
    header.writeUInt32BE(len, 0);
    header.writeUInt32BE(9, 4);
    header.writeUInt8(1, 8);
    const body = Buffer.alloc(len, 0xee);
    const next = encodeFrame(11, 1, 0, Buffer.from('after'));
    const d = new FrameDecoder();
    const got = frames(d, header, body.subarray(0, 1000), body.subarray(1000), next);
    expect(got.map((f) => [f.kind, f.header.streamId])).toEqual([
      ['oversize', 9],
      ['frame', 11],
    ]);
    expect(d.pending).toBe(0);
  });

  it('treats garbage as frames of whatever length it claims, never crashing', () => {
    const garbage = Buffer.from('\xff\xff\xff\xffGARBAGE-GARBAGE', 'latin1');
    const d = new FrameDecoder();
    const got = d.push(garbage);
    expect(got).toMatchObject([{ kind: 'oversize', header: { length: 0xffffffff } }]);
  });
});
