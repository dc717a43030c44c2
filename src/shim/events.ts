/**
 * Publishes task events to containerd the way its own shims do: each event is wrapped in an Any (type URL
 * = full message name, e.g. "containerd.events.TaskExit"), put in an Envelope with its topic
 * ("/tasks/exit"), namespace and timestamp, and sent with Events.Forward over containerd's ttrpc socket
 * (the TTRPC_ADDRESS containerd gives the shim, normally "<containerd address>.ttrpc").
 *
 * Events go out one at a time in the order they were published (an exit must reach containerd before
 * the delete that follows it). A failed send is retried with backoff, reconnecting when the connection
 * dropped (containerd may be restarting); the queue is bounded so a containerd that is gone for good
 * cannot make the shim grow without limit.
 */
import { rootLogger, type Logger } from '../common/log.js';
import { TtrpcClient } from '../ttrpc/client.js';
import { NAMESPACE_METADATA_KEY } from '../ttrpc/messages.js';
import type { InitOf } from '../ttrpc/protobuf/schema.js';
import { timestampFromDate } from '../ttrpc/protobuf/well-known.js';
import { Code, TtrpcError, isTtrpcError } from '../ttrpc/status.js';
import { EVENTS_SERVICE, ForwardRequest, TaskEvents, type TaskEventKind } from './protocol/event-messages.js';

export interface EventPublisherOptions {
  /** containerd's ttrpc address (a "unix://" prefix is accepted). */
  address: string;
  namespace: string;
  /** Per-attempt timeout of a Forward call (default 5 s, as containerd's publisher uses). */
  timeoutMs?: number;
  /** Attempts per event before it is dropped (default 5). */
  maxAttempts?: number;
  /** Events waiting to be sent before publish() refuses new ones (default 2048). */
  maxQueued?: number;
  logger?: Logger;
}

export type TaskEventInit<K extends TaskEventKind> = InitOf<(typeof TaskEvents)[K]['type']>;

export class EventPublisher {
  private client: TtrpcClient | undefined;
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;
  private closed = false;
  private readonly log: Logger;

  constructor(private readonly opts: EventPublisherOptions) {
    this.log = opts.logger ?? rootLogger().child({ component: 'shim-events' });
  }

  /** Resolves once containerd accepted the event; rejects if it could not be delivered after all attempts. */
  publish<K extends TaskEventKind>(kind: K, event: TaskEventInit<K>, at: Date = new Date()): Promise<void> {
    if (this.closed) return Promise.reject(new TtrpcError(Code.UNAVAILABLE, `event ${kind} not published: the publisher is closed`));
    const max = this.opts.maxQueued ?? 2048;
    if (this.queued >= max) return Promise.reject(new TtrpcError(Code.RESOURCE_EXHAUSTED, `event ${kind} dropped: ${max} events are already waiting for containerd`));
    const { topic, type } = TaskEvents[kind];
    const request = ForwardRequest.encode({
      envelope: {
        timestamp: timestampFromDate(at),
        namespace: this.opts.namespace,
        topic,
        event: { typeUrl: type.typeName, value: (type.encode as (v: TaskEventInit<K>) => Uint8Array)(event) },
      },
    });
    this.queued++;
    const sent = this.chain.then(() => this.deliver(kind, request));
    this.chain = sent.then(
      () => undefined,
      () => undefined,
    );
    return sent.finally(() => {
      this.queued--;
    });
  }

  private async deliver(kind: string, request: Uint8Array): Promise<void> {
    const attempts = this.opts.maxAttempts ?? 5;
    let lastErr: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (this.closed) break;
      try {
        const client = await this.connection();
        await client.call(EVENTS_SERVICE, 'Forward', request, {
          timeoutMs: this.opts.timeoutMs ?? 5000,
          metadata: { [NAMESPACE_METADATA_KEY]: this.opts.namespace },
        });
        return;
      } catch (err) {
        lastErr = err;
        // containerd refusing the event itself (bad namespace or topic) will not change on retry.
        if (isTtrpcError(err) && (err.code === Code.INVALID_ARGUMENT || err.code === Code.UNIMPLEMENTED)) break;
        if (this.client?.closed) this.client = undefined;
        this.log.warn({ err, kind, attempt }, 'forwarding an event to containerd failed');
        if (attempt < attempts) await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** (attempt - 1), 2000)));
      }
    }
    this.log.error({ err: lastErr, kind }, 'event dropped: containerd did not accept it');
    throw lastErr instanceof Error ? lastErr : new TtrpcError(Code.UNAVAILABLE, `event ${kind} not delivered`);
  }

  private async connection(): Promise<TtrpcClient> {
    if (!this.client || this.client.closed) {
      this.client = await TtrpcClient.connect(this.opts.address, { connectTimeoutMs: this.opts.timeoutMs ?? 5000 });
    }
    return this.client;
  }

  /** Waits for events already published to be sent (or dropped), then closes the connection. */
  async close(): Promise<void> {
    await this.chain;
    this.closed = true;
    this.client?.close();
    this.client = undefined;
  }
}
