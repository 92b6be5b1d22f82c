import { Admin, Kafka, logLevel as KafkaLogLevel, LogEntry } from 'kafkajs';
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

/**
 * Creates any of the service's topics that is missing, then waits until every partition of all of
 * them answers from its leader (waitForPartitionLeaders), whether this call created them or another
 * process did a moment ago; returns the names it created.
 */
export async function ensureTopics(kafka: Kafka, settings: Settings): Promise<string[]> {
  const wanted = [...intakeTopics(settings), settings.topics.dlq, settings.topics.health];
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = wanted.filter((t) => !existing.has(t));
    if (missing.length > 0) {
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
    }
    await waitForPartitionLeaders(admin, wanted);
    return missing;
  } finally {
    await admin.disconnect();
  }
}

/** How long waitForPartitionLeaders waits by default before it fails. */
export const PARTITION_LEADERS_TIMEOUT_MS = 30_000;

/**
 * Waits until every partition of `topics` has a leader that answers a request served by the leader
 * itself (ListOffsets, the same check a produce meets). kafkajs's `waitForLeaders` only waits until
 * the metadata names a leader; right after a topic is created the broker can name itself leader in
 * its metadata before it acts as one, and a produce in that moment is refused ("This server is not
 * the leader for that topic-partition"), which a non-idempotent producer's retries can turn into
 * duplicates. Polls until every topic answers, or fails after `timeoutMs`.
 */
export async function waitForPartitionLeaders(
  admin: Admin,
  topics: string[],
  timeoutMs = PARTITION_LEADERS_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let waiting = [...new Set(topics)];
  let lastError: unknown = null;
  for (let attempt = 0; ; attempt++) {
    const still: string[] = [];
    for (const topic of waiting) {
      try {
        const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
        const partitions = metadata.topics[0]?.partitions ?? [];
        if (partitions.length === 0 || partitions.some((p) => p.leader < 0 || p.partitionErrorCode !== 0))
          throw new Error(`${topic}: a partition has no leader yet`);
        const offsets = await admin.fetchTopicOffsets(topic);
        if (offsets.length !== partitions.length) throw new Error(`${topic}: not every partition answered`);
      } catch (error) {
        lastError = error;
        still.push(topic);
      }
    }
    waiting = still;
    if (waiting.length === 0) return;
    if (Date.now() >= deadline)
      throw new Error(
        `partitions of ${waiting.join(', ')} have no leader answering after ${timeoutMs} ms: ${(lastError as Error)?.message ?? lastError}`,
      );
    await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt)));
  }
}
