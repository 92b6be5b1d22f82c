import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import { Consumer, ConsumerRunConfig, EachBatchPayload, IHeaders, Kafka, KafkaMessage, Message } from 'kafkajs';
import { validateMessage } from '@psp/domain';
import { SETTINGS, Settings } from '@psp/config';
import { ensureTopics, intakeTopics, restartWhenCrashed, toDlqMessage } from '@psp/messaging';
import {
  inSpan,
  linksTo,
  MESSAGING,
  serviceTracer,
  SpanKind,
  traceContextOfHeaders,
  tracingOn,
} from '@psp/observability';
import { ConnectionStreams, RecordOutcome, SourcedEvent } from './connection-streams';
import { DeadLetters } from './dead-letters';
import { HeapPressure } from './heap-pressure';
import { IntakeAppends } from './intake-appends';
import { writerMetrics } from './metrics';
import { RecordConnectionEvents } from './record-connection-events';

/**
 * What may wait for the next append before the consumer stops fetching: accepted events, and the
 * bytes of their messages. With the append in flight and kafkajs's own fetch buffers, this keeps the
 * writer under its 128 MB heap bound whatever the message sizes. (20,000 events and 4 MiB before:
 * with the writer behind, the waiting group and the one in flight held ~40,000 parsed events, and
 * its heap peaked at 110 MB and its RSS at 262-270 MB at 100,000 and 1,000,000 connections.)
 */
const MAX_WAITING = { events: 10000, bytes: 2 * 1024 * 1024 };
/** The most one fetch from Kafka returns (all partitions together). */
export const FETCH_MAX_BYTES = 4 * 1024 * 1024;
/** How long a restart after a failed append waits first, doubling up to the maximum. */
const RESTART_DELAY_MS = { first: 500, max: 15000 };

/** Running totals, logged every few seconds for ops. */
export interface IntakeTotals {
  consumed: number;
  appended: number;
  duplicates: number;
  rejected: number;
  /** Accepted by validation, refused by the log for what they hold: in the DLQ as `unstorable`. */
  unstorable: number;
  conflictsRetried: number;
}

/**
 * Consumes the three intake topics in batches. Each message is validated (CONTRACT 2); a bad one goes
 * to the DLQ unchanged with its reason before the batch is handed on. The good ones go to the group
 * append (IntakeAppends): the consumer fetches on while PostgreSQL writes, and the batches that arrive
 * meanwhile are recorded together, in one command and one transaction. A batch's offset is committed
 * only after its events are durable, so a crash re-delivers and the event_id check makes the
 * re-delivery change nothing (at-least-once in, exactly-once effect). A failed append (PostgreSQL
 * down) restarts consumption from the committed offsets, after a growing delay.
 */
