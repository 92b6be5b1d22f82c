import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import { Consumer, EachBatchPayload, Kafka, Partitioners, Producer } from 'kafkajs';
import { validateMessage } from '@psp/domain';
import { SETTINGS, Settings } from '@psp/config';
import { createKafka, ensureTopics, intakeTopics, toDlqMessage } from '@psp/messaging';
import { ConnectionStreams, SourcedEvent } from './connection-streams';
import { RecordConnectionEvents } from './record-connection-events';

/** Running totals, logged every few seconds for ops. */
export interface IntakeTotals {
  consumed: number;
  appended: number;
  duplicates: number;
  rejected: number;
  conflictsRetried: number;
}

/**
 * Consumes the three intake topics in batches. Each message is validated (CONTRACT 2); a bad one goes
 * to the DLQ unchanged with its reason, the good ones are recorded in one command. The batch's offsets
 * are resolved and committed only after both are durable, so a crash re-delivers and the event_id
 * check makes the re-delivery change nothing (at-least-once in, exactly-once effect).
 */
@Injectable()
export class EventIntake implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('EventIntake');
  private readonly kafka: Kafka;
  private consumer?: Consumer;
  private producer?: Producer;
  private reporter?: NodeJS.Timeout;
  readonly totals: IntakeTotals = { consumed: 0, appended: 0, duplicates: 0, rejected: 0, conflictsRetried: 0 };
  private reported = 0;

  constructor(
    @Inject(SETTINGS) private readonly settings: Settings,
    private readonly commands: CommandBus,
    private readonly streams: ConnectionStreams,
  ) {
    this.kafka = createKafka(settings, 'writer', (level, message) =>
      level === 'error' ? this.logger.error(message) : this.logger.warn(message),
    );
  }

  async onApplicationBootstrap(): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const created = await ensureTopics(admin, this.settings);
      if (created.length > 0)
        this.logger.log(`created topics ${created.join(', ')} (${this.settings.topicPartitions} partitions)`);
    } finally {
      await admin.disconnect();
    }
    // The DLQ producer retries for as long as it takes: a batch's offsets are committed only after
    // its rejected messages are in the DLQ, so giving up would mean losing them.
    this.producer = this.kafka.producer({
      allowAutoTopicCreation: false,
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 200, maxRetryTime: 5000 },
    });
    await this.producer.connect();
    this.consumer = this.kafka.consumer({
      groupId: this.settings.writerGroupId,
      allowAutoTopicCreation: false,
      // A writer that dies is noticed within 10 s, and its partitions move to the others.
      sessionTimeout: 10000,
      heartbeatInterval: 1000,
      maxBytesPerPartition: 2 * 1024 * 1024,
      maxWaitTimeInMs: 100,
    });
    this.consumer.on(this.consumer.events.GROUP_JOIN, () => this.streams.forget());
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: intakeTopics(this.settings), fromBeginning: true });
    await this.consumer.run({
      eachBatchAutoResolve: false,
      autoCommit: true,
      eachBatch: (payload) => this.consumeBatch(payload),
    });
    this.reporter = setInterval(() => this.report(), 10000);
    this.reporter.unref();
    this.logger.log(
      `consuming ${intakeTopics(this.settings).join(', ')} as group ${this.settings.writerGroupId}; DLQ ${this.settings.topics.dlq}`,
    );
  }

  private async consumeBatch({
    batch,
    resolveOffset,
    heartbeat,
    commitOffsetsIfNecessary,
    isRunning,
    isStale,
  }: EachBatchPayload): Promise<void> {
    if (!isRunning() || isStale() || batch.messages.length === 0) return;
    const consumedAt = Date.now();
    const accepted: SourcedEvent[] = [];
    const rejected = [];
    for (const message of batch.messages) {
      const source = { topic: batch.topic, partition: batch.partition, offset: message.offset };
      const result = validateMessage(message.value, consumedAt);
      if (result.ok) accepted.push({ event: result.event, source });
      else
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
    if (rejected.length > 0)
      await this.producer!.send({ topic: this.settings.topics.dlq, acks: -1, messages: rejected });
    const outcome =
      accepted.length > 0
        ? await this.commands.execute(new RecordConnectionEvents(accepted))
        : { appended: 0, duplicates: 0, conflictsRetried: 0 };
    resolveOffset(batch.lastOffset());
    await commitOffsetsIfNecessary();
    await heartbeat();
    this.totals.consumed += batch.messages.length;
    this.totals.appended += outcome.appended;
    this.totals.duplicates += outcome.duplicates;
    this.totals.rejected += rejected.length;
    this.totals.conflictsRetried += outcome.conflictsRetried;
  }

  private report(): void {
    if (this.totals.consumed === this.reported) return;
    this.reported = this.totals.consumed;
    const t = this.totals;
    this.logger.log(
      `consumed ${t.consumed}: appended ${t.appended}, duplicates ignored ${t.duplicates}, to DLQ ${t.rejected}, conflicts retried ${t.conflictsRetried}`,
    );
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.reporter) clearInterval(this.reporter);
    this.report();
    await this.consumer?.disconnect().catch(() => undefined);
    await this.producer?.disconnect().catch(() => undefined);
  }
}
