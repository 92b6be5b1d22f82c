/**
 * The stats of one connection's health window (CONTRACT 1.5 and 1.5b): what a payment router needs to
 * decide where to send the next payment. A pure function of the window's minute buckets, the
 * validation cap and stream time.
 */
import { HEALTH_WINDOW_MINUTES, LATENCY_BOUNDS_MS, MinuteBucket } from './connection-state';
import { HealthStatus } from './health';
import { healthWindowAt, statusOutlook } from './health-window';
import { SuccessRate, successRate } from './success-rate';
import { formatTimestamp, MINUTE_MS, minuteBucket } from './time';

export interface ConnectionStats {
  id: string;
  stream_time: string | null;
  window: { from: string | null; to: string | null };
  calls: number;
  successful: number;
  failed: number;
  technical_failures: number;
  declines: number;
  slow: number;
  success_rate: SuccessRate | null;
  latency_ms: { p50: number | null; p90: number | null; p95: number | null; p99: number | null; max: number | null };
  error_codes: { code: string; count: number }[];
  methods: { method: string; calls: number; technical_failures: number; success_rate: SuccessRate | null }[];
  currencies: { currency: string; calls: number; technical_failures: number; success_rate: SuccessRate | null }[];
  minutes: { at: string; calls: number; technical_failures: number; slow: number }[];
  /** When `health_status` changes by itself if no call is accepted meanwhile, and to what. */
  outlook: { at: string; to: HealthStatus } | null;
}

export const MAX_ERROR_CODES = 10;
export const MAX_METHODS = 20;
export const MAX_CURRENCIES = 20;
const PERCENTILES = [50, 90, 95, 99] as const;

/**
 * The stats of connection `id` at `streamTimeMs` over its buckets (ascending by minute; buckets
 * outside b-59 .. b are ignored); `capped`: the validation cap of CONTRACT 3.3 applies (it moves only
 * with the connection's own events, so it holds at every later minute of the outlook). Members in the
 * contract's order, so JSON.stringify is byte-stable.
 */
export function connectionStats(
  id: string,
  buckets: readonly MinuteBucket[],
  streamTimeMs: number | null,
  capped: boolean,
): ConnectionStats {
  if (streamTimeMs === null) {
    return {
      id,
      stream_time: null,
      window: { from: null, to: null },
      calls: 0,
      successful: 0,
      failed: 0,
      technical_failures: 0,
      declines: 0,
      slow: 0,
      success_rate: null,
      latency_ms: { p50: null, p90: null, p95: null, p99: null, max: null },
      error_codes: [],
      methods: [],
      currencies: [],
      minutes: [],
      outlook: null,
    };
  }
  const b = minuteBucket(streamTimeMs);
  const oldest = b - (HEALTH_WINDOW_MINUTES - 1);
  let calls = 0;
  let technical = 0;
  let declines = 0;
  let slow = 0;
  let max: number | null = null;
  const histogram = LATENCY_BOUNDS_MS.map(() => 0);
  const errorCodes = new Map<string, number>();
  const methods = new Map<string, [number, number]>();
  const currencies = new Map<string, [number, number]>();
  const perMinute = new Map<number, MinuteBucket>();
  for (const bucket of buckets) {
    if (bucket.minute < oldest || bucket.minute > b || bucket.calls === 0) continue;
    perMinute.set(bucket.minute, bucket);
    calls += bucket.calls;
    technical += bucket.technicalFailures;
    declines += bucket.declines;
    slow += bucket.slowCalls;
    if (max === null || bucket.maxLatencyMs > max) max = bucket.maxLatencyMs;
    bucket.latencyHistogram.forEach((n, i) => (histogram[i] += n));
    for (const [code, n] of bucket.errorCodes) errorCodes.set(code, (errorCodes.get(code) ?? 0) + n);
    for (const [method, n, tf] of bucket.methods) add(methods, method, n, tf);
    for (const [currency, n, tf] of bucket.currencies) add(currencies, currency, n, tf);
  }
  const failed = technical + declines;
  const percentile = (q: number): number | null => {
    if (calls === 0) return null;
    const need = Math.ceil((q * calls) / 100);
    let seen = 0;
    for (let i = 0; i < histogram.length; i++) {
      seen += histogram[i];
      if (seen >= need) return LATENCY_BOUNDS_MS[i];
    }
    return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1];
  };
  const [p50, p90, p95, p99] = PERCENTILES.map(percentile);
  const minutes: ConnectionStats['minutes'] = [];
  for (let m = oldest; m <= b; m++) {
    const bucket = perMinute.get(m);
    minutes.push({
      at: formatTimestamp(m * MINUTE_MS),
      calls: bucket?.calls ?? 0,
      technical_failures: bucket?.technicalFailures ?? 0,
      slow: bucket?.slowCalls ?? 0,
    });
  }
  const change = statusOutlook(healthWindowAt(buckets, capped, b), b);
  return {
    id,
    stream_time: formatTimestamp(streamTimeMs),
    window: { from: formatTimestamp(oldest * MINUTE_MS), to: formatTimestamp((b + 1) * MINUTE_MS) },
    calls,
    successful: calls - failed,
    failed,
    technical_failures: technical,
    declines,
    slow,
    success_rate: successRate(calls, technical),
    latency_ms: { p50, p90, p95, p99, max },
    error_codes: ranked(errorCodes, MAX_ERROR_CODES).map(([code, count]) => ({ code, count })),
    methods: ranked(methods, MAX_METHODS).map(([method, [n, tf]]) => ({
      method,
      calls: n,
      technical_failures: tf,
      success_rate: successRate(n, tf),
    })),
    currencies: ranked(currencies, MAX_CURRENCIES).map(([currency, [n, tf]]) => ({
      currency,
      calls: n,
      technical_failures: tf,
      success_rate: successRate(n, tf),
    })),
    minutes,
    outlook: change === null ? null : { at: formatTimestamp(change.minute * MINUTE_MS), to: change.status },
  };
}

