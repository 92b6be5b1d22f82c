import { Inject, Injectable, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Admin, Kafka, Message } from 'kafkajs';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ALL_DLQ_REASONS } from '@psp/domain';
import { SETTINGS, Settings } from '@psp/config';
import { headerText, intakeTopics } from '@psp/messaging';
import { oncePerProcess, readingFailures, ScrapeTimeReading } from '@psp/observability';
import type { SourcedEvent } from './connection-streams';

/** Label value of a topic that is not one of the configured intake topics (never seen in practice). */
const OTHER = 'other';
const REASONS = new Set<string>(ALL_DLQ_REASONS);

/**
 * The writer's metrics (CONTRACT 1.4: labels are topics and DLQ reasons, never anything from a
 * message). Counters count messages once they are durable: consumed when their batch is handed on,
 * appended and duplicates after the append's commit, DLQ'd after the DLQ acknowledged them.
 */
export class WriterMetrics {
  readonly consumed: Counter<'topic'>;
  readonly appended: Counter<'topic'>;
  readonly duplicates: Counter<'topic'>;
  readonly deadLettered: Counter<'topic' | 'reason'>;
  readonly appendSeconds: Histogram;
  readonly appendGroupEvents: Histogram;
  readonly appendFailures: Counter;
  readonly consumerLag: Gauge<'topic'>;
  readonly memorySheds: Counter;
  readonly streamVersionsCached: Gauge;
  private topics = new Set<string>();
  /** Reads the group's lag per topic (set by WriterMetricsCollector; null when it could not). */
  lagReading: (() => Promise<Map<string, number> | null>) | null = null;

