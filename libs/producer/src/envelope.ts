/**
 * Builders of the contract's Kafka message values (CONTRACT 2.2 and 2.3), one per event type. Each
 * returns the wire envelope exactly as it goes on Kafka: snake_case members, `schema_version` 1,
 * `occurred_at` as RFC 3339 and a fresh `event_id` (crypto.randomUUID) unless one is given.
 *
 * Builders only shape the value; they do not judge it. `validateEnvelope` (and the
 * `ConnectionEventProducer`, which calls it before every send) applies the service's own rules.
 *
 * About `event_id`: the service ignores an `event_id` it has already seen, on any topic, forever. A
 * producer that retries a send must reuse the envelope it built (same `event_id`), and one that can
 * derive a stable id from the fact itself (a payment attempt id, a config revision) should pass it
 * as `eventId`: then even a re-emission after a crash is counted once.
 */
import { randomUUID } from 'node:crypto';
import {
  CallCompletedData,
  ConnectionStatus,
  EventType,
  Mode,
  Provider,
  SCHEMA_VERSION,
  ValidationCompletedData,
} from '@psp/domain';

/** `data` of `connection.configured` as sent: every member but `provider` may be left out (defaults). */
export interface ConfiguredWireData {
  provider: Provider;
  mode?: Mode;
  status?: ConnectionStatus;
  capabilities?: Record<string, unknown>;
  routing_hints?: { country_preference?: string[]; method_bias?: Record<string, string>; fallback_only?: boolean };
  labels?: string[];
  fee_structure?: {
    percentage?: number;
    fixed?: number;
    per_method?: Record<string, unknown>;
    per_currency?: Record<string, unknown>;
  };
}

/** `data` of each type as it travels on Kafka. */
export interface WireDataByType {
  'psp.call.completed': CallCompletedData;
  'connection.validation.completed': ValidationCompletedData;
  'connection.configured': ConfiguredWireData;
  'connection.status_changed': { status: ConnectionStatus };
  'connection.labels_changed': { labels: string[] };
  'connection.deleted': Record<string, never>;
}

interface WireEnvelopeOf<T extends EventType> {
  event_id: string;
  type: T;
  schema_version: typeof SCHEMA_VERSION;
  org_id: string;
  connection_id: string;
  occurred_at: string;
  data: WireDataByType[T];
}

/** One message value of CONTRACT 2.2, discriminated on `type`. */
export type WireEnvelope<T extends EventType = EventType> = { [K in T]: WireEnvelopeOf<K> }[T];

/** What every builder takes. */
export interface EnvelopeInput {
  orgId: string;
  connectionId: string;
  /**
   * When the fact happened (event time). A Date or epoch milliseconds is written as
   * `2026-11-24T10:15:00.250Z`; a string is written as given (it must be RFC 3339 with an offset).
   * Defaults to now. Never more than 5 minutes ahead of the service's clock.
   */
  occurredAt?: Date | string | number;
  /** Defaults to crypto.randomUUID(). 1 to 128 characters, unique per fact. */
  eventId?: string;
}

export interface CallCompletedInput extends EnvelopeInput {
  outcome: 'success' | 'failure';
  /** Integer milliseconds, 0 to 600000. */
  latencyMs: number;
  /**
   * Why a failed call failed. `insufficient_funds`, `card_declined`, `invalid_card`, `expired_card` and
   * `do_not_honor` are customer-side declines and do not count against the PSP's health.
   */
  errorCode?: string;
  operation?: string;
  method?: string;
  currency?: string;
}

export interface ValidationCompletedInput extends EnvelopeInput {
  result: 'success' | 'failure';
  /** At most 1000 characters. Never put credentials in it. */
  error?: string;
}

export interface ConnectionConfiguredInput extends EnvelopeInput {
  provider: Provider;
  mode?: Mode;
  status?: ConnectionStatus;
  capabilities?: Record<string, unknown>;
  routingHints?: { countryPreference?: string[]; methodBias?: Record<string, string>; fallbackOnly?: boolean };
  /** At most 20, each 1 to 64 of A-Z a-z 0-9 _ -; stored lowercase, later duplicates dropped. */
  labels?: string[];
  feeStructure?: {
    percentage?: number;
    /** Integer (minor units). */
    fixed?: number;
    perMethod?: Record<string, unknown>;
    perCurrency?: Record<string, unknown>;
  };
}

export interface StatusChangedInput extends EnvelopeInput {
  status: ConnectionStatus;
}

