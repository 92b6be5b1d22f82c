/**
 * The service's settings, read from the environment and validated once at start. A missing or
 * malformed setting stops the process with one line naming it (`InvalidSettingError`). Defaults
 * work on the local stack (scripts/services-start.sh) with no .env file.
 */
export interface Settings {
  databaseUrl: string;
  redisUrl: string;
  /** Prefix of every Redis key this service writes: lets test runs and deployments share a server. */
  redisKeyPrefix: string;
  kafkaBrokers: string[];
  kafkaClientId: string;
  /** Intake topics, the DLQ, and `health` (connection.health_changed, produced by this service). */
  topics: { calls: string; validations: string; connections: string; dlq: string; health: string };
  topicPartitions: number;
  writerGroupId: string;
  httpHost: string;
  httpPort: number;
  /** How long an API instance may trust a cached key lookup (revocation takes effect within it). */
  apiKeyCacheMs: number;
  /** Bytes of valid (found) key lookups an API instance caches, least recently used evicted first. */
  apiKeyCacheBytes: number;
  /** Key lookups that found nothing, cached apart from valid keys: at most this many entries... */
  apiKeyMissCacheEntries: number;
  /** ...and at most this many bytes of them. */
  apiKeyMissCacheBytes: number;
  /** Byte budget of the API's rendered response bodies, across all orgs (least recently used evicted first). */
  apiResponseCacheBytes: number;
  /**
   * Byte budget of the orgs' read models an API instance keeps in memory: seven eighths as stored
   * (off the heap), one eighth parsed (least recently used evicted first; no count bound).
   */
  apiOrgCacheBytes: number;
  /**
   * V8's heap growing factor for the API process, as (1 + percent/100); 0 leaves V8's own (up to 4×
   * what is live, which lets a heap with 100 MB live reach 400 MB before a full collection).
   */
  apiHeapGrowingPercent: number;
  /** A request whose line and headers have not all arrived after this long is answered 408. */
  httpHeadersTimeoutMs: number;
  /** A request that has not wholly arrived after this long is answered 408 (at least httpHeadersTimeoutMs). */
  httpRequestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this long. */
  httpKeepAliveTimeoutMs: number;
  /** Open connections the API accepts at once; connections past it are closed on arrival. */
  httpMaxConnections: number;
  /** Requests per org per fixed one-minute window, counted in Redis across every API instance; 0: no limit. */
  rateLimitPerMinute: number;
  /** Failed authentications (401) per client address per one-minute window before 429; 0: no limit. */
  rateLimitFailedAuthPerMinute: number;
  projectorBatchSize: number;
  /** The most events a step of a shard that is behind reads (steps grow from PROJECTOR_BATCH_SIZE). */
  projectorMaxBatchSize: number;
  /**
   * What one step may hold in the heap (its events, the states it changes, the rows it writes), as
   * estimated: a step that held more is followed by a proportionally smaller one (nextStepLimit).
   */
  projectorStepBytes: number;
  /** How long one step may take, ms: a step that took longer is followed by a proportionally smaller one (not below the batch size). */
  projectorStepMs: number;
  /** Shards a projector steps at once (each step a transaction of its own); PROJECTOR_STEP_BYTES is shared by them. */
  projectorConcurrency: number;
  projectorIdleMs: number;
  /** Bytes of connection states the projector keeps in memory (least recently used ones go first). */
  projectorStateCacheBytes: number;
  /** Resident memory above which the projector sheds the least recently used half of its state cache. */
  projectorRssShedBytes: number;
  /** How often a projector counts the projectors and takes or releases shards toward its fair share. */
  projectorRebalanceMs: number;
  /** Bytes of stream versions the writer keeps in memory (least recently used ones go first). */
  writerStreamCacheBytes: number;
  /**
   * Percent of V8's heap bound (`heap_size_limit`) that may stay live after a full garbage collection
   * before the writer sheds memory (older half of its stream versions, half the waiting room).
   */
  writerHeapShedPercent: number;
  /** Width of an event-log partition, in whole UTC days (ranges of recorded_at, the time of the append). */
  logPartitionDays: number;
  /** Days ahead of now the writer keeps event-log partitions created. */
  logPartitionsAheadDays: number;
  /** Compact (fold into summaries), archive when LOG_ARCHIVE_DIR is set, and drop partitions older than this many days; 0: never. */
  logRetainDays: number;
  /** How often the writer creates partitions ahead and applies retention. */
  logMaintenanceMs: number;
  /** Where partitions are archived before retention (or `log compact --drop`) drops them; null: not archived. */
  logArchiveDir: string | null;
  logLevel: 'error' | 'warn' | 'log' | 'debug';
  /** `json` (one JSON object a line) or `pretty` (readable in a terminal). */
  logFormat: 'json' | 'pretty';
  /** Port of the writer's or projector's own /metrics server (run alone); null: the process's default; 0: off. */
  metricsPort: number | null;
}

