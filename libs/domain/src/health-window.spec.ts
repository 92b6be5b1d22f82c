import fc from 'fast-check';
import { applyEvent, HealthBucket, initialConnectionState } from './connection-state';
import { healthAt, validationCapApplies } from './health';
import {
  healthOfWindow,
  healthSeries,
  healthWindowAt,
  healthWindowText,
  nextStatusChange,
  parseHealthWindow,
  statusOutlook,
  withHealth,
} from './health-window';
import { callEvent, configuredEvent, T0, validationEvent } from './testing/events';
import { toConnectionView } from './connection-view';
import { MINUTE_MS, minuteBucket } from './time';

const M = minuteBucket(T0);
const bucket = (minute: number, calls: number, technicalFailures = 0, slowCalls = 0): HealthBucket => ({
  minute,
  calls,
  technicalFailures,
  slowCalls,
});

describe('healthWindowAt: the buckets that can still count', () => {
  it('keeps b-59 .. b and drops what is older', () => {
    const w = healthWindowAt([bucket(M - 60, 1), bucket(M - 59, 2), bucket(M, 3)], false, M);
    expect(w).toEqual({ renderedAt: M, capped: false, buckets: [bucket(M - 59, 2), bucket(M, 3)] });
  });

  it('holds no bucket before stream time exists', () => {
    expect(healthWindowAt([bucket(M, 3)], true, null)).toEqual({ renderedAt: null, capped: true, buckets: [] });
  });
});

describe('healthWindowText / parseHealthWindow', () => {
  it('round-trips, compactly', () => {
    const w = { renderedAt: M, capped: true, buckets: [bucket(M - 3, 40, 10, 2), bucket(M, 1)] };
    const text = healthWindowText(w);
    expect(text).toBe(`{"r":${M},"c":1,"m":[[${M - 3},40,10,2],[${M},1,0,0]]}`);
    expect(parseHealthWindow(text)).toEqual(w);
    expect(parseHealthWindow(healthWindowText({ renderedAt: null, capped: false, buckets: [] }))).toEqual({
      renderedAt: null,
      capped: false,
      buckets: [],
    });
  });
});

describe('healthOfWindow: a stored window evaluated as stream time moves on (hand-computed)', () => {
  // 40 calls, 10 technical failures in minute M, stored at M.
  const w = healthWindowAt([bucket(M, 40, 10)], false, M);
  it.each([
    // b, N, F: success = (N - F + 5) / (N + 5)
    [0, 'N 40, F 10: 35/45 = 77.78, degraded', 77.78, 'degraded'],
    [15, 'w 1/2: N 20, F 5: 20/25 = 80, degraded', 80, 'degraded'],
    [30, 'w 1/4: N 10, F 2.5: 12.5/15 = 83.33, N < 20: unknown', 83.33, 'unknown'],
    [59, 'w 2^(-59/15) = 0.065456: N 2.6182, F 0.6546: 6.9637/7.6182 = 91.41, unknown', 91.41, 'unknown'],
    [60, 'out of the window: no calls, 100, unknown', 100, 'unknown'],
  ])('%i minutes later: %s', (later, _why, score, status) => {
    expect(healthOfWindow(w, M + later)).toEqual({ score, status });
  });

  it('keeps the validation cap whatever the minute', () => {
    const capped = healthWindowAt([bucket(M, 40)], true, M);
    expect(healthOfWindow(capped, M + 5)).toEqual({ score: 25, status: 'unhealthy' });
    expect(healthOfWindow(capped, M + 90)).toEqual({ score: 25, status: 'unhealthy' });
  });
});