function add(map: Map<string, [number, number]>, key: string, calls: number, technicalFailures: number): void {
  const entry = map.get(key);
  if (entry) {
    entry[0] += calls;
    entry[1] += technicalFailures;
  } else map.set(key, [calls, technicalFailures]);
}

/** Most first (the count, or the calls of a pair), ties by key in string order; at most `limit`. */
function ranked<V extends number | [number, number]>(map: Map<string, V>, limit: number): [string, V][] {
  const count = (v: V) => (typeof v === 'number' ? v : v[0]);
  return [...map.entries()]
    .sort((x, y) => count(y[1]) - count(x[1]) || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
    .slice(0, limit);
}

/**
 * The stats window as the read model stores it beside a document: the render's stream time and the
 * buckets that can still count (compact arrays). Parsed only when the stats route asks.
 */
export function statsWindowText(streamTimeMs: number | null, buckets: readonly MinuteBucket[]): string {
  const oldest = streamTimeMs === null ? Infinity : minuteBucket(streamTimeMs) - (HEALTH_WINDOW_MINUTES - 1);
  const kept = buckets
    .filter((x) => x.minute >= oldest)
    .map((x) => [
      x.minute,
      x.calls,
      x.technicalFailures,
      x.slowCalls,
      x.declines,
      x.maxLatencyMs,
      x.latencyHistogram,
      x.errorCodes,
      x.methods,
      x.currencies,
    ]);
  return JSON.stringify({ t: streamTimeMs, m: kept });
}

/**
 * The stream time a stored stats window is answered at: the live one, or the window's own when that
 * is newer (a reader whose view of the live stream time lags behind the render).
 */
export function statsStreamTime(storedStreamTimeMs: number | null, liveStreamTimeMs: number | null): number | null {
  return storedStreamTimeMs === null || (liveStreamTimeMs !== null && liveStreamTimeMs > storedStreamTimeMs)
    ? liveStreamTimeMs
    : storedStreamTimeMs;
}

export function parseStatsWindow(text: string): { streamTimeMs: number | null; buckets: MinuteBucket[] } {
  const raw = JSON.parse(text) as { t: number | null; m: unknown[][] };
  return {
    streamTimeMs: raw.t,
    buckets: raw.m.map((x) => ({
      minute: x[0] as number,
      calls: x[1] as number,
      technicalFailures: x[2] as number,
      slowCalls: x[3] as number,
      declines: x[4] as number,
      maxLatencyMs: x[5] as number,
      latencyHistogram: x[6] as number[],
      errorCodes: x[7] as MinuteBucket['errorCodes'],
      methods: x[8] as MinuteBucket['methods'],
      currencies: x[9] as MinuteBucket['currencies'],
    })),
  };
}