@Injectable()
export class EventIntake implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('EventIntake');
  private consumer?: Consumer;
  private reporter?: NodeJS.Timeout;
  readonly totals: IntakeTotals = {
    consumed: 0,
    appended: 0,
    duplicates: 0,
    rejected: 0,
    unstorable: 0,
    conflictsRetried: 0,
  };
  private reported = 0;
  private readonly appends: IntakeAppends;
  private runConfig?: ConsumerRunConfig;
  private closing = false;
  private restarting?: Promise<void>;
  private restartDelay = RESTART_DELAY_MS.first;
  private readonly heapPressure: HeapPressure;

  constructor(
    @Inject(SETTINGS) private readonly settings: Settings,
    private readonly commands: CommandBus,
    private readonly streams: ConnectionStreams,
    @Inject(Kafka) private readonly kafka: Kafka,
    private readonly deadLetters: DeadLetters,
  ) {
    this.appends = new IntakeAppends({
      maxWaiting: MAX_WAITING,
      record: (events) =>
        writerMetrics().timeAppend(events.length, () =>
          tracingOn() ? this.tracedAppend(events) : this.commands.execute(new RecordConnectionEvents(events)),
        ),
      commit: (offsets) => this.consumer!.commitOffsets(offsets),
      onAppended: (outcome) => {
        this.count(outcome);
        writerMetrics().streamVersionsCached.set(this.streams.cachedVersions.streams);
        this.restartDelay = RESTART_DELAY_MS.first;
      },
      onCommitFailure: (error) =>
        this.logger.warn(
          `offset commit failed (${describe(error)}); the events are in the log, a re-delivery will be recognised as duplicates`,
        ),
      onAppendFailure: (error) => {
        this.restarting ??= this.restartConsumption(error, 'append to the event log failed').finally(
          () => (this.restarting = undefined),
        );
      },
    });
    this.heapPressure = new HeapPressure(settings.writerHeapShedPercent / 100, (heap) => {
      const forgotten = this.streams.shedOlderVersions();
      this.appends.shrink();
      writerMetrics().memorySheds.inc();
      const bound = this.appends.waitingBound;
      this.logger.warn(
        `heap ${mb(heap.used)} live after a full GC, above ${settings.writerHeapShedPercent}% of its ${mb(heap.limit)} bound: forgot the versions of ${forgotten} less recently used streams; at most ${bound.events} events (${mb(bound.bytes)} of messages) wait for the next append until the pressure has passed`,
      );
    });
  }

  async onApplicationBootstrap(): Promise<void> {
    this.heapPressure.start();
    const created = await ensureTopics(this.kafka, this.settings);
    if (created.length > 0)
      this.logger.log(`created topics ${created.join(', ')} (${this.settings.topicPartitions} partitions)`);
    this.consumer = this.kafka.consumer({
      groupId: this.settings.writerGroupId,
      allowAutoTopicCreation: false,
      // A writer that dies is noticed within 10 s, and its partitions move to the others.
      sessionTimeout: 10000,
      heartbeatInterval: 1000,
      // One fetch response is read whole into one buffer (outside the heap) and decoded into message
      // objects (on it) before eachBatch sees them: kafkajs's default of 10 MB held two such buffers
      // and ~30,000 decoded messages next to the appends. 4 MiB is still ~13,000 typical messages.
      maxBytes: FETCH_MAX_BYTES,
      maxBytesPerPartition: 2 * 1024 * 1024,
      maxWaitTimeInMs: 100,
    });
    this.consumer.on(this.consumer.events.GROUP_JOIN, () => {
      // Partitions may have moved: streams may be written elsewhere now, and offsets noted so far
      // must not be committed over the new owner's.
      this.streams.forget();
      this.appends.newGeneration();
    });
    restartWhenCrashed(this.consumer, {
      closing: () => this.closing,
      report: (message) => this.logger.error(message),
      restart: (error) => {
        this.restarting ??= this.restartConsumption(error, 'the Kafka consumer stopped').finally(
          () => (this.restarting = undefined),
        );
      },
    });
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: intakeTopics(this.settings), fromBeginning: true });
    // Offsets are resolved when a batch is handed to the group append (so the next fetch starts after
    // it) and committed by IntakeAppends after the append is durable; kafkajs never commits on its own.
    this.runConfig = {
      eachBatchAutoResolve: false,
      autoCommit: false,
      eachBatch: (payload) => this.consumeBatch(payload),
    };
    await this.consumer.run(this.runConfig);
    this.reporter = setInterval(() => this.report(), 10000);
    this.reporter.unref();
    this.logger.log(
      `consuming ${intakeTopics(this.settings).join(', ')} as group ${this.settings.writerGroupId}; DLQ ${this.settings.topics.dlq}`,
    );
  }

  private async consumeBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    if (this.closing || this.appends.failed || !isRunning() || isStale() || batch.messages.length === 0) return;
    const consumedAt = Date.now();
    const accepted: SourcedEvent[] = [];
    let acceptedBytes = 0;
    const rejected: Message[] = [];
    for (const message of batch.messages) {
      const source = { topic: batch.topic, partition: batch.partition, offset: message.offset };
      const result = validateMessage(message.value, consumedAt);
      if (result.ok) {
        accepted.push({
          event: result.event,
          source,
          message: detached(message),
          traceContext: traceContextOfHeaders(message.headers),
        });
        acceptedBytes += message.value!.length;
      } else
        rejected.push(
          toDlqMessage(
            {
              ...source,
              key: message.key,
              value: message.value,
              headers: message.headers,
              timestamp: message.timestamp,
            },
            result,
          ),
        );
    }
    await this.deadLetters.send(rejected);
    const next = (BigInt(batch.lastOffset()) + 1n).toString();
    const taken = await this.appends.add(
      accepted,
      { topic: batch.topic, partition: batch.partition, offset: next },
      acceptedBytes,
    );
    if (!taken) return; // an append failed: consumption restarts from the committed offsets
    resolveOffset(batch.lastOffset());
    await heartbeat();
    this.totals.consumed += batch.messages.length;
    writerMetrics().consumed.inc({ topic: writerMetrics().topic(batch.topic) }, batch.messages.length);
    this.totals.rejected += rejected.length;
  }

  /**
   * The group append in a span (messaging conventions for a batch consumer: a `process` span with a
   * link to each message's creation context, at most MAX_LINKS); PostgreSQL's statements (pg
   * instrumentation) are its children.
   */
  private tracedAppend(events: SourcedEvent[]): Promise<RecordOutcome> {
    const span = serviceTracer().startSpan('process event_log append', {
      kind: SpanKind.CONSUMER,
      root: true,
      links: linksTo(
        events.map((e) => e.traceContext),
        { [MESSAGING.system]: 'kafka' },
      ),
      attributes: {
        [MESSAGING.system]: 'kafka',
        [MESSAGING.operationType]: 'process',
        [MESSAGING.operationName]: 'append',
        [MESSAGING.batchCount]: events.length,
        [MESSAGING.consumerGroup]: this.settings.writerGroupId,
      },
    });
    return inSpan(span, async () => {
      const outcome: RecordOutcome = await this.commands.execute(new RecordConnectionEvents(events));
      span.setAttributes({
        'psp.events.appended': outcome.appended,
        'psp.events.duplicates': outcome.duplicates,
        'psp.events.unstorable': outcome.unstorable.length,
      });
      return outcome;
    });
  }

  private count(outcome: RecordOutcome): void {
    this.totals.appended += outcome.appended;
    this.totals.duplicates += outcome.duplicates;
    this.totals.conflictsRetried += outcome.conflictsRetried;
    this.totals.unstorable += outcome.unstorable.length;
  }

  /**
   * After a failed append, or a crash of the consumer that kafkajs does not restart: stop the consumer
   * (kafkajs forgets the offsets resolved past the committed ones), wait, and run it again, so
   * consumption resumes at the first offset not yet durable.
   */
  private async restartConsumption(error: unknown, reason: string): Promise<void> {
    for (;;) {
      if (this.closing) return;
      this.logger.error(
        `${reason} (${describe(error)}); nothing after the last committed offsets is taken as done. Restarting consumption in ${this.restartDelay} ms`,
      );
      await new Promise((r) => setTimeout(r, this.restartDelay));
      this.restartDelay = Math.min(RESTART_DELAY_MS.max, this.restartDelay * 2);
      try {
        await this.consumer!.stop();
        await this.appends.drain();
        this.appends.reset();
        if (this.closing) return;
        // After a crash kafkajs has disconnected it; connecting a connected consumer changes nothing.
        await this.consumer!.connect();
        await this.consumer!.run(this.runConfig);
        this.logger.log('consumption restarted from the committed offsets');
        return;
      } catch (restartError) {
        error = restartError;
      }
    }
  }

  private report(): void {
    if (this.totals.consumed === this.reported) return;
    this.reported = this.totals.consumed;
    const t = this.totals;
    this.logger.log(
      `consumed ${t.consumed}: appended ${t.appended}, duplicates ignored ${t.duplicates}, to DLQ ${t.rejected} (+${t.unstorable} unstorable), conflicts retried ${t.conflictsRetried}`,
    );
  }

  async onApplicationShutdown(): Promise<void> {
    // Stop taking batches, let the appends in hand finish and their offsets be committed, then leave.
    this.closing = true;
    this.heapPressure.stop();
    await this.appends.drain().catch(() => undefined);
    if (this.reporter) clearInterval(this.reporter);
    this.report();
    await this.consumer?.disconnect().catch(() => undefined);
  }
}

/**
 * The message's key, value and headers copied out of kafkajs's fetch response. kafkajs reads a
 * response whole into one buffer (up to FETCH_MAX_BYTES) and hands out slices of it: one accepted
 * message kept for the DLQ (should the log refuse it) kept the whole response alive until its append
 * was done, up to four 4 MiB responses behind two groups. The copies are ~300 B each.
 */
export function detached(message: KafkaMessage): NonNullable<SourcedEvent['message']> {
  return {
    key: message.key === null ? null : Buffer.from(message.key),
    value: message.value === null ? null : Buffer.from(message.value),
    headers: message.headers === undefined ? undefined : copyHeaders(message.headers),
    timestamp: message.timestamp,
  };
}

function copyHeaders(headers: IHeaders): IHeaders {
  const copy: IHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    copy[name] = Array.isArray(value)
      ? value.map((v) => (Buffer.isBuffer(v) ? Buffer.from(v) : v))
      : Buffer.isBuffer(value)
        ? Buffer.from(value)
        : value;
  }
  return copy;
}

function mb(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
