import { randomBytes } from 'node:crypto';
import { Kafka, Producer } from 'kafkajs';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { loadSettings, Settings } from '@psp/config';
import { ensureTopics } from '@psp/messaging';
import { createDataSource, migrate } from '@psp/storage';
import { testServers } from './servers';

/**
 * Settings of one isolated run: its own database, topics, consumer group and Redis key prefix, on
 * the shared test servers. Reruns and parallel runs never see each other's data.
 */
export function isolatedSettings(label: string, overrides: Record<string, string> = {}): Settings {
  return loadSettings(isolatedEnv(label, overrides));
}

/** The environment of an isolated run, to start the service's processes with. */
export function isolatedEnv(label: string, overrides: Record<string, string> = {}): Record<string, string> {
  const servers = testServers();
  const id = `${label.replace(/[^a-z0-9]/g, '')}_${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const db = new URL(servers.databaseUrl);
  db.pathname = `/psp_test_${id}`;
  return {
    DATABASE_URL: db.toString(),
    REDIS_URL: servers.redisUrl,
    REDIS_KEY_PREFIX: `test:${id}:`,
    KAFKA_BROKERS: servers.kafkaBrokers,
    KAFKA_CLIENT_ID: `test-${id}`.slice(0, 100),
    TOPIC_CALLS: `t.${id}.psp.calls`,
    TOPIC_VALIDATIONS: `t.${id}.psp.validations`,
    TOPIC_CONNECTIONS: `t.${id}.psp.connections`,
    TOPIC_DLQ: `t.${id}.psp.dlq`,
    TOPIC_HEALTH: `t.${id}.psp.connection-health`,
    TOPIC_PARTITIONS: '3',
    WRITER_GROUP_ID: `t.${id}.writer`,
    HTTP_PORT: '0',
    API_KEY_CACHE_MS: '1000',
    PROJECTOR_IDLE_MS: '20',
    // Rate limits off: the tests poll far past 1,000 requests a minute per org and send many 401s from
    // one address. rate-limits.test.ts turns them on for itself.
    RATE_LIMIT_PER_MINUTE: '0',
    RATE_LIMIT_FAILED_AUTH_PER_MINUTE: '0',
    ...overrides,
  };
}

/** Creates the run's database and migrates it; returns a DataSource on it. */
export async function openDatabase(settings: Settings): Promise<DataSource> {
  await migrate(settings.databaseUrl);
  return createDataSource(settings.databaseUrl, { poolSize: 4, applicationName: 'psp-connections-test' }).initialize();
}

/** Drops the run's database and Redis keys (topics are left; their names are unique to the run). */
export async function dropIsolated(settings: Settings): Promise<void> {
  const url = new URL(settings.databaseUrl);
  const name = url.pathname.slice(1);
  url.pathname = '/postgres';
  const admin = new DataSource({ type: 'postgres', url: url.toString() });
  await admin.initialize();
  await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await admin.destroy();
  const redis = new Redis(settings.redisUrl);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${settings.redisKeyPrefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
  redis.disconnect();
}

/**
 * A connected producer for the run. With `createTopics`, the run's topics are created first (as the
 * writer does at start), for tests that produce before any writer runs.
 */
export async function testProducer(
  settings: Settings,
  options: { createTopics?: boolean } = {},
): Promise<{ kafka: Kafka; producer: Producer }> {
  const kafka = new Kafka({
    clientId: `${settings.kafkaClientId}-producer`,
    brokers: settings.kafkaBrokers,
    logLevel: 1,
  });
  // ensureTopics waits until every partition's leader answers (a produce right after creating a
  // topic can otherwise be refused). Idempotent: a retried send is never written twice.
  if (options.createTopics) await ensureTopics(kafka, settings);
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  return { kafka, producer };
}

/** Polls `probe` until it returns a value that `done` accepts, or fails after `timeoutMs`. */
export async function eventually<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 30000,
  label = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (done(last)) return last;
    } catch (error) {
      lastError = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `timed out waiting for ${label}; last value: ${JSON.stringify(last)?.slice(0, 500)}${lastError ? `; last error: ${String(lastError)}` : ''}`,
  );
}

/** One isolated run with its database migrated and a producer on its (created) topics. */
export interface IsolatedStack {
  env: Record<string, string>;
  settings: Settings;
  db: DataSource;
  kafka: Kafka;
  producer: Producer;
  /** Disconnects, and drops the run's database and Redis keys. */
  close(): Promise<void>;
}

/** The setup most process-level tests share: isolatedEnv, openDatabase, testProducer (topics created). */
export async function openIsolatedStack(label: string, overrides: Record<string, string> = {}): Promise<IsolatedStack> {
  const env = isolatedEnv(label, overrides);
  const settings = isolatedSettings('unused', env);
  const db = await openDatabase(settings);
  const { kafka, producer } = await testProducer(settings, { createTopics: true });
  return {
    env,
    settings,
    db,
    kafka,
    producer,
    close: async () => {
      await producer.disconnect();
      await db.destroy();
      await dropIsolated(settings);
    },
  };
}
