/** Starts tracing before anything it instruments (http, pg, ioredis) is loaded: main.ts imports this first. */
import { startTracing } from '@psp/observability/tracing';

startTracing('psp-connections-writer');
