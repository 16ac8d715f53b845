/**
 * The protobuf messages tsbox speaks, generated statically from proto/ by `make build`
 * (pbjs static code: nothing parses .proto files at run time), plus the few helpers for
 * well-known types that every caller needs.
 */
import { google } from '../gen/proto';

export { ttrpc, google, containerd, io, runtime } from '../gen/proto';

/** A Timestamp for a moment in ms since the epoch (Date.now() by default). */
export function timestamp(ms: number = Date.now()): google.protobuf.ITimestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** The protobufjs static classes share this shape; `message` is the plain-object form. */
export interface MessageType<I, T extends I = I> {
  encode(message: I): { finish(): Uint8Array };
  decode(data: Uint8Array): T;
}

/**
 * Wraps a message in an Any. containerd 1.6 resolves only bare full names as type URLs
 * ("containerd.events.TaskExit"), never the "type.googleapis.com/" form.
 */
export function packAny<I>(typeUrl: string, type: MessageType<I>, message: I): google.protobuf.IAny {
  return { type_url: typeUrl, value: type.encode(message).finish() };
}
