import { Module } from '@nestjs/common';
import { ApiModule } from '../../api/src/api.module';
import { ProjectorModule } from '../../projector/src/projector.module';
import { WriterModule } from '../../writer/src/writer.module';

/** All three processes in one, for development: writer, projector and API share one Nest app. */
@Module({ imports: [WriterModule, ProjectorModule, ApiModule] })
export class DevModule {}
