import { applyEvent, ConnectionState, initialConnectionState, latencyBucket } from './connection-state';
import { connectionStats, parseStatsWindow, statsWindowText } from './connection-stats';
import { CallCompletedData } from './event';
import { validationCapApplies } from './health';
import { callEvent, configuredEvent, T0, validationEvent } from './testing/events';
import { MINUTE_MS } from './time';

// T0 is 2026-11-24T10:00:00.000Z, the start of a minute.
let n = 0;
function withCalls(calls: Array<Partial<CallCompletedData> & { at?: number }>): ConnectionState {
  const state = initialConnectionState('org_1', 'paystack_gh_primary');
  applyEvent(state, configuredEvent('cfg', T0));
  for (const { at, ...data } of calls) applyEvent(state, callEvent(`call-${n++}`, at ?? T0, data));
  return state;
}
const stats = (state: ConnectionState, streamTime: number | null) =>
  connectionStats('paystack_gh_primary', state.buckets, streamTime, validationCapApplies(state));

describe('connectionStats: before any event', () => {
  it('has nulls for stream time and window, zeros, and no minutes', () => {
    expect(JSON.stringify(stats(withCalls([]), null))).toBe(
      '{"id":"paystack_gh_primary","stream_time":null,"window":{"from":null,"to":null},"calls":0,"successful":0,' +
        '"failed":0,"technical_failures":0,"declines":0,"slow":0,"success_rate":null,' +
        '"latency_ms":{"p50":null,"p90":null,"p95":null,"p99":null,"max":null},' +
        '"error_codes":[],"methods":[],"currencies":[],"minutes":[],"outlook":null}',
    );
  });
});

describe('connectionStats: the window', () => {
  it('runs from the start of b-59 to the end of b, with 60 minutes oldest first', () => {
    const s = stats(withCalls([]), T0 + 15_250);
    expect(s.stream_time).toBe('2026-11-24T10:00:15.250Z');
    expect(s.window).toEqual({ from: '2026-11-24T09:01:00.000Z', to: '2026-11-24T10:01:00.000Z' });
    expect(s.minutes).toHaveLength(60);
    expect(s.minutes[0]).toEqual({ at: '2026-11-24T09:01:00.000Z', calls: 0, technical_failures: 0, slow: 0 });
    expect(s.minutes[59].at).toBe('2026-11-24T10:00:00.000Z');
    // An empty window: zeros and null latencies.
    expect(s.latency_ms).toEqual({ p50: null, p90: null, p95: null, p99: null, max: null });
  });

  it('drops calls as stream time moves past them: counted at b-59, gone at b-60', () => {
    const state = withCalls([{ latency_ms: 100 }]);
    expect(stats(state, T0 + 59 * MINUTE_MS).calls).toBe(1);
    expect(stats(state, T0 + 59 * MINUTE_MS).minutes[0]).toEqual({
      at: '2026-11-24T10:00:00.000Z',
      calls: 1,
      technical_failures: 0,
      slow: 0,
    });
    const later = stats(state, T0 + 60 * MINUTE_MS);
    expect(later.calls).toBe(0);
    expect(later.latency_ms.max).toBeNull();
    expect(later.minutes.every((m) => m.calls === 0)).toBe(true);
  });
});

describe('connectionStats: counts', () => {
  it('splits failures into technical ones and customer declines, and counts slow calls (> 3000 ms)', () => {
    const state = withCalls([
      { outcome: 'success', latency_ms: 3000 },
      { outcome: 'success', latency_ms: 3001 },
      { outcome: 'failure', error_code: 'timeout', latency_ms: 5000 },
      { outcome: 'failure', error_code: 'card_declined', latency_ms: 10 },
      { outcome: 'failure', latency_ms: 10 },
    ]);
    const s = stats(state, T0);
    expect([s.calls, s.successful, s.failed, s.technical_failures, s.declines, s.slow]).toEqual([5, 2, 3, 2, 1, 2]);
    expect(s.minutes[59]).toEqual({ at: '2026-11-24T10:00:00.000Z', calls: 5, technical_failures: 2, slow: 2 });
  });
});

