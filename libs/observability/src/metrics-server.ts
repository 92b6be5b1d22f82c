import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import {
  DynamicModule,
  Inject,
  Injectable,
  Logger,
  Module,
  OnApplicationBootstrap,
  OnApplicationShutdown,
} from '@nestjs/common';
import { SETTINGS, Settings, SettingsModule } from '@psp/config';
import { METRICS_CONTENT_TYPE, metricsRegistry } from './registry';

const DEFAULT_PORT = Symbol('METRICS_DEFAULT_PORT');

/**
 * GET /metrics on a port of its own, for a process without an HTTP API (the writer, the projector run
 * alone): METRICS_PORT, else the process's default; 0 turns it off. It listens on HTTP_HOST. A port
 * already taken is logged and the process goes on without it: metrics never stop the intake.
 */
@Injectable()
export class MetricsServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Metrics');
  private server?: Server;

  constructor(
    @Inject(SETTINGS) private readonly settings: Settings,
    @Inject(DEFAULT_PORT) private readonly defaultPort: number,
  ) {}

  /** Where it listens, once it does (for tests and the start line). */
  url?: string;

  async onApplicationBootstrap(): Promise<void> {
    const port = this.settings.metricsPort ?? this.defaultPort;
    if (port === 0) return;
    const server = createServer((request, response) => {
      const path = (request.url ?? '').split('?')[0];
      if (path !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
        response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
        return;
      }
      metricsRegistry()
        .metrics()
        .then(
          (text) => response.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(text),
          () => response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics failed\n'),
        );
    });
    server.keepAliveTimeout = 5000;
    server.headersTimeout = 10000;
    server.requestTimeout = 10000;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, this.settings.httpHost, () => resolve());
      });
    } catch (error) {
      this.logger.error(
        `metrics not served: cannot listen on ${this.settings.httpHost}:${port} (${(error as Error).message}); set METRICS_PORT`,
      );
      return;
    }
    server.unref();
    this.server = server;
    const address = server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    this.url = `http://${host}:${address.port}/metrics`;
    this.logger.log(`metrics on ${this.url}`);
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** The /metrics server of a process run alone; `defaultPort` when METRICS_PORT is not set. */
@Module({})
export class MetricsServerModule {
  static forProcess(defaultPort: number): DynamicModule {
    return {
      module: MetricsServerModule,
      imports: [SettingsModule],
      providers: [{ provide: DEFAULT_PORT, useValue: defaultPort }, MetricsServer],
      exports: [MetricsServer],
    };
  }
}
