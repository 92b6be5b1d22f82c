/**
 * Builders of accepted events for tests (not part of the library's API: index.ts does not export
 * them). Every builder takes the event id and occurred_at explicitly, so tests stay deterministic.
 */
import {
  CallCompletedData,
  ConnectionConfig,
  ConnectionEvent,
  ConnectionStatus,
  ValidationCompletedData,
} from '../event';

export const ORG = 'org_1';
export const CONNECTION = 'paystack_gh_primary';

/** 2026-11-24T10:00:00.000Z, a minute boundary. */
export const T0 = Date.UTC(2026, 10, 24, 10, 0, 0, 0);
export const SECOND = 1000;
export const MINUTE = 60_000;

interface Where {
  orgId?: string;
  connectionId?: string;
}

function envelope(eventId: string, occurredAt: number, where: Where) {
  return { eventId, orgId: where.orgId ?? ORG, connectionId: where.connectionId ?? CONNECTION, occurredAt };
}

export function callEvent(
  eventId: string,
  occurredAt: number,
  data: Partial<CallCompletedData> = {},
  where: Where = {},
): ConnectionEvent {
  const e = envelope(eventId, occurredAt, where);
  return {
    eventId: e.eventId,
    type: 'psp.call.completed',
    orgId: e.orgId,
    connectionId: e.connectionId,
    occurredAt,
    data: { outcome: 'success', latency_ms: 100, ...data },
  };
}

export function validationEvent(
  eventId: string,
  occurredAt: number,
  data: ValidationCompletedData,
  where: Where = {},
): ConnectionEvent {
  const e = envelope(eventId, occurredAt, where);
  return {
    eventId: e.eventId,
    type: 'connection.validation.completed',
    orgId: e.orgId,
    connectionId: e.connectionId,
    occurredAt,
    data,
  };
}

export function config(overrides: Partial<ConnectionConfig> = {}): ConnectionConfig {
  return {
    provider: 'paystack',
    mode: 'live',
    status: 'active',
    capabilities: {},
    routing_hints: { country_preference: [], method_bias: {}, fallback_only: false },
    labels: [],
    fee_structure: { percentage: 0, fixed: 0, per_method: {}, per_currency: {} },
    ...overrides,
  };
}

export function configuredEvent(
  eventId: string,
  occurredAt: number,
  overrides: Partial<ConnectionConfig> = {},
  where: Where = {},
): ConnectionEvent {
  const e = envelope(eventId, occurredAt, where);
  return {
    eventId: e.eventId,
    type: 'connection.configured',
    orgId: e.orgId,
    connectionId: e.connectionId,
    occurredAt,
    data: config(overrides),
  };
}

export function statusChangedEvent(
  eventId: string,
  occurredAt: number,
  status: ConnectionStatus,
  where: Where = {},
): ConnectionEvent {
  const e = envelope(eventId, occurredAt, where);
  return {
    eventId: e.eventId,
    type: 'connection.status_changed',
    orgId: e.orgId,
    connectionId: e.connectionId,
    occurredAt,
    data: { status },
  };
}

export function labelsChangedEvent(
  eventId: string,
  occurredAt: number,
  labels: string[],
  where: Where = {},
): ConnectionEvent {
  const e = envelope(eventId, occurredAt, where);
  return {
    eventId: e.eventId,
    type: 'connection.labels_changed',
    orgId: e.orgId,
    connectionId: e.connectionId,
    occurredAt,
    data: { labels },
  };
}

export function deletedEvent(eventId: string, occurredAt: number, where: Where = {}): ConnectionEvent {
  const e = envelope(eventId, occurredAt, where);
  return {
    eventId: e.eventId,
    type: 'connection.deleted',
    orgId: e.orgId,
    connectionId: e.connectionId,
    occurredAt,
    data: {},
  };
}

/** The wire envelope of CONTRACT 2.2, members in its order. */
export interface WireEnvelope {
  event_id: string;
  type: ConnectionEvent['type'];
  schema_version: 1;
  org_id: string;
  connection_id: string;
  occurred_at: string;
  data: Record<string, unknown>;
}

/** An accepted event as its producer sent it. */
export function wireEnvelope(e: ConnectionEvent): WireEnvelope {
  return {
    event_id: e.eventId,
    type: e.type,
    schema_version: 1,
    org_id: e.orgId,
    connection_id: e.connectionId,
    occurred_at: new Date(e.occurredAt).toISOString(),
    data: e.data as unknown as Record<string, unknown>,
  };
}
