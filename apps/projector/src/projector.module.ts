import { Logger, Module } from '@nestjs/common';
import { Kafka } from 'kafkajs';
import { SETTINGS, Settings, SettingsModule } from '@psp/config';
import { createKafka } from '@psp/messaging';
import { StorageModule } from '@psp/storage';
import { ReadModelRedisModule } from '@psp/read-model';
import { ProjectorMetricsCollector } from './metrics';
import { HealthChangeRelay } from './health-change-relay';
import { Projector } from './projector';

/** The projector's Kafka client: it produces health changes (its log lines never carry message values). */
const projectorKafka = {
  provide: Kafka,
  inject: [SETTINGS],
  useFactory: (settings: Settings): Kafka => {
    const logger = new Logger('Kafka');
    return createKafka(settings, 'projector', (level, message) =>
      level === 'error' ? logger.error(message) : logger.warn(message),
    );
  },
};

/** The projector: event log → read model (PostgreSQL, then Redis), and its health changes → Kafka. */
@Module({
  imports: [SettingsModule, StorageModule, ReadModelRedisModule.forProcess('projector')],
  providers: [projectorKafka, Projector, HealthChangeRelay, ProjectorMetricsCollector],
  exports: [Projector],
})
export class ProjectorModule {}
