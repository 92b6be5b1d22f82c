import { IncomingMessage, Server } from 'node:http';
import { INestApplication, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import pino, { DestinationStream, Logger as PinoInstance } from 'pino';
import { loadSettings, SETTINGS, Settings } from '@psp/config';
import { logDestination, pinoOptions, processLogger, REQUEST_ID_HEADER, requestIdFrom } from '@psp/observability';
import { ApiError, JSON_CONTENT_TYPE, toApiError } from './api-error';
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
      const { status, body } = error.code === 'FST_ERR_BAD_URL' ? ApiError.of('malformed_url') : toApiError(error);
      void reply
        .status(status)
        .header('content-type', JSON_CONTENT_TYPE)
        .header('x-request-id', request.id)
        .send(JSON.stringify(body));
    },
    clientErrorHandler: (error, socket) => {
      if (error.code === 'ECONNRESET' || socket.destroyed) return;
      const response = ApiError.of(
        error.code === 'HPE_HEADER_OVERFLOW'
          ? 'headers_too_large'
          : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? 'request_timeout'
            : 'bad_request',
      ).rawResponse();
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

/** The line logged for a request when it completes: pino-http's fields (request_id, req, res, responseTime). */
function requestLine(request: FastifyRequest, reply: FastifyReply): object {
  return {
    request_id: request.id,
    req: {
      id: request.id,
      method: request.method,
      url: request.url,
      query: request.query,
      params: request.params,
      headers: request.headers,
      remoteAddress: request.socket.remoteAddress,
      remotePort: request.socket.remotePort,
    },
    res: { statusCode: reply.statusCode, headers: reply.getHeaders() },
    responseTime: Math.round(reply.elapsedTime),
  };
}

/**
 * Per request, in two Fastify hooks and nothing else (no middleware, no per-request child logger):
 * - X-Request-Id echoed (the id Fastify gave the request: see apiHttpAdapter);
 * - the metrics: every answered request counted by method, route pattern (Fastify's, e.g.
 *   `/v1/connections/:id`; `unmatched` when no route matched: never the raw URL) and status, timed
 *   from its arrival to its response;
 * - the request's log line, when `logger` is given: `GET 200` at `debug`, `GET 500 failed` at `error`
 *   for a 5xx, with `request_id`, `req` (its headers redacted by the logger), `res` and
 *   `responseTime`. At the default level (LOG_LEVEL=log) only the 5xx lines are written, and a request
 *   pays one level check for it.
 */
export function instrumentHttp(app: NestFastifyApplication, logger?: PinoInstance): void {
  const metrics = apiMetrics();
  const fastify = app.getHttpAdapter().getInstance() as FastifyInstance;
  fastify.addHook('onRequest', (request, reply, done) => {
    void reply.header('x-request-id', request.id);
    done();
  });
  fastify.addHook('onResponse', (request, reply, done) => {
    const status = reply.statusCode;
    metrics.observeRequest(request.method, request.routeOptions.url, status, reply.elapsedTime / 1000);
    if (logger) {
      if (status >= 500) {
        if (logger.isLevelEnabled('error'))
          logger.error(
            { ...requestLine(request, reply), err: new Error(`failed with status code ${status}`) },
            `${request.method} ${status} failed`,
          );
      } else if (logger.isLevelEnabled('debug'))
        logger.debug(requestLine(request, reply), `${request.method} ${status}`);
    }
    done();
  });
}

/**
 * What every API app gets, whichever module it serves: the HTTP server's limits, the request metrics
 * and the OpenAPI routes. (Unknown routes reach ApiErrorFilter as Nest's NotFoundException and answer
 * the contract's body.)
 */
export function configureHttpApp(app: NestFastifyApplication, requestLogger?: PinoInstance): NestFastifyApplication {
  applyHttpServerLimits(app.getHttpServer() as Server, app.get<Settings>(SETTINGS));
  instrumentHttp(app, requestLogger);
  serveOpenApi(app);
  app.enableShutdownHooks();
  return app;
}

/**
 * The pino instance the request lines are logged with: the process's options (level, format,
 * redaction, the key scrubber) and destination (stdout, or `destination` in tests), as the process
 * logger's.
 */
export function requestLogger(
  processName: string,
  settings: Settings,
  destination: DestinationStream = logDestination(settings),
): PinoInstance {
  return pino(pinoOptions(processName, settings), destination);
}

/**
 * An HTTP process (the API, the dev process): `module` served with structured logs from the start
 * (pino, LOG_FORMAT / LOG_LEVEL: Nest's Logger writes through processLogger, each request's line is
 * logged by instrumentHttp), one request id per request (X-Request-Id) and the settings above.
 */
export async function createHttpApp(module: Type<unknown>, processName = 'api'): Promise<NestFastifyApplication> {
  const settings = loadSettings(process.env);
  const app = await NestFactory.create<NestFastifyApplication>(module, apiHttpAdapter(), {
    logger: processLogger(processName, settings),
  });
  return configureHttpApp(app, requestLogger(processName, settings));
}

export async function listen(app: INestApplication): Promise<string> {
  const settings = app.get<Settings>(SETTINGS);
  await app.listen(settings.httpPort, settings.httpHost);
  return app.getUrl();
}
