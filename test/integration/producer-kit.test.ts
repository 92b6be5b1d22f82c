import { Admin, Kafka, Partitioners, Producer } from 'kafkajs';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { createKafka } from '@psp/messaging';
import {
  callCompleted,
  ConnectionEventProducer,
  connectionConfigured,
  connectionDeleted,
  HealthChange,
  InvalidEventError,
  labelsChanged,
  onHealthChange,
  statusChanged,
  validationCompleted,
  WireEnvelope,
} from '@psp/producer';
import { DevModule } from '../../apps/dev/src/dev.module';
import { dropIsolated, eventually, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { startService } from '../support/service';

/** The producers' kit against a real broker, with the whole service running: what it sends is applied. */
describe('the producers kit end to end', () => {
  const ORG = 'org_kit';
  let settings: Settings;
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  let apiKey: string;
  let kafka: Kafka;
  let admin: Admin;
  let producer: Producer;
  let events: ConnectionEventProducer;
  const base = Math.floor((Date.now() - 10 * 60000) / 60000) * 60000; // a whole minute, 10 min ago
  const at = (seconds: number) => new Date(base + seconds * 1000);

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- API answers, checked field by field
  async function get(path: string): Promise<{ status: number; body: any }> {
    const res = await fetch(url + path, { headers: { 'X-Reevit-Key': apiKey, 'X-Org-Id': ORG } });
    return { status: res.status, body: await res.json() };
  }

  /** Sum of the latest offsets of a topic's partitions: how many messages it holds. */
  async function messagesIn(topic: string): Promise<number> {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((sum, p) => sum + Number(p.high), 0);
  }

  beforeAll(async () => {
    settings = isolatedSettings('producerkit');
    db = await openDatabase(settings);
    ({ app, url } = await startService(DevModule, settings)); // creates the topics
    apiKey = (await new ApiKeyStore(db).create(ORG, ['connections:read'], 'test')).key;
    kafka = createKafka(settings, 'producer-kit-test');
    admin = kafka.admin();
    await admin.connect();
    producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
    events = new ConnectionEventProducer(producer, { topics: settings.topics });
    await events.connect();
  });

  afterAll(async () => {
    await events?.disconnect();
    await admin?.disconnect();
    await app?.close();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('sends every type through the library, one by one and in batches, and the service applies them all', async () => {
    const conn = { orgId: ORG, connectionId: 'paystack_gh_primary' };
    const firstCall = callCompleted({
      ...conn,
      occurredAt: at(1),
      outcome: 'success',
      latencyMs: 400,
      operation: 'charge',
      method: 'card',
      currency: 'GHS',
    });

    await events.send(
      connectionConfigured({
        ...conn,
        occurredAt: at(0),
        provider: 'paystack',
        capabilities: { cards: true, mobile_money: true },
        routingHints: { countryPreference: ['GH'] },
        labels: ['Ghana', 'primary', 'ghana'],
        feeStructure: { percentage: 1.95, fixed: 100 },
      }),
    );
    // One batch across the three topics.
    await events.sendBatch([
      firstCall,
      callCompleted({ ...conn, occurredAt: at(2), outcome: 'success', latencyMs: 500 }),
      callCompleted({ ...conn, occurredAt: at(3), outcome: 'success', latencyMs: 600 }),
      callCompleted({ ...conn, occurredAt: at(4), outcome: 'failure', latencyMs: 3500, errorCode: 'timeout' }),
      callCompleted({ ...conn, occurredAt: at(5), outcome: 'failure', latencyMs: 100, errorCode: 'card_declined' }),
      validationCompleted({ ...conn, occurredAt: at(10), result: 'failure', error: 'invalid secret key' }),
      validationCompleted({ ...conn, occurredAt: at(20), result: 'success' }),
      statusChanged({ ...conn, occurredAt: at(30), status: 'inactive' }),
    ]);
    // A retry of the same envelope (same event_id) is counted once.
    await events.send(firstCall);
    await events.send(labelsChanged({ ...conn, occurredAt: at(40), labels: ['VIP', 'Ghana'] }));
    // A second connection, configured then deleted.
    const other = { orgId: ORG, connectionId: 'stripe_us' };
    await events.sendBatch([
      connectionConfigured({ ...other, occurredAt: at(0), provider: 'stripe', mode: 'sandbox' }),
      connectionDeleted({ ...other, occurredAt: at(50) }),
    ]);

    const res = await eventually(
      () => get('/v1/connections'),
      (r) =>
        r.status === 200 &&
        r.body.connections.length === 1 &&
        r.body.connections[0].labels.includes('vip') &&
        r.body.connections[0].status === 'inactive' &&
        r.body.connections[0].last_validated_at === at(20).toISOString() &&
        r.body.connections[0].total_calls === 5,
      30000,
      'the configured connection with its 5 calls, validations, status and new labels (three topics, any order)',
    );
    expect(res.body.pagination).toEqual({ total: 1, limit: 50, offset: 0 });
    expect(res.body.connections[0]).toEqual({
      id: 'paystack_gh_primary',
      provider: 'paystack',
      mode: 'live',
      status: 'inactive',
      capabilities: { cards: true, mobile_money: true },
      routing_hints: { country_preference: ['GH'], method_bias: {}, fallback_only: false },
      labels: ['vip', 'ghana'],
      fee_structure: { percentage: 1.95, fixed: 100, per_method: {}, per_currency: {} },
      total_calls: 5,
      successful_calls: 3,
      failed_calls: 2,
      total_latency_ms: 5100,
      last_success_at: at(3).toISOString(),
      last_failure_at: at(5).toISOString(),
      // N = 5 calls, F = 1 technical failure (the decline does not count), S = 1 slow call:
      // (5 - 1 + 5) / (5 + 5) * (1 - 0.3 * 1/5) * 100 = 84.6; N < 20, so unknown.
      health_score: 84.6,
      health_status: 'unknown',
      last_validated_at: at(20).toISOString(),
      last_validation_status: 'success',
      last_validation_error: null,
      validation_failures: 1,
      created_at: at(0).toISOString(),
      updated_at: at(40).toISOString(),
    });
    await eventually(
      () => get('/v1/connections/stripe_us'),
      (r) => r.status === 404,
      30000,
      'the deleted connection gone',
    );

    // Everything the library sent was accepted: the DLQ is empty.
    expect(await messagesIn(settings.topics.dlq)).toBe(0);
  });

  it('keys every message <org_id>:<connection_id> on the wire', async () => {
    const sent: WireEnvelope[] = [
      callCompleted({ orgId: ORG, connectionId: 'mpesa_ke', occurredAt: at(60), outcome: 'success', latencyMs: 900 }),
      validationCompleted({ orgId: ORG, connectionId: 'mpesa_ke', occurredAt: at(61), result: 'success' }),
      connectionConfigured({ orgId: ORG, connectionId: 'mpesa_ke', occurredAt: at(59), provider: 'mpesa' }),
    ];
    await events.sendBatch(sent);
    const ids = new Set(sent.map((e) => e.event_id));
    const seen = new Map<string, { key: string; topic: string }>();
    const consumer = kafka.consumer({ groupId: `${settings.writerGroupId}-key-reader` });
    await consumer.connect();
    await consumer.subscribe({
      topics: [settings.topics.calls, settings.topics.validations, settings.topics.connections],
      fromBeginning: true,
    });
    await consumer.run({
      eachMessage: async ({ topic, message }) => {
        const value = JSON.parse(message.value!.toString('utf8')) as WireEnvelope;
        if (ids.has(value.event_id)) seen.set(value.event_id, { key: message.key!.toString('utf8'), topic });
      },
    });
    try {
      await eventually(
        async () => seen.size,
        (n) => n === sent.length,
        30000,
        'the three messages read back',
      );
    } finally {
      await consumer.disconnect();
    }
    expect(sent.map((e) => seen.get(e.event_id))).toEqual([
      { key: `${ORG}:mpesa_ke`, topic: settings.topics.calls },
      { key: `${ORG}:mpesa_ke`, topic: settings.topics.validations },
      { key: `${ORG}:mpesa_ke`, topic: settings.topics.connections },
    ]);
    await eventually(
      () => get('/v1/connections/mpesa_ke'),
      (r) => r.status === 200 && r.body.total_calls === 1,
      30000,
      'mpesa_ke applied',
    );
  });

  it('refuses bad events before they reach the broker', async () => {
    const before = await messagesIn(settings.topics.calls);
    const conn = { orgId: ORG, connectionId: 'paystack_gh_primary' };
    await expect(events.send(callCompleted({ ...conn, outcome: 'success', latencyMs: 600_001 }))).rejects.toThrow(
      InvalidEventError,
    );
    await expect(
      events.send(callCompleted({ ...conn, outcome: 'success', latencyMs: 1, occurredAt: Date.now() + 3600_000 })),
    ).rejects.toMatchObject({
      reason: 'occurred_at_in_future',
      field: 'occurred_at',
    });
    await expect(
      events.sendBatch([
        callCompleted({ ...conn, outcome: 'success', latencyMs: 1 }),
        callCompleted({ ...conn, connectionId: 'bad id', outcome: 'success', latencyMs: 1 }),
      ]),
    ).rejects.toMatchObject({ reason: 'invalid_field', field: 'connection_id', index: 1 });
    expect(await messagesIn(settings.topics.calls)).toBe(before);
    expect(await messagesIn(settings.topics.dlq)).toBe(0);
  });

  it('onHealthChange runs the consumer again after a crash kafkajs does not restart: later changes still arrive', async () => {
    // As test/integration/consumer-crash.test.ts forces it on a real broker: the handler throws, once,
    // an error kafkajs gives up on at once (its fetch loop bails on KafkaJSNotImplemented, not retriable).
    const org = 'org_kit_router';
    const change = (connectionId: string, sequence: number, from: string | null, to: string) => ({
      key: `${org}:${connectionId}`,
      value: JSON.stringify({
        event_id: `${org}:${connectionId}:${sequence}`,
        type: 'connection.health_changed',
        schema_version: 1,
        org_id: org,
        connection_id: connectionId,
        occurred_at: at(70 + sequence).toISOString(),
        data: { sequence, from, to, health_score: 90 },
      }),
    });
    const seen: string[] = [];
    const crashes: boolean[] = [];
    const reported: string[] = [];
    let failed = false;
    const consumer = kafka.consumer({ groupId: `${settings.writerGroupId}-router` });
    consumer.on(consumer.events.CRASH, ({ payload }) => crashes.push(payload.restart));
    const stop = await onHealthChange(
      consumer,
      (c: HealthChange, { gap }) => {
        if (c.connectionId === 'c1' && c.sequence === 2 && !failed) {
          failed = true;
          const error = new Error('forced: not restarted by kafkajs');
          error.name = 'KafkaJSNotImplemented';
          throw error;
        }
        seen.push(`${c.connectionId}#${c.sequence}${gap ? ' gap' : ''}`);
      },
      { topic: settings.topics.health, fromBeginning: true, orgId: org, onCrash: (m) => reported.push(m) },
    );
    try {
      await producer.send({
        topic: settings.topics.health,
        messages: [change('c1', 1, null, 'unknown'), change('c1', 2, 'unknown', 'healthy')],
      });
      await eventually(
        async () => crashes.length,
        (n) => n === 1,
        30000,
        'the forced crash',
      );
      expect(crashes).toEqual([false]); // kafkajs left this one alone
      // Produced after the crash.
      await producer.send({
        topic: settings.topics.health,
        messages: [change('c1', 3, 'healthy', 'degraded'), change('c2', 1, null, 'unknown')],
      });
      await eventually(
        async () => seen,
        (s) => s.includes('c1#3') && s.includes('c2#1'),
        30000,
        'the changes produced after the crash handed over',
      );
      // Each once, in sequence, no gap: the change the handler failed on came again, and the sequencer
      // (kept across the restart) still knew c1#1.
      expect(seen.filter((s) => s.startsWith('c1#'))).toEqual(['c1#1', 'c1#2', 'c1#3']);
      expect(seen.filter((s) => s.startsWith('c2#'))).toEqual(['c2#1']);
      expect(crashes).toEqual([false]);
      expect(reported).toEqual([expect.stringContaining('kafkajs will not restart it: restarting it here')]);
    } finally {
      await stop();
    }
  });
});
