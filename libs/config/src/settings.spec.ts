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
    });
    expect(s.topicPartitions).toBe(6);
    expect(s.httpPort).toBe(8081);
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
