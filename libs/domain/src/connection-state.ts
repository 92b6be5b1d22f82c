/**
 * One connection's state, evolved event by event (CONTRACT 3.1 and 3.2, and the per-minute counts
 * that 3.3's health window reads). The write side's aggregate and the projector both use this one
 * implementation, so they cannot disagree.
 *
 * The result is a function of the SET of events applied, not of their order: counters are sums,
 * "latest" fields are maxima, config fields are last-writer-wins registers ordered by
 * (occurred_at, event_id). Applying the very same event twice leaves every register as it was, but
 * counters would count it twice: the caller applies each event_id once.
 *
 * The state is plain JSON (stored as jsonb and read back with JSON.parse): numbers, strings,
 * booleans, arrays, plain objects and null. No Map, Set, Date or undefined.
 */
import {
  CUSTOMER_DECLINE_CODES,
  CallCompletedData,
  ConnectionConfig,
  ConnectionEvent,
  ConnectionStatus,
  FeeStructure,
  Mode,
  Provider,
  RoutingHints,
  ValidationCompletedData,
} from './event';
import { minuteBucket } from './time';

/** Where an event stands in the last-writer-wins order: its `occurred_at` (epoch ms), then its id. */
export interface EventOrder {
  at: number;
  eventId: string;
}

/** A last-writer-wins register: the value of the latest write, and which write that was. */
export interface Register<T> extends EventOrder {
  value: T;
}

/** The calls of one minute (`minute` = floor(occurred_at / 60 s)), as health counts them. */
export interface HealthBucket {
  minute: number;
  calls: number;
  /** Failures whose `error_code` is not a customer-side decline. */
  technicalFailures: number;
  /** Calls with `latency_ms` > 3000. */
  slowCalls: number;
}

/** Upper bounds (ms) of the latency histogram of CONTRACT 1.5: a call counts in the first bound ≥ its latency. */
export const LATENCY_BOUNDS_MS = [
  10, 25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000, 600000,
] as const;

/**
 * A health bucket with what the stats route (CONTRACT 1.5) needs of that minute. Every member merges
 * by addition (or max), so a bucket is the same whatever order its calls came in. The keyed members
 * are arrays of tuples sorted by key, not objects: their keys come from producers (`__proto__` is a
 * valid error code).
 */
export interface MinuteBucket extends HealthBucket {
  /** Failures whose `error_code` is a customer-side decline. */
  declines: number;
  /** Greatest `latency_ms` of the minute's calls. */
  maxLatencyMs: number;
  /** Calls per LATENCY_BOUNDS_MS bucket. */
  latencyHistogram: number[];
  /** Failed calls by `error_code` (`unknown` without one), sorted by code. */
  errorCodes: [code: string, failures: number][];
  /** Calls carrying `method`, by method, sorted by method. */
  methods: [method: string, calls: number, technicalFailures: number][];
  /** Calls carrying `currency`, by currency, sorted by currency. */
  currencies: [currency: string, calls: number, technicalFailures: number][];
}

/** The validation with the greatest (occurred_at, event_id). */
export interface LastValidation extends EventOrder {
  result: ValidationCompletedData['result'];
  error: string | null;
}

export interface ConnectionState {
  orgId: string;
  connectionId: string;
  /** Set by `connection.configured`, cleared by `connection.deleted`; null before either. */
  exists: Register<boolean> | null;
  provider: Register<Provider> | null;
  mode: Register<Mode> | null;
  status: Register<ConnectionStatus> | null;
  capabilities: Register<Record<string, unknown>> | null;
  routingHints: Register<RoutingHints> | null;
  labels: Register<string[]> | null;
  feeStructure: Register<FeeStructure> | null;
  /** Earliest occurred_at of every `connection.configured`, also those that lost a register. */
  createdAt: number | null;
  /** Latest occurred_at of every event of the connection, of any type. */
  updatedAt: number | null;
  totalCalls: number;
  successfulCalls: number;
  failedCalls: number;
  totalLatencyMs: number;
  lastSuccessAt: number | null;
  lastFailureAt: number | null;
  validationFailures: number;
  lastValidation: LastValidation | null;
  /** Ascending by minute, one per minute that had calls; see pruneHealthWindow. */
  buckets: MinuteBucket[];
}

/** Minute buckets in the health window: b-59 .. b, where b holds stream time. */
export const HEALTH_WINDOW_MINUTES = 60;

/** A call slower than this (strictly) is slow. */
export const SLOW_CALL_MS = 3000;

