import { Inject, Injectable, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Kafka, Message, Partitioners, Producer } from 'kafkajs';
import { SETTINGS, Settings } from '@psp/config';
import { writerMetrics } from './metrics';

/**
 * The writer's DLQ (CONTRACT 2.4): messages it could not accept, unchanged, with the `dlq-*` headers.
 * Sends are acknowledged by every in-sync replica and retried for as long as it takes: a batch's
 * offsets are committed only after its rejected messages are here, so giving up would lose them.
 */
@Injectable()
export class DeadLetters implements OnModuleInit, OnApplicationShutdown {
  private readonly producer: Producer;

  constructor(
    @Inject(Kafka) kafka: Kafka,
    @Inject(SETTINGS) private readonly settings: Settings,
  ) {
    this.producer = kafka.producer({
      allowAutoTopicCreation: false,
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 200, maxRetryTime: 5000 },
    });
  }

  async onModuleInit(): Promise<void> {
    await this.producer.connect();
  }

  /** Resolves once every message is durable in the DLQ topic. */
  async send(messages: Message[]): Promise<void> {
    if (messages.length === 0) return;
    await this.producer.send({ topic: this.settings.topics.dlq, acks: -1, messages });
    writerMetrics().deadLettersSent(messages);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.producer.disconnect().catch(() => undefined);
  }
}
