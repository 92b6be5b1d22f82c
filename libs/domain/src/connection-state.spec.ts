import {
  ConnectionState,
  advanceStreamTime,
  applyEvent,
  initialConnectionState,
  isCustomerDecline,
  isListed,
  laterThan,
  pruneHealthWindow,
} from './connection-state';
import { ConnectionEvent } from './event';
import {
  CONNECTION,
  MINUTE,
  ORG,
  SECOND,
  T0,
  callEvent,
  config,
  configuredEvent,
  deletedEvent,
  labelsChangedEvent,
  statusChangedEvent,
  validationEvent,
} from './testing/events';

function stateOf(...events: ConnectionEvent[]): ConnectionState {
  const state = initialConnectionState(ORG, CONNECTION);
  for (const event of events) applyEvent(state, event);
  return state;
}

/** T0 is a minute boundary: its bucket. */
const B0 = T0 / MINUTE;

describe('initialConnectionState', () => {
  it('has no registers, zero counters and no buckets', () => {
    expect(initialConnectionState('o', 'c')).toEqual({
      orgId: 'o',
      connectionId: 'c',
      exists: null,
      provider: null,
      mode: null,
      status: null,
      capabilities: null,
      routingHints: null,
      labels: null,
      feeStructure: null,
      createdAt: null,
      updatedAt: null,
      totalCalls: 0,
      successfulCalls: 0,
      failedCalls: 0,
      totalLatencyMs: 0,
      lastSuccessAt: null,
      lastFailureAt: null,
      validationFailures: 0,
      lastValidation: null,
      buckets: [],
    });
    expect(isListed(initialConnectionState('o', 'c'))).toBe(false);
  });
});

describe('applyEvent', () => {
  it('changes the state in place and returns it', () => {
    const state = initialConnectionState(ORG, CONNECTION);
    expect(applyEvent(state, callEvent('e1', T0))).toBe(state);
    expect(state.totalCalls).toBe(1);
  });

  it('refuses an event of another connection', () => {
    const state = initialConnectionState(ORG, CONNECTION);
    expect(() => applyEvent(state, callEvent('e1', T0, {}, { connectionId: 'other' }))).toThrow();
    expect(() => applyEvent(state, callEvent('e1', T0, {}, { orgId: 'other' }))).toThrow();
  });
});

