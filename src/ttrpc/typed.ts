/**
 * Typed glue between protobufjs message classes and the byte-level ttrpc server/client,
 * so services are written as `(request) => response` over real message types.
 */
import type { MessageType } from '../proto';
import type { CallContext, Handler } from './server';
import type { CallOptions, Client } from './client';

/** A unary handler taking and returning decoded messages. */
export function unary<Req, ResI>(
  request: Pick<MessageType<unknown, Req>, 'decode'>,
  response: Pick<MessageType<ResI>, 'encode'>,
  fn: (req: Req, ctx: CallContext) => Promise<ResI> | ResI,
): Handler {
  return async (payload, ctx) => response.encode(await fn(request.decode(payload), ctx)).finish();
}

/** Calls `service/method` with a typed request and decodes the typed response. */
export async function callTyped<ReqI, Res>(
  client: Client,
  service: string,
  method: string,
  request: Pick<MessageType<ReqI>, 'encode'>,
  message: ReqI,
  response: Pick<MessageType<unknown, Res>, 'decode'>,
  opts?: CallOptions,
): Promise<Res> {
  const payload = await client.call(service, method, request.encode(message).finish(), opts);
  return response.decode(payload);
}
