/**
 * How a connection's state is stored (the read model's `state` column): JSON, with the minute buckets
 * as arrays instead of objects, so a state with a full window weighs about a third of its plain JSON
 * (measured by bench:memory). Reading accepts both forms (plain JSON of older rows, and states written
 * elsewhere with JSON.stringify), so no migration of stored rows is needed.
 */
import { ConnectionState, MinuteBucket, upgradeStoredState } from './connection-state';

type StoredBucket = [
  minute: number,
  calls: number,
  technicalFailures: number,
  slowCalls: number,
  declines: number,
  maxLatencyMs: number,
  latencyHistogram: number[],
  errorCodes: MinuteBucket['errorCodes'],
  methods: MinuteBucket['methods'],
  currencies: MinuteBucket['currencies'],
];

export function stateToJson(state: ConnectionState): string {
  const buckets: StoredBucket[] = state.buckets.map((b) => [
    b.minute,
    b.calls,
    b.technicalFailures,
    b.slowCalls,
    b.declines,
    b.maxLatencyMs,
    b.latencyHistogram,
    b.errorCodes,
    b.methods,
    b.currencies,
  ]);
  return JSON.stringify({ ...state, buckets });
}

/** A stored state: the text of `stateToJson` (or plain JSON), or the value a driver parsed from it. */
export function stateFromJson(stored: string | object): ConnectionState {
  const raw = (typeof stored === 'string' ? JSON.parse(stored) : stored) as ConnectionState & {
    buckets: (MinuteBucket | StoredBucket)[];
  };
  raw.buckets = raw.buckets.map((b) =>
    Array.isArray(b)
      ? {
          minute: b[0],
          calls: b[1],
          technicalFailures: b[2],
          slowCalls: b[3],
          declines: b[4],
          maxLatencyMs: b[5],
          latencyHistogram: b[6],
          errorCodes: b[7],
          methods: b[8],
          currencies: b[9],
        }
      : b,
  );
  return upgradeStoredState(raw);
}