describe('calls (CONTRACT 3.1)', () => {
  it('count total, successful, failed calls and the latency sum', () => {
    const state = stateOf(
      callEvent('e1', T0, { outcome: 'success', latency_ms: 100 }),
      callEvent('e2', T0, { outcome: 'failure', latency_ms: 250, error_code: 'timeout' }),
      callEvent('e3', T0, { outcome: 'success', latency_ms: 0 }),
    );
    // 3 calls, 2 successes, 1 failure, 100 + 250 + 0 = 350 ms.
    expect([state.totalCalls, state.successfulCalls, state.failedCalls, state.totalLatencyMs]).toEqual([3, 2, 1, 350]);
  });

  it('keep the latest success and the latest failure, whatever the order', () => {
    const state = stateOf(
      callEvent('e1', T0 + 5 * SECOND, { outcome: 'success' }),
      callEvent('e2', T0 + 1 * SECOND, { outcome: 'success' }),
      callEvent('e3', T0 + 2 * SECOND, { outcome: 'failure' }),
      callEvent('e4', T0 + 9 * SECOND, { outcome: 'failure' }),
      callEvent('e5', T0 + 3 * SECOND, { outcome: 'failure' }),
    );
    expect(state.lastSuccessAt).toBe(T0 + 5 * SECOND);
    expect(state.lastFailureAt).toBe(T0 + 9 * SECOND);
  });

  it('fall into the minute bucket floor(occurred_at / 60 s), kept in ascending order', () => {
    const state = stateOf(
      callEvent('e1', T0 + 2 * MINUTE + 59_999),
      callEvent('e2', T0),
      callEvent('e3', T0 + 2 * MINUTE),
      callEvent('e4', T0 - 1),
      callEvent('e5', T0 + MINUTE - 1),
    );
    expect(state.buckets.map((b) => [b.minute - B0, b.calls])).toEqual([
      [-1, 1],
      [0, 2],
      [2, 2],
    ]);
  });

  it('count a failure as technical unless its error_code is a customer-side decline', () => {
    const state = stateOf(
      callEvent('e1', T0, { outcome: 'failure', error_code: 'insufficient_funds' }),
      callEvent('e2', T0, { outcome: 'failure', error_code: 'card_declined' }),
      callEvent('e3', T0, { outcome: 'failure', error_code: 'invalid_card' }),
      callEvent('e4', T0, { outcome: 'failure', error_code: 'expired_card' }),
      callEvent('e5', T0, { outcome: 'failure', error_code: 'do_not_honor' }),
      callEvent('e6', T0, { outcome: 'failure', error_code: 'timeout' }),
      callEvent('e7', T0, { outcome: 'failure' }),
      callEvent('e8', T0, { outcome: 'failure', error_code: 'CARD_DECLINED' }),
      // A success's error_code means nothing.
      callEvent('e9', T0, { outcome: 'success', error_code: 'timeout' }),
    );
    // e6 (timeout), e7 (no code), e8 (codes are case-sensitive): 3 technical failures of 8 failures.
    expect(state.buckets).toMatchObject([{ minute: B0, calls: 9, technicalFailures: 3, slowCalls: 0, declines: 5 }]);
    expect(state.failedCalls).toBe(8);
  });

  it('count a call as slow when latency_ms > 3000', () => {
    const state = stateOf(
      callEvent('e1', T0, { latency_ms: 3000 }),
      callEvent('e2', T0, { latency_ms: 3001 }),
      callEvent('e3', T0, { latency_ms: 600_000, outcome: 'failure', error_code: 'card_declined' }),
    );
    expect(state.buckets).toMatchObject([
      { minute: B0, calls: 3, technicalFailures: 0, slowCalls: 2, maxLatencyMs: 600_000 },
    ]);
  });

  it('are counted before the connection is configured, and it stays unlisted', () => {
    const state = stateOf(callEvent('e1', T0));
    expect(state.totalCalls).toBe(1);
    expect(isListed(state)).toBe(false);
    applyEvent(state, configuredEvent('c1', T0 + MINUTE));
    expect(isListed(state)).toBe(true);
    expect(state.totalCalls).toBe(1);
  });
});

describe('isCustomerDecline', () => {
  it('knows the five declines, exactly', () => {
    for (const code of ['insufficient_funds', 'card_declined', 'invalid_card', 'expired_card', 'do_not_honor']) {
      expect(isCustomerDecline(code)).toBe(true);
    }
    expect(isCustomerDecline(undefined)).toBe(false);
    expect(isCustomerDecline('Card_Declined')).toBe(false);
    expect(isCustomerDecline('timeout')).toBe(false);
  });
});

describe('validations (CONTRACT 3.1)', () => {
  it('count failures, all time', () => {
    const state = stateOf(
      validationEvent('v1', T0, { result: 'failure', error: 'bad key' }),
      validationEvent('v2', T0 + 1, { result: 'success' }),
      validationEvent('v3', T0 + 2, { result: 'failure' }),
    );
    expect(state.validationFailures).toBe(2);
  });

  it('keep the one with the greatest occurred_at as the latest', () => {
    const later = validationEvent('a', T0 + MINUTE, { result: 'failure', error: 'bad key' });
    const earlier = validationEvent('z', T0, { result: 'success' });
    const expected = { at: T0 + MINUTE, eventId: 'a', result: 'failure', error: 'bad key' };
    expect(stateOf(later, earlier).lastValidation).toEqual(expected);
    expect(stateOf(earlier, later).lastValidation).toEqual(expected);
  });

  it('break occurred_at ties by the greater event_id', () => {
    const a = validationEvent('a', T0, { result: 'failure', error: 'x' });
    const b = validationEvent('b', T0, { result: 'success' });
    const expected = { at: T0, eventId: 'b', result: 'success', error: null };
    expect(stateOf(a, b).lastValidation).toEqual(expected);
    expect(stateOf(b, a).lastValidation).toEqual(expected);
  });

  it('store a missing error as null (JSON has no undefined)', () => {
    expect(stateOf(validationEvent('v', T0, { result: 'failure' })).lastValidation?.error).toBeNull();
  });
});

