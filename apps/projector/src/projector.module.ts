import { Module } from '@nestjs/common';
import { SettingsModule } from '@psp/config';
import { kafkaProvider } from '@psp/messaging';
import { StorageModule } from '@psp/storage';
import { ReadModelRedisModule } from '@psp/read-model';
import { ProjectorMetricsCollector } from './metrics';
import { HealthChangeRelay } from './health-change-relay';
import { Projector } from './projector';

/** The projector: event log → read model (PostgreSQL, then Redis), and its health changes → Kafka. */
@Module({
  imports: [SettingsModule, StorageModule, ReadModelRedisModule.forProcess('projector')],
  providers: [kafkaProvider('projector'), Projector, HealthChangeRelay, ProjectorMetricsCollector],
  exports: [Projector],
})
export class ProjectorModule {}
