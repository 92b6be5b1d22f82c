import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { SettingsModule } from '@psp/config';
import { StorageModule } from '@psp/storage';
import { ApiErrorFilter } from './api-error';
import { ApiKeyGuard } from './api-key.guard';
import { ConnectionReads } from './connection-reads';
import { ConnectionsController } from './connections.controller';
import { HealthController } from './health.controller';

/** The query API: GET /v1/connections and its siblings, served from the read model. */
@Module({
  imports: [SettingsModule, StorageModule],
  controllers: [ConnectionsController, HealthController],
  providers: [ConnectionReads, ApiKeyGuard, { provide: APP_FILTER, useClass: ApiErrorFilter }],
})
export class ApiModule {}
