import { INestApplication, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { SETTINGS, Settings } from '@psp/config';

/**
 * Fastify for the API. Headers up to 64 KiB reach the app (and get the contract's error body rather
 * than a bare 431); route params up to 1000 characters reach the router.
 */
export function apiHttpAdapter(): FastifyAdapter {
  return new FastifyAdapter({ routerOptions: { maxParamLength: 1000 }, http: { maxHeaderSize: 64 * 1024 }, trustProxy: false });
}

/**
 * What every API app gets, whichever module it serves. (Unknown routes reach ApiErrorFilter as Nest's
 * NotFoundException and answer the contract's body.)
 */
export function configureHttpApp(app: NestFastifyApplication): NestFastifyApplication {
  app.enableShutdownHooks();
  return app;
}

export async function createHttpApp(module: Type<unknown>): Promise<NestFastifyApplication> {
  return configureHttpApp(await NestFactory.create<NestFastifyApplication>(module, apiHttpAdapter()));
}

export async function listen(app: INestApplication): Promise<string> {
  const settings = app.get<Settings>(SETTINGS);
  await app.listen(settings.httpPort, settings.httpHost);
  return app.getUrl();
}