describe('config registers (CONTRACT 3.2)', () => {
  const full = config({
    provider: 'hubtel',
    mode: 'sandbox',
    status: 'inactive',
    capabilities: { refunds: true },
    routing_hints: { country_preference: ['GH'], method_bias: { card: 'prefer' }, fallback_only: true },
    labels: ['ghana'],
    fee_structure: { percentage: 1.5, fixed: 100, per_method: {}, per_currency: {} },
  });

  it('connection.configured writes all seven and sets exists', () => {
    const state = stateOf(configuredEvent('c1', T0, full));
    const w = { at: T0, eventId: 'c1' };
    expect(state.exists).toEqual({ value: true, ...w });
    expect(state.provider).toEqual({ value: 'hubtel', ...w });
    expect(state.mode).toEqual({ value: 'sandbox', ...w });
    expect(state.status).toEqual({ value: 'inactive', ...w });
    expect(state.capabilities).toEqual({ value: { refunds: true }, ...w });
    expect(state.routingHints).toEqual({ value: full.routing_hints, ...w });
    expect(state.labels).toEqual({ value: ['ghana'], ...w });
    expect(state.feeStructure).toEqual({ value: full.fee_structure, ...w });
    expect(isListed(state)).toBe(true);
  });

  it('a later configured replaces the whole config (left-out members are back to defaults)', () => {
    const state = stateOf(configuredEvent('c1', T0, full), configuredEvent('c2', T0 + 1, { provider: 'stripe' }));
    expect(state.provider?.value).toBe('stripe');
    expect(state.mode?.value).toBe('live');
    expect(state.labels?.value).toEqual([]);
    expect(state.capabilities?.value).toEqual({});
  });

  it('an older configured changes no register', () => {
    const newer = stateOf(configuredEvent('c2', T0 + 1, { provider: 'stripe' }));
    const both = stateOf(configuredEvent('c2', T0 + 1, { provider: 'stripe' }), configuredEvent('c1', T0, full));
    expect(both.provider).toEqual(newer.provider);
    expect(both.labels).toEqual(newer.labels);
  });

  it('ties on occurred_at go to the greater event_id, in both orders', () => {
    const a = configuredEvent('a', T0, { provider: 'hubtel' });
    const b = configuredEvent('b', T0, { provider: 'mpesa' });
    expect(stateOf(a, b).provider).toEqual({ value: 'mpesa', at: T0, eventId: 'b' });
    expect(stateOf(b, a).provider).toEqual({ value: 'mpesa', at: T0, eventId: 'b' });
  });

  it('event_ids compare as plain JS strings (UTF-16 code units, "B" < "a")', () => {
    const upper = configuredEvent('B', T0, { provider: 'hubtel' });
    const lower = configuredEvent('a', T0, { provider: 'mpesa' });
    expect(stateOf(upper, lower).provider?.value).toBe('mpesa');
    expect(stateOf(lower, upper).provider?.value).toBe('mpesa');
  });

  it('status_changed writes status only, when later than its register', () => {
    const configured = configuredEvent('c1', T0, full); // status inactive
    const activated = statusChangedEvent('s1', T0 + 1, 'active');
    expect(stateOf(configured, activated).status?.value).toBe('active');
    expect(stateOf(activated, configured).status?.value).toBe('active');
    expect(stateOf(activated, configured).mode?.value).toBe('sandbox');
    // A configured after the status change wins again.
    expect(stateOf(activated, configured, configuredEvent('c2', T0 + 2, full)).status?.value).toBe('inactive');
  });

  it('status_changed alone does not make a connection exist', () => {
    const state = stateOf(statusChangedEvent('s1', T0, 'active'), labelsChangedEvent('l1', T0, ['x']));
    expect(isListed(state)).toBe(false);
    expect(state.exists).toBeNull();
  });

  it('an older status_changed loses to the configured status', () => {
    const state = stateOf(statusChangedEvent('s0', T0 - 1, 'active'), configuredEvent('c1', T0, full));
    expect(state.status).toEqual({ value: 'inactive', at: T0, eventId: 'c1' });
  });

  it('labels_changed writes labels only, when later than its register', () => {
    const configured = configuredEvent('c1', T0, full);
    const relabelled = labelsChangedEvent('l1', T0 + 1, ['prod', 'gh']);
    expect(stateOf(configured, relabelled).labels?.value).toEqual(['prod', 'gh']);
    expect(stateOf(relabelled, configured).labels?.value).toEqual(['prod', 'gh']);
    expect(stateOf(labelsChangedEvent('l0', T0 - 1, ['old']), configured).labels?.value).toEqual(['ghana']);
  });

  it('deleted clears exists; a later configured sets it again, an older one does not', () => {
    const deleted = deletedEvent('d1', T0 + MINUTE);
    expect(isListed(stateOf(configuredEvent('c1', T0), deleted))).toBe(false);
    expect(isListed(stateOf(deleted, configuredEvent('c1', T0)))).toBe(false);
    expect(isListed(stateOf(deleted, configuredEvent('c1', T0), configuredEvent('c2', T0 + 2 * MINUTE)))).toBe(true);
    // Same occurred_at: the greater event_id wins ("d1" > "c1", "e1" > "d1").
    expect(isListed(stateOf(configuredEvent('c1', T0 + MINUTE), deleted))).toBe(false);
    expect(isListed(stateOf(deleted, configuredEvent('e1', T0 + MINUTE)))).toBe(true);
  });

  it('applying the very same event twice changes no register', () => {
    const once = stateOf(configuredEvent('c1', T0, full), statusChangedEvent('s1', T0 + 1, 'active'));
    const twice = stateOf(
      configuredEvent('c1', T0, full),
      statusChangedEvent('s1', T0 + 1, 'active'),
      configuredEvent('c1', T0, full),
      statusChangedEvent('s1', T0 + 1, 'active'),
    );
    expect(twice).toEqual(once);
  });
});

