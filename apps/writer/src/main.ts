import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { runProcess } from '@psp/config/process';
import { WriterModule } from './writer.module';

runProcess('writer', async () => {
  const app = await NestFactory.createApplicationContext(WriterModule, { bufferLogs: false });
  app.enableShutdownHooks();
  return app;
});
