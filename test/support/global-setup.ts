import { answers, dockerAvailable, SERVERS_ENV, TestServers } from './servers';

type Stoppable = { stop(): Promise<unknown> };

/**
 * Finds real servers for the integration tests, in this order:
 * 1. TEST_DATABASE_URL / TEST_REDIS_URL / TEST_KAFKA_BROKERS when set;
 * 2. the local servers on 127.0.0.1 (scripts/services-start.sh starts them, Kafka included);
 * 3. testcontainers, when Docker is present, for whichever of the three is missing.
 * Each test file then isolates itself: its own database, topics, consumer groups and Redis prefix.
 */
export default async function globalSetup(): Promise<void> {
  const containers: Stoppable[] = [];
  const servers: TestServers = {
    databaseUrl: process.env.TEST_DATABASE_URL ?? '',
    redisUrl: process.env.TEST_REDIS_URL ?? '',
    kafkaBrokers: process.env.TEST_KAFKA_BROKERS ?? '',
  };
  if (!servers.databaseUrl && (await answers('127.0.0.1', 5432)))
    servers.databaseUrl = 'postgres://postgres@127.0.0.1:5432/postgres';
  if (!servers.redisUrl && (await answers('127.0.0.1', 6379))) servers.redisUrl = 'redis://127.0.0.1:6379/0';
  if (!servers.kafkaBrokers && (await answers('127.0.0.1', 9092))) servers.kafkaBrokers = '127.0.0.1:9092';

  const missing = Object.entries(servers)
    .filter(([, v]) => !v)
    .map(([k]) => k);
  if (missing.length > 0) {
    if (!dockerAvailable()) {
      throw new Error(
        `integration tests need PostgreSQL, Redis and Kafka; not reachable: ${missing.join(', ')}. Run: npm run stack:up`,
      );
    }
    if (!servers.databaseUrl) {
      const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
      const pg = await new PostgreSqlContainer('postgres:16-alpine')
        .withUsername('postgres')
        .withPassword('postgres')
        .withDatabase('postgres')
        .start();
      containers.push(pg);
      servers.databaseUrl = pg.getConnectionUri();
    }
    if (!servers.redisUrl) {
      const { RedisContainer } = await import('@testcontainers/redis');
      const redis = await new RedisContainer('redis:7-alpine').start();
      containers.push(redis);
      servers.redisUrl = redis.getConnectionUrl();
    }
    if (!servers.kafkaBrokers) {
      const { KafkaContainer } = await import('@testcontainers/kafka');
      const kafka = await new KafkaContainer('confluentinc/cp-kafka:7.7.1').withKraft().start();
      containers.push(kafka);
      servers.kafkaBrokers = `${kafka.getHost()}:${kafka.getMappedPort(9093)}`;
    }
  }
  process.env[SERVERS_ENV] = JSON.stringify(servers);
  (globalThis as { __pspContainers?: Stoppable[] }).__pspContainers = containers;
}
