/**
 * The Connection object of the API (CONTRACT 1.3), built from a connection's state: every field, in
 * the contract's order, so that JSON.stringify gives the same bytes for the same events.
 */
import { ConnectionStatus, FeeStructure, Mode, Provider, RoutingHints } from './event';
import { ConnectionState, isListed } from './connection-state';
import { HealthStatus, healthAt } from './health';
import { formatTimestamp } from './time';

export interface ConnectionView {
  id: string;
  provider: Provider;
  mode: Mode;
  status: ConnectionStatus;
  capabilities: Record<string, unknown>;
  routing_hints: RoutingHints;
  labels: string[];
  fee_structure: FeeStructure;
  total_calls: number;
  successful_calls: number;
  failed_calls: number;
  total_latency_ms: number;
  last_success_at: string | null;
  last_failure_at: string | null;
  health_score: number;
  health_status: HealthStatus;
  last_validated_at: string | null;
  last_validation_status: 'success' | 'failure' | null;
  last_validation_error: string | null;
  validation_failures: number;
  created_at: string;
  updated_at: string;
}

/**
 * The Connection as the API shows it at `streamTimeMs`. Only listed connections have one (a
 * connection that was never configured has no provider): throws for any other state.
 */
export function toConnectionView(state: ConnectionState, streamTimeMs: number | null): ConnectionView {
  const { provider, mode, status, capabilities, routingHints, labels, feeStructure, createdAt, updatedAt } = state;
  if (
    !isListed(state) ||
    provider === null ||
    mode === null ||
    status === null ||
    capabilities === null ||
    routingHints === null ||
    labels === null ||
    feeStructure === null ||
    createdAt === null ||
    updatedAt === null
  ) {
    throw new Error('toConnectionView: the connection is not listed');
  }
  const health = healthAt(state, streamTimeMs);
  const validation = state.lastValidation;
  const hints = routingHints.value;
  const fees = feeStructure.value;
  // Nested objects are rebuilt with their keys in contract order: jsonb does not keep key order.
  return {
    id: state.connectionId,
    provider: provider.value,
    mode: mode.value,
    status: status.value,
    capabilities: capabilities.value,
    routing_hints: {
      country_preference: hints.country_preference,
      method_bias: hints.method_bias,
      fallback_only: hints.fallback_only,
    },
    labels: labels.value,
    fee_structure: {
      percentage: fees.percentage,
      fixed: fees.fixed,
      per_method: fees.per_method,
      per_currency: fees.per_currency,
    },
    total_calls: state.totalCalls,
    successful_calls: state.successfulCalls,
    failed_calls: state.failedCalls,
    total_latency_ms: state.totalLatencyMs,
    last_success_at: timestampOrNull(state.lastSuccessAt),
    last_failure_at: timestampOrNull(state.lastFailureAt),
    health_score: health.score,
    health_status: health.status,
    last_validated_at: validation === null ? null : formatTimestamp(validation.at),
    last_validation_status: validation === null ? null : validation.result,
    last_validation_error: validation === null || validation.result === 'success' ? null : validation.error,
    validation_failures: state.validationFailures,
    created_at: formatTimestamp(createdAt),
    updated_at: formatTimestamp(updatedAt),
  };
}

function timestampOrNull(ms: number | null): string | null {
  return ms === null ? null : formatTimestamp(ms);
}
