import { Consumer, ConsumerRunConfig } from 'kafkajs';
import { restartWhenCrashed } from '@psp/messaging';
import { eventually, IsolatedStack, openIsolatedStack } from '../support/isolated-stack';

/**
 * A kafkajs consumer that crashes with an error kafkajs does not restart on (issue 19: the writer's
 * consumer never rejoined after one broker restart) consumes again once `restartWhenCrashed` runs it
 * again. The crash is forced on a real broker: the handler throws once an error kafkajs gives up on at
 * once (named KafkaJSNotImplemented: its fetch loop bails on that name, and it is not retriable).
 */
describe('restartWhenCrashed', () => {
  let stack: IsolatedStack;

  beforeAll(async () => {
    stack = await openIsolatedStack('consumercrash');
  });

  afterAll(async () => {
    await stack?.close();
  });

  /** A consumer of the calls topic whose handler fails once, on the first message it sees. */
  async function crashingConsumer(group: string, withRestart: boolean) {
    const seen = new Set<string>();
    const crashes: boolean[] = [];
    let failed = false;
    const consumer: Consumer = stack.kafka.consumer({ groupId: `${stack.settings.writerGroupId}.${group}` });
    consumer.on(consumer.events.CRASH, ({ payload }) => crashes.push(payload.restart));
    const config: ConsumerRunConfig = {
      eachMessage: async ({ message }) => {
        if (!failed) {
          failed = true;
          const error = new Error('forced: not restarted by kafkajs');
          error.name = 'KafkaJSNotImplemented';
          throw error;
        }
        seen.add(message.value!.toString());
      },
    };
    if (withRestart)
      restartWhenCrashed(consumer, {
        closing: () => false,
        report: () => undefined,
        // As the writer does: after a pause (kafkajs is still closing the crashed consumer's connections).
        restart: () => {
          setTimeout(() => void consumer.connect().then(() => consumer.run(config)), 500);
        },
      });
    await consumer.connect();
    await consumer.subscribe({ topic: stack.settings.topics.calls, fromBeginning: true });
    await consumer.run(config);
    return { consumer, seen, crashes };
  }

  it('runs the consumer again after a crash kafkajs leaves alone; without it, nothing more is consumed', async () => {
    const values = Array.from({ length: 20 }, (_, i) => `m${i}`);
    await stack.producer.send({ topic: stack.settings.topics.calls, messages: values.map((value) => ({ value })) });

    const restarted = await crashingConsumer('with-restart', true);
    const alone = await crashingConsumer('alone', false);
    try {
      // Every message, the one it failed on included (its offset was not committed).
      await eventually(
        () => Promise.resolve(restarted.seen.size),
        (n) => n === values.length,
        30000,
        'every message consumed after the restart',
      );
      expect(restarted.crashes).toEqual([false]);
      // The consumer left alone crashed the same way and consumed nothing more after it.
      await eventually(
        () => Promise.resolve(alone.crashes.length),
        (n) => n === 1,
        15000,
        'the other consumer crashed',
      );
      // (other partitions' batches of the same fetch may have been handled before the crash)
      const atCrash = alone.seen.size;
      await new Promise((r) => setTimeout(r, 3000));
      expect(alone.crashes).toEqual([false]);
      expect(alone.seen.size).toBe(atCrash);
      expect(alone.seen.size).toBeLessThan(values.length);
    } finally {
      await restarted.consumer.disconnect();
      await alone.consumer.disconnect();
    }
  });
});
