/**
 * The simulator's sending: emissions become Kafka messages (good ones checked by the producers' kit,
 * bad ones raw), cut into requests of at most MAX_REQUEST_BYTES (./batches), each request tried
 * again a bounded number of times; a request that still fails costs its own messages (counted in the
 * tally), never the run.
 */
import { Message } from 'kafkajs';
import { ConnectionEventProducer, ProducerTopics, topicFor } from '@psp/producer';
import { batchesByBytes, MAX_REQUEST_BYTES, recordBytes, RetryPolicy, SEND_RETRY, sendWithRetry } from './batches';
import { Emission, Tally } from './traffic';

/** One message ready to go: its topic, key and value, its size in a request, and what it was. */
export interface Outgoing {
  topic: string;
  message: Message;
  bytes: number;
  emission: Emission;
}

export interface BatchSenderOptions {
  /** The most one request carries (recordBytes summed); default MAX_REQUEST_BYTES. */
  maxRequestBytes?: number;
  retry?: RetryPolicy;
  log?: (line: string) => void;
  sleep?: (ms: number) => Promise<void>;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class BatchSender {
  /** Requests sent (acknowledged by the broker). */
  requests = 0;
  private readonly maxRequestBytes: number;
  private readonly retry: RetryPolicy;
  private readonly log: (line: string) => void;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly events: ConnectionEventProducer,
    private readonly topics: Partial<ProducerTopics>,
    private readonly tally: Tally,
    options: BatchSenderOptions = {},
  ) {
    this.maxRequestBytes = options.maxRequestBytes ?? MAX_REQUEST_BYTES;
    this.retry = options.retry ?? SEND_RETRY;
    this.log = options.log ?? (() => {});
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** The emission as a message: through the kit's check for a good one; undefined (counted as not sent) if refused. */
  prepare(emission: Emission): Outgoing | undefined {
    try {
      const { topic, message: m } =
        emission.kind === 'bad'
          ? { topic: topicFor(emission.type, this.topics), message: { key: emission.key, value: emission.value } }
          : this.events.toMessage(emission.envelope);
      return { topic, message: m, bytes: recordBytes(m.key, m.value ?? ''), emission };
    } catch (error) {
      this.tally.failedSends++;
      this.log(`a message refused by the kit, not sent: ${message(error)}`);
      return undefined;
    }
  }

  /** The emissions as requests of at most maxRequestBytes, in order; lazy. */
  *requestsOf(emissions: Iterable<Emission>): Generator<Outgoing[]> {
    const prepared = function* (this: BatchSender) {
      for (const e of emissions) {
        const o = this.prepare(e);
        if (o) yield o;
      }
    }.call(this);
    yield* batchesByBytes(prepared, (o) => o.bytes, this.maxRequestBytes);
  }

  /** Sends one request (tried again as the retry policy says); counts it in the tally either way. */
  async send(batch: Outgoing[]): Promise<boolean> {
    const outcome = await sendWithRetry(
      batch,
      (b) => this.events.producer.sendBatch({ acks: -1, topicMessages: byTopic(b) }),
      this.retry,
      this.sleep,
      (attempt, error) => {
        this.tally.retries++;
        this.log(`a request of ${batch.length} message(s) failed (try ${attempt}), trying again: ${message(error)}`);
      },
    );
    if (outcome.ok) {
      this.requests++;
      for (const o of batch) this.tally.count(o.emission);
      return true;
    }
    this.tally.failedSends += batch.length;
    this.tally.failedBatches++;
    this.log(
      `a request of ${batch.length} message(s) failed after ${outcome.attempts} tries, not sent: ${message(outcome.error)}`,
    );
    return false;
  }

  /**
   * Sends the emissions in requests, up to `inFlight` at a time (1: one after the other, which keeps
   * each connection's messages in order). Stops taking new ones once `shouldStop` says so; `onSent`
   * is called after each request, whatever its outcome.
   */
  async sendAll(
    emissions: Iterable<Emission>,
    options: { inFlight?: number; shouldStop?: () => boolean; onSent?: () => void } = {},
  ): Promise<void> {
    const inFlight = Math.max(1, options.inFlight ?? 1);
    const pending = new Set<Promise<void>>();
    for (const batch of this.requestsOf(emissions)) {
      if (options.shouldStop?.()) break;
      const p: Promise<void> = this.send(batch).then(() => {
        pending.delete(p);
        options.onSent?.();
      });
      pending.add(p);
      if (pending.size >= inFlight) await Promise.race(pending);
    }
    await Promise.all(pending);
  }
}

/** A request's messages by topic, each topic's in their order. */
function byTopic(batch: readonly Outgoing[]): { topic: string; messages: Message[] }[] {
  const topics = new Map<string, Message[]>();
  for (const o of batch) {
    const list = topics.get(o.topic);
    if (list) list.push(o.message);
    else topics.set(o.topic, [o.message]);
  }
  return [...topics].map(([topic, messages]) => ({ topic, messages }));
}