describe('a window stored at one stream time, evaluated at a later one, equals health from the state', () => {
  it('for any calls, validations and two stream times t1 <= t2 (property)', () => {
    const call = fc.record({
      minuteOffset: fc.integer({ min: 0, max: 130 }),
      failure: fc.boolean(),
      decline: fc.boolean(),
      latency: fc.integer({ min: 0, max: 6000 }),
    });
    fc.assert(
      fc.property(
        fc.array(call, { minLength: 0, maxLength: 60 }),
        fc.option(fc.record({ minuteOffset: fc.integer({ min: 0, max: 130 }), failed: fc.boolean() })),
        fc.integer({ min: 0, max: 90 }),
        (calls, validation, extra) => {
          const state = initialConnectionState('org_1', 'paystack_gh_primary');
          applyEvent(state, configuredEvent('cfg', T0));
          let t1 = T0;
          calls.forEach((c, i) => {
            const at = T0 + c.minuteOffset * MINUTE_MS + (i % 60) * 1000;
            t1 = Math.max(t1, at);
            applyEvent(
              state,
              callEvent(`call-${i}`, at, {
                outcome: c.failure ? 'failure' : 'success',
                latency_ms: c.latency,
                error_code: c.failure ? (c.decline ? 'card_declined' : 'timeout') : undefined,
              }),
            );
          });
          if (validation) {
            const at = T0 + validation.minuteOffset * MINUTE_MS;
            t1 = Math.max(t1, at);
            applyEvent(state, validationEvent('val', at, { result: validation.failed ? 'failure' : 'success' }));
          }
          const t2 = t1 + extra * MINUTE_MS + 17_000;
          const stored = parseHealthWindow(
            healthWindowText(healthWindowAt(state.buckets, validationCapApplies(state), minuteBucket(t1))),
          );
          expect(healthOfWindow(stored, minuteBucket(t2))).toEqual(healthAt(state, t2));
          expect(healthOfWindow(stored, minuteBucket(t1))).toEqual(healthAt(state, t1));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('withHealth: a rendered Connection with its health replaced', () => {
  const state = initialConnectionState('org_1', 'paystack_gh_primary');
  applyEvent(
    state,
    configuredEvent('cfg', T0, {
      // A capability named like the health members must stay as it is.
      capabilities: { health_score: 1, '"health_score":': 2, last_validated_at: 'x' },
    }),
  );
  applyEvent(
    state,
    validationEvent('v', T0 + 1000, { result: 'failure', error: ',"health_score":3,"last_validated_at":' }),
  );
  const view = toConnectionView(state, T0 + 1000);

  it('gives the bytes of the view rendered with that health', () => {
    const document = JSON.stringify(view);
    const health = { score: 42.5, status: 'degraded' as const };
    expect(withHealth(document, health)).toBe(
      JSON.stringify({ ...view, health_score: health.score, health_status: health.status }),
    );
  });

  it('refuses text that is not a rendered Connection', () => {
    expect(() => withHealth('{"id":"x"}', { score: 1, status: 'unknown' })).toThrow('not a rendered Connection');
  });
});

describe('nextStatusChange: when the status moves on by itself', () => {
  it('40 calls, 10 technical failures at M: degraded until N < 20 makes it unknown (hand-computed)', () => {
    // N = 40·2^(-a/15) < 20 first when a > 15: at a = 16 N = 19.14 (score 80.5, but N < 20: unknown).
    const w = healthWindowAt([bucket(M, 40, 10)], false, M);
    expect(healthOfWindow(w, M + 15).status).toBe('degraded');
    expect(healthOfWindow(w, M + 16).status).toBe('unknown');
    expect(nextStatusChange(w, M)).toBe(M + 16);
    // From M + 16 on it stays unknown, also when the bucket leaves the window.
    expect(nextStatusChange(w, M + 16)).toBeNull();
  });

  it('a window without calls never changes by itself; a capped one neither', () => {
    expect(nextStatusChange(healthWindowAt([], false, M), M)).toBeNull();
    expect(nextStatusChange(healthWindowAt([bucket(M, 100, 90)], true, M), M)).toBeNull();
  });

  it('unhealthy 60 calls all failing: unhealthy while the score < 60, then unknown as N falls', () => {
    // score = 100·5/(N+5) < 60 while N > 3.33; N = 60·2^(-a/15) ≤ 3.33 first at a = 63 > 59: the
    // bucket leaves the window at a = 60 first (no calls: 100, unknown).
    const w = healthWindowAt([bucket(M, 60, 60)], false, M);
    expect(healthOfWindow(w, M + 59).status).toBe('unhealthy');
    expect(nextStatusChange(w, M)).toBe(M + 60);
    expect(statusOutlook(w, M)).toEqual({ minute: M + 60, status: 'unknown' });
  });

  it('agrees with evaluating every minute (property over random windows)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            a: fc.integer({ min: 0, max: 59 }),
            calls: fc.integer({ min: 1, max: 80 }),
            fails: fc.integer({ min: 0, max: 80 }),
          }),
          { maxLength: 8 },
        ),
        (specs) => {
          const byMinute = new Map<number, HealthBucket>();
          for (const s of specs) byMinute.set(M - s.a, bucket(M - s.a, s.calls, Math.min(s.calls, s.fails)));
          const w = healthWindowAt(
            [...byMinute.values()].sort((x, y) => x.minute - y.minute),
            false,
            M,
          );
          const next = nextStatusChange(w, M);
          const now = healthOfWindow(w, M).status;
          const until = next ?? M + 120;
          for (let m = M; m < until; m++) expect(healthOfWindow(w, m).status).toBe(now);
          if (next !== null) expect(healthOfWindow(w, next).status).not.toBe(now);
          // The stats route's outlook: the same minute, and the status it changes to.
          expect(statusOutlook(w, M)).toEqual(
            next === null ? null : { minute: next, status: healthOfWindow(w, next).status },
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('healthSeries: the score at each minute up to b (hand-computed)', () => {
  // One bucket at M: 30 calls, 6 technical failures. At M-1 it does not count yet: (0 + 5) / (0 + 5)
  // = 100, unknown (n < 20). At M, weight 1: (30 - 6 + 5) / (30 + 5) = 29/35 = 82.857… → 82.86,
  // degraded. At M+1, weight 2^(-1/15) = 0.954841604: n = 28.645248, f = 5.729050,
  // (28.645248 - 5.729050 + 5) / 33.645248 = 0.829722… → 82.97, degraded.
  const w = { renderedAt: M, capped: false, buckets: [bucket(M, 30, 6)] };

  it('evaluates each minute, oldest first', () => {
    expect(healthSeries(w, M + 1, 3)).toEqual([
      { score: 100, status: 'unknown' },
      { score: 82.86, status: 'degraded' },
      { score: 82.97, status: 'degraded' },
    ]);
  });

  it('covers the 60 minutes of the window by default, and holds the validation cap at every minute', () => {
    const series = healthSeries({ ...w, capped: true }, M + 1);
    expect(series).toHaveLength(60);
    expect(series[0]).toEqual({ score: 25, status: 'unhealthy' });
    expect(series[59]).toEqual({ score: 25, status: 'unhealthy' });
  });
});
