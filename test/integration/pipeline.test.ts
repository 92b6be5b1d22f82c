import { randomUUID } from 'node:crypto';
import { Kafka, Producer } from 'kafkajs';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { DevModule } from '../../apps/dev/src/dev.module';
import { dropIsolated, eventually, isolatedSettings, openDatabase, testProducer } from '../support/isolated-stack';
import { startService } from '../support/service';
import { CONNECTION_FIELDS } from '../support/contract';

/** Kafka → writer → event log → projector → read model → API, all real, in one process. */
describe('the service end to end', () => {
  let settings: Settings;
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  let kafka: Kafka;
  let producer: Producer;
  let keyA: string;
  let keyB: string;
  const base = Math.floor((Date.now() - 30 * 60000) / 60000) * 60000; // a whole minute, 30 min ago

  function envelope(
    type: string,
    org: string,
    conn: string,
    atMs: number,
    data: object,
    eventId = randomUUID(),
  ): string {
    return JSON.stringify({
      event_id: eventId,
      type,
      schema_version: 1,
      org_id: org,
      connection_id: conn,
      occurred_at: new Date(atMs).toISOString(),
      data,
    });
  }

  async function send(topic: string, ...values: string[]): Promise<void> {
    await producer.send({ topic, acks: -1, messages: values.map((value) => ({ key: 'k', value })) });
  }

  async function get(path: string, key: string | null, org: string | null, headers: Record<string, string> = {}) {
    const h: Record<string, string> = { ...headers };
    if (key !== null) h['X-Reevit-Key'] = key;
    if (org !== null) h['X-Org-Id'] = org;
    const res = await fetch(url + path, { headers: h });
    return { status: res.status, headers: res.headers, text: await res.text() };
  }

  beforeAll(async () => {
    settings = isolatedSettings('pipeline');
    db = await openDatabase(settings);
    ({ app, url } = await startService(DevModule, settings));
    const store = new ApiKeyStore(db);
    keyA = (await store.create('org_a', ['connections:read'], 'test')).key;
    keyB = (await store.create('org_b', ['connections:read'], 'live')).key;
    ({ kafka, producer } = await testProducer(settings));
  });

  afterAll(async () => {
    await producer?.disconnect();
    await app?.close();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('lists a configured connection with the numbers the contract gives', async () => {
    const t = settings.topics;
    await send(
      t.connections,
      envelope('connection.configured', 'org_a', 'paystack_gh', base, {
        provider: 'paystack',
        labels: ['Ghana', 'primary', 'ghana'],
        capabilities: { zeta: true, alpha: { b: 1, a: 2 } },
        routing_hints: { country_preference: ['GH'] },
        fee_structure: { percentage: 1.5 },
        credentials: { secret_key: 'sk_live_never_shown' },
      }),
    );
    await send(
      t.calls,
      envelope('psp.call.completed', 'org_a', 'paystack_gh', base + 1000, { outcome: 'success', latency_ms: 400 }),
      envelope('psp.call.completed', 'org_a', 'paystack_gh', base + 2000, {
        outcome: 'failure',
        latency_ms: 3500,
        error_code: 'timeout',
      }),
      envelope('psp.call.completed', 'org_a', 'paystack_gh', base + 3000, {
        outcome: 'failure',
        latency_ms: 100,
        error_code: 'card_declined',
      }),
    );
    await send(
      t.validations,
      envelope('connection.validation.completed', 'org_a', 'paystack_gh', base + 4000, {
        result: 'failure',
        error: 'bad key',
      }),
    );

    const res = await eventually(
      () => get('/v1/connections', keyA, 'org_a'),
      (r) =>
        r.status === 200 &&
        JSON.parse(r.text).connections[0]?.last_validated_at !== null &&
        JSON.parse(r.text).connections[0]?.total_calls === 3,
      30000,
      'the connection with 3 calls and a validation',
    );
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const body = JSON.parse(res.text);
    expect(body.pagination).toEqual({ total: 1, limit: 50, offset: 0 });
    const c = body.connections[0];
    expect(Object.keys(c)).toEqual(CONNECTION_FIELDS);
    expect(c).toMatchObject({
      id: 'paystack_gh',
      provider: 'paystack',
      mode: 'live',
      status: 'active',
      capabilities: { zeta: true, alpha: { b: 1, a: 2 } },
      routing_hints: { country_preference: ['GH'], method_bias: {}, fallback_only: false },
      labels: ['ghana', 'primary'],
      fee_structure: { percentage: 1.5, fixed: 0, per_method: {}, per_currency: {} },
      total_calls: 3,
      successful_calls: 1,
      failed_calls: 2,
      total_latency_ms: 4000,
      last_success_at: new Date(base + 1000).toISOString(),
      last_failure_at: new Date(base + 3000).toISOString(),
      last_validated_at: new Date(base + 4000).toISOString(),
      last_validation_status: 'failure',
      last_validation_error: 'bad key',
      validation_failures: 1,
      created_at: new Date(base).toISOString(),
      updated_at: new Date(base + 4000).toISOString(),
    });
    // Free-form members keep the producer's key order.
    expect(res.text).toContain('"capabilities":{"zeta":true,"alpha":{"b":1,"a":2}}');
    // The validation failed after the last success: capped at 25, unhealthy.
    expect(c.health_score).toBe(25);
    expect(c.health_status).toBe('unhealthy');
    expect(res.text).not.toContain('sk_live_never_shown');
    expect(res.text).not.toContain('credentials');
  });

  it('ignores a duplicate event_id, also on another topic', async () => {
    const id = randomUUID();
    const call = envelope(
      'psp.call.completed',
      'org_a',
      'dup_conn',
      base + 10000,
      { outcome: 'success', latency_ms: 10 },
      id,
    );
    await send(
      settings.topics.connections,
      envelope('connection.configured', 'org_a', 'dup_conn', base, { provider: 'hubtel' }),
    );
    await send(settings.topics.calls, call, call);
    await send(settings.topics.validations, call);
    const res = await eventually(
      () => get('/v1/connections/dup_conn', keyA, 'org_a'),
      (r) => r.status === 200 && JSON.parse(r.text).total_calls >= 1,
      30000,
      'dup_conn with its call',
    );
    await new Promise((r) => setTimeout(r, 1000));
    const again = await get('/v1/connections/dup_conn', keyA, 'org_a');
    expect(JSON.parse(res.text).total_calls).toBe(1);
    expect(JSON.parse(again.text).total_calls).toBe(1);
    const rows = await db.query(`SELECT count(*)::int AS n FROM event_log WHERE event_id = $1`, [id]);
    expect(rows[0].n).toBe(1);
  });

  it('sends bad messages to the DLQ unchanged, with the reason headers, and keeps consuming', async () => {
    const bad = ['{not json', JSON.stringify({ event_id: 'x', type: 'psp.call.completed', schema_version: 2 })];
    await send(settings.topics.calls, ...bad);
    const good = envelope('connection.configured', 'org_a', 'after_bad', base, { provider: 'stripe' });
    await send(settings.topics.calls, good.replace('connection.configured', 'psp.call.completed'));
    await send(settings.topics.connections, good);

    const consumer = kafka.consumer({ groupId: `${settings.writerGroupId}-dlq-reader` });
    await consumer.connect();
    await consumer.subscribe({ topic: settings.topics.dlq, fromBeginning: true });
    const seen: { value: string; headers: Record<string, string> }[] = [];
    await consumer.run({
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
        seen.push({ value: message.value?.toString() ?? '', headers });
      },
    });
    await eventually(
      async () => seen.length,
      (n) => n >= 3,
      30000,
      'three DLQ messages',
    );
    await consumer.disconnect();
    const notJson = seen.find((m) => m.value === '{not json')!;
    expect(notJson.headers['dlq-reason']).toBe('invalid_json');
    expect(notJson.headers['dlq-topic']).toBe(settings.topics.calls);
    expect(notJson.headers['dlq-partition']).toMatch(/^\d+$/);
    expect(notJson.headers['dlq-offset']).toMatch(/^\d+$/);
    expect(notJson.headers['dlq-detail'].length).toBeGreaterThan(5);
    expect(seen.map((m) => m.value)).toContain(bad[1]);
    // The configured connection after the bad ones was applied.
    await eventually(
      () => get('/v1/connections/after_bad', keyA, 'org_a'),
      (r) => r.status === 200,
      30000,
      'after_bad listed',
    );
  });

  it('never shows one org the connections of another', async () => {
    await send(
      settings.topics.connections,
      envelope('connection.configured', 'org_b', 'b_only', base, { provider: 'mpesa' }),
    );
    await eventually(
      () => get('/v1/connections/b_only', keyB, 'org_b'),
      (r) => r.status === 200,
      30000,
      'b_only listed for org_b',
    );
    const asA = await get('/v1/connections/b_only', keyA, 'org_a');
    expect(asA.status).toBe(404);
    expect(JSON.parse(asA.text)).toEqual({
      error: 'not_found',
      code: 'connection_not_found',
      message: expect.any(String),
    });
    const listA = JSON.parse((await get('/v1/connections', keyA, 'org_a')).text);
    expect(listA.connections.map((c: { id: string }) => c.id)).not.toContain('b_only');
    const crossed = await get('/v1/connections', keyA, 'org_b');
    expect(crossed.status).toBe(403);
    expect(JSON.parse(crossed.text).code).toBe('org_mismatch');
  });

  it('answers /healthz and /readyz', async () => {
    const health = await get('/healthz', null, null);
    expect(health.status).toBe(200);
    const ready = await get('/readyz', null, null);
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.text).checks).toEqual({ postgres: 'up', redis: 'up', kafka: 'up' });
  });

  it("answers /metrics without auth with the writer's, the projector's and the API's metrics (one process, one registry)", async () => {
    const res = await get('/metrics', null, null);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    for (const name of [
      'psp_writer_messages_consumed_total',
      'psp_writer_consumer_lag_messages',
      'psp_projector_lag_seconds',
      'psp_projector_events_applied_total',
      'psp_http_requests_total',
      'psp_read_model_reads_total',
      'process_cpu_seconds_total',
    ])
      expect(res.text).toContain(`# TYPE ${name} `);
    expect(res.text).toMatch(
      new RegExp(`^psp_writer_messages_consumed_total\\{topic="${settings.topics.calls}"\\} [1-9]`, 'm'),
    );
    for (const tenant of ['org_a', 'org_b', 'paystack_gh', 'b_only', keyA, keyB])
      expect(res.text).not.toContain(tenant);
  });
});
