import { Kafka } from 'kafkajs';
import { ensureTopics, intakeTopics } from '@psp/messaging';
import { isolatedSettings } from '../support/isolated-stack';
import { testServers } from '../support/servers';

/**
 * A produce right after the service creates its topics (CI once failed on this: "This server is not
 * the leader for that topic-partition", and a retrying producer wrote messages twice). ensureTopics
 * returns only once every partition's leader answers, whether this call created the topics or
 * another process did a moment before; so a producer that never retries gets every message in,
 * once, at once.
 */
describe('ensureTopics waits until every partition has a leader that answers', () => {
  const kafka = new Kafka({ clientId: 'topic-readiness', brokers: testServers().kafkaBrokers.split(','), logLevel: 0 });

  async function produceOncePerPartition(topics: string[], partitions: number): Promise<void> {
    // No retries: a partition whose leader is not ready yet fails the send instead of being retried.
    const producer = kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 0 } });
    await producer.connect();
    try {
      await producer.sendBatch({
        acks: -1,
        topicMessages: topics.map((topic) => ({
          topic,
          messages: Array.from({ length: partitions }, (_, partition) => ({ partition, value: `m${partition}` })),
        })),
      });
    } finally {
      await producer.disconnect();
    }
  }

  async function highWatermarks(topic: string): Promise<number[]> {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets(topic);
      return offsets.sort((a, b) => a.partition - b.partition).map((o) => Number(o.high));
    } finally {
      await admin.disconnect();
    }
  }

  it.each([1, 2, 3])(
    'round %i: created topics take a produce to every partition at once, each message once',
    async () => {
      const settings = isolatedSettings('topicready', { TOPIC_PARTITIONS: '6' });
      const created = await ensureTopics(kafka, settings);
      const topics = [...intakeTopics(settings), settings.topics.dlq, settings.topics.health];
      expect(created.sort()).toEqual([...topics].sort());
      await produceOncePerPartition(topics, 6);
      for (const topic of topics) expect(await highWatermarks(topic)).toEqual([1, 1, 1, 1, 1, 1]);
    },
  );

  it('two processes starting together: the one that finds the topics created by the other waits too', async () => {
    const settings = isolatedSettings('topicready2', { TOPIC_PARTITIONS: '6' });
    const [a, b] = await Promise.all([ensureTopics(kafka, settings), ensureTopics(kafka, settings)]);
    expect([...a, ...b].length).toBeGreaterThanOrEqual(5);
    const topics = [...intakeTopics(settings), settings.topics.dlq, settings.topics.health];
    await produceOncePerPartition(topics, 6);
    for (const topic of topics) expect(await highWatermarks(topic)).toEqual([1, 1, 1, 1, 1, 1]);
  });
});
