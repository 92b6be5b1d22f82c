/**
 * Health (CONTRACT 3.3), measured on stream time: the greatest occurred_at of all accepted events,
 * never the wall clock.
 */
import { ConnectionState, HEALTH_WINDOW_MINUTES, HealthBucket } from './connection-state';
import { minuteBucket } from './time';

export const HEALTH_STATUSES = ['healthy', 'degraded', 'unhealthy', 'unknown'] as const;
export type HealthStatus = (typeof HEALTH_STATUSES)[number];

export interface Health {
  /** Rounded to 2 decimals. */
  score: number;
  status: HealthStatus;
}

/** A bucket `a` minutes older than the current one weighs 2^(-a / HALF_LIFE_MINUTES). */
export const HALF_LIFE_MINUTES = 15;
/** Virtual successes added to the success ratio: no calls means no alarm. */
export const VIRTUAL_SUCCESSES = 5;
/** Below this weighted call count the verdict is `unknown` (unless `unhealthy`). */
export const MIN_CALLS_FOR_VERDICT = 20;
/** The score cap while the latest validation failed and no call succeeded after it. */
export const FAILED_VALIDATION_CAP = 25;
export const HEALTHY_FROM = 90;
export const UNHEALTHY_BELOW = 60;

/**
 * The weight of a bucket `a` minutes older than the current one, 2^(-a / HALF_LIFE_MINUTES), for
 * a = 0 .. 59: computed once with the same Math.pow call, so the same doubles as computing it per
 * bucket (the stats route's outlook evaluates up to 61 minutes per answer).
 */
export const BUCKET_WEIGHTS: readonly number[] = Array.from({ length: HEALTH_WINDOW_MINUTES }, (_, a) =>
  Math.pow(2, -a / HALF_LIFE_MINUTES),
);

/**
 * The connection's health at `streamTimeMs` (null: no event accepted yet, so no calls in any window).
 * Only buckets b-59 .. b count, where b = minuteBucket(streamTime); buckets outside the window are
 * ignored whether or not they were pruned yet.
 */
export function healthAt(state: ConnectionState, streamTimeMs: number | null): Health {
  return healthOf(
    state.buckets,
    validationCapApplies(state),
    streamTimeMs === null ? null : minuteBucket(streamTimeMs),
  );
}

/**
 * The score cap of CONTRACT 3.3: the latest validation failed and no call succeeded after it. It
 * changes only with the connection's own events, never with stream time.
 */
export function validationCapApplies(state: ConnectionState): boolean {
  const v = state.lastValidation;
  return v !== null && v.result === 'failure' && (state.lastSuccessAt === null || state.lastSuccessAt < v.at);
}

/**
 * Health from a window's buckets (ascending by minute) and the validation cap, evaluated at minute
 * bucket `b` (null: no stream time yet). The one place the contract's health arithmetic lives: the
 * projection renders with it, and the API evaluates stored windows at the current stream time with it.
 */
export function healthOf(buckets: readonly HealthBucket[], capped: boolean, b: number | null): Health {
  // Weighted sums, in ascending bucket order (the buckets are kept sorted), so the floating-point
  // result is the same however the state was built.
  let n = 0;
  let f = 0;
  let s = 0;
  if (b !== null) {
    const oldest = b - (HEALTH_WINDOW_MINUTES - 1);
    for (const bucket of buckets) {
      if (bucket.minute < oldest || bucket.minute > b) continue;
      const w = BUCKET_WEIGHTS[b - bucket.minute];
      n += w * bucket.calls;
      f += w * bucket.technicalFailures;
      s += w * bucket.slowCalls;
    }
  }

  const success = (n - f + VIRTUAL_SUCCESSES) / (n + VIRTUAL_SUCCESSES);
  const slow = n > 0 ? s / n : 0;
  let score = 100 * success * (1 - 0.3 * slow);
  if (capped) score = Math.min(score, FAILED_VALIDATION_CAP);

  const rounded = Math.round(score * 100) / 100;
  return { score: rounded, status: statusOf(rounded, n, capped) };
}

/** The first rule that matches. */
function statusOf(score: number, n: number, capped: boolean): HealthStatus {
  if (capped || score < UNHEALTHY_BELOW) return 'unhealthy';
  if (n < MIN_CALLS_FOR_VERDICT) return 'unknown';
  if (score >= HEALTHY_FROM) return 'healthy';
  return 'degraded';
}
