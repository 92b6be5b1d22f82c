import { Producer, ProducerBatch, ProducerRecord } from 'kafkajs';
import { DLQ_REASONS } from '@psp/domain';
import {
  callCompleted,
  connectionConfigured,
  labelsChanged,
  statusChanged,
  validationCompleted,
  WireEnvelope,
} from './envelope';
import { ConnectionEventProducer, InvalidEventError, validateEnvelope } from './producer';

const NOW = Date.UTC(2026, 10, 24, 10, 20);
const AT = '2026-11-24T10:15:00.250Z';
const ids = { orgId: 'org_123', connectionId: 'paystack_gh_primary' };

/** A kafkajs Producer that records what it is asked to send. */
function fakeProducer() {
  const sent: ProducerRecord[] = [];
  const batches: ProducerBatch[] = [];
  const producer = {
    connect: jest.fn(async () => undefined),
    disconnect: jest.fn(async () => undefined),
    send: jest.fn(async (record: ProducerRecord) => {
      sent.push(record);
      return [{ topicName: record.topic, partition: 0, errorCode: 0 }];
    }),
    sendBatch: jest.fn(async (batch: ProducerBatch) => {
      batches.push(batch);
      return [];
    }),
  };
  return { producer: producer as unknown as Producer, mock: producer, sent, batches };
}

function refusal(run: () => unknown): InvalidEventError {
  try {
    run();
  } catch (e) {
    if (e instanceof InvalidEventError) return e;
    throw e;
  }
  throw new Error('expected an InvalidEventError');
}

async function refusalOf(run: () => Promise<unknown>): Promise<InvalidEventError> {
  try {
    await run();
  } catch (e) {
    if (e instanceof InvalidEventError) return e;
    throw e;
  }
  throw new Error('expected an InvalidEventError');
}