const CUSTOMER_DECLINES: ReadonlySet<string> = new Set(CUSTOMER_DECLINE_CODES);

export function initialConnectionState(orgId: string, connectionId: string): ConnectionState {
  return {
    orgId,
    connectionId,
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
  };
}

/**
 * Applies one accepted event of this connection. For speed (this runs for every event, ~100k/s) it
 * changes `state` IN PLACE and returns that same object; copy first if the old state is still
 * needed. Values of the event (labels, capabilities, ...) are stored by reference, not copied.
 */
export function applyEvent(state: ConnectionState, event: ConnectionEvent): ConnectionState {
  if (event.orgId !== state.orgId || event.connectionId !== state.connectionId) {
    throw new Error('applyEvent: the event belongs to another connection than the state');
  }
  const at = event.occurredAt;
  if (state.updatedAt === null || at > state.updatedAt) state.updatedAt = at;

  switch (event.type) {
    case 'psp.call.completed':
      applyCall(state, at, event.data);
      break;
    case 'connection.validation.completed':
      applyValidation(state, { at, eventId: event.eventId }, event.data);
      break;
    case 'connection.configured':
      applyConfig(state, { at, eventId: event.eventId }, event.data);
      break;
    case 'connection.status_changed':
      state.status = written(state.status, event.data.status, { at, eventId: event.eventId });
      break;
    case 'connection.labels_changed':
      state.labels = written(state.labels, event.data.labels, { at, eventId: event.eventId });
      break;
    case 'connection.deleted':
      state.exists = written(state.exists, false, { at, eventId: event.eventId });
      break;
  }
  return state;
}

/** Whether the connection is listed by the API: "exists" is set (CONTRACT 3.2). */
export function isListed(state: ConnectionState): boolean {
  return state.exists !== null && state.exists.value;
}

/**
 * Whether `a` comes after `b` in the last-writer-wins order: later occurred_at, or the same one and a
 * greater event_id (plain JS string order, i.e. UTF-16 code units). Equal keys are not later.
 */
export function laterThan(a: EventOrder, b: EventOrder): boolean {
  return a.at > b.at || (a.at === b.at && a.eventId > b.eventId);
}

/** Stream time after an event: the greatest occurred_at seen so far (it never moves back). */
export function advanceStreamTime(current: number | null, occurredAt: number): number {
  return current === null || occurredAt > current ? occurredAt : current;
}

/**
 * Drops the buckets that have left the health window at `streamTimeMs`, i.e. older than
 * minuteBucket(streamTime) - 59. Stream time only moves forward, so a dropped bucket is never read
 * again; a late call that falls there again recreates it, and the next prune drops it. Health does
 * not depend on when (or whether) this runs. Changes `state` in place and returns it.
 */
export function pruneHealthWindow(state: ConnectionState, streamTimeMs: number): ConnectionState {
  const oldest = minuteBucket(streamTimeMs) - (HEALTH_WINDOW_MINUTES - 1);
  const buckets = state.buckets;
  let keepFrom = 0;
  while (keepFrom < buckets.length && buckets[keepFrom].minute < oldest) keepFrom++;
  if (keepFrom > 0) buckets.splice(0, keepFrom);
  return state;
}

/** Whether a failed call's error code says nothing about the PSP (a customer-side decline). */
export function isCustomerDecline(errorCode: string | undefined): boolean {
  return errorCode !== undefined && CUSTOMER_DECLINES.has(errorCode);
}

function applyCall(state: ConnectionState, at: number, call: CallCompletedData): void {
  state.totalCalls += 1;
  state.totalLatencyMs += call.latency_ms;
  const technicalFailure = call.outcome === 'failure' && !isCustomerDecline(call.error_code);
  if (call.outcome === 'success') {
    state.successfulCalls += 1;
    if (state.lastSuccessAt === null || at > state.lastSuccessAt) state.lastSuccessAt = at;
  } else {
    state.failedCalls += 1;
    if (state.lastFailureAt === null || at > state.lastFailureAt) state.lastFailureAt = at;
  }

  const bucket = bucketFor(state.buckets, minuteBucket(at));
  bucket.calls += 1;
  if (technicalFailure) bucket.technicalFailures += 1;
  if (call.latency_ms > SLOW_CALL_MS) bucket.slowCalls += 1;
  if (call.outcome === 'failure') {
    if (!technicalFailure) bucket.declines += 1;
    countIn(bucket.errorCodes, call.error_code ?? 'unknown', 1);
  }
  if (call.latency_ms > bucket.maxLatencyMs) bucket.maxLatencyMs = call.latency_ms;
  bucket.latencyHistogram[latencyBucket(call.latency_ms)] += 1;
  if (call.method !== undefined) countIn(bucket.methods, call.method, 1, technicalFailure ? 1 : 0);
  if (call.currency !== undefined) countIn(bucket.currencies, call.currency, 1, technicalFailure ? 1 : 0);
}

