import './tracing';
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { loadSettings } from '@psp/config';
import { runProcess } from '@psp/config/process';
import { MetricsServerModule, processLogger } from '@psp/observability';
import { ProjectorModule } from './projector.module';

/** The projector run alone: with its own /metrics server (METRICS_PORT, default 9465). */
@Module({ imports: [ProjectorModule, MetricsServerModule.forProcess(9465)] })
class ProjectorProcess {}

runProcess('projector', async () => {
  const app = await NestFactory.createApplicationContext(ProjectorProcess, {
    logger: processLogger('projector', loadSettings(process.env)),
  });
  app.enableShutdownHooks();
  return app;
});
