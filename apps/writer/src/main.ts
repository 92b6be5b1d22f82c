import './tracing';
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { loadSettings } from '@psp/config';
import { runProcess } from '@psp/config/process';
import { MetricsServerModule, processLogger } from '@psp/observability';
import { WriterModule } from './writer.module';

/** The writer run alone: with its own /metrics server (METRICS_PORT, default 9464). */
@Module({ imports: [WriterModule, MetricsServerModule.forProcess(9464)] })
class WriterProcess {}

runProcess('writer', async () => {
  const app = await NestFactory.createApplicationContext(WriterProcess, {
    logger: processLogger('writer', loadSettings(process.env)),
  });
  app.enableShutdownHooks();
  return app;
});
