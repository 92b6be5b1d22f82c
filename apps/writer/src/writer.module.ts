import { Module } from '@nestjs/common';
import { CqrsModule } from '@nestjs/cqrs';
import { SettingsModule } from '@psp/config';
import { kafkaProvider } from '@psp/messaging';
import { StorageModule } from '@psp/storage';
import { ConnectionStreams } from './connection-streams';
import { DeadLetters } from './dead-letters';
import { EventIntake } from './event-intake';
import { LogMaintenance } from './log-maintenance';
import { WriterMetricsCollector } from './metrics';
import { RecordConnectionEventsHandler } from './record-connection-events';

/** The write side: Kafka intake → validated events → the event log (PostgreSQL); refusals → the DLQ. */
@Module({
  imports: [SettingsModule, StorageModule, CqrsModule.forRoot()],
  providers: [
    kafkaProvider('writer'),
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
