/**
 * ttrpc framing: a 10-byte big-endian header (length, stream id, type, flags) and then
 * `length` bytes of data, on a byte stream. No handshake, no preface.
 */

export const HEADER_LENGTH = 10;
/** ttrpc's limit on one frame's data; larger frames are refused, not truncated. */
export const MAX_MESSAGE_LENGTH = 4 << 20;

export enum MessageType {
  Request = 1,
  Response = 2,
  /** Streaming data (ttrpc 1.2+). Unary services never send it. */
  Data = 3,
}

export interface FrameHeader {
  length: number;
  streamId: number;
  /** As read off the wire: a byte that may be none of MessageType's members. */
  type: MessageType;
  flags: number;
}

export type DecodedFrame =
  | { kind: 'frame'; header: FrameHeader; data: Buffer }
  /** A frame over MAX_MESSAGE_LENGTH: its data is skipped, the stream gets an error. */
  | { kind: 'oversize'; header: FrameHeader };

export function oversizeMessage(length: number): string {
  return `message length ${length} exceed maximum message size of ${MAX_MESSAGE_LENGTH}`;
}

export function encodeFrame(streamId: number, type: MessageType, flags: number, data: Uint8Array): Buffer {
  if (data.length > MAX_MESSAGE_LENGTH) throw new RangeError(oversizeMessage(data.length));
  const frame = Buffer.allocUnsafe(HEADER_LENGTH + data.length);
  frame.writeUInt32BE(data.length, 0);
  frame.writeUInt32BE(streamId, 4);
  frame.writeUInt8(type, 8);
  frame.writeUInt8(flags, 9);
  frame.set(data, HEADER_LENGTH);
  return frame;
}

/**
 * Turns socket chunks into frames whatever way they were split or coalesced. Chunks are
 * kept in a list and joined once per frame, so a 4 MiB frame arriving in 64 KiB pieces is
 * copied once, not once per piece.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | null = null;
  /** Bytes of an oversize frame still to throw away. */
  private skipping = 0;

  push(chunk: Buffer): DecodedFrame[] {
    const out: DecodedFrame[] = [];
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    for (;;) {
      if (this.skipping > 0) {
        const n = Math.min(this.skipping, this.buffered);
        if (n === 0) break;
        this.take(n);
        this.skipping -= n;
        continue;
      }
      if (this.header === null) {
        if (this.buffered < HEADER_LENGTH) break;
        const raw = this.take(HEADER_LENGTH);
        const header: FrameHeader = {
          length: raw.readUInt32BE(0),
          streamId: raw.readUInt32BE(4),
          type: raw.readUInt8(8),
          flags: raw.readUInt8(9),
        };
        if (header.length > MAX_MESSAGE_LENGTH) {
          this.skipping = header.length;
          out.push({ kind: 'oversize', header });
          continue;
        }
        this.header = header;
      }
      if (this.buffered < this.header.length) break;
      out.push({ kind: 'frame', header: this.header, data: this.take(this.header.length) });
      this.header = null;
    }
    return out;
  }

  /** Bytes received that do not yet form a whole frame. */
  get pending(): number {
    return this.buffered;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    let result: Buffer;
    if (first.length >= n) {
      result = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      result = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0];
        const want = n - filled;
        if (c.length <= want) {
          result.set(c, filled);
          filled += c.length;
          this.chunks.shift();
        } else {
          result.set(c.subarray(0, want), filled);
          this.chunks[0] = c.subarray(want);
          filled += want;
        }
      }
    }
    this.buffered -= n;
    return result;
  }
}
