import { STATUS_CODES } from 'node:http';
import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import { FastifyReply, FastifyRequest } from 'fastify';
import { READ_SCOPE } from '@psp/api-keys';
import { ListQueryRejection, MAX_LIMIT } from '@psp/domain';

/** The contract's error body (CONTRACT 1): category, machine-readable code, sentence, string details. */
export interface ErrorBody {
  error: string;
  code: string;
  message: string;
  details?: Record<string, string>;
}

/** One row of API_ERRORS: the HTTP status, the category (`error`) and the message (of `details.field`, if it names one). */
interface ErrorSpec {
  status: number;
  error: string;
  message: string | ((field: string) => string);
  /** The `details.field` this code always names (a header). */
  field?: string;
}

/**
 * Every error the API answers, by code: its status, category and message (docs/api.md, "Every
 * error"; CONTRACT 1, 1.1, 1.1a, 1.2, 1.4). The one place they are written: the guard, the
 * controller, the HTTP layer and the domain's query parsing name a code, and the status and body
 * come from here.
 */
export const API_ERRORS = {
  missing_org_id: {
    status: 400,
    error: 'validation_error',
    message: 'The X-Org-Id header is required.',
    field: 'X-Org-Id',
  },
  duplicate_parameter: {
    status: 400,
    error: 'validation_error',
    message: (field: string) => `${field} must be given at most once`,
  },
  invalid_status: { status: 400, error: 'validation_error', message: 'status must be active or inactive' },
  invalid_limit: {
    status: 400,
    error: 'validation_error',
    message: `limit must be an integer between 1 and ${MAX_LIMIT}`,
  },
  invalid_offset: {
    status: 400,
    error: 'validation_error',
    message: 'offset must be an integer greater than or equal to 0',
  },
  malformed_url: { status: 400, error: 'bad_request', message: 'The request path is not valid percent-encoded UTF-8.' },
  bad_request: { status: 400, error: 'bad_request', message: 'The request could not be understood.' },
  missing_api_key: { status: 401, error: 'unauthorized', message: 'The X-Reevit-Key header is required.' },
  invalid_api_key: { status: 401, error: 'unauthorized', message: 'The API key is not valid.' },
  org_mismatch: { status: 403, error: 'forbidden', message: 'The API key does not belong to the org in X-Org-Id.' },
  insufficient_scopes: { status: 403, error: 'forbidden', message: `The API key lacks the scope ${READ_SCOPE}.` },
  connection_not_found: { status: 404, error: 'not_found', message: 'No connection with this id in your org.' },
  route_not_found: { status: 404, error: 'not_found', message: 'No such route.' },
  method_not_allowed: { status: 405, error: 'method_not_allowed', message: 'Only GET is supported here.' },
  request_timeout: { status: 408, error: 'bad_request', message: 'The request took too long to arrive.' },
  rate_limit_exceeded: {
    status: 429,
    error: 'rate_limited',
    message: 'Too many requests in this minute; retry after the number of seconds in Retry-After.',
  },
  headers_too_large: { status: 431, error: 'bad_request', message: 'The request line and headers must fit in 64 KiB.' },
  internal_error: { status: 500, error: 'internal_error', message: 'Something went wrong on our side; try again.' },
} as const satisfies Record<string, ErrorSpec>;

export type ApiErrorCode = keyof typeof API_ERRORS;

/** The codes of one status, in the table's order (for the OpenAPI descriptions). */
export function codesOf(status: number): ApiErrorCode[] {
  return (Object.keys(API_ERRORS) as ApiErrorCode[]).filter((code) => API_ERRORS[code].status === status);
}

/** An error the API answers: its status and the contract's body. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(body.message);
  }

  /**
   * The error of `code` (API_ERRORS): `field` names the parameter it is about (`details.field`);
   * `status` replaces the table's for `bad_request`, which keeps the 4xx status the HTTP layer gave.
   */
  static of(code: ApiErrorCode, options: { field?: string; status?: number } = {}): ApiError {
    const spec: ErrorSpec = API_ERRORS[code];
    const field = options.field ?? spec.field;
    const message = typeof spec.message === 'function' ? spec.message(field ?? '') : spec.message;
    const body: ErrorBody =
      field === undefined
        ? { error: spec.error, code, message }
        : { error: spec.error, code, message, details: { field } };
    return new ApiError(options.status ?? spec.status, body);
  }

  /** A 400 for a list query the domain refused (its code and the parameter it names). */
  static ofListQuery(rejection: ListQueryRejection): ApiError {
    return ApiError.of(rejection.code, { field: rejection.field });
  }

  /** The error as a whole HTTP/1.1 response, for errors answered on the socket before Fastify has a reply. */
  rawResponse(): string {
    const text = JSON.stringify(this.body);
    return `HTTP/1.1 ${this.status} ${STATUS_CODES[this.status]}\r\nContent-Type: ${JSON_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`;
  }
}

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** Every error leaves as the contract's body; nothing internal (no stack, no SQL, no key) is echoed. */
@Catch()
export class ApiErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('ApiErrorFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const reply = http.getResponse<FastifyReply>();
    const { status, body } = toApiError(exception, this.logger, http.getRequest<FastifyRequest>()?.id);
    void reply.status(status).header('content-type', JSON_CONTENT_TYPE).send(JSON.stringify(body));
  }
}

/**
 * What any exception is answered with: an ApiError as it is; Nest's 404 and 405 as route_not_found
 * and method_not_allowed; any other 4xx (Nest's or the HTTP layer's) as bad_request with its status;
 * anything else as internal_error, logged (with the request's id when known) without its details.
 */
export function toApiError(exception: unknown, logger?: Logger, requestId?: string): ApiError {
  if (exception instanceof ApiError) return exception;
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    if (status === 404) return ApiError.of('route_not_found');
    if (status === 405) return ApiError.of('method_not_allowed');
    if (status < 500) return ApiError.of('bad_request', { status });
  }
  const e = exception as { statusCode?: number; code?: string };
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500)
    return ApiError.of('bad_request', { status: e.statusCode });
  logger?.error(
    `unexpected error${requestId ? ` (request ${requestId})` : ''}: ${exception instanceof Error ? exception.name + ': ' + exception.message : 'unknown'}`,
  );
  return ApiError.of('internal_error');
}
