import { randomUUID } from 'node:crypto';
import { IncomingMessage } from 'node:http';
import { hostname } from 'node:os';
import { DynamicModule } from '@nestjs/common';
import { Logger, LoggerModule, Params, PinoLogger } from 'nestjs-pino';
import pino, { DestinationStream, LoggerOptions } from 'pino';
import { Options as PinoHttpOptions } from 'pino-http';
import pretty from 'pino-pretty';
import { SETTINGS, Settings, SettingsModule } from '@psp/config';

/** The request id header: honoured when sane, else generated; echoed on every response. */
export const REQUEST_ID_HEADER = 'x-request-id';
/** An incoming request id is used as given only if it is 1-128 of these (no spaces, no quotes, no control bytes). */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request id for a request: its `X-Request-Id` when that is a sane token, else a fresh UUID. */
export function requestIdFrom(incoming: string | string[] | undefined): string {
  return typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

/** LOG_LEVEL (Nest's names) as pino's level: `log` is pino's `info`. */
export function pinoLevel(level: Settings['logLevel']): 'error' | 'warn' | 'info' | 'debug' {
  return level === 'log' ? 'info' : level;
}

export const REDACTED = '[redacted]';

/**
 * Fields that hold a credential wherever they appear in a logged object (to two levels below the
 * top): nothing logs them on purpose, this is the second line of defence.
 */
const CREDENTIAL_FIELDS = [
  'authorization',
  'cookie',
  'credentials',
  'secret',
  'secret_key',
  'password',
  'token',
  'key_hash',
  'keyHash',
  'api_key',
  'apiKey',
];

/** pino redaction paths: the key header and every credential-like field. */
export const REDACT_PATHS = [
  'req.headers["x-reevit-key"]',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  '["x-reevit-key"]',
  '*["x-reevit-key"]',
  ...CREDENTIAL_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
];

/** An API key's shape (libs/api-keys): replaced in any logged string, whatever put it there. */
const API_KEY_IN_TEXT = /pfk_(live|test)_[A-Za-z0-9_-]+/g;

function scrubText(value: unknown): unknown {
  return typeof value === 'string' && value.includes('pfk_')
    ? value.replace(API_KEY_IN_TEXT, `pfk_$1_${REDACTED}`)
    : value;
}

/** pino's options for the settings: level, ISO time, level names, redaction, the key scrubber. */
export function pinoOptions(processName: string, settings: Pick<Settings, 'logLevel' | 'logFormat'>): LoggerOptions {
  return {
    level: pinoLevel(settings.logLevel),
    base: { pid: process.pid, hostname: hostname(), process: processName },
    timestamp: pino.stdTimeFunctions.isoTime,
    // JSON lines carry the level's name ("level":"info"); pino-pretty reads pino's numbers.
    ...(settings.logFormat === 'json' ? { formatters: { level: (label: string) => ({ level: label }) } } : {}),
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map(scrubText) as Parameters<typeof method>);
      },
    },
  };
}

/** Where log lines go: stdout, as JSON lines, or through pino-pretty (LOG_FORMAT=pretty). */
export function logDestination(settings: Pick<Settings, 'logFormat'>): DestinationStream {
  if (settings.logFormat === 'json') return process.stdout;
  return pretty({
    destination: 1,
    sync: true,
    colorize: process.stdout.isTTY === true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,process,context,request_id,req,res,responseTime',
    messageFormat: '{if context}[{context}] {end}{msg}{if request_id} (request {request_id}){end}',
  });
}

/**
 * nestjs-pino's parameters: pino's options plus pino-http's for an HTTP process. pino-http takes each
 * request's id from Fastify (apps/api/src/http-app.ts assigns it from X-Request-Id, see
 * requestIdFrom) and puts it as `request_id` on every line logged while handling the request; the
 * line per completed request is at `debug` (at `error` for a 5xx).
 */
export function loggingParams(
  processName: string,
  settings: Settings,
  destination: DestinationStream = logDestination(settings),
): Params {
  const options: PinoHttpOptions = {
    ...pinoOptions(processName, settings),
    genReqId: (req: IncomingMessage) => requestIdFrom(req.headers[REQUEST_ID_HEADER]),
    customAttributeKeys: { reqId: 'request_id' },
    quietReqLogger: true,
    customLogLevel: (_req, res, error) => (error || res.statusCode >= 500 ? 'error' : 'debug'),
    customSuccessMessage: (req, res) => `${req.method} ${res.statusCode}`,
    customErrorMessage: (req, res) => `${req.method} ${res.statusCode} failed`,
  };
  return { pinoHttp: [options, destination] };
}

/**
 * The process's logger for Nest (passed to NestFactory as `logger`, so that lines logged while the
 * app starts are already JSON): every `new Logger(context)` in the code logs through it. One per
 * process: nestjs-pino keeps the first pino instance made. `destination` is for tests.
 */
export function processLogger(processName: string, settings: Settings, destination?: DestinationStream): Logger {
  const params = loggingParams(processName, settings, destination);
  const pinoLogger = new PinoLogger(params);
  // `PinoLogger.root` is that pino instance, as nestjs-pino 5 makes it in this constructor;
  // nestjs-pino 4 (kept for Node 20, docs/decisions.md) sets it only from its HTTP middleware.
  if (!PinoLogger.root) (PinoLogger as { root: PinoLogger['logger'] }).root = pinoLogger.logger;
  return new Logger(pinoLogger, params);
}

/**
 * nestjs-pino for an HTTP process: the per-request logger and request id (pino-http as middleware).
 * The pino instance is the one processLogger made (nestjs-pino keeps one per process).
 */
export function requestLoggingModule(processName: string, destination?: DestinationStream): DynamicModule {
  return LoggerModule.forRootAsync({
    imports: [SettingsModule],
    inject: [SETTINGS],
    useFactory: (settings: Settings) => loggingParams(processName, settings, destination),
  });
}
