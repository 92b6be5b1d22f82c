import fc from 'fast-check';
import {
  ConnectionState,
  advanceStreamTime,
  applyEvent,
  initialConnectionState,
  isListed,
  pruneHealthWindow,
} from './connection-state';
import { ConnectionView, toConnectionView } from './connection-view';
import { ConnectionEvent, PROVIDERS } from './event';
import {
  CONNECTION,
  MINUTE,
  ORG,
  SECOND,
  T0,
  callEvent,
  configuredEvent,
  deletedEvent,
  labelsChangedEvent,
  statusChangedEvent,
  validationEvent,
} from './testing/events';
import { CONNECTION_FIELDS } from '../../../test/support/contract';

function stateOf(...events: ConnectionEvent[]): ConnectionState {
  const state = initialConnectionState(ORG, CONNECTION);
  for (const event of events) applyEvent(state, event);
  return state;
}

describe('toConnectionView', () => {
  it('builds every field of CONTRACT 1.3, in order', () => {
    const state = stateOf(
      configuredEvent('c1', T0, {
        provider: 'hubtel',
        mode: 'sandbox',
        capabilities: { refunds: true },
        routing_hints: { country_preference: ['GH'], method_bias: { momo: 'prefer' }, fallback_only: true },
        labels: ['ghana', 'primary'],
        fee_structure: { percentage: 1.5, fixed: 100, per_method: { card: 2 }, per_currency: {} },
      }),
      callEvent('e1', T0 + 250, { outcome: 'success', latency_ms: 412 }),
      callEvent('e2', T0 + 2 * SECOND, { outcome: 'failure', latency_ms: 5000, error_code: 'timeout' }),
      validationEvent('v1', T0 + 3 * SECOND, { result: 'failure', error: 'invalid secret key' }),
      validationEvent('v0', T0 - MINUTE, { result: 'success' }),
    );
    const view = toConnectionView(state, T0 + 3 * SECOND);
    expect(Object.keys(view)).toEqual(CONNECTION_FIELDS);
    // Health over bucket b only: N = 2, F = 1, S = 1.
    // success = (2 - 1 + 5) / 7 = 0.857143; slow = 0.5; score = 85.7143 * 0.85 = 72.857 -> capped at 25
    // (the failed validation at +3 s is after the last success at +0.25 s).
    expect(view).toStrictEqual({
      id: CONNECTION,
      provider: 'hubtel',
      mode: 'sandbox',
      status: 'active',
      capabilities: { refunds: true },
      routing_hints: { country_preference: ['GH'], method_bias: { momo: 'prefer' }, fallback_only: true },
      labels: ['ghana', 'primary'],
      fee_structure: { percentage: 1.5, fixed: 100, per_method: { card: 2 }, per_currency: {} },
      total_calls: 2,
      successful_calls: 1,
      failed_calls: 1,
      total_latency_ms: 5412,
      last_success_at: '2026-11-24T10:00:00.250Z',
      last_failure_at: '2026-11-24T10:00:02.000Z',
      health_score: 25,
      health_status: 'unhealthy',
      last_validated_at: '2026-11-24T10:00:03.000Z',
      last_validation_status: 'failure',
      last_validation_error: 'invalid secret key',
      validation_failures: 1,
      created_at: '2026-11-24T10:00:00.000Z',
      updated_at: '2026-11-24T10:00:03.000Z',
    });
  });

  it('uses null for what has not happened, and 100 / unknown health with no calls', () => {
    const view = toConnectionView(stateOf(configuredEvent('c1', T0)), T0);
    expect(view).toMatchObject({
      total_calls: 0,
      successful_calls: 0,
      failed_calls: 0,
      total_latency_ms: 0,
      last_success_at: null,
      last_failure_at: null,
      health_score: 100,
      health_status: 'unknown',
      last_validated_at: null,
      last_validation_status: null,
      last_validation_error: null,
      validation_failures: 0,
    });
  });

  it('shows last_validation_error null when the latest validation succeeded, even with an error text', () => {
    const state = stateOf(
      configuredEvent('c1', T0),
      validationEvent('v1', T0, { result: 'failure', error: 'bad key' }),
      validationEvent('v2', T0 + 1, { result: 'success', error: 'ignored' }),
    );
    expect(toConnectionView(state, T0 + 1)).toMatchObject({
      last_validated_at: '2026-11-24T10:00:00.001Z',
      last_validation_status: 'success',
      last_validation_error: null,
      validation_failures: 1,
    });
  });

  it('shows last_validation_error null for a failure without an error', () => {
    const state = stateOf(configuredEvent('c1', T0), validationEvent('v1', T0, { result: 'failure' }));
    expect(toConnectionView(state, T0).last_validation_error).toBeNull();
  });

  it('writes nested objects in contract order even when storage reordered their keys', () => {
    const state = stateOf(configuredEvent('c1', T0));
    // jsonb orders keys by length, then bytes: simulate it on the nested config.
    state.routingHints = JSON.parse(
      '{"value":{"method_bias":{},"fallback_only":false,"country_preference":[]},"at":0,"eventId":"c1"}',
    );
    state.feeStructure = JSON.parse(
      '{"value":{"fixed":0,"per_method":{},"percentage":0,"per_currency":{}},"at":0,"eventId":"c1"}',
    );
    const json = JSON.stringify(toConnectionView(state, T0));
    expect(json).toContain('"routing_hints":{"country_preference":[],"method_bias":{},"fallback_only":false}');
    expect(json).toContain('"fee_structure":{"percentage":0,"fixed":0,"per_method":{},"per_currency":{}}');
  });

  it('reads the state after its JSON round trip the same way', () => {
    const state = stateOf(configuredEvent('c1', T0, { labels: ['a'] }), callEvent('e1', T0));
    const stored = JSON.parse(JSON.stringify(state)) as ConnectionState;
    expect(JSON.stringify(toConnectionView(stored, T0))).toBe(JSON.stringify(toConnectionView(state, T0)));
  });

  it('throws for a connection that is not listed', () => {
    expect(() => toConnectionView(initialConnectionState(ORG, CONNECTION), T0)).toThrow();
    expect(() => toConnectionView(stateOf(callEvent('e1', T0)), T0)).toThrow();
    expect(() => toConnectionView(stateOf(configuredEvent('c1', T0), deletedEvent('d1', T0 + 1)), T0)).toThrow();
  });
});