describe('connectionStats: latency percentiles from the histogram', () => {
  it('n = 1: every percentile is the bound of that call, max is exact', () => {
    const s = stats(withCalls([{ latency_ms: 412 }]), T0);
    expect(s.latency_ms).toEqual({ p50: 500, p90: 500, p95: 500, p99: 500, max: 412 });
  });

  it('a latency exactly on a bound counts in that bound, one above in the next', () => {
    expect(latencyBucket(0)).toBe(0);
    expect(latencyBucket(10)).toBe(0);
    expect(latencyBucket(11)).toBe(1);
    expect(latencyBucket(3000)).toBe(11);
    expect(latencyBucket(3001)).toBe(12);
    expect(latencyBucket(600000)).toBe(16);
    expect(stats(withCalls([{ latency_ms: 200 }]), T0).latency_ms.p50).toBe(200);
    expect(stats(withCalls([{ latency_ms: 201 }]), T0).latency_ms.p50).toBe(300);
  });

  it('pQ is the smallest bound with at least ceil(Q·n/100) calls at or below it', () => {
    // 100 calls: 50 at 10 ms, 40 at 100 ms, 5 at 750 ms, 4 at 3000 ms, 1 at 600000 ms.
    const calls = [
      ...Array.from({ length: 50 }, () => ({ latency_ms: 10 })),
      ...Array.from({ length: 40 }, () => ({ latency_ms: 100 })),
      ...Array.from({ length: 5 }, () => ({ latency_ms: 750 })),
      ...Array.from({ length: 4 }, () => ({ latency_ms: 3000 })),
      { latency_ms: 600000 },
    ];
    // p50: 50 needed, 50 at ≤ 10. p90: 90 at ≤ 100. p95: 95 at ≤ 750. p99: 99 at ≤ 3000.
    expect(stats(withCalls(calls), T0).latency_ms).toEqual({ p50: 10, p90: 100, p95: 750, p99: 3000, max: 600000 });
    // 3 calls: p50 needs ceil(1.5) = 2 calls, p90 ceil(2.7) = 3.
    expect(stats(withCalls([{ latency_ms: 5 }, { latency_ms: 40 }, { latency_ms: 90 }]), T0).latency_ms).toEqual({
      p50: 50,
      p90: 100,
      p95: 100,
      p99: 100,
      max: 90,
    });
  });

  it('merges minutes: the histogram and max over every minute of the window', () => {
    const s = stats(
      withCalls([
        { latency_ms: 20, at: T0 },
        { latency_ms: 2500, at: T0 + 30 * MINUTE_MS },
      ]),
      T0 + 30 * MINUTE_MS,
    );
    expect(s.latency_ms).toEqual({ p50: 25, p90: 3000, p95: 3000, p99: 3000, max: 2500 });
  });
});

