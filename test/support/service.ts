import { Type } from '@nestjs/common';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { SETTINGS, Settings } from '@psp/config';
import { processLogger } from '@psp/observability';
import { apiHttpAdapter, configureHttpApp, listen, requestLogger } from '../../apps/api/src/http-app';

/**
 * Starts one of the service's modules as an HTTP app with the given settings; returns it and its URL.
 * With `logLines`, it logs as the API process does (pino JSON lines at LOG_LEVEL, a request id per
 * request: configureHttpApp logs each request's line with requestLogger), each line
 * pushed there instead of printed; else only Nest's errors and warnings are printed.
 */
export async function startService(
  module: Type<unknown>,
  settings: Settings,
  options: { logLines?: string[] } = {},
): Promise<{ app: NestFastifyApplication; url: string }> {
  const lines = options.logLines;
  const destination = lines ? { write: (line: string) => void lines.push(line) } : undefined;
  const moduleRef = await Test.createTestingModule({
    imports: [module],
  })
    .overrideProvider(SETTINGS)
    .useValue(settings)
    .compile();
  const app = configureHttpApp(
    moduleRef.createNestApplication<NestFastifyApplication>(apiHttpAdapter(), {
      logger: destination ? processLogger('api', settings, destination) : ['error', 'warn'],
    }),
    destination ? requestLogger('api', settings, destination) : undefined,
  );
  await app.init();
  const url = await listen(app);
  return { app, url: url.replace('[::1]', '127.0.0.1') };
}