export interface LabelsChangedInput extends EnvelopeInput {
  labels: string[];
}

export type ConnectionDeletedInput = EnvelopeInput;

/** `occurred_at` on the wire. Throws a TypeError for an invalid Date or a non-finite number. */
export function formatOccurredAt(at: Date | string | number | undefined): string {
  if (typeof at === 'string') return at;
  const date = at === undefined ? new Date() : at instanceof Date ? at : new Date(at);
  if (Number.isNaN(date.getTime())) throw new TypeError('occurredAt is not a valid date');
  return date.toISOString();
}

function envelope<T extends EventType>(type: T, input: EnvelopeInput, data: WireDataByType[T]): WireEnvelope<T> {
  const built: WireEnvelopeOf<T> = {
    event_id: input.eventId ?? randomUUID(),
    type,
    schema_version: SCHEMA_VERSION,
    org_id: input.orgId,
    connection_id: input.connectionId,
    occurred_at: formatOccurredAt(input.occurredAt),
    data,
  };
  return built as WireEnvelope<T>;
}

/** An object of the pairs whose value is not undefined, in the order given. */
function defined<T extends object>(pairs: Array<[string, unknown]>): T {
  const out: Record<string, unknown> = {};
  for (const [name, value] of pairs) if (value !== undefined) out[name] = value;
  return out as T;
}

/** `psp.call.completed`: a payment router reports one call to a PSP (topic `psp.calls`). */
export function callCompleted(input: CallCompletedInput): WireEnvelope<'psp.call.completed'> {
  return envelope(
    'psp.call.completed',
    input,
    defined<CallCompletedData>([
      ['outcome', input.outcome],
      ['latency_ms', input.latencyMs],
      ['error_code', input.errorCode],
      ['operation', input.operation],
      ['method', input.method],
      ['currency', input.currency],
    ]),
  );
}

/** `connection.validation.completed`: the credential validator's verdict (topic `psp.validations`). */
export function validationCompleted(input: ValidationCompletedInput): WireEnvelope<'connection.validation.completed'> {
  return envelope(
    'connection.validation.completed',
    input,
    defined<ValidationCompletedData>([
      ['result', input.result],
      ['error', input.error],
    ]),
  );
}

/**
 * `connection.configured`: the whole config, replacing the previous one (topic `psp.connections`).
 * Members left out are left out of the message too, and the service applies their defaults.
 * There is deliberately no way to put credentials in it.
 */
export function connectionConfigured(input: ConnectionConfiguredInput): WireEnvelope<'connection.configured'> {
  const hints = input.routingHints;
  const fees = input.feeStructure;
  return envelope(
    'connection.configured',
    input,
    defined<ConfiguredWireData>([
      ['provider', input.provider],
      ['mode', input.mode],
      ['status', input.status],
      ['capabilities', input.capabilities],
      [
        'routing_hints',
        hints &&
          defined([
            ['country_preference', hints.countryPreference],
            ['method_bias', hints.methodBias],
            ['fallback_only', hints.fallbackOnly],
          ]),
      ],
      ['labels', input.labels],
      [
        'fee_structure',
        fees &&
          defined([
            ['percentage', fees.percentage],
            ['fixed', fees.fixed],
            ['per_method', fees.perMethod],
            ['per_currency', fees.perCurrency],
          ]),
      ],
    ]),
  );
}

/** `connection.status_changed` (topic `psp.connections`). */
export function statusChanged(input: StatusChangedInput): WireEnvelope<'connection.status_changed'> {
  return envelope('connection.status_changed', input, { status: input.status });
}

/** `connection.labels_changed`: the new label set, replacing the old one (topic `psp.connections`). */
export function labelsChanged(input: LabelsChangedInput): WireEnvelope<'connection.labels_changed'> {
  return envelope('connection.labels_changed', input, { labels: input.labels });
}

/** `connection.deleted` (topic `psp.connections`). */
export function connectionDeleted(input: ConnectionDeletedInput): WireEnvelope<'connection.deleted'> {
  return envelope('connection.deleted', input, {});
}

/**
 * The message key producers should use: `<org_id>:<connection_id>`, so that one connection's
 * messages keep their order within a topic (the service itself reads identity from the value only).
 */
export function recommendedKey(envelope: Pick<WireEnvelope, 'org_id' | 'connection_id'>): string {
  return `${envelope.org_id}:${envelope.connection_id}`;
}
