import { Module } from '@nestjs/common';
import { CqrsModule } from '@nestjs/cqrs';
import { SettingsModule } from '@psp/config';
import { StorageModule } from '@psp/storage';
import { ConnectionStreams } from './connection-streams';
import { EventIntake } from './event-intake';
import { RecordConnectionEventsHandler } from './record-connection-events';

/** The write side: Kafka intake → validated events → the event log (PostgreSQL). */
@Module({
  imports: [SettingsModule, StorageModule, CqrsModule.forRoot()],
  providers: [ConnectionStreams, RecordConnectionEventsHandler, EventIntake],
  exports: [EventIntake, ConnectionStreams],
})
export class WriterModule {}
