import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { runProcess } from '@psp/config/process';
import { ProjectorModule } from './projector.module';

runProcess('projector', async () => {
  const app = await NestFactory.createApplicationContext(ProjectorModule);
  app.enableShutdownHooks();
  return app;
});