export class InvalidSettingError extends Error {
  constructor(
    readonly setting: string,
    reason: string,
  ) {
    super(`Invalid setting ${setting}: ${reason}`);
    this.name = 'InvalidSettingError';
  }
}

type Env = Record<string, string | undefined>;

function text(env: Env, name: string, fallback: string, pattern?: RegExp, rule?: string): string {
  const raw = env[name];
  const value = raw === undefined || raw.trim() === '' ? fallback : raw.trim();
  if (pattern && !pattern.test(value)) throw new InvalidSettingError(name, rule ?? `must match ${pattern}`);
  return value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new InvalidSettingError(name, `must be an integer between ${min} and ${max}`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new InvalidSettingError(name, `must be an integer between ${min} and ${max}`);
  return value;
}

function url(env: Env, name: string, fallback: string, protocols: string[]): string {
  const value = text(env, name, fallback);
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new InvalidSettingError(name, `must be a URL (${protocols.join(' or ')})`);
  }
  if (!protocols.includes(parsed.protocol))
    throw new InvalidSettingError(name, `must be a URL (${protocols.join(' or ')})`);
  return value;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** Default bound of the projector's state cache (PROJECTOR_STATE_CACHE_BYTES). */
export const DEFAULT_PROJECTOR_STATE_CACHE_BYTES = 128 * MiB;
/** Default of what one projection step may hold in the heap, as estimated (PROJECTOR_STEP_BYTES). */
export const DEFAULT_PROJECTOR_STEP_BYTES = 64 * MiB;
/** Default of how long one projection step may take, ms (PROJECTOR_STEP_MS). */
export const DEFAULT_PROJECTOR_STEP_MS = 3000;
/** Default of the most events one step of a shard that is behind reads (PROJECTOR_MAX_BATCH_SIZE). */
export const DEFAULT_PROJECTOR_MAX_BATCH_SIZE = 100000;

const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;
const TOPIC_RULE = 'must be a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)';

export function loadSettings(env: Env = process.env): Settings {
  const brokers = text(
    env,
    'KAFKA_BROKERS',
    '127.0.0.1:9092',
    /^[^,\s]+:\d+(,[^,\s]+:\d+)*$/,
    'must be host:port[,host:port...]',
  ).split(',');
  const logLevel = text(env, 'LOG_LEVEL', 'log', /^(error|warn|log|debug)$/, 'must be one of error, warn, log, debug');
  const httpHeadersTimeoutMs = integer(env, 'HTTP_HEADERS_TIMEOUT_MS', 10000, 100, 600000);
  const httpRequestTimeoutMs = integer(env, 'HTTP_REQUEST_TIMEOUT_MS', 30000, 100, 3600000);
  // Node refuses a header timeout longer than the request timeout.
  if (httpRequestTimeoutMs < httpHeadersTimeoutMs)
    throw new InvalidSettingError('HTTP_REQUEST_TIMEOUT_MS', 'must be at least HTTP_HEADERS_TIMEOUT_MS');
  return {
    databaseUrl: url(env, 'DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/psp_connections', [
      'postgres:',
      'postgresql:',
    ]),
    redisUrl: url(env, 'REDIS_URL', 'redis://127.0.0.1:6379/0', ['redis:', 'rediss:']),
    redisKeyPrefix: text(
      env,
      'REDIS_KEY_PREFIX',
      'psp:',
      /^[A-Za-z0-9:_.-]{1,64}$/,
      'must be 1-64 of A-Z a-z 0-9 : _ . -',
    ),
    kafkaBrokers: brokers,
    kafkaClientId: text(
      env,
      'KAFKA_CLIENT_ID',
      'psp-connections',
      /^[A-Za-z0-9._-]{1,100}$/,
      'must be 1-100 of A-Z a-z 0-9 . _ -',
    ),
    topics: {
      calls: text(env, 'TOPIC_CALLS', 'psp.calls', TOPIC, TOPIC_RULE),
      validations: text(env, 'TOPIC_VALIDATIONS', 'psp.validations', TOPIC, TOPIC_RULE),
      connections: text(env, 'TOPIC_CONNECTIONS', 'psp.connections', TOPIC, TOPIC_RULE),
      dlq: text(env, 'TOPIC_DLQ', 'psp.dlq', TOPIC, TOPIC_RULE),
      health: text(env, 'TOPIC_HEALTH', 'psp.connection-health', TOPIC, TOPIC_RULE),
    },
    topicPartitions: integer(env, 'TOPIC_PARTITIONS', 6, 1, 1000),
    writerGroupId: text(
      env,
      'WRITER_GROUP_ID',
      'psp-connections-writer',
      /^[A-Za-z0-9._-]{1,200}$/,
      'must be 1-200 of A-Z a-z 0-9 . _ -',
    ),
    httpHost: text(env, 'HTTP_HOST', '127.0.0.1'),
    httpPort: integer(env, 'HTTP_PORT', 8081, 0, 65535),
    apiKeyCacheMs: integer(env, 'API_KEY_CACHE_MS', 2000, 0, 5000),
    apiKeyCacheBytes: integer(env, 'API_KEY_CACHE_BYTES', 16 * MiB, 64 * KiB, 1024 * MiB),
    apiKeyMissCacheEntries: integer(env, 'API_KEY_MISS_CACHE_ENTRIES', 1000, 0, 1000000),
    apiKeyMissCacheBytes: integer(env, 'API_KEY_MISS_CACHE_BYTES', 256 * KiB, 16 * KiB, 256 * MiB),
    apiResponseCacheBytes: integer(env, 'API_RESPONSE_CACHE_BYTES', 128 * MiB, 1 * MiB, 16384 * MiB),
    apiOrgCacheBytes: integer(env, 'API_ORG_CACHE_BYTES', 192 * MiB, 1 * MiB, 16384 * MiB),
    apiHeapGrowingPercent: integer(env, 'API_HEAP_GROWING_PERCENT', 50, 0, 300),
    httpHeadersTimeoutMs,
    httpRequestTimeoutMs,
    httpKeepAliveTimeoutMs: integer(env, 'HTTP_KEEP_ALIVE_TIMEOUT_MS', 5000, 100, 600000),
    httpMaxConnections: integer(env, 'HTTP_MAX_CONNECTIONS', 10000, 1, 1000000),
    rateLimitPerMinute: integer(env, 'RATE_LIMIT_PER_MINUTE', 1000, 0, 1000000000),
    rateLimitFailedAuthPerMinute: integer(env, 'RATE_LIMIT_FAILED_AUTH_PER_MINUTE', 60, 0, 1000000000),
    projectorBatchSize: integer(env, 'PROJECTOR_BATCH_SIZE', 5000, 1, 100000),
    projectorMaxBatchSize: integer(env, 'PROJECTOR_MAX_BATCH_SIZE', DEFAULT_PROJECTOR_MAX_BATCH_SIZE, 1, 1000000),
    projectorStepBytes: integer(env, 'PROJECTOR_STEP_BYTES', DEFAULT_PROJECTOR_STEP_BYTES, 1 * MiB, 16 * 1024 * MiB),
    projectorStepMs: integer(env, 'PROJECTOR_STEP_MS', DEFAULT_PROJECTOR_STEP_MS, 100, 600000),
    projectorConcurrency: integer(env, 'PROJECTOR_CONCURRENCY', 1, 1, 16),
    projectorIdleMs: integer(env, 'PROJECTOR_IDLE_MS', 50, 1, 60000),
    projectorStateCacheBytes: integer(
      env,
      'PROJECTOR_STATE_CACHE_BYTES',
      DEFAULT_PROJECTOR_STATE_CACHE_BYTES,
      64 * KiB,
      64 * 1024 * MiB,
    ),
    projectorRebalanceMs: integer(env, 'PROJECTOR_REBALANCE_MS', 1000, 50, 60000),
    projectorRssShedBytes: integer(env, 'PROJECTOR_RSS_SHED_BYTES', 448 * MiB, 64 * MiB, 64 * 1024 * MiB),
    writerStreamCacheBytes: integer(env, 'WRITER_STREAM_CACHE_BYTES', 16 * MiB, 16, 4096 * MiB),
    writerHeapShedPercent: integer(env, 'WRITER_HEAP_SHED_PERCENT', 60, 1, 100),
    logPartitionDays: integer(env, 'LOG_PARTITION_DAYS', 1, 1, 366),
    logPartitionsAheadDays: integer(env, 'LOG_PARTITIONS_AHEAD_DAYS', 3, 1, 366),
    logRetainDays: integer(env, 'LOG_RETAIN_DAYS', 0, 0, 1000000),
    logMaintenanceMs: integer(env, 'LOG_MAINTENANCE_MS', 600000, 100, 86400000),
    logArchiveDir: env.LOG_ARCHIVE_DIR?.trim() ? env.LOG_ARCHIVE_DIR.trim() : null,
    logLevel: logLevel as Settings['logLevel'],
    logFormat: text(env, 'LOG_FORMAT', 'json', /^(json|pretty)$/, 'must be json or pretty') as Settings['logFormat'],
    metricsPort: env.METRICS_PORT?.trim() ? integer(env, 'METRICS_PORT', 0, 0, 65535) : null,
  };
}
