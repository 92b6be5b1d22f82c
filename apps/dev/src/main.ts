import './tracing';
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { runProcess } from '@psp/config/process';
import { createHttpApp, listen } from '../../api/src/http-app';
import { DevModule } from './dev.module';

runProcess('dev', async () => {
  const app = await createHttpApp(DevModule, 'dev');
  new Logger('Dev').log(`writer, projector and API in one process; API on ${await listen(app)}`);
  return app;
});
