/**
 * The contract's fixed shapes as the integration tests check them, written from CONTRACT.md (not
 * from the service's code), in one place.
 */

/** The Connection object's fields, in the order of CONTRACT 1.3. */
export const CONNECTION_FIELDS = [
  'id',
  'provider',
  'mode',
  'status',
  'capabilities',
  'routing_hints',
  'labels',
  'fee_structure',
  'total_calls',
  'successful_calls',
  'failed_calls',
  'total_latency_ms',
  'last_success_at',
  'last_failure_at',
  'health_score',
  'health_status',
  'last_validated_at',
  'last_validation_status',
  'last_validation_error',
  'validation_failures',
  'created_at',
  'updated_at',
];