  constructor(registry: Registry) {
    const registers = [registry];
    this.consumed = new Counter({
      name: 'psp_writer_messages_consumed_total',
      help: 'Kafka messages consumed from the intake topics (valid or not)',
      labelNames: ['topic'] as const,
      registers,
    });
    this.appended = new Counter({
      name: 'psp_writer_events_appended_total',
      help: 'Events appended to the event log (committed)',
      labelNames: ['topic'] as const,
      registers,
    });
    this.duplicates = new Counter({
      name: 'psp_writer_duplicates_total',
      help: 'Valid events whose event_id was already logged (or repeated in their append): changed nothing',
      labelNames: ['topic'] as const,
      registers,
    });
    this.deadLettered = new Counter({
      name: 'psp_writer_dlq_messages_total',
      help: 'Messages sent to the DLQ (acknowledged), by source topic and dlq-reason',
      labelNames: ['topic', 'reason'] as const,
      registers,
    });
    this.appendSeconds = new Histogram({
      name: 'psp_writer_append_duration_seconds',
      help: 'Duration of one group append to the event log (one transaction), DLQ of unstorable events included',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.appendGroupEvents = new Histogram({
      name: 'psp_writer_append_group_events',
      help: 'Events in one group append (the batches that arrived while the previous append ran)',
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000, 50000],
      registers,
    });
    this.appendFailures = new Counter({
      name: 'psp_writer_append_failures_total',
      help: 'Group appends that failed (PostgreSQL unreachable...); consumption restarted from the committed offsets',
      registers,
    });
    this.memorySheds = new Counter({
      name: 'psp_writer_memory_sheds_total',
      help: 'Times the heap stayed above WRITER_HEAP_SHED_PERCENT of its bound after a full GC and the writer shed memory (older half of the stream versions forgotten, waiting room halved)',
      registers,
    });
    this.streamVersionsCached = new Gauge({
      name: 'psp_writer_cached_streams',
      help: 'Stream versions the writer holds in memory (WRITER_STREAM_CACHE_BYTES) after the last append; a stream used again while its generation aged counts twice until the older copy is forgotten',
      registers,
    });
    const failures = readingFailures();
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    this.consumerLag = new Gauge({
      name: 'psp_writer_consumer_lag_messages',
      help: "Messages after the writer group's committed offsets (not yet durable in the event log), per intake topic; the same for every writer of the group",
      labelNames: ['topic'] as const,
      registers,
      async collect() {
        if (!self.lagReading) return;
        const lag = await self.lagReading();
        if (lag === null) {
          failures.inc({ reading: 'writer_consumer_lag' });
          return;
        }
        for (const [topic, behind] of lag) this.set({ topic: self.topic(topic) }, behind);
      },
    });
  }

  /** The intake topics: label values, and series that exist (at 0) before their first message. */
  useTopics(topics: string[]): void {
    this.topics = new Set(topics);
    for (const topic of topics) {
      this.consumed.inc({ topic }, 0);
      this.appended.inc({ topic }, 0);
      this.duplicates.inc({ topic }, 0);
      for (const reason of REASONS) this.deadLettered.inc({ topic, reason }, 0);
    }
  }

  topic(topic: string): string {
    return this.topics.has(topic) ? topic : OTHER;
  }

  /** One append's outcome: `fresh` (a subset of `events`) were appended, the rest were duplicates. */
  recorded(events: SourcedEvent[], fresh: SourcedEvent[]): void {
    const byTopic = new Map<string, { all: number; fresh: number }>();
    const at = (topic: string) => {
      let entry = byTopic.get(topic);
      if (!entry) byTopic.set(topic, (entry = { all: 0, fresh: 0 }));
      return entry;
    };
    for (const e of events) at(e.source.topic).all += 1;
    for (const e of fresh) at(e.source.topic).fresh += 1;
    for (const [topic, n] of byTopic) {
      if (n.fresh > 0) this.appended.inc({ topic: this.topic(topic) }, n.fresh);
      if (n.all > n.fresh) this.duplicates.inc({ topic: this.topic(topic) }, n.all - n.fresh);
    }
  }

  /** DLQ copies acknowledged by Kafka: counted by their `dlq-topic` and `dlq-reason` headers. */
  deadLettersSent(messages: Message[]): void {
    for (const m of messages) {
      const reason = headerText(m.headers, 'dlq-reason');
      this.deadLettered.inc({
        topic: this.topic(headerText(m.headers, 'dlq-topic')),
        reason: REASONS.has(reason) ? reason : OTHER,
      });
    }
  }

  /** Times one group append of `events` events. */
  async timeAppend<T>(events: number, append: () => Promise<T>): Promise<T> {
    const end = this.appendSeconds.startTimer();
    try {
      const result = await append();
      end();
      this.appendGroupEvents.observe(events);
      return result;
    } catch (error) {
      this.appendFailures.inc();
      throw error;
    }
  }
}

/** The writer's metrics, registered once per process. */
export const writerMetrics = oncePerProcess((registry) => new WriterMetrics(registry));

/**
 * Feeds the writer's scrape-time gauges: the consumer group's lag per intake topic, from its
 * committed offsets and the partitions' high watermarks (as `ops lag` computes it), read at most
 * every 5 s. Every writer of a group reports the whole group's lag (take the max across them).
 */
@Injectable()
export class WriterMetricsCollector implements OnModuleInit, OnApplicationShutdown {
  private admin?: Promise<Admin>;
  private readonly lag = new ScrapeTimeReading(() => this.readLag(), 5000, 3000);
  private readonly reading = () => this.lag.get();

  constructor(
    @Inject(SETTINGS) private readonly settings: Settings,
    @Inject(Kafka) private readonly kafka: Kafka,
  ) {}

  onModuleInit(): void {
    const metrics = writerMetrics();
    metrics.useTopics(intakeTopics(this.settings));
    metrics.lagReading = this.reading;
  }

  private async readLag(): Promise<Map<string, number>> {
    this.admin ??= (async () => {
      const admin = this.kafka.admin({ retry: { retries: 1 } });
      await admin.connect();
      return admin;
    })().catch((error) => {
      this.admin = undefined;
      throw error;
    });
    const admin = await this.admin;
    const groupId = this.settings.writerGroupId;
    const topics = intakeTopics(this.settings);
    const committed = await admin.fetchOffsets({ groupId, topics });
    const lag = new Map<string, number>();
    for (const topic of topics) {
      const at = new Map(
        (committed.find((t) => t.topic === topic)?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]),
      );
      let behind = 0;
      for (const p of await admin.fetchTopicOffsets(topic)) {
        const position = at.get(p.partition) ?? -1;
        behind += Number(p.high) - (position < 0 ? Number(p.low) : position);
      }
      lag.set(topic, behind);
    }
    return lag;
  }

  async onApplicationShutdown(): Promise<void> {
    const metrics = writerMetrics();
    if (metrics.lagReading === this.reading) metrics.lagReading = null;
    const admin = await this.admin?.catch(() => undefined);
    await admin?.disconnect().catch(() => undefined);
  }
}
