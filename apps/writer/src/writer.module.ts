import { Logger, Module } from '@nestjs/common';
import { CqrsModule } from '@nestjs/cqrs';
import { Kafka } from 'kafkajs';
import { SETTINGS, Settings, SettingsModule } from '@psp/config';
import { createKafka } from '@psp/messaging';
import { StorageModule } from '@psp/storage';
import { ConnectionStreams } from './connection-streams';
import { DeadLetters } from './dead-letters';
import { EventIntake } from './event-intake';
import { LogMaintenance } from './log-maintenance';
import { WriterMetricsCollector } from './metrics';
import { RecordConnectionEventsHandler } from './record-connection-events';

/** The writer's Kafka client (consumer, DLQ producer, admin); its log lines never carry message values. */
const writerKafka = {
  provide: Kafka,
  inject: [SETTINGS],
  useFactory: (settings: Settings): Kafka => {
    const logger = new Logger('Kafka');
    return createKafka(settings, 'writer', (level, message) =>
      level === 'error' ? logger.error(message) : logger.warn(message),
    );
  },
};

/** The write side: Kafka intake → validated events → the event log (PostgreSQL); refusals → the DLQ. */
@Module({
  imports: [SettingsModule, StorageModule, CqrsModule.forRoot()],
  providers: [
    writerKafka,
    DeadLetters,
    ConnectionStreams,
    RecordConnectionEventsHandler,
    EventIntake,
    LogMaintenance,
    WriterMetricsCollector,
  ],
  exports: [EventIntake, ConnectionStreams],
})
export class WriterModule {}