describe('the view is a function of the set of events (CONTRACT 3: any order, pruned whenever)', () => {
  const CONNECTIONS = ['c1', 'c2', 'c3'];
  // Colliding times, spread over more than the 60-minute window.
  const TIMES = [T0 - 75 * MINUTE, T0 - 60 * MINUTE, T0 - 59 * MINUTE, T0 - 20 * MINUTE, T0, T0 + SECOND, T0 + MINUTE];
  const LABELS = ['ghana', 'prod', 'backup'];

  const specArb = fc.record({
    connectionId: fc.constantFrom(...CONNECTIONS),
    at: fc.constantFrom(...TIMES),
    // A short random prefix makes event_id ties break in an order unrelated to generation order.
    idPrefix: fc.constantFrom('a', 'b', 'c'),
    kind: fc.oneof(
      fc.record({
        type: fc.constant('configured' as const),
        provider: fc.constantFrom(...PROVIDERS),
        status: fc.constantFrom('active' as const, 'inactive' as const),
        labels: fc.subarray(LABELS),
        fixed: fc.integer({ min: 0, max: 500 }),
      }),
      fc.record({
        type: fc.constant('status' as const),
        status: fc.constantFrom('active' as const, 'inactive' as const),
      }),
      fc.record({ type: fc.constant('labels' as const), labels: fc.subarray(LABELS) }),
      fc.record({ type: fc.constant('deleted' as const) }),
      fc.record({
        type: fc.constant('call' as const),
        outcome: fc.constantFrom('success' as const, 'failure' as const),
        latency: fc.constantFrom(100, 3000, 3001),
        errorCode: fc.constantFrom(undefined, 'timeout', 'card_declined'),
      }),
      fc.record({
        type: fc.constant('validation' as const),
        result: fc.constantFrom('success' as const, 'failure' as const),
        error: fc.constantFrom(undefined, 'bad key'),
      }),
    ),
  });
  type Spec = typeof specArb extends fc.Arbitrary<infer S> ? S : never;

  function eventOf(spec: Spec, index: number): ConnectionEvent {
    const id = `${spec.idPrefix}${index}`;
    const where = { connectionId: spec.connectionId };
    const k = spec.kind;
    switch (k.type) {
      case 'configured':
        return configuredEvent(
          id,
          spec.at,
          {
            provider: k.provider,
            status: k.status,
            labels: k.labels,
            fee_structure: { percentage: 1, fixed: k.fixed, per_method: {}, per_currency: {} },
          },
          where,
        );
      case 'status':
        return statusChangedEvent(id, spec.at, k.status, where);
      case 'labels':
        return labelsChangedEvent(id, spec.at, k.labels, where);
      case 'deleted':
        return deletedEvent(id, spec.at, where);
      case 'call':
        return callEvent(
          id,
          spec.at,
          k.errorCode === undefined
            ? { outcome: k.outcome, latency_ms: k.latency }
            : { outcome: k.outcome, latency_ms: k.latency, error_code: k.errorCode },
          where,
        );
      case 'validation':
        return validationEvent(
          id,
          spec.at,
          k.error === undefined ? { result: k.result } : { result: k.result, error: k.error },
          where,
        );
    }
  }

  interface Delivery {
    order: ConnectionEvent[];
    /** Per step: prune every state at the stream time so far. */
    prunes: boolean[];
    /** Per step: replace the state by its JSON round trip (as storing it in jsonb does). */
    roundTrips: boolean[];
  }

  /** What the API would show: per connection, listed or not, its view, and the pruned state. */
  function outcome({ order, prunes, roundTrips }: Delivery) {
    const states = new Map<string, ConnectionState>();
    let streamTime: number | null = null;
    order.forEach((event, i) => {
      let state = states.get(event.connectionId) ?? initialConnectionState(ORG, event.connectionId);
      applyEvent(state, event);
      streamTime = advanceStreamTime(streamTime, event.occurredAt);
      if (roundTrips[i]) state = JSON.parse(JSON.stringify(state)) as ConnectionState;
      states.set(event.connectionId, state);
      if (prunes[i]) for (const s of states.values()) pruneHealthWindow(s, streamTime);
    });
    const viewJson = (state: ConnectionState) =>
      isListed(state) ? JSON.stringify(toConnectionView(state, streamTime) satisfies ConnectionView) : null;
    return CONNECTIONS.map((id) => {
      const state = states.get(id) ?? initialConnectionState(ORG, id);
      // Before the final prune the states may still differ in buckets that left the window; the
      // views may not.
      const jsonBeforePrune = viewJson(state);
      if (streamTime !== null) pruneHealthWindow(state, streamTime);
      return { id, listed: isListed(state), json: viewJson(state), jsonBeforePrune, state };
    });
  }

  const scenarioArb = fc
    .array(specArb, { minLength: 1, maxLength: 40 })
    .map((specs) => specs.map(eventOf))
    .chain((events) => {
      const n = events.length;
      const delivery = fc.record({
        order: fc.shuffledSubarray(events, { minLength: n, maxLength: n }),
        prunes: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
        roundTrips: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
      });
      return fc.tuple(fc.constant(events), fc.array(delivery, { minLength: 3, maxLength: 3 }));
    });

  it('gives byte-identical views, the same listing and equal states for every delivery order', () => {
    fc.assert(
      fc.property(scenarioArb, ([events, deliveries]) => {
        const n = events.length;
        const reference = outcome({ order: events, prunes: Array(n).fill(false), roundTrips: Array(n).fill(false) });
        for (const delivery of deliveries) {
          const other = outcome(delivery);
          const seen = (o: (typeof reference)[number]) => [o.id, o.listed, o.json, o.jsonBeforePrune];
          expect(other.map(seen)).toEqual(reference.map(seen));
          expect(other.map((o) => o.jsonBeforePrune)).toEqual(other.map((o) => o.json));
          expect(other.map((o) => o.state)).toEqual(reference.map((o) => o.state));
        }
      }),
      { numRuns: 300, seed: 20261124 },
    );
  });
});