describe('created_at and updated_at', () => {
  it('created_at is the earliest configured, also one that lost every register', () => {
    const state = stateOf(configuredEvent('c2', T0 + MINUTE, { provider: 'stripe' }), configuredEvent('c1', T0));
    expect(state.createdAt).toBe(T0);
    expect(state.provider?.value).toBe('stripe');
  });

  it('created_at counts configured events before a deletion', () => {
    const state = stateOf(configuredEvent('c1', T0), deletedEvent('d1', T0 + 1), configuredEvent('c2', T0 + 2));
    expect(state.createdAt).toBe(T0);
  });

  it('created_at ignores every other type', () => {
    const state = stateOf(
      callEvent('e1', T0 - MINUTE),
      statusChangedEvent('s1', T0 - MINUTE, 'active'),
      configuredEvent('c1', T0),
    );
    expect(state.createdAt).toBe(T0);
  });

  it('updated_at is the latest event of any type, also writes that lost', () => {
    const types = [
      (at: number) => callEvent('x', at),
      (at: number) => validationEvent('x', at, { result: 'success' }),
      (at: number) => statusChangedEvent('x', at, 'active'),
      (at: number) => labelsChangedEvent('x', at, []),
      (at: number) => deletedEvent('x', at),
      (at: number) => configuredEvent('x', at),
    ];
    for (const latest of types) {
      const state = stateOf(configuredEvent('c1', T0), latest(T0 + MINUTE), configuredEvent('c0', T0 - MINUTE));
      expect(state.updatedAt).toBe(T0 + MINUTE);
    }
    // updated_at is a maximum: an older event leaves it where it is.
    expect(stateOf(configuredEvent('c1', T0), statusChangedEvent('s1', T0 - 1, 'active')).updatedAt).toBe(T0);
  });

  it('updated_at counts a config write that lost the register by event_id', () => {
    const state = stateOf(statusChangedEvent('z', T0 + 5, 'inactive'), statusChangedEvent('a', T0 + 5, 'active'));
    expect(state.status?.eventId).toBe('z');
    expect(state.updatedAt).toBe(T0 + 5);
  });
});

