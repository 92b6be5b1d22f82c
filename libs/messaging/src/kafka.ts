import { Kafka, logLevel as KafkaLogLevel, LogEntry } from 'kafkajs';
import { Settings } from '@psp/config';

/** The three topics the write side consumes, in a fixed order. */
export function intakeTopics(settings: Settings): string[] {
  return [settings.topics.calls, settings.topics.validations, settings.topics.connections];
}

/**
 * A kafkajs client. Its log lines go through `log` (never message values: they may carry credentials).
 */
export function createKafka(
  settings: Settings,
  clientId: string,
  log?: (level: string, message: string) => void,
): Kafka {
  return new Kafka({
    clientId: `${settings.kafkaClientId}-${clientId}`,
    brokers: settings.kafkaBrokers,
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { initialRetryTime: 200, retries: 8 },
    logLevel: KafkaLogLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, error } = entry as { message: string; error?: string };
        const levelName = level <= KafkaLogLevel.ERROR ? 'error' : 'warn';
        (log ?? ((l, m) => console.error(`[kafka] ${l}: ${m}`)))(levelName, error ? `${message}: ${error}` : message);
      },
  });
}

/** Creates any of the service's topics that is missing; returns the names it created. */
export async function ensureTopics(kafka: Kafka, settings: Settings): Promise<string[]> {
  const wanted = [...intakeTopics(settings), settings.topics.dlq, settings.topics.health];
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = wanted.filter((t) => !existing.has(t));
    if (missing.length === 0) return [];
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((topic) => ({ topic, numPartitions: settings.topicPartitions, replicationFactor: 1 })),
      });
    } catch (error) {
      // Another instance may have created them at the same moment; only fail when they are still missing.
      const now = new Set(await admin.listTopics());
      if (missing.some((t) => !now.has(t))) throw error;
    }
    return missing;
  } finally {
    await admin.disconnect();
  }
}
