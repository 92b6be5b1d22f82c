import { ConnectionState, applyEvent, initialConnectionState, pruneHealthWindow } from './connection-state';
import { CallCompletedData } from './event';
import { BUCKET_WEIGHTS, HALF_LIFE_MINUTES, healthAt } from './health';
import { CONNECTION, MINUTE, ORG, SECOND, T0, callEvent, validationEvent } from './testing/events';

/** Stream time for most cases: 30 s into the minute bucket b that starts at T0. */
const NOW = T0 + 30 * SECOND;

interface Calls {
  /** How many minutes before bucket b the calls fall (0: in b itself). */
  minutesAgo: number;
  count: number;
  data?: Partial<CallCompletedData>;
}

let nextId = 0;

/** A state holding the given groups of calls, each call at the start of its minute. */
function stateWith(...groups: Calls[]): ConnectionState {
  const state = initialConnectionState(ORG, CONNECTION);
  for (const { minutesAgo, count, data } of groups) {
    for (let i = 0; i < count; i++) {
      applyEvent(state, callEvent(`call-${nextId++}`, T0 - minutesAgo * MINUTE, data));
    }
  }
  return state;
}

const ok = (count: number, minutesAgo = 0): Calls => ({ minutesAgo, count });
const technicalFailures = (count: number, minutesAgo = 0): Calls => ({
  minutesAgo,
  count,
  data: { outcome: 'failure', error_code: 'timeout' },
});
const slow = (count: number, minutesAgo = 0): Calls => ({ minutesAgo, count, data: { latency_ms: 3001 } });

