import { EVENT_TYPES, validateMessage } from '@psp/domain';
import {
  callCompleted,
  connectionConfigured,
  connectionDeleted,
  formatOccurredAt,
  labelsChanged,
  recommendedKey,
  statusChanged,
  validationCompleted,
  WireEnvelope,
} from './envelope';
import { DEFAULT_TOPICS, topicFor } from './topics';

const AT = '2026-11-24T10:15:00.250Z';
const AT_MS = Date.UTC(2026, 10, 24, 10, 15, 0, 250);
const NOW = AT_MS + 60_000;
const ids = { orgId: 'org_123', connectionId: 'paystack_gh_primary' };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function accepted(envelope: WireEnvelope) {
  const result = validateMessage(Buffer.from(JSON.stringify(envelope)), NOW);
  if (!result.ok) throw new Error(`expected acceptance, got ${result.reason} (${result.field}): ${result.detail}`);
  return result.event;
}

describe('builders', () => {
  it('builds the contract example of psp.call.completed exactly, keys in contract order', () => {
    const e = callCompleted({
      ...ids,
      occurredAt: AT,
      outcome: 'success',
      latencyMs: 412,
      eventId: '6f1c2a9e-5d7b-4a55-9a51-0c2e3e7b1f00',
    });
    expect(JSON.stringify(e)).toBe(
      '{"event_id":"6f1c2a9e-5d7b-4a55-9a51-0c2e3e7b1f00","type":"psp.call.completed","schema_version":1,"org_id":"org_123",' +
        '"connection_id":"paystack_gh_primary","occurred_at":"2026-11-24T10:15:00.250Z","data":{"outcome":"success","latency_ms":412}}',
    );
    expect(accepted(e)).toEqual({
      eventId: '6f1c2a9e-5d7b-4a55-9a51-0c2e3e7b1f00',
      type: 'psp.call.completed',
      orgId: 'org_123',
      connectionId: 'paystack_gh_primary',
      occurredAt: AT_MS,
      data: { outcome: 'success', latency_ms: 412 },
    });
  });

  it('writes the optional call members only when given, in contract order', () => {
    const e = callCompleted({
      ...ids,
      occurredAt: AT,
      currency: 'GHS',
      method: 'card',
      operation: 'charge',
      errorCode: 'timeout',
      latencyMs: 3001,
      outcome: 'failure',
    });
    expect(Object.keys(e.data)).toEqual(['outcome', 'latency_ms', 'error_code', 'operation', 'method', 'currency']);
    expect(accepted(e).data).toEqual({
      outcome: 'failure',
      latency_ms: 3001,
      error_code: 'timeout',
      operation: 'charge',
      method: 'card',
      currency: 'GHS',
    });
  });

  it('generates a fresh UUID v4 event_id per envelope unless one is given', () => {
    const a = connectionDeleted({ ...ids, occurredAt: AT });
    const b = connectionDeleted({ ...ids, occurredAt: AT });
    expect(a.event_id).toMatch(UUID);
    expect(b.event_id).toMatch(UUID);
    expect(a.event_id).not.toBe(b.event_id);
    expect(connectionDeleted({ ...ids, occurredAt: AT, eventId: 'attempt-42' }).event_id).toBe('attempt-42');
  });

  it('writes occurred_at as RFC 3339 UTC with milliseconds from a Date or epoch ms; a string as given; now by default', () => {
    expect(statusChanged({ ...ids, status: 'inactive', occurredAt: new Date(AT_MS) }).occurred_at).toBe(AT);
    expect(statusChanged({ ...ids, status: 'inactive', occurredAt: AT_MS }).occurred_at).toBe(AT);
    expect(statusChanged({ ...ids, status: 'inactive', occurredAt: '2026-11-24T11:15:00.25+01:00' }).occurred_at).toBe(
      '2026-11-24T11:15:00.25+01:00',
    );
    const before = Date.now();
    const t = Date.parse(statusChanged({ ...ids, status: 'active' }).occurred_at);
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(Date.now());
    expect(() => formatOccurredAt(new Date('nope'))).toThrow(TypeError);
    expect(() => formatOccurredAt(Number.NaN)).toThrow(TypeError);
  });

  it('builds validationCompleted with and without error', () => {
    expect(validationCompleted({ ...ids, occurredAt: AT, result: 'success' }).data).toEqual({ result: 'success' });
    const failed = validationCompleted({ ...ids, occurredAt: AT, result: 'failure', error: 'invalid secret key' });
    expect(failed.type).toBe('connection.validation.completed');
    expect(accepted(failed).data).toEqual({ result: 'failure', error: 'invalid secret key' });
  });

  it('builds connectionConfigured with only the given members; the service fills the defaults', () => {
    const minimal = connectionConfigured({ ...ids, occurredAt: AT, provider: 'hubtel' });
    expect(minimal.data).toEqual({ provider: 'hubtel' });
    expect(accepted(minimal).data).toEqual({
      provider: 'hubtel',
      mode: 'live',
      status: 'active',
      capabilities: {},
      routing_hints: { country_preference: [], method_bias: {}, fallback_only: false },
      labels: [],
      fee_structure: { percentage: 0, fixed: 0, per_method: {}, per_currency: {} },
    });
  });

  it('maps every camelCase config member to its wire name', () => {
    const e = connectionConfigured({
      ...ids,
      occurredAt: AT,
      provider: 'paystack',
      mode: 'sandbox',
      status: 'inactive',
      capabilities: { cards: true },
      routingHints: { countryPreference: ['GH'], methodBias: { card: 'prefer' }, fallbackOnly: true },
      labels: ['Ghana', 'primary', 'ghana'],
      feeStructure: { percentage: 1.95, fixed: 100, perMethod: { mobile_money: 1.5 }, perCurrency: { GHS: 1.9 } },
    });
    expect(e.data).toEqual({
      provider: 'paystack',
      mode: 'sandbox',
      status: 'inactive',
      capabilities: { cards: true },
      routing_hints: { country_preference: ['GH'], method_bias: { card: 'prefer' }, fallback_only: true },
      labels: ['Ghana', 'primary', 'ghana'],
      fee_structure: { percentage: 1.95, fixed: 100, per_method: { mobile_money: 1.5 }, per_currency: { GHS: 1.9 } },
    });
    expect(accepted(e).data).toMatchObject({ labels: ['ghana', 'primary'] });
    // A partial routing_hints / fee_structure carries only what was given.
    const partial = connectionConfigured({
      ...ids,
      occurredAt: AT,
      provider: 'stripe',
      routingHints: { fallbackOnly: true },
      feeStructure: { fixed: 30 },
    });
    expect(partial.data).toEqual({
      provider: 'stripe',
      routing_hints: { fallback_only: true },
      fee_structure: { fixed: 30 },
    });
  });

  it('builds statusChanged, labelsChanged and connectionDeleted', () => {
    expect(statusChanged({ ...ids, occurredAt: AT, status: 'inactive' })).toMatchObject({
      type: 'connection.status_changed',
      data: { status: 'inactive' },
    });
    expect(labelsChanged({ ...ids, occurredAt: AT, labels: ['vip'] })).toMatchObject({
      type: 'connection.labels_changed',
      data: { labels: ['vip'] },
    });
    const deleted = connectionDeleted({ ...ids, occurredAt: AT });
    expect(deleted).toMatchObject({ type: 'connection.deleted', schema_version: 1, data: {} });
    expect(accepted(deleted).type).toBe('connection.deleted');
  });
});