describe('connectionStats: error codes, methods, currencies', () => {
  it('ranks error codes by failures, ties by code, unknown for a failure without one, at most 10', () => {
    const calls: Partial<CallCompletedData>[] = [];
    const add = (code: string | undefined, times: number) => {
      for (let i = 0; i < times; i++) calls.push({ outcome: 'failure', error_code: code });
    };
    add('timeout', 3);
    add('card_declined', 3); // a tie with timeout: card_declined comes first in string order
    add(undefined, 2);
    for (let i = 0; i < 10; i++) add(`code_${String.fromCharCode(106 - i)}`, 1); // code_j .. code_a
    calls.push({ outcome: 'success', error_code: 'ignored_on_success' });
    const s = stats(withCalls(calls), T0);
    expect(s.error_codes).toEqual([
      { code: 'card_declined', count: 3 },
      { code: 'timeout', count: 3 },
      { code: 'unknown', count: 2 },
      ...['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((c) => ({ code: `code_${c}`, count: 1 })),
    ]);
  });

  it('groups calls by method and currency with their technical failures, ties by value, at most 20', () => {
    const s = stats(
      withCalls([
        { method: 'mobile_money', currency: 'GHS' },
        { method: 'card', currency: 'GHS', outcome: 'failure', error_code: 'timeout' },
        { method: 'card', currency: 'KES', outcome: 'failure', error_code: 'insufficient_funds' },
        { method: 'bank', currency: 'KES' },
        { method: 'bank' },
        {},
      ]),
      T0,
    );
    // Success rates: 2 of 2 → low 2 / (2 + z²) = 0.34237; 1 of 2 → 0.0945 .. 0.9055 (success-rate.spec);
    // 1 of 1 → low 1 / (1 + z²) = 0.20655. A decline (insufficient_funds) is not a technical failure.
    const two = { value: 1, low: 0.3424, high: 1 };
    const half = { value: 0.5, low: 0.0945, high: 0.9055 };
    expect(s.methods).toEqual([
      { method: 'bank', calls: 2, technical_failures: 0, success_rate: two },
      { method: 'card', calls: 2, technical_failures: 1, success_rate: half },
      { method: 'mobile_money', calls: 1, technical_failures: 0, success_rate: { value: 1, low: 0.2065, high: 1 } },
    ]);
    expect(s.currencies).toEqual([
      { currency: 'GHS', calls: 2, technical_failures: 1, success_rate: half },
      { currency: 'KES', calls: 2, technical_failures: 0, success_rate: two },
    ]);
    // The whole window: 6 calls, 1 technical failure. p = 5/6, z²/6 = 0.64024, d = 1.64024;
    // center = (0.83333 + 0.32012) / d = 0.70322; half = z·√(0.02315 + 0.02668) / d = 0.26672:
    // 0.43650 .. 0.96995. Members in the contract's order, byte for byte.
    expect(s.success_rate).toEqual({ value: 0.8333, low: 0.4365, high: 0.9699 });
    expect(Object.keys(s)).toEqual([
      'id',
      'stream_time',
      'window',
      'calls',
      'successful',
      'failed',
      'technical_failures',
      'declines',
      'slow',
      'success_rate',
      'latency_ms',
      'error_codes',
      'methods',
      'currencies',
      'minutes',
      'outlook',
    ]);
    expect(JSON.stringify(s.methods[1])).toBe(
      '{"method":"card","calls":2,"technical_failures":1,"success_rate":{"value":0.5,"low":0.0945,"high":0.9055}}',
    );
    expect(JSON.stringify(s.currencies[1])).toBe(
      '{"currency":"KES","calls":2,"technical_failures":0,"success_rate":{"value":1,"low":0.3424,"high":1}}',
    );
    const many = withCalls(Array.from({ length: 25 }, (_, i) => ({ method: `m${String(i).padStart(2, '0')}` })));
    expect(stats(many, T0).methods).toHaveLength(20);
    expect(stats(many, T0).methods[19].method).toBe('m19');
  });

  it('takes keys that are not safe as object keys as they are', () => {
    const s = stats(withCalls([{ outcome: 'failure', error_code: '__proto__', method: 'constructor' }]), T0);
    expect(s.error_codes).toEqual([{ code: '__proto__', count: 1 }]);
    expect(s.methods).toEqual([
      { method: 'constructor', calls: 1, technical_failures: 1, success_rate: { value: 0, low: 0, high: 0.7935 } },
    ]);
  });
});

describe('connectionStats: success_rate and outlook at the edges (CONTRACT 1.5b)', () => {
  it('no calls in the window: success_rate null, outlook null (the status stays unknown)', () => {
    const s = stats(withCalls([{ at: T0 - 2 * 60 * MINUTE_MS }]), T0);
    expect([s.calls, s.success_rate, s.outlook]).toEqual([0, null, null]);
  });

  it('one call: 1 from 0.2065, unknown now and after (N < 20 throughout): no outlook', () => {
    const s = stats(withCalls([{}]), T0);
    expect(s.success_rate).toEqual({ value: 1, low: 0.2065, high: 1 });
    expect(s.outlook).toBeNull();
  });

  it('all good, 40 calls: 1 from 40 / (40 + z²) = 0.91238; healthy until N = 40·2^(-a/15) < 20 at a = 16', () => {
    // a = 15: N = 20, score 100, healthy. a = 16: N = 19.14 < 20: unknown.
    const state = withCalls(Array.from({ length: 40 }, () => ({})));
    const s = stats(state, T0 + 30_000);
    expect(s.success_rate).toEqual({ value: 1, low: 0.9124, high: 1 });
    expect(s.outlook).toEqual({ at: '2026-11-24T10:16:00.000Z', to: 'unknown' });
    // Later in stream time, the outlook counts from there; from minute 16 on nothing changes any more.
    expect(stats(state, T0 + 10 * MINUTE_MS).outlook).toEqual({ at: '2026-11-24T10:16:00.000Z', to: 'unknown' });
    expect(stats(state, T0 + 16 * MINUTE_MS).outlook).toBeNull();
  });

  it('all failed, 60 calls: 0, high z² / (60 + z²) = 0.06017; unhealthy until the 60th bucket', () => {
    // a = 59: N = F = 60·2^(-59/15) = 3.927, score 100·5 / 8.927 = 56.01 < 60: unhealthy. a = 60: the
    // bucket has left the window (N = 0: 100, unknown). So the change is at b + 60, the last one looked at.
    const state = withCalls(Array.from({ length: 60 }, () => ({ outcome: 'failure' as const })));
    const s = stats(state, T0);
    expect(s.success_rate).toEqual({ value: 0, low: 0, high: 0.0602 });
    expect(s.outlook).toEqual({ at: '2026-11-24T11:00:00.000Z', to: 'unknown' });
  });

  it('a capped connection: unhealthy at every later minute (the validation cap holds), so no outlook', () => {
    // The same 40 good calls, then a failed validation after the last success: the cap applies.
    const state = withCalls(Array.from({ length: 40 }, () => ({})));
    applyEvent(state, validationEvent('v1', T0 + 1000, { result: 'failure', error: 'invalid key' }));
    expect(validationCapApplies(state)).toBe(true);
    const s = stats(state, T0 + 1000);
    expect(s.success_rate).toEqual({ value: 1, low: 0.9124, high: 1 }); // calls only: the cap is health's
    expect(s.outlook).toBeNull();
    // Without the cap, the same calls change status at minute 16.
    expect(connectionStats('x', state.buckets, T0 + 1000, false).outlook).toEqual({
      at: '2026-11-24T10:16:00.000Z',
      to: 'unknown',
    });
  });

  it('before any event: both null', () => {
    const s = stats(withCalls([{}]), null);
    expect([s.success_rate, s.outlook]).toEqual([null, null]);
  });
});

describe('the stored stats window', () => {
  it('round-trips and gives the same stats at a later stream time', () => {
    const state = withCalls([
      { latency_ms: 120, method: 'card', at: T0 },
      { outcome: 'failure', error_code: 'timeout', latency_ms: 9000, currency: 'NGN', at: T0 + 5 * MINUTE_MS },
    ]);
    const stored = parseStatsWindow(statsWindowText(T0 + 5 * MINUTE_MS, state.buckets));
    expect(stored.streamTimeMs).toBe(T0 + 5 * MINUTE_MS);
    for (const later of [5, 30, 59, 64, 65])
      expect(connectionStats('x', stored.buckets, T0 + later * MINUTE_MS, false)).toEqual(
        connectionStats('x', state.buckets, T0 + later * MINUTE_MS, false),
      );
  });

  it('is the same whatever order the calls came in', () => {
    const calls = [
      { latency_ms: 5, method: 'b', at: T0 + MINUTE_MS },
      { outcome: 'failure' as const, error_code: 'x', method: 'a', at: T0 },
      { latency_ms: 900, currency: 'USD', at: T0 + 2 * MINUTE_MS },
    ];
    const a = withCalls(calls);
    const b = withCalls([...calls].reverse());
    expect(statsWindowText(T0 + 2 * MINUTE_MS, a.buckets)).toBe(statsWindowText(T0 + 2 * MINUTE_MS, b.buckets));
  });
});
