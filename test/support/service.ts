import { Type } from '@nestjs/common';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { SETTINGS, Settings } from '@psp/config';
import { apiHttpAdapter, configureHttpApp, listen } from '../../apps/api/src/http-app';

/** Starts one of the service's modules as an HTTP app with the given settings; returns it and its URL. */
export async function startService(
  module: Type<unknown>,
  settings: Settings,
): Promise<{ app: NestFastifyApplication; url: string }> {
  const moduleRef = await Test.createTestingModule({ imports: [module] })
    .overrideProvider(SETTINGS)
    .useValue(settings)
    .compile();
  const app = configureHttpApp(
    moduleRef.createNestApplication<NestFastifyApplication>(apiHttpAdapter(), { logger: ['error', 'warn'] }),
  );
  await app.init();
  const url = await listen(app);
  return { app, url: url.replace('[::1]', '127.0.0.1') };
}
