import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { runProcess } from '@psp/config/process';
import { ApiModule } from './api.module';
import { createHttpApp, listen } from './http-app';

runProcess('api', async () => {
  const app = await createHttpApp(ApiModule);
  new Logger('Api').log(`listening on ${await listen(app)}`);
  return app;
});
