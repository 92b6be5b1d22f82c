import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { Span } from '@opentelemetry/api';
import { Kafka, Message, Partitioners, Producer } from 'kafkajs';
import { DataSource } from 'typeorm';
import { SETTINGS, Settings } from '@psp/config';
import { ensureTopics } from '@psp/messaging';
import {
  contextOf,
  linksTo,
  MESSAGING,
  serviceTracer,
  SpanKind,
  traceContextText,
  traceHeaders,
  tracingOn,
} from '@psp/observability';
import { deleteHealthOutbox, OutboxMessage, readHealthOutbox, takeRelayTurn } from '@psp/read-model';

/** Messages produced per round trip to Kafka. */
const RELAY_BATCH = 500;

/**
 * Produces the health changes the projection wrote to its outbox to `psp.connection-health`, oldest
 * first, then deletes them, in one short transaction per batch under an advisory lock (one relay at a
 * time). Kafka acknowledges (acks all, idempotent producer, one request in flight) before the rows
 * are deleted: a crash in between produces those messages again with the same event ids, which a
 * consumer that de-duplicates by event_id drops; none is ever lost or produced out of order.
 */
@Injectable()
export class HealthChangeRelay implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('HealthChangeRelay');
  private readonly producer: Producer;
  private running = false;
  private loop?: Promise<void>;
  /** Messages produced by this process (for ops and tests). */
  produced = 0;

  constructor(
    @Inject(DataSource) private readonly db: DataSource,
    @Inject(SETTINGS) private readonly settings: Settings,
    @Inject(Kafka) private readonly kafka: Kafka,
  ) {
    this.producer = kafka.producer({
      allowAutoTopicCreation: false,
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
      retry: { retries: 10, initialRetryTime: 200, maxRetryTime: 5000 },
    });
  }

  onApplicationBootstrap(): void {
    this.running = true;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let failures = 0;
    let ready = false;
    while (this.running) {
      try {
        if (!ready) {
          await ensureTopics(this.kafka, this.settings);
          await this.producer.connect();
          ready = true;
        }
        const sent = await this.relayOnce();
        failures = 0;
        if (sent === 0) await sleep(this.settings.projectorIdleMs);
      } catch (error) {
        failures += 1;
        if (failures === 1 || failures % 50 === 0)
          this.logger.error(`relaying health changes failed (${failures}x), retrying: ${(error as Error).message}`);
        await sleep(Math.min(5000, 100 * failures));
      }
    }
  }

  /** One batch from the outbox to Kafka; returns how many messages it produced. */
  async relayOnce(): Promise<number> {
    return this.db.transaction(async (tx) => {
      if (!(await takeRelayTurn(tx))) return 0;
      const batch = await readHealthOutbox(tx, RELAY_BATCH);
      if (batch.length === 0) return 0;
      const spans: Span[] = [];
      const messages = batch.map((m) => this.toMessage(m, spans));
      try {
        await this.producer.send({ topic: this.settings.topics.health, acks: -1, messages });
      } finally {
        for (const span of spans) span.end();
      }
      await deleteHealthOutbox(
        tx,
        batch.map((m) => m.id),
      );
      this.produced += batch.length;
      return batch.length;
    });
  }

  /**
   * The Kafka message of an outbox row. A row written by a traced step carries its trace context:
   * with tracing on, the message is sent in a PRODUCER span, child of that step, linked to the call
   * events behind the change, and carries the span's context in its headers; with tracing off, it
   * carries the step's context as stored.
   */
  private toMessage(m: OutboxMessage, spans: Span[]): Message {
    const message: Message = { key: `${m.orgId}:${m.connectionId}`, value: m.message };
    if (m.traceContext === null) return message;
    const [step, ...calls] = m.traceContext.split('\n');
    if (!tracingOn()) {
      message.headers = traceHeaders(step);
      return message;
    }
    const span = serviceTracer().startSpan(
      `send ${this.settings.topics.health}`,
      {
        kind: SpanKind.PRODUCER,
        links: linksTo(calls, { 'psp.link': 'call' }),
        attributes: {
          [MESSAGING.system]: 'kafka',
          [MESSAGING.operationType]: 'send',
          [MESSAGING.operationName]: 'send',
          [MESSAGING.destination]: this.settings.topics.health,
          'psp.health_change.event_id': JSON.parse(m.message).event_id,
        },
      },
      contextOf(step),
    );
    spans.push(span);
    message.headers = traceHeaders(traceContextText(span.spanContext()));
    return message;
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.running = false;
    await this.loop;
    await this.producer.disconnect().catch(() => undefined);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
