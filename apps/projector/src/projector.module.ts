import { Module } from '@nestjs/common';
import { SettingsModule } from '@psp/config';
import { StorageModule } from '@psp/storage';
import { Projector } from './projector';

/** The projector: event log → read model (PostgreSQL, then Redis). */
@Module({
  imports: [SettingsModule, StorageModule],
  providers: [Projector],
  exports: [Projector],
})
export class ProjectorModule {}
