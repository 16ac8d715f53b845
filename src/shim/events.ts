/**
 * Task events to containerd: ttrpc `Events/Forward` on $TTRPC_ADDRESS (docs/protocol.md).
 * One ordered queue, one call at a time, so containerd sees events in the order the shim
 * decided them. A failed call is retried (redialling) with a growing pause while the event
 * is younger than RETRY_FOR_MS, so events survive a containerd restart and arrive in
 * order once it is back; an event given up on, or pushed out of a full queue, is logged.
 */
import { Client, Code, RpcError } from '../ttrpc';
import { containerd, google, packAny, timestamp, MessageType } from '../proto';

const FORWARD_SERVICE = 'containerd.services.events.ttrpc.v1.Events';

interface Queued {
  topic: string;
  event: google.protobuf.IAny;
  at: google.protobuf.ITimestamp;
  queuedAt: number;
  attempts: number;
}

/** How long an event is retried (runc-v2's shim keeps trying for about a minute). */
export const RETRY_FOR_MS = 120_000;
/** The longest pause between two tries. */
const MAX_BACKOFF_MS = 2_000;
/** Events held while containerd is away; past this the oldest are dropped. */
const MAX_QUEUED = 4096;

export interface EventLogger {
  warn(obj: object, msg: string): void;
}

export class EventPublisher {
  private readonly client: Client | null;
  private readonly queue: Queued[] = [];
  private pumping: Promise<void> | null = null;

  constructor(
    ttrpcAddress: string,
    private readonly namespace: string,
    private readonly log: EventLogger,
  ) {
    this.client = ttrpcAddress ? new Client(ttrpcAddress) : null;
  }

  publish<I>(topic: string, name: string, type: MessageType<I>, message: I): void {
    if (!this.client) return;
    if (this.queue.length >= MAX_QUEUED) {
      const dropped = this.queue.splice(1, 1)[0];
      this.log.warn({ topic: dropped.topic, queued: this.queue.length }, 'event queue full while containerd is unreachable: dropping the oldest waiting event');
    }
    this.queue.push({ topic, event: packAny(`containerd.events.${name}`, type, message), at: timestamp(), queuedAt: Date.now(), attempts: 0 });
    this.pumping ??= this.pump().finally(() => (this.pumping = null));
  }

  private async pump(): Promise<void> {
    const client = this.client;
    if (!client) return;
    while (this.queue.length > 0) {
      const item = this.queue[0];
      const payload = containerd.services.events.ttrpc.v1.ForwardRequest.encode({
        envelope: { timestamp: item.at, namespace: this.namespace, topic: item.topic, event: item.event },
      }).finish();
      try {
        await client.call(FORWARD_SERVICE, 'Forward', payload, { timeoutMs: 5000, metadata: { 'containerd-namespace-ttrpc': this.namespace } });
        this.queue.shift();
      } catch (e) {
        item.attempts++;
        // containerd answered and refused this event (bad topic, unknown namespace, …):
        // trying again cannot help, and would hold every later event back.
        if (e instanceof RpcError && e.code !== Code.UNAVAILABLE && e.code !== Code.DEADLINE_EXCEEDED && e.code !== Code.CANCELLED) {
          this.log.warn({ topic: item.topic, err: e.message }, 'containerd refused an event; dropping it');
          this.queue.shift();
          continue;
        }
        if (Date.now() - item.queuedAt >= RETRY_FOR_MS) {
          this.log.warn(
            { topic: item.topic, attempts: item.attempts, err: (e as Error).message },
            `dropping event: containerd unreachable for ${RETRY_FOR_MS / 1000}s`,
          );
          this.queue.shift();
        } else {
          await new Promise((r) => setTimeout(r, Math.min(MAX_BACKOFF_MS, 50 * 2 ** item.attempts)));
        }
      }
    }
  }

  /** Waits (at most `ms`) for everything queued to be delivered. */
  async drain(ms: number): Promise<void> {
    if (!this.pumping) return;
    await Promise.race([this.pumping, new Promise((r) => setTimeout(r, ms).unref())]);
  }

  close(): void {
    this.client?.close();
  }
}