describe('ConnectionEventProducer', () => {
  it('sends one event keyed <org_id>:<connection_id> to its topic, the value being the exact JSON checked, acks all', async () => {
    const { producer, sent } = fakeProducer();
    const events = new ConnectionEventProducer(producer, { now: () => NOW });
    const e = callCompleted({ ...ids, occurredAt: AT, outcome: 'success', latencyMs: 412 });
    await events.send(e);
    expect(sent).toHaveLength(1);
    expect(sent[0].topic).toBe('psp.calls');
    expect(sent[0].acks).toBe(-1);
    expect(sent[0].messages).toHaveLength(1);
    expect(sent[0].messages[0].key).toBe('org_123:paystack_gh_primary');
    expect((sent[0].messages[0].value as Buffer).toString('utf8')).toBe(JSON.stringify(e));
  });

  it('uses configured topic names', async () => {
    const { producer, sent } = fakeProducer();
    const events = new ConnectionEventProducer(producer, {
      topics: { calls: 'a', validations: 'b', connections: 'c' },
      now: () => NOW,
      acks: 1,
    });
    await events.send(validationCompleted({ ...ids, occurredAt: AT, result: 'success' }));
    await events.send(statusChanged({ ...ids, occurredAt: AT, status: 'inactive' }));
    expect(sent.map((r) => r.topic)).toEqual(['b', 'c']);
    expect(sent[0].acks).toBe(1);
  });

  it('sends a batch in one request, grouped by topic, order kept within each topic', async () => {
    const { producer, batches, mock } = fakeProducer();
    const events = new ConnectionEventProducer(producer, { now: () => NOW });
    const batch: WireEnvelope[] = [
      connectionConfigured({ ...ids, occurredAt: AT, provider: 'paystack' }),
      callCompleted({ ...ids, occurredAt: AT, outcome: 'success', latencyMs: 1 }),
      labelsChanged({ ...ids, occurredAt: AT, labels: ['vip'] }),
      callCompleted({
        orgId: 'org_9',
        connectionId: 'stripe_us',
        occurredAt: AT,
        outcome: 'failure',
        latencyMs: 2,
        errorCode: 'card_declined',
      }),
    ];
    await events.sendBatch(batch);
    expect(mock.send).not.toHaveBeenCalled();
    expect(batches).toHaveLength(1);
    const topics = batches[0].topicMessages!;
    expect(topics.map((t) => t.topic)).toEqual(['psp.connections', 'psp.calls']);
    expect(topics[0].messages.map((m) => JSON.parse(String(m.value)).event_id)).toEqual([
      batch[0].event_id,
      batch[2].event_id,
    ]);
    expect(topics[1].messages.map((m) => m.key)).toEqual(['org_123:paystack_gh_primary', 'org_9:stripe_us']);
    expect(await events.sendBatch([])).toEqual([]);
    expect(batches).toHaveLength(1);
  });

  it('refuses a bad event before it leaves: the error names the DLQ reason and the field, nothing is sent', async () => {
    const { producer, mock } = fakeProducer();
    const events = new ConnectionEventProducer(producer, { now: () => NOW });
    const bad = callCompleted({ ...ids, occurredAt: AT, outcome: 'success', latencyMs: -1 });
    const error = await refusalOf(() => events.send(bad));
    expect(error.reason).toBe('invalid_data');
    expect(error.field).toBe('data.latency_ms');
    expect(error.message).toContain('invalid_data');
    expect(error.message).toContain('data.latency_ms');
    expect(mock.send).not.toHaveBeenCalled();
  });

  it('refuses a whole batch when one event is bad, naming its index', async () => {
    const { producer, mock } = fakeProducer();
    const events = new ConnectionEventProducer(producer, { now: () => NOW });
    const good = callCompleted({ ...ids, occurredAt: AT, outcome: 'success', latencyMs: 1 });
    const bad = labelsChanged({ ...ids, occurredAt: AT, labels: ['has space'] });
    const error = await refusalOf(() => events.sendBatch([good, good, bad]));
    expect(error).toMatchObject({ reason: 'invalid_data', field: 'data.labels', index: 2 });
    expect(error.message).toContain('event 2 of the batch');
    expect(mock.sendBatch).not.toHaveBeenCalled();
  });

  it('refuses an event too far in the future of its own clock', async () => {
    const { producer, mock } = fakeProducer();
    const events = new ConnectionEventProducer(producer, { now: () => NOW });
    const future = statusChanged({ ...ids, occurredAt: NOW + 300_001, status: 'active' });
    expect((await refusalOf(() => events.send(future))).reason).toBe('occurred_at_in_future');
    await events.send(statusChanged({ ...ids, occurredAt: NOW + 300_000, status: 'active' }));
    expect(mock.send).toHaveBeenCalledTimes(1);
  });

  it('delegates connect and disconnect', async () => {
    const { producer, mock } = fakeProducer();
    const events = new ConnectionEventProducer(producer);
    await events.connect();
    await events.disconnect();
    expect(mock.connect).toHaveBeenCalledTimes(1);
    expect(mock.disconnect).toHaveBeenCalledTimes(1);
  });
});

