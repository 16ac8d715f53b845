export { Code, RpcError, ClosedError, toStatus } from './status';
export { HEADER_LENGTH, MAX_MESSAGE_LENGTH, MessageType, FrameDecoder, encodeFrame } from './frame';
export type { FrameHeader, DecodedFrame } from './frame';
export { Server, MAX_INFLIGHT, MAX_UNSENT } from './server';
export type { CallContext, Handler, ServiceMethods, ServerLogger } from './server';
export { Client } from './client';
export type { CallOptions } from './client';
export { unary, callTyped } from './typed';
