import { Module } from '@nestjs/common';
import { SettingsModule } from '@psp/config';
import { StorageModule } from '@psp/storage';
import { ReadModelRedisModule } from '@psp/read-model';
import { Projector } from './projector';

/** The projector: event log → read model (PostgreSQL, then Redis). */
@Module({
  imports: [SettingsModule, StorageModule, ReadModelRedisModule.forProcess('projector')],
  providers: [Projector],
  exports: [Projector],
})
export class ProjectorModule {}
