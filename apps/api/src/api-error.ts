import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import { FastifyReply } from 'fastify';

/** The contract's error body (CONTRACT 1): category, machine-readable code, sentence, string details. */
export interface ErrorBody {
  error: string;
  code: string;
  message: string;
  details?: Record<string, string>;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(body.message);
  }

  static unauthorized(code: string, message: string): ApiError {
    return new ApiError(401, { error: 'unauthorized', code, message });
  }

  static forbidden(code: string, message: string): ApiError {
    return new ApiError(403, { error: 'forbidden', code, message });
  }

  static validation(code: string, message: string, field?: string): ApiError {
    return new ApiError(400, { error: 'validation_error', code, message, ...(field ? { details: { field } } : {}) });
  }

  static notFound(code: string, message: string): ApiError {
    return new ApiError(404, { error: 'not_found', code, message });
  }

  /** CONTRACT 1.1a: over a rate limit (the headers, Retry-After included, are set on the reply). */
  static rateLimited(): ApiError {
    return new ApiError(429, {
      error: 'rate_limited',
      code: 'rate_limit_exceeded',
      message: 'Too many requests in this minute; retry after the number of seconds in Retry-After.',
    });
  }
}

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** Every error leaves as the contract's body; nothing internal (no stack, no SQL, no key) is echoed. */
@Catch()
export class ApiErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('ApiErrorFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    const { status, body } = toApiError(exception, this.logger);
    void reply.status(status).header('content-type', JSON_CONTENT_TYPE).send(JSON.stringify(body));
  }
}

export function toApiError(exception: unknown, logger?: Logger): ApiError {
  if (exception instanceof ApiError) return exception;
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    if (status === 404) return ApiError.notFound('route_not_found', 'No such route.');
    if (status === 405)
      return new ApiError(405, {
        error: 'method_not_allowed',
        code: 'method_not_allowed',
        message: 'Only GET is supported here.',
      });
    if (status < 500)
      return new ApiError(status, {
        error: 'bad_request',
        code: 'bad_request',
        message: 'The request could not be understood.',
      });
  }
  const e = exception as { statusCode?: number; code?: string };
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new ApiError(e.statusCode, {
      error: 'bad_request',
      code: 'bad_request',
      message: 'The request could not be understood.',
    });
  }
  logger?.error(
    `unexpected error: ${exception instanceof Error ? exception.name + ': ' + exception.message : 'unknown'}`,
  );
  return new ApiError(500, {
    error: 'internal_error',
    code: 'internal_error',
    message: 'Something went wrong on our side; try again.',
  });
}
