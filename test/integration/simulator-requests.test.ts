import { Admin, Kafka, Partitioners, Producer, ProducerBatch } from 'kafkajs';
import { Settings } from '@psp/config';
import { createKafka, ensureTopics } from '@psp/messaging';
import { ConnectionEventProducer } from '@psp/producer';
import { MAX_REQUEST_BYTES, recordBytes } from '../../apps/simulator/src/batches';
import { BatchSender } from '../../apps/simulator/src/sender';
import { Emission, seededRandom, SimulatorOptions, Tally, TrafficGenerator } from '../../apps/simulator/src/traffic';
import { isolatedSettings } from '../support/isolated-stack';

/**
 * The simulator against the real broker (issue 19, item 3): a large fleet's configuration, which as
 * one request the broker refuses ("larger than the max message size"), goes out in several requests
 * of at most MAX_REQUEST_BYTES, all of it; a request the broker refuses costs only its own messages.
 */
describe('the simulator sends a large fleet in requests the broker accepts', () => {
  // 10,000 connections: ~6 MB of connection.configured, ~2 MB per partition of the 3: past the
  // broker's 1 MiB message.max.bytes as one request.
  const options: SimulatorOptions = {
    orgs: 2_000,
    connections: 5,
    rate: 1000,
    durationS: 0,
    orgPrefix: 'org_simreq',
    outages: [],
    duplicates: 0,
    bad: 0,
    seed: 19,
  };
  let settings: Settings;
  let kafka: Kafka;
  let admin: Admin;
  let producer: Producer;
  let events: ConnectionEventProducer;
  /** Each request the producer was asked to send: its messages and their bytes (recordBytes). */
  const requests: { messages: number; bytes: number }[] = [];

  async function messagesIn(topic: string): Promise<number> {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((sum, p) => sum + Number(p.high), 0);
  }

  beforeAll(async () => {
    settings = isolatedSettings('simreq');
    kafka = createKafka(settings, 'simulator-requests-test', () => {});
    await ensureTopics(kafka, settings);
    admin = kafka.admin();
    await admin.connect();
    // As apps/simulator/src/main.ts makes it; sendBatch is observed, not replaced: every request
    // goes to the broker.
    producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
    const realSendBatch = producer.sendBatch.bind(producer);
    producer.sendBatch = (batch: ProducerBatch) => {
      const messages = (batch.topicMessages ?? []).flatMap((t) => t.messages);
      requests.push({
        messages: messages.length,
        bytes: messages.reduce((sum, m) => sum + recordBytes(m.key, m.value ?? ''), 0),
      });
      return realSendBatch(batch);
    };
    events = new ConnectionEventProducer(producer, { topics: settings.topics });
    await events.connect();
  });

  afterAll(async () => {
    await events?.disconnect();
    if (admin) {
      const t = settings.topics;
      await admin.deleteTopics({ topics: [t.calls, t.validations, t.connections, t.dlq, t.health] }).catch(() => {});
      await admin.disconnect();
    }
  });

  it('as one request, the configuration of 10,000 connections is refused by the broker (the issue)', async () => {
    const configured = [...new TrafficGenerator(options, seededRandom(1)).start(Date.now())].slice(0, 10_000);
    expect(configured.every((e) => e.type === 'connection.configured')).toBe(true);
    await expect(events.sendBatch(configured)).rejects.toThrow(/larger than the max message size/);
    expect(await messagesIn(settings.topics.connections)).toBe(0);
  });

  it('the simulator sends all of it, configured then validated, in several requests under the limit', async () => {
    requests.length = 0;
    const tally = new Tally();
    const sender = new BatchSender(events, settings.topics, tally);
    const generator = new TrafficGenerator(options, seededRandom(2));
    const setup = (function* () {
      for (const envelope of generator.start(Date.now())) yield { kind: 'event', envelope } as Emission;
    })();
    await sender.sendAll(setup, { inFlight: 4 });

    expect({ sent: tally.sent, failed: tally.failedSends, retries: tally.retries }).toEqual({
      sent: 20_000,
      failed: 0,
      retries: 0,
    });
    expect(await messagesIn(settings.topics.connections)).toBe(10_000);
    expect(await messagesIn(settings.topics.validations)).toBe(10_000);

    const total = requests.reduce((sum, r) => sum + r.bytes, 0);
    expect(total).toBeGreaterThan(4 * 1024 * 1024);
    expect(requests.length).toBe(sender.requests);
    expect(requests.length).toBeGreaterThanOrEqual(Math.ceil(total / MAX_REQUEST_BYTES));
    expect(Math.max(...requests.map((r) => r.bytes))).toBeLessThanOrEqual(MAX_REQUEST_BYTES);
    expect(requests.reduce((sum, r) => sum + r.messages, 0)).toBe(20_000);
  });

  it('a request the broker refuses costs only its own messages: tried again, counted, the rest sent', async () => {
    requests.length = 0;
    const tally = new Tally();
    const log: string[] = [];
    const sender = new BatchSender(events, settings.topics, tally, {
      retry: { attempts: 2, backoffMs: () => 10 },
      log: (line) => log.push(line),
    });
    const generator = new TrafficGenerator({ ...options, orgPrefix: 'org_simfail' }, seededRandom(3));
    const traffic: Emission[] = Array.from({ length: 3000 }, (_, i) => generator.next(i / 1000, Date.now()));
    // 2 MB in one message: more than the broker's message.max.bytes, whatever else is in its request.
    const huge: Emission = {
      kind: 'bad',
      type: 'psp.call.completed',
      key: 'org_simfail_1:paystack_gh_primary',
      value: JSON.stringify({ padding: 'x'.repeat(2 * 1024 * 1024) }),
      reason: 'message_too_large',
      defect: 'larger than the broker accepts',
    };
    const before = await messagesIn(settings.topics.calls);
    await sender.sendAll([...traffic.slice(0, 1500), huge, ...traffic.slice(1500)]);

    expect({
      sent: tally.sent,
      failedSends: tally.failedSends,
      failedBatches: tally.failedBatches,
      retries: tally.retries,
    }).toEqual({ sent: 3000, failedSends: 1, failedBatches: 1, retries: 1 });
    expect(requests.filter((r) => r.messages === 1 && r.bytes > 2 * 1024 * 1024)).toHaveLength(2); // two tries
    const calls = traffic.filter((e) => e.kind === 'event' && e.envelope.type === 'psp.call.completed').length;
    expect((await messagesIn(settings.topics.calls)) - before).toBe(calls);
    expect(log.join('\n')).toMatch(/a request of 1 message\(s\) failed after 2 tries, not sent: .*max message size/);
    expect(tally.summary(1)).toMatch(/not sent \(Kafka errors\)\s+1 \(1 request\(s\) failed after their last try\)/);
  });
});
