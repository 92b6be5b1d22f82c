import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { SettingsModule } from '@psp/config';
import { kafkaProvider } from '@psp/messaging';
import { ReadModelRedisModule } from '@psp/read-model';
import { StorageModule } from '@psp/storage';
import { ApiErrorFilter } from './api-error';
import { ApiKeyGuard } from './api-key.guard';
import { ConnectionReads } from './connection-reads';
import { ConnectionsController } from './connections.controller';
import { HealthController } from './health.controller';
import { ApiMetricsModule } from './metrics.controller';
import { apiMetrics } from './metrics';
import { RATE_LIMIT_CLOCK, RATE_LIMIT_METRICS, RateLimits } from './rate-limits';

/** The query API: GET /v1/connections and its siblings, served from the read model. */
@Module({
  imports: [SettingsModule, StorageModule, ReadModelRedisModule.forProcess('api'), ApiMetricsModule],
  controllers: [ConnectionsController, HealthController],
  providers: [
    ConnectionReads,
    ApiKeyGuard,
    RateLimits,
    { provide: RATE_LIMIT_CLOCK, useValue: () => Date.now() },
    // 429s and requests let through while Redis is down: psp_http_rate_limited_total, psp_http_rate_limit_failed_open_total.
    { provide: RATE_LIMIT_METRICS, useFactory: () => apiMetrics().rateLimitMetrics },
    { provide: APP_FILTER, useClass: ApiErrorFilter },
    // For /readyz only: whether the brokers answer. Its log lines are dropped (/readyz reports it).
    kafkaProvider('api-readiness', { quiet: true }),
  ],
})
export class ApiModule {}
