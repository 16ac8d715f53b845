/**
 * Task events to containerd: ttrpc `Events/Forward` on $TTRPC_ADDRESS (PROTOCOL.md §4).
 * One ordered queue, one call at a time, so containerd sees events in the order the shim
 * decided them; a failed call is retried (redialling) up to 5 times, then dropped.
 */
import { Client } from '../ttrpc';
import { containerd, google, packAny, timestamp, MessageType } from '../proto';

const FORWARD_SERVICE = 'containerd.services.events.ttrpc.v1.Events';

interface Queued {
  topic: string;
  event: google.protobuf.IAny;
  at: google.protobuf.ITimestamp;
  attempts: number;
}

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
    this.queue.push({ topic, event: packAny(`containerd.events.${name}`, type, message), at: timestamp(), attempts: 0 });
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
        if (item.attempts >= 5) {
          this.log.warn({ topic: item.topic, err: (e as Error).message }, 'dropping event after 5 attempts');
          this.queue.shift();
        } else {
          await new Promise((r) => setTimeout(r, 100 * item.attempts));
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
