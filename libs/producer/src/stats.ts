/**
 * The answer of `GET /v1/connections/{id}/stats` (CONTRACT 1.5 and 1.5b) as a router reads it: the
 * types the service renders it with, so a router's code and the service cannot drift apart.
 */
export type { ConnectionStats, SuccessRate } from '@psp/domain';
