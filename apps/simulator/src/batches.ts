/**
 * How the simulator cuts what it sends into Kafka requests, and what a failed request costs. Pure:
 * no I/O, no clock (the send and the pause are passed in), so it is unit-tested on its own.
 *
 * Why by bytes: the broker refuses a record batch larger than its `message.max.bytes` (1 MiB by
 * default; scripts/kafka-start.sh keeps the default) with "The request included a message larger
 * than the max message size the server will accept". kafkajs puts everything a request carries for
 * one partition into one record batch, so a request never larger than MAX_REQUEST_BYTES (a quarter
 * of that) cannot meet that refusal, whatever the partitioner does with its messages.
 */

/** The broker's default `message.max.bytes` (Apache Kafka 4: 1,048,588). */
export const BROKER_MESSAGE_MAX_BYTES = 1_048_588;

/** The most one request of the simulator carries, counted by recordBytes: a quarter of the broker's limit. */
export const MAX_REQUEST_BYTES = 256 * 1024;

/**
 * What one record adds to a record batch, besides its key and value, counted generously: the v2
 * record format spends at most ~21 bytes (length, attributes, timestamp and offset deltas, key and
 * value lengths, header count, all varints).
 */
export const RECORD_OVERHEAD_BYTES = 32;

/** The bytes one message takes in a request: key and value in UTF-8, plus RECORD_OVERHEAD_BYTES. */
export function recordBytes(key: string | Buffer | null | undefined, value: string | Buffer): number {
  const k = key == null ? 0 : typeof key === 'string' ? Buffer.byteLength(key, 'utf8') : key.length;
  const v = typeof value === 'string' ? Buffer.byteLength(value, 'utf8') : value.length;
  return k + v + RECORD_OVERHEAD_BYTES;
}

/**
 * Cuts `items`, in their order, into batches of at most `maxBytes` (summing `sizeOf`); an item
 * larger than `maxBytes` on its own makes a batch of one (the broker then answers for it, and only it
 * fails). Lazy: pulls items as it goes and holds one batch at a time, so a fleet of a million
 * connections never sits in memory whole.
 */
export function* batchesByBytes<T>(items: Iterable<T>, sizeOf: (item: T) => number, maxBytes: number): Generator<T[]> {
  if (!(maxBytes > 0)) throw new RangeError('maxBytes must be positive');
  let batch: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (batch.length > 0 && bytes + size > maxBytes) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(item);
    bytes += size;
  }
  if (batch.length > 0) yield batch;
}

/** How often a failed request is tried again, and the pause before each new try. */
export interface RetryPolicy {
  /** Tries in all, the first included (at least 1). */
  attempts: number;
  /** The pause before try number `attempt` (2, 3, ...), in ms. */
  backoffMs: (attempt: number) => number;
}

/** The simulator's: 3 tries, 0.5 s then 1 s apart (on top of kafkajs's own retries of a retriable error). */
export const SEND_RETRY: RetryPolicy = { attempts: 3, backoffMs: (attempt) => 500 * 2 ** (attempt - 2) };

export type SendOutcome = { ok: true; attempts: number } | { ok: false; attempts: number; error: unknown };

/**
 * Sends one batch with `send`, trying again after a failure as the policy says. Never throws: a batch
 * that still fails after its last try is reported (ok: false, with the last error), and the caller
 * counts it and goes on. `onRetry` hears each failure that is tried again.
 */
export async function sendWithRetry<T>(
  batch: T,
  send: (batch: T) => Promise<unknown>,
  policy: RetryPolicy,
  sleep: (ms: number) => Promise<void>,
  onRetry: (attempt: number, error: unknown) => void = () => {},
): Promise<SendOutcome> {
  const attempts = Math.max(1, Math.floor(policy.attempts));
  for (let attempt = 1; ; attempt++) {
    try {
      await send(batch);
      return { ok: true, attempts: attempt };
    } catch (error) {
      if (attempt >= attempts) return { ok: false, attempts: attempt, error };
      onRetry(attempt, error);
      await sleep(policy.backoffMs(attempt + 1));
    }
  }
}