describe('recommendedKey', () => {
  it('is <org_id>:<connection_id>', () => {
    expect(
      recommendedKey(callCompleted({ orgId: 'org_9', connectionId: 'mpesa:ke.1', outcome: 'success', latencyMs: 1 })),
    ).toBe('org_9:mpesa:ke.1');
  });
});

describe('topicFor', () => {
  it('sends each type to its contract topic', () => {
    expect(topicFor('psp.call.completed')).toBe('psp.calls');
    expect(topicFor('connection.validation.completed')).toBe('psp.validations');
    for (const type of [
      'connection.configured',
      'connection.status_changed',
      'connection.labels_changed',
      'connection.deleted',
    ] as const) {
      expect(topicFor(type)).toBe('psp.connections');
    }
    expect(EVENT_TYPES.map((t) => topicFor(t)).every((t) => Object.values(DEFAULT_TOPICS).includes(t))).toBe(true);
  });

  it('takes configured topic names, including the service settings shape', () => {
    const topics = { calls: 't.calls', validations: 't.validations', connections: 't.connections', dlq: 't.dlq' };
    expect(topicFor('psp.call.completed', topics)).toBe('t.calls');
    expect(topicFor('connection.deleted', topics)).toBe('t.connections');
    expect(topicFor('connection.validation.completed', { calls: 'x' })).toBe('psp.validations');
  });

  it('refuses a type the contract does not know', () => {
    expect(() => topicFor('psp.call.started' as never)).toThrow(TypeError);
    expect(() => topicFor('toString' as never)).toThrow(TypeError);
  });
});
