import { InvalidSettingError, loadSettings } from './settings';

describe('loadSettings', () => {
  it('has defaults that work on the local stack', () => {
    const s = loadSettings({});
    expect(s.databaseUrl).toBe('postgres://postgres@127.0.0.1:5432/psp_connections');
    expect(s.kafkaBrokers).toEqual(['127.0.0.1:9092']);
    expect(s.topics).toEqual({
      calls: 'psp.calls',
      validations: 'psp.validations',
      connections: 'psp.connections',
      dlq: 'psp.dlq',
      health: 'psp.connection-health',
    });
    expect(s.topicPartitions).toBe(6);
    expect(s.httpPort).toBe(8081);
  });

  it('has bounded HTTP timeouts, connections and caches by default', () => {
    const s = loadSettings({});
    expect(s.httpHeadersTimeoutMs).toBe(10000);
    expect(s.httpRequestTimeoutMs).toBe(30000);
    expect(s.httpKeepAliveTimeoutMs).toBe(5000);
    expect(s.httpMaxConnections).toBe(10000);
    expect(s.apiResponseCacheBytes).toBe(128 * 1024 * 1024);
    expect(s.apiOrgCacheBytes).toBe(192 * 1024 * 1024);
    expect(s.apiKeyCacheBytes).toBe(16 * 1024 * 1024);
    expect(s.apiKeyMissCacheEntries).toBe(1000);
    expect(s.apiKeyMissCacheBytes).toBe(256 * 1024);
    expect(s.apiHeapGrowingPercent).toBe(50);
  });

  it('limits 1,000 requests per org and 60 failed authentications per address a minute by default; 0 turns each off', () => {
    const s = loadSettings({});
    expect(s.rateLimitPerMinute).toBe(1000);
    expect(s.rateLimitFailedAuthPerMinute).toBe(60);
    const off = loadSettings({ RATE_LIMIT_PER_MINUTE: '0', RATE_LIMIT_FAILED_AUTH_PER_MINUTE: '0' });
    expect(off.rateLimitPerMinute).toBe(0);
    expect(off.rateLimitFailedAuthPerMinute).toBe(0);
  });

  it('logs JSON at log level by default; METRICS_PORT unset leaves the process its default, 0 turns it off', () => {
    const s = loadSettings({});
    expect([s.logFormat, s.logLevel, s.metricsPort]).toEqual(['json', 'log', null]);
    const set = loadSettings({ LOG_FORMAT: 'pretty', METRICS_PORT: '9999' });
    expect([set.logFormat, set.metricsPort]).toEqual(['pretty', 9999]);
    expect(loadSettings({ METRICS_PORT: '0' }).metricsPort).toBe(0);
  });

  it('reads overrides', () => {
    const s = loadSettings({ KAFKA_BROKERS: 'a:1,b:2', TOPIC_PARTITIONS: '3', TOPIC_DLQ: 'x.dlq' });
    expect(s.kafkaBrokers).toEqual(['a:1', 'b:2']);
    expect(s.topicPartitions).toBe(3);
    expect(s.topics.dlq).toBe('x.dlq');
  });

  it.each([
    ['HTTP_PORT', 'eighty', 'HTTP_PORT'],
    ['HTTP_PORT', '70000', 'HTTP_PORT'],
    ['DATABASE_URL', 'mysql://x', 'DATABASE_URL'],
    ['REDIS_URL', 'not a url', 'REDIS_URL'],
    ['KAFKA_BROKERS', 'localhost', 'KAFKA_BROKERS'],
    ['TOPIC_CALLS', 'bad topic', 'TOPIC_CALLS'],
    ['API_KEY_CACHE_MS', '6000', 'API_KEY_CACHE_MS'],
    ['LOG_LEVEL', 'verbose', 'LOG_LEVEL'],
    ['LOG_FORMAT', 'text', 'LOG_FORMAT'],
    ['METRICS_PORT', '65536', 'METRICS_PORT'],
    ['METRICS_PORT', 'on', 'METRICS_PORT'],
    ['HTTP_HEADERS_TIMEOUT_MS', '0', 'HTTP_HEADERS_TIMEOUT_MS'],
    ['HTTP_REQUEST_TIMEOUT_MS', '5000', 'HTTP_REQUEST_TIMEOUT_MS'], // shorter than the 10 s header timeout
    ['HTTP_KEEP_ALIVE_TIMEOUT_MS', '0', 'HTTP_KEEP_ALIVE_TIMEOUT_MS'],
    ['HTTP_MAX_CONNECTIONS', '0', 'HTTP_MAX_CONNECTIONS'],
    ['API_RESPONSE_CACHE_BYTES', '1000', 'API_RESPONSE_CACHE_BYTES'],
    ['API_ORG_CACHE_BYTES', '64MiB', 'API_ORG_CACHE_BYTES'],
    ['API_KEY_CACHE_BYTES', '-1', 'API_KEY_CACHE_BYTES'],
    ['API_KEY_MISS_CACHE_BYTES', '10', 'API_KEY_MISS_CACHE_BYTES'],
    ['RATE_LIMIT_PER_MINUTE', '-1', 'RATE_LIMIT_PER_MINUTE'],
    ['RATE_LIMIT_FAILED_AUTH_PER_MINUTE', '1.5', 'RATE_LIMIT_FAILED_AUTH_PER_MINUTE'],
    ['WRITER_STREAM_CACHE_BYTES', '8', 'WRITER_STREAM_CACHE_BYTES'],
    ['WRITER_STREAM_CACHE_BYTES', 'lots', 'WRITER_STREAM_CACHE_BYTES'],
    ['WRITER_HEAP_SHED_PERCENT', '0', 'WRITER_HEAP_SHED_PERCENT'],
    ['WRITER_HEAP_SHED_PERCENT', '101', 'WRITER_HEAP_SHED_PERCENT'],
    ['API_HEAP_GROWING_PERCENT', '-1', 'API_HEAP_GROWING_PERCENT'],
    ['API_HEAP_GROWING_PERCENT', '1e9', 'API_HEAP_GROWING_PERCENT'],
    ['PROJECTOR_STATE_CACHE_BYTES', '-5', 'PROJECTOR_STATE_CACHE_BYTES'],
    ['PROJECTOR_STEP_BYTES', '0', 'PROJECTOR_STEP_BYTES'],
    ['PROJECTOR_STEP_BYTES', '1024', 'PROJECTOR_STEP_BYTES'],
    ['PROJECTOR_STEP_BYTES', '64MiB', 'PROJECTOR_STEP_BYTES'],
    ['PROJECTOR_STEP_BYTES', '1e30', 'PROJECTOR_STEP_BYTES'],
    ['PROJECTOR_STEP_MS', '0', 'PROJECTOR_STEP_MS'],
    ['PROJECTOR_STEP_MS', '3s', 'PROJECTOR_STEP_MS'],
    ['PROJECTOR_STEP_MS', '1e12', 'PROJECTOR_STEP_MS'],
    ['PROJECTOR_CONCURRENCY', '0', 'PROJECTOR_CONCURRENCY'],
    ['PROJECTOR_CONCURRENCY', '17', 'PROJECTOR_CONCURRENCY'],
    ['PROJECTOR_CONCURRENCY', '2.5', 'PROJECTOR_CONCURRENCY'],
    ['PROJECTOR_MAX_BATCH_SIZE', '0', 'PROJECTOR_MAX_BATCH_SIZE'],
    ['PROJECTOR_MAX_BATCH_SIZE', '1000001', 'PROJECTOR_MAX_BATCH_SIZE'],
  ])('rejects %s=%s with one line naming it', (name, value, named) => {
    let error: unknown;
    try {
      loadSettings({ [name]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidSettingError);
    expect((error as Error).message).toContain(named);
    expect((error as Error).message).not.toContain('\n');
  });
});
