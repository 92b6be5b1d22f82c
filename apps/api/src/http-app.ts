import { IncomingMessage, Server } from 'node:http';
import { INestApplication, Module, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { FastifyError, FastifyInstance } from 'fastify';
import { loadSettings, SETTINGS, Settings } from '@psp/config';
import { processLogger, REQUEST_ID_HEADER, requestIdFrom, requestLoggingModule } from '@psp/observability';
import { ApiError, ErrorBody, JSON_CONTENT_TYPE, toApiError } from './api-error';
import { apiMetrics } from './metrics';
import { serveOpenApi } from './openapi';

/** Request line plus headers: what a request may carry before Node answers 431 itself. */
const MAX_HEADER_BYTES = 64 * 1024;

/** What frameworkErrors uses of the reply (its declared type is generic over the server type). */
interface MinimalReply {
  status(code: number): MinimalReplyHeaders;
}
interface MinimalReplyHeaders {
  header(name: string, value: string): MinimalReplyHeaders;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  send(payload?: any): unknown;
}

/** A raw HTTP response with the contract's error body, for errors Fastify answers before Nest runs. */
function rawErrorResponse(status: number, reason: string, body: ErrorBody): string {
  const text = JSON.stringify(body);
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: ${JSON_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`;
}

/**
 * Fastify for the API. Headers up to 64 KiB reach the app (and get the contract's error body rather
 * than a bare 431); route params as long as that reach the router (so a long id is answered by the
 * guard and then connection_not_found, not route_not_found). Errors that Fastify or Node answer
 * before Nest runs (a malformed percent-escape in the path, headers over 64 KiB, an unparsable
 * request) still get the contract's body and content type, and never echo the request. Each request
 * gets its id here: its X-Request-Id when that is a sane token, else a fresh UUID (the logs carry it).
 */
export function apiHttpAdapter(): FastifyAdapter {
  return new FastifyAdapter({
    requestIdHeader: false,
    genReqId: (request: IncomingMessage) => requestIdFrom(request.headers[REQUEST_ID_HEADER]),
    routerOptions: { maxParamLength: MAX_HEADER_BYTES },
    http: { maxHeaderSize: MAX_HEADER_BYTES },
    trustProxy: false,
    frameworkErrors: (error: FastifyError, request: { id: string }, reply: MinimalReply) => {
      const { status, body } =
        error.code === 'FST_ERR_BAD_URL'
          ? new ApiError(400, {
              error: 'bad_request',
              code: 'malformed_url',
              message: 'The request path is not valid percent-encoded UTF-8.',
            })
          : toApiError(error);
      void reply
        .status(status)
        .header('content-type', JSON_CONTENT_TYPE)
        .header('x-request-id', request.id)
        .send(JSON.stringify(body));
    },
    clientErrorHandler: (error, socket) => {
      if (error.code === 'ECONNRESET' || socket.destroyed) return;
      const response =
        error.code === 'HPE_HEADER_OVERFLOW'
          ? rawErrorResponse(431, 'Request Header Fields Too Large', {
              error: 'bad_request',
              code: 'headers_too_large',
              message: 'The request line and headers must fit in 64 KiB.',
            })
          : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? rawErrorResponse(408, 'Request Timeout', {
                error: 'bad_request',
                code: 'request_timeout',
                message: 'The request took too long to arrive.',
              })
            : rawErrorResponse(400, 'Bad Request', {
                error: 'bad_request',
                code: 'bad_request',
                message: 'The request could not be understood.',
              });
      if (socket.writable) socket.write(response);
      socket.destroy(error);
    },
  });
}

/** The HTTP server's limits, from the settings (HTTP_HEADERS_TIMEOUT_MS and its siblings). */
export type HttpServerLimits = Pick<
  Settings,
  'httpHeadersTimeoutMs' | 'httpRequestTimeoutMs' | 'httpKeepAliveTimeoutMs' | 'httpMaxConnections'
>;

/**
 * How often Node looks for requests past their header or request timeout: it answers them 408 only
 * then (its default, 30 s, let a socket sit for the timeout plus up to 30 s). A quarter of the header
 * timeout, between 50 ms and 1 s, so the 408 comes within 1 s (a quarter, for short timeouts) of it.
 */
export function connectionsCheckingInterval(headersTimeoutMs: number): number {
  return Math.min(1000, Math.max(50, Math.floor(headersTimeoutMs / 4)));
}

/**
 * Applies the limits to the Node server under Fastify, before it listens (Fastify's own
 * connectionTimeout, keepAliveTimeout and requestTimeout options end up as these same properties):
 * - a request whose line and headers have not all arrived within httpHeadersTimeoutMs, or that has
 *   not wholly arrived within httpRequestTimeoutMs, is answered 408 with the contract's body
 *   (clientErrorHandler above), also when nothing at all was sent;
 * - an idle keep-alive connection is closed after httpKeepAliveTimeoutMs;
 * - a socket on which nothing moves for twice the request timeout (a client that stops reading its
 *   response) is closed;
 * - connections past httpMaxConnections are closed as they arrive.
 */
export function applyHttpServerLimits(server: Server, limits: HttpServerLimits): void {
  server.headersTimeout = limits.httpHeadersTimeoutMs;
  server.requestTimeout = limits.httpRequestTimeoutMs;
  server.keepAliveTimeout = limits.httpKeepAliveTimeoutMs;
  // Node reads it when the server starts listening (it is otherwise only a createServer option).
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval =
    connectionsCheckingInterval(limits.httpHeadersTimeoutMs);
  server.setTimeout(2 * limits.httpRequestTimeoutMs);
  server.maxConnections = limits.httpMaxConnections;
}

/**
 * Echoes each request's id in X-Request-Id, and counts every answered request in the metrics by
 * method, route pattern (Fastify's, e.g. `/v1/connections/:id`; `unmatched` when no route matched:
 * never the raw URL) and status, timed from its arrival to its response.
 */
export function instrumentHttp(app: NestFastifyApplication): void {
  const metrics = apiMetrics();
  const fastify = app.getHttpAdapter().getInstance() as FastifyInstance;
  fastify.addHook('onRequest', (request, reply, done) => {
    void reply.header('x-request-id', request.id);
    done();
  });
  fastify.addHook('onResponse', (request, reply, done) => {
    metrics.observeRequest(request.method, request.routeOptions.url, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
}

/**
 * What every API app gets, whichever module it serves: the HTTP server's limits, the request metrics
 * and the OpenAPI routes. (Unknown routes reach ApiErrorFilter as Nest's NotFoundException and answer
 * the contract's body.)
 */
export function configureHttpApp(app: NestFastifyApplication): NestFastifyApplication {
  applyHttpServerLimits(app.getHttpServer() as Server, app.get<Settings>(SETTINGS));
  instrumentHttp(app);
  serveOpenApi(app);
  app.enableShutdownHooks();
  return app;
}

/** The root of an HTTP process: its module and the request logging (nestjs-pino's middleware). */
@Module({})
class HttpProcessModule {}

/**
 * An HTTP process (the API, the dev process): `module` served with structured logs from the start
 * (pino, LOG_FORMAT / LOG_LEVEL), one request id per request (X-Request-Id) and the settings above.
 */
export async function createHttpApp(module: Type<unknown>, processName = 'api'): Promise<NestFastifyApplication> {
  const root = { module: HttpProcessModule, imports: [module, requestLoggingModule(processName)] };
  const app = await NestFactory.create<NestFastifyApplication>(root, apiHttpAdapter(), {
    logger: processLogger(processName, loadSettings(process.env)),
  });
  return configureHttpApp(app);
}

export async function listen(app: INestApplication): Promise<string> {
  const settings = app.get<Settings>(SETTINGS);
  await app.listen(settings.httpPort, settings.httpHost);
  return app.getUrl();
}