describe('laterThan', () => {
  it('orders by occurred_at, then event_id', () => {
    expect(laterThan({ at: 2, eventId: 'a' }, { at: 1, eventId: 'z' })).toBe(true);
    expect(laterThan({ at: 1, eventId: 'z' }, { at: 2, eventId: 'a' })).toBe(false);
    expect(laterThan({ at: 1, eventId: 'b' }, { at: 1, eventId: 'a' })).toBe(true);
    expect(laterThan({ at: 1, eventId: 'a' }, { at: 1, eventId: 'b' })).toBe(false);
    expect(laterThan({ at: 1, eventId: 'a' }, { at: 1, eventId: 'a' })).toBe(false);
    expect(laterThan({ at: 1, eventId: 'ab' }, { at: 1, eventId: 'a' })).toBe(true);
    expect(laterThan({ at: 1, eventId: 'a' }, { at: 1, eventId: 'B' })).toBe(true);
    // Code units, not code points: U+FF5E (one unit) > U+1F600 (surrogates 0xD83D ...).
    expect(laterThan({ at: 1, eventId: '\uff5e' }, { at: 1, eventId: '😀' })).toBe(true);
  });
});

describe('advanceStreamTime', () => {
  it('is the maximum, and starts from null', () => {
    expect(advanceStreamTime(null, T0)).toBe(T0);
    expect(advanceStreamTime(T0, T0 + 1)).toBe(T0 + 1);
    expect(advanceStreamTime(T0, T0 - 1)).toBe(T0);
    expect(advanceStreamTime(null, -5)).toBe(-5);
  });
});

describe('pruneHealthWindow', () => {
  it('keeps buckets b-59 .. b and drops older ones', () => {
    const streamTime = T0 + 30 * SECOND; // bucket b = B0
    const state = stateOf(
      callEvent('e1', T0 - 61 * MINUTE),
      callEvent('e2', T0 - 60 * MINUTE + 59_999), // minute b-60: out
      callEvent('e3', T0 - 59 * MINUTE), // minute b-59: in
      callEvent('e4', T0),
    );
    expect(pruneHealthWindow(state, streamTime)).toBe(state);
    expect(state.buckets.map((b) => b.minute - B0)).toEqual([-59, 0]);
    // Lifetime counters keep every call.
    expect(state.totalCalls).toBe(4);
  });

  it('changes nothing when every bucket is in the window', () => {
    const state = stateOf(callEvent('e1', T0));
    pruneHealthWindow(state, T0 + 59 * MINUTE);
    expect(state.buckets).toHaveLength(1);
    pruneHealthWindow(state, T0 + 60 * MINUTE);
    expect(state.buckets).toHaveLength(0);
  });
});

describe('the state is plain JSON', () => {
  it('survives JSON.stringify / JSON.parse unchanged', () => {
    const state = stateOf(
      configuredEvent('c1', T0, { capabilities: { a: [1, { b: null }] }, labels: ['x'] }),
      callEvent('e1', T0, { outcome: 'failure', error_code: 'timeout', latency_ms: 4000 }),
      validationEvent('v1', T0, { result: 'failure' }),
      deletedEvent('d1', T0 + 1),
    );
    expect(JSON.parse(JSON.stringify(state))).toStrictEqual(state);
  });
});
