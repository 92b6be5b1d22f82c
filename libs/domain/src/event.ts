/**
 * The contract's events (CONTRACT.md section 2), as the service holds them once a Kafka message
 * has been accepted: validated, normalised (defaults filled, labels lowercased and de-duplicated,
 * credentials and unknown members dropped) and with `occurred_at` as epoch milliseconds (UTC).
 */
export const EVENT_TYPES = [
  'psp.call.completed',
  'connection.validation.completed',
  'connection.configured',
  'connection.status_changed',
  'connection.labels_changed',
  'connection.deleted',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export const PROVIDERS = ['paystack', 'hubtel', 'flutterwave', 'monnify', 'mpesa', 'stripe'] as const;
export type Provider = (typeof PROVIDERS)[number];

export const MODES = ['live', 'sandbox'] as const;
export type Mode = (typeof MODES)[number];

export const STATUSES = ['active', 'inactive'] as const;
export type ConnectionStatus = (typeof STATUSES)[number];

/** Customer-side declines: failures that say nothing about the PSP's health (section 3.3). */
export const CUSTOMER_DECLINE_CODES = [
  'insufficient_funds',
  'card_declined',
  'invalid_card',
  'expired_card',
  'do_not_honor',
] as const;

export interface CallCompletedData {
  outcome: 'success' | 'failure';
  latency_ms: number;
  error_code?: string;
  operation?: string;
  method?: string;
  currency?: string;
}

export interface ValidationCompletedData {
  result: 'success' | 'failure';
  error?: string;
}

export interface RoutingHints {
  country_preference: string[];
  method_bias: Record<string, string>;
  fallback_only: boolean;
}

export interface FeeStructure {
  percentage: number;
  fixed: number;
  per_method: Record<string, unknown>;
  per_currency: Record<string, unknown>;
}

/** The whole configuration written by `connection.configured`, every member filled. */
export interface ConnectionConfig {
  provider: Provider;
  mode: Mode;
  status: ConnectionStatus;
  capabilities: Record<string, unknown>;
  routing_hints: RoutingHints;
  labels: string[];
  fee_structure: FeeStructure;
}

export interface StatusChangedData {
  status: ConnectionStatus;
}

export interface LabelsChangedData {
  labels: string[];
}

export type DeletedData = Record<string, never>;

export interface EventDataByType {
  'psp.call.completed': CallCompletedData;
  'connection.validation.completed': ValidationCompletedData;
  'connection.configured': ConnectionConfig;
  'connection.status_changed': StatusChangedData;
  'connection.labels_changed': LabelsChangedData;
  'connection.deleted': DeletedData;
}

interface EventOf<T extends EventType> {
  eventId: string;
  type: T;
  orgId: string;
  connectionId: string;
  /** Event time, epoch milliseconds UTC (RFC 3339 input truncated to the millisecond). */
  occurredAt: number;
  data: EventDataByType[T];
}

/** An accepted event: discriminated on `type`, so `data` narrows with it. */
export type ConnectionEvent = { [T in EventType]: EventOf<T> }[EventType];