/** Index of the first LATENCY_BOUNDS_MS bound ≥ `latencyMs` (validation keeps latencies ≤ 600000). */
export function latencyBucket(latencyMs: number): number {
  let i = 0;
  while (i < LATENCY_BOUNDS_MS.length - 1 && latencyMs > LATENCY_BOUNDS_MS[i]) i++;
  return i;
}

/** Adds to the tuple of `key` in a key-sorted tuple array, inserting it in its place when new. */
function countIn<T extends [string, ...number[]]>(tuples: T[], key: string, ...add: number[]): void {
  let lo = 0;
  let hi = tuples.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (tuples[mid][0] < key) lo = mid + 1;
    else hi = mid;
  }
  if (lo < tuples.length && tuples[lo][0] === key) {
    const tuple = tuples[lo];
    for (let i = 0; i < add.length; i++) (tuple[i + 1] as number) += add[i];
  } else {
    tuples.splice(lo, 0, [key, ...add] as T);
  }
}

export function emptyMinuteBucket(minute: number): MinuteBucket {
  return {
    minute,
    calls: 0,
    technicalFailures: 0,
    slowCalls: 0,
    declines: 0,
    maxLatencyMs: 0,
    latencyHistogram: LATENCY_BOUNDS_MS.map(() => 0),
    errorCodes: [],
    methods: [],
    currencies: [],
  };
}

/** The bucket of `minute`, created in its sorted place if needed. Calls mostly land near the end. */
function bucketFor(buckets: MinuteBucket[], minute: number): MinuteBucket {
  let i = buckets.length - 1;
  while (i >= 0 && buckets[i].minute > minute) i--;
  if (i >= 0 && buckets[i].minute === minute) return buckets[i];
  const bucket = emptyMinuteBucket(minute);
  buckets.splice(i + 1, 0, bucket);
  return bucket;
}

/**
 * A state stored before buckets carried the stats members gets them, empty: its stats for the
 * minutes before the upgrade count only what the health buckets knew (a replay makes them exact).
 */
export function upgradeStoredState(state: ConnectionState): ConnectionState {
  for (const b of state.buckets) {
    if (b.latencyHistogram !== undefined) continue;
    const empty = emptyMinuteBucket(b.minute);
    b.declines = empty.declines;
    b.maxLatencyMs = empty.maxLatencyMs;
    b.latencyHistogram = empty.latencyHistogram;
    b.errorCodes = empty.errorCodes;
    b.methods = empty.methods;
    b.currencies = empty.currencies;
  }
  return state;
}

function applyValidation(state: ConnectionState, order: EventOrder, validation: ValidationCompletedData): void {
  if (validation.result === 'failure') state.validationFailures += 1;
  if (state.lastValidation === null || laterThan(order, state.lastValidation)) {
    state.lastValidation = {
      at: order.at,
      eventId: order.eventId,
      result: validation.result,
      error: validation.error ?? null,
    };
  }
}

/** `connection.configured` writes every config register and sets "exists", each only if later. */
function applyConfig(state: ConnectionState, order: EventOrder, config: ConnectionConfig): void {
  if (state.createdAt === null || order.at < state.createdAt) state.createdAt = order.at;
  state.exists = written(state.exists, true, order);
  state.provider = written(state.provider, config.provider, order);
  state.mode = written(state.mode, config.mode, order);
  state.status = written(state.status, config.status, order);
  state.capabilities = written(state.capabilities, config.capabilities, order);
  state.routingHints = written(state.routingHints, config.routing_hints, order);
  state.labels = written(state.labels, config.labels, order);
  state.feeStructure = written(state.feeStructure, config.fee_structure, order);
}

/** The register after a write at `order`: the new value if the write is later, else unchanged. */
function written<T>(register: Register<T> | null, value: T, order: EventOrder): Register<T> {
  if (register !== null && !laterThan(order, register)) return register;
  return { value, at: order.at, eventId: order.eventId };
}
