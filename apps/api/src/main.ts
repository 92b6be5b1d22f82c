import './tracing';
import 'reflect-metadata';
import { setFlagsFromString } from 'node:v8';
import { Logger } from '@nestjs/common';
import { loadSettings } from '@psp/config';
import { runProcess } from '@psp/config/process';
import { ApiModule } from './api.module';
import { createHttpApp, listen } from './http-app';

runProcess('api', async () => {
  // The caches hold what is large off the heap (documents and bodies in Buffers); this keeps the heap
  // itself near what is live on it, instead of V8's up to 4× (API_HEAP_GROWING_PERCENT; V8 reads the
  // flag at each full collection, so setting it now applies).
  const { apiHeapGrowingPercent } = loadSettings();
  if (apiHeapGrowingPercent > 0) setFlagsFromString(`--heap-growing-percent=${apiHeapGrowingPercent}`);
  const app = await createHttpApp(ApiModule);
  new Logger('Api').log(`listening on ${await listen(app)}`);
  return app;
});