describe('healthAt', () => {
  describe('no calls: five virtual successes, no alarm', () => {
    it('reads 100 / unknown with no stream time at all', () => {
      // N = 0: success = (0 - 0 + 5) / (0 + 5) = 1; slow = 0; score = 100.
      expect(healthAt(initialConnectionState(ORG, CONNECTION), null)).toEqual({ score: 100, status: 'unknown' });
    });

    it('reads 100 / unknown at any stream time', () => {
      expect(healthAt(initialConnectionState(ORG, CONNECTION), NOW)).toEqual({ score: 100, status: 'unknown' });
    });

    it('ignores calls when stream time is null (no window)', () => {
      expect(healthAt(stateWith(technicalFailures(30)), null)).toEqual({ score: 100, status: 'unknown' });
    });
  });

  describe('the window: buckets b-59 .. b', () => {
    it('counts a call 59 minutes old, at weight 2^(-59/15)', () => {
      // One technical failure in b-59: N = F = 2^(-59/15) = 0.0654558826762892
      // success = (N - F + 5) / (N + 5) = 5 / 5.0654558826762892 = 0.98707798780754
      // score = 98.707798780754 -> 98.71; N < 20 -> unknown.
      expect(healthAt(stateWith(technicalFailures(1, 59)), NOW)).toEqual({ score: 98.71, status: 'unknown' });
    });

    it('ignores a call 60 minutes old, pruned or not', () => {
      const state = stateWith(technicalFailures(1, 60));
      expect(healthAt(state, NOW)).toEqual({ score: 100, status: 'unknown' });
      expect(healthAt(pruneHealthWindow(state, NOW), NOW)).toEqual({ score: 100, status: 'unknown' });
      expect(state.totalCalls).toBe(1);
    });

    it('uses the bucket of stream time, not stream time itself', () => {
      // A failure at T0 - 59 min: at stream time T0 + 59.999 s it is still in b-59 ...
      const state = stateWith(technicalFailures(1, 59));
      expect(healthAt(state, T0 + MINUTE - 1).score).toBe(98.71);
      // ... one millisecond later stream time is in b+1 and the failure is 60 minutes old.
      expect(healthAt(state, T0 + MINUTE).score).toBe(100);
    });

    it('ignores buckets newer than b', () => {
      const state = stateWith(technicalFailures(20, -1)); // in b+1: cannot happen, ignored anyway
      expect(healthAt(state, NOW)).toEqual({ score: 100, status: 'unknown' });
    });

    it('weighs each bucket by 2^(-a/15), a 15-minute half-life', () => {
      // 10 successes in b (w = 1) and 10 calls in b-15 (w = 0.5), 4 of them technical failures:
      // N = 10 + 0.5 * 10 = 15; F = 0.5 * 4 = 2
      // success = (15 - 2 + 5) / (15 + 5) = 18 / 20 = 0.9; score = 90; N = 15 < 20 -> unknown.
      expect(healthAt(stateWith(ok(10), ok(6, 15), technicalFailures(4, 15)), NOW)).toEqual({
        score: 90,
        status: 'unknown',
      });
      // 20 successes in b, 20 slow calls in b-30 (w = 0.25):
      // N = 20 + 5 = 25; S = 5; slow = 5 / 25 = 0.2; score = 100 * 1 * (1 - 0.06) = 94 -> healthy.
      expect(healthAt(stateWith(ok(20), slow(20, 30)), NOW)).toEqual({ score: 94, status: 'healthy' });
    });
  });

  describe('unknown: N < 20, with N weighted', () => {
    it('19 calls in b: N = 19 -> unknown', () => {
      expect(healthAt(stateWith(ok(19)), NOW)).toEqual({ score: 100, status: 'unknown' });
    });

    it('20 calls in b: N = 20 -> healthy', () => {
      // success = (20 - 0 + 5) / 25 = 1; score = 100 >= 90.
      expect(healthAt(stateWith(ok(20)), NOW)).toEqual({ score: 100, status: 'healthy' });
    });

    it('20 calls in b-1: N = 20 * 2^(-1/15) = 19.0968 -> unknown', () => {
      expect(healthAt(stateWith(ok(20, 1)), NOW)).toEqual({ score: 100, status: 'unknown' });
    });

    it('a connection whose traffic stopped an hour ago drifts back to unknown', () => {
      const state = stateWith(technicalFailures(40));
      expect(healthAt(state, NOW).status).toBe('unhealthy');
      expect(healthAt(state, NOW + 60 * MINUTE)).toEqual({ score: 100, status: 'unknown' });
    });
  });

  describe('the 60 boundary: unhealthy below 60', () => {
    it('exactly 60 is degraded', () => {
      // 20 calls in b, 10 technical failures: success = (20 - 10 + 5) / 25 = 0.6; score = 60.
      expect(healthAt(stateWith(ok(10), technicalFailures(10)), NOW)).toEqual({ score: 60, status: 'degraded' });
    });

    it('59.995... rounds to 60.00 first, so it is degraded', () => {
      // 43 calls in b: 19 technical failures, 1 slow success.
      // success = (43 - 19 + 5) / 48 = 29 / 48 = 0.6041667; slow = 1 / 43 = 0.0232558
      // score = 60.41667 * (1 - 0.3 * 0.0232558) = 60.41667 * 0.9930233 = 59.99516 -> 60
      expect(healthAt(stateWith(ok(23), slow(1), technicalFailures(19)), NOW)).toEqual({
        score: 60,
        status: 'degraded',
      });
    });

    it('59.99 is unhealthy', () => {
      // 28 calls in b: 10 technical failures, 13 slow successes, 5 plain successes.
      // success = (28 - 10 + 5) / 33 = 0.6969697; slow = 13 / 28 = 0.4642857
      // score = 69.69697 * (1 - 0.1392857) = 69.69697 * 0.8607143 = 59.98918 -> 59.99
      expect(healthAt(stateWith(ok(5), slow(13), technicalFailures(10)), NOW)).toEqual({
        score: 59.99,
        status: 'unhealthy',
      });
    });

    it('is unhealthy below 60 even with N < 20', () => {
      // 5 calls, all technical failures: success = (5 - 5 + 5) / 10 = 0.5; score = 50.
      expect(healthAt(stateWith(technicalFailures(5)), NOW)).toEqual({ score: 50, status: 'unhealthy' });
    });
  });

  describe('the 90 boundary: healthy from 90', () => {
    it('exactly 90 from slow calls is healthy', () => {
      // 30 calls in b, 10 slow: slow = 1/3; score = 100 * (1 - 0.3 / 3) = 90.
      expect(healthAt(stateWith(ok(20), slow(10)), NOW)).toEqual({ score: 90, status: 'healthy' });
    });

    it('exactly 90 from failures is healthy', () => {
      // 45 calls in b, 5 technical failures: success = (45 - 5 + 5) / 50 = 0.9; score = 90.
      expect(healthAt(stateWith(ok(40), technicalFailures(5)), NOW)).toEqual({ score: 90, status: 'healthy' });
    });

    it('89.9967 rounds to 90.00, so it is healthy', () => {
      // 53 calls: 3 technical failures, 9 slow successes.
      // success = 55 / 58 = 0.9482759; slow = 9 / 53 = 0.1698113
      // score = 94.82759 * (1 - 0.0509434) = 94.82759 * 0.9490566 = 89.99675 -> 90
      expect(healthAt(stateWith(ok(41), slow(9), technicalFailures(3)), NOW)).toEqual({ score: 90, status: 'healthy' });
    });

    it('89.99 is degraded', () => {
      // 53 calls: 2 technical failures, 12 slow successes.
      // success = 56 / 58 = 0.9655172; slow = 12 / 53 = 0.2264151
      // score = 96.55172 * (1 - 0.0679245) = 96.55172 * 0.9320755 = 89.99349 -> 89.99
      expect(healthAt(stateWith(ok(39), slow(12), technicalFailures(2)), NOW)).toEqual({
        score: 89.99,
        status: 'degraded',
      });
    });

    it('89 is degraded', () => {
      // 30 calls, 11 slow: score = 100 * (1 - 0.3 * 11 / 30) = 100 * 0.89 = 89.
      expect(healthAt(stateWith(ok(19), slow(11)), NOW)).toEqual({ score: 89, status: 'degraded' });
    });
  });

  describe('technical failures vs customer-side declines', () => {
    it.each(['insufficient_funds', 'card_declined', 'invalid_card', 'expired_card', 'do_not_honor'])(
      'a %s failure says nothing about health',
      (code) => {
        // 20 failures, none technical: success = (20 - 0 + 5) / 25 = 1; score 100.
        const state = stateWith({ minutesAgo: 0, count: 20, data: { outcome: 'failure', error_code: code } });
        expect(healthAt(state, NOW)).toEqual({ score: 100, status: 'healthy' });
      },
    );

    it('other failures are technical', () => {
      // 20 technical failures: success = (20 - 20 + 5) / 25 = 0.2; score = 20.
      expect(healthAt(stateWith(technicalFailures(20)), NOW)).toEqual({ score: 20, status: 'unhealthy' });
      // Without an error_code too.
      expect(healthAt(stateWith({ minutesAgo: 0, count: 20, data: { outcome: 'failure' } }), NOW).score).toBe(20);
    });
  });

  describe('slow calls: latency_ms > 3000', () => {
    it('3000 ms is not slow', () => {
      expect(healthAt(stateWith({ minutesAgo: 0, count: 20, data: { latency_ms: 3000 } }), NOW)).toEqual({
        score: 100,
        status: 'healthy',
      });
    });

    it('3001 ms is slow', () => {
      // slow = 20 / 20 = 1; score = 100 * (1 - 0.3) = 70 -> degraded.
      expect(healthAt(stateWith(slow(20)), NOW)).toEqual({ score: 70, status: 'degraded' });
    });
  });

  describe('the failed-validation cap', () => {
    const failedValidation = (at: number) => validationEvent(`v-${at}`, at, { result: 'failure', error: 'bad key' });

    it('caps at 25 and makes unhealthy when no call succeeded after the failed validation', () => {
      const state = stateWith(ok(20)); // successes at T0
      applyEvent(state, failedValidation(T0 + 1));
      expect(healthAt(state, NOW)).toEqual({ score: 25, status: 'unhealthy' });
    });

    it('applies with no calls at all (last_success_at null)', () => {
      const state = initialConnectionState(ORG, CONNECTION);
      applyEvent(state, failedValidation(T0));
      expect(healthAt(state, NOW)).toEqual({ score: 25, status: 'unhealthy' });
      expect(healthAt(state, null)).toEqual({ score: 25, status: 'unhealthy' });
    });

    it('does not raise a lower score', () => {
      const state = stateWith(technicalFailures(20)); // score 20
      applyEvent(state, failedValidation(T0 + 1));
      expect(healthAt(state, NOW)).toEqual({ score: 20, status: 'unhealthy' });
    });

    it('is lifted by a later successful call', () => {
      const state = stateWith(ok(20));
      applyEvent(state, failedValidation(T0 - 1));
      expect(healthAt(state, NOW)).toEqual({ score: 100, status: 'healthy' });
    });

    it('is lifted by a success with the same occurred_at (the rule is last_success_at < last_validated_at)', () => {
      const state = stateWith(ok(20));
      applyEvent(state, failedValidation(T0));
      expect(healthAt(state, NOW)).toEqual({ score: 100, status: 'healthy' });
      // One millisecond later, the success is before the validation.
      applyEvent(state, failedValidation(T0 + 1));
      expect(healthAt(state, NOW)).toEqual({ score: 25, status: 'unhealthy' });
    });

    it('is lifted by a later successful validation', () => {
      const state = stateWith(ok(20));
      applyEvent(state, failedValidation(T0 + 1));
      applyEvent(state, validationEvent('v-ok', T0 + 2, { result: 'success' }));
      expect(healthAt(state, NOW)).toEqual({ score: 100, status: 'healthy' });
    });

    it('does not depend on the health window: an old success before it still counts as before', () => {
      const state = stateWith(ok(5, 120));
      applyEvent(state, failedValidation(T0 - 100 * MINUTE));
      // The success at T0 - 120 min precedes the validation: capped.
      expect(healthAt(state, NOW)).toEqual({ score: 25, status: 'unhealthy' });
    });
  });

  it('rounds to 2 decimals', () => {
    // One technical failure in b: success = (1 - 1 + 5) / 6 = 0.833333; score = 83.3333 -> 83.33.
    expect(healthAt(stateWith(technicalFailures(1)), NOW)).toEqual({ score: 83.33, status: 'unknown' });
  });
});

describe('BUCKET_WEIGHTS', () => {
  it('holds 2^(-a/15) for a = 0 .. 59, the very doubles computed per bucket (replays stay byte-identical)', () => {
    expect(BUCKET_WEIGHTS).toHaveLength(60);
    for (let a = 0; a < 60; a++) expect(Object.is(BUCKET_WEIGHTS[a], Math.pow(2, -a / HALF_LIFE_MINUTES))).toBe(true);
    // Hand-computed: every 15 minutes the weight halves exactly.
    expect([BUCKET_WEIGHTS[0], BUCKET_WEIGHTS[15], BUCKET_WEIGHTS[30], BUCKET_WEIGHTS[45]]).toEqual([
      1, 0.5, 0.25, 0.125,
    ]);
  });
});