describe('validateEnvelope refuses what the service would put in its DLQ', () => {
  const base = () =>
    callCompleted({ ...ids, occurredAt: AT, outcome: 'success', latencyMs: 412 }) as unknown as Record<string, unknown>;
  const cases: Array<[string, () => unknown, string, string | undefined]> = [
    ['an empty event_id', () => ({ ...base(), event_id: '' }), 'invalid_field', 'event_id'],
    ['an unknown type', () => ({ ...base(), type: 'psp.call.started' }), 'unknown_type', 'type'],
    ['schema_version 2', () => ({ ...base(), schema_version: 2 }), 'unsupported_schema_version', 'schema_version'],
    ['a missing org_id', () => ({ ...base(), org_id: undefined }), 'missing_field', 'org_id'],
    ['an org_id with a space', () => ({ ...base(), org_id: 'org 1' }), 'invalid_field', 'org_id'],
    ['a connection_id with a slash', () => ({ ...base(), connection_id: 'a/b' }), 'invalid_field', 'connection_id'],
    [
      'an occurred_at without offset',
      () => ({ ...base(), occurred_at: '2026-11-24T10:15:00' }),
      'invalid_field',
      'occurred_at',
    ],
    [
      'an occurred_at in year 0000',
      () => ({ ...base(), occurred_at: '0000-06-01T00:00:00Z' }),
      'invalid_field',
      'occurred_at',
    ],
    [
      'an occurred_at that its offset moves into year 0000',
      () => ({ ...base(), occurred_at: '0001-01-01T00:30:00+01:00' }),
      'invalid_field',
      'occurred_at',
    ],
    [
      'a Date before year 0001',
      () => callCompleted({ ...ids, occurredAt: new Date(-62_135_596_800_001), outcome: 'success', latencyMs: 1 }),
      'invalid_field',
      'occurred_at',
    ],
    ['data that is an array', () => ({ ...base(), data: [] }), 'invalid_field', 'data'],
    [
      'a latency that is not an integer',
      () => callCompleted({ ...ids, occurredAt: AT, outcome: 'success', latencyMs: 1.5 }),
      'invalid_data',
      'data.latency_ms',
    ],
    [
      'a latency over 600000',
      () => callCompleted({ ...ids, occurredAt: AT, outcome: 'success', latencyMs: 600_001 }),
      'invalid_data',
      'data.latency_ms',
    ],
    [
      'an unknown outcome',
      () => callCompleted({ ...ids, occurredAt: AT, outcome: 'ok' as never, latencyMs: 1 }),
      'invalid_data',
      'data.outcome',
    ],
    [
      'a validation error over 1000 characters',
      () => validationCompleted({ ...ids, occurredAt: AT, result: 'failure', error: 'x'.repeat(1001) }),
      'invalid_data',
      'data.error',
    ],
    [
      'an uppercase provider',
      () => connectionConfigured({ ...ids, occurredAt: AT, provider: 'Paystack' as never }),
      'invalid_data',
      'data.provider',
    ],
    [
      '21 labels',
      () => labelsChanged({ ...ids, occurredAt: AT, labels: Array.from({ length: 21 }, (_, i) => `l${i}`) }),
      'invalid_data',
      'data.labels',
    ],
    [
      'a non-integer fixed fee',
      () => connectionConfigured({ ...ids, occurredAt: AT, provider: 'stripe', feeStructure: { fixed: 0.5 } }),
      'invalid_data',
      'data.fee_structure.fixed',
    ],
    [
      'a missing status',
      () => ({ ...statusChanged({ ...ids, occurredAt: AT, status: 'active' }), data: {} }),
      'missing_field',
      'data.status',
    ],
    ['a value over 64 KiB', () => ({ ...base(), padding: 'x'.repeat(65_536) }), 'message_too_large', undefined],
    [
      'a BigInt, which JSON cannot carry',
      () => ({ ...base(), data: { outcome: 'success', latency_ms: BigInt(1) } }),
      'invalid_json',
      undefined,
    ],
    ['undefined', () => undefined, 'empty_message', undefined],
  ];

  it.each(cases)('%s', (_name, make, reason, field) => {
    const error = refusal(() => validateEnvelope(make() as WireEnvelope, NOW));
    expect(DLQ_REASONS).toContain(error.reason);
    expect(error.reason).toBe(reason);
    expect(error.field).toBe(field);
  });

  it('never repeats a value of the event in the error', () => {
    const error = refusal(() =>
      validateEnvelope(
        validationCompleted({ ...ids, occurredAt: AT, result: 'failure', error: `sk_live_secret ${'x'.repeat(1000)}` }),
        NOW,
      ),
    );
    expect(error.message).not.toContain('sk_live_secret');
  });

  it('returns the bytes and the normalised event of a good one', () => {
    const e = labelsChanged({ ...ids, occurredAt: AT, labels: ['VIP', 'vip', 'ghana'] });
    const checked = validateEnvelope(e, NOW);
    expect(checked.value.toString('utf8')).toBe(JSON.stringify(e));
    expect(checked.event.data).toEqual({ labels: ['vip', 'ghana'] });
  });
});
