import { INestApplication } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional, DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import { HEALTH_STATUSES, MODES, PROVIDERS, STATUSES } from '@psp/domain';

/**
 * The OpenAPI document's schemas: the wire shapes of CONTRACT 1, declared once here for the
 * document (the service renders them in libs/domain/src/connection-view.ts; a test checks the two
 * agree field by field and in order).
 */
export class RoutingHintsSchema {
  @ApiProperty({ type: [String] }) country_preference!: string[];
  @ApiProperty({ type: 'object', additionalProperties: { type: 'string' } }) method_bias!: Record<string, string>;
  @ApiProperty() fallback_only!: boolean;
}

export class FeeStructureSchema {
  @ApiProperty({ type: 'number' }) percentage!: number;
  @ApiProperty({ type: 'integer' }) fixed!: number;
  @ApiProperty({ type: 'object', additionalProperties: true }) per_method!: Record<string, unknown>;
  @ApiProperty({ type: 'object', additionalProperties: true }) per_currency!: Record<string, unknown>;
}

const timestamp = { type: String, format: 'date-time', example: '2026-11-24T10:15:00.000Z' } as const;

export class ConnectionSchema {
  @ApiProperty({ example: 'paystack_gh_primary' }) id!: string;
  @ApiProperty({ enum: PROVIDERS }) provider!: string;
  @ApiProperty({ enum: MODES }) mode!: string;
  @ApiProperty({ enum: STATUSES }) status!: string;
  @ApiProperty({ type: 'object', additionalProperties: true }) capabilities!: Record<string, unknown>;
  @ApiProperty({ type: RoutingHintsSchema }) routing_hints!: RoutingHintsSchema;
  @ApiProperty({ type: [String], description: 'lowercase' }) labels!: string[];
  @ApiProperty({ type: FeeStructureSchema }) fee_structure!: FeeStructureSchema;
  @ApiProperty({ type: 'integer' }) total_calls!: number;
  @ApiProperty({ type: 'integer' }) successful_calls!: number;
  @ApiProperty({ type: 'integer' }) failed_calls!: number;
  @ApiProperty({ type: 'integer' }) total_latency_ms!: number;
  @ApiProperty({ ...timestamp, nullable: true }) last_success_at!: string | null;
  @ApiProperty({ ...timestamp, nullable: true }) last_failure_at!: string | null;
  @ApiProperty({ type: 'number', example: 97.5 }) health_score!: number;
  @ApiProperty({ enum: HEALTH_STATUSES }) health_status!: string;
  @ApiProperty({ ...timestamp, nullable: true }) last_validated_at!: string | null;
  @ApiProperty({ enum: ['success', 'failure'], nullable: true }) last_validation_status!: string | null;
  @ApiProperty({ type: String, nullable: true }) last_validation_error!: string | null;
  @ApiProperty({ type: 'integer' }) validation_failures!: number;
  @ApiProperty(timestamp) created_at!: string;
  @ApiProperty(timestamp) updated_at!: string;
}

export class PaginationSchema {
  @ApiProperty({ type: 'integer' }) total!: number;
  @ApiProperty({ type: 'integer' }) limit!: number;
  @ApiProperty({ type: 'integer' }) offset!: number;
}

export class ConnectionListSchema {
  @ApiProperty({ type: [ConnectionSchema] }) connections!: ConnectionSchema[];
  @ApiProperty({ type: PaginationSchema }) pagination!: PaginationSchema;
}

export class LabelSummarySchema {
  @ApiProperty({ example: 'ghana' }) label!: string;
  @ApiProperty({ type: 'integer' }) total!: number;
  @ApiProperty({ type: 'object', additionalProperties: { type: 'integer' }, example: { paystack: 1, hubtel: 1 } })
  providers!: Record<string, number>;
  @ApiProperty({ type: 'object', additionalProperties: { type: 'integer' }, example: { active: 2 } }) statuses!: Record<
    string,
    number
  >;
}

export class StatsWindowSchema {
  @ApiProperty({ ...timestamp, nullable: true, description: 'start of bucket b-59' }) from!: string | null;
  @ApiProperty({ ...timestamp, nullable: true, description: 'end of bucket b (exclusive)' }) to!: string | null;
}

const latencyBound = {
  type: 'integer',
  nullable: true,
  description: 'a histogram bound (ms); null with no calls',
} as const;

export class LatencySchema {
  @ApiProperty(latencyBound) p50!: number | null;
  @ApiProperty(latencyBound) p90!: number | null;
  @ApiProperty(latencyBound) p95!: number | null;
  @ApiProperty(latencyBound) p99!: number | null;
  @ApiProperty({ type: 'integer', nullable: true, description: 'exact greatest latency_ms' }) max!: number | null;
}

export class ErrorCodeCountSchema {
  @ApiProperty({ example: 'timeout' }) code!: string;
  @ApiProperty({ type: 'integer' }) count!: number;
}

const rateBound = { type: 'number', minimum: 0, maximum: 1 } as const;

/** CONTRACT 1.5b: the technical success rate with its 95% Wilson score interval, each rounded to 4 decimals. */
export class SuccessRateSchema {
  @ApiProperty({ ...rateBound, example: 0.9838, description: '(calls - technical_failures) / calls' })
  value!: number;
  @ApiProperty({ ...rateBound, example: 0.9751, description: 'lower end of the 95% Wilson score interval' })
  low!: number;
  @ApiProperty({ ...rateBound, example: 0.9895, description: 'upper end of the 95% Wilson score interval' })
  high!: number;
}

const successRate = {
  type: SuccessRateSchema,
  nullable: true,
  description:
    'technical success rate and its 95% Wilson score interval (CONTRACT 1.5b: exact order of operations, 4 decimals); null with no calls',
} as const;

export class MethodStatsSchema {
  @ApiProperty({ example: 'card' }) method!: string;
  @ApiProperty({ type: 'integer' }) calls!: number;
  @ApiProperty({ type: 'integer' }) technical_failures!: number;
  @ApiProperty(successRate) success_rate!: SuccessRateSchema | null;
}

export class CurrencyStatsSchema {
  @ApiProperty({ example: 'GHS' }) currency!: string;
  @ApiProperty({ type: 'integer' }) calls!: number;
  @ApiProperty({ type: 'integer' }) technical_failures!: number;
  @ApiProperty(successRate) success_rate!: SuccessRateSchema | null;
}

export class MinuteStatsSchema {
  @ApiProperty(timestamp) at!: string;
  @ApiProperty({ type: 'integer' }) calls!: number;
  @ApiProperty({ type: 'integer' }) technical_failures!: number;
  @ApiProperty({ type: 'integer' }) slow!: number;
}

/** CONTRACT 1.5b: when health_status changes by itself if no further call is accepted. */
export class OutlookSchema {
  @ApiProperty({
    ...timestamp,
    description: "start of the first later bucket (b+1 … b+60) whose status differs from b's",
  })
  at!: string;
  @ApiProperty({ enum: HEALTH_STATUSES, description: 'the status at that bucket' }) to!: string;
}

/** GET /v1/connections/{id}/stats: the calls of the connection's health window, as plain counts. */
export class ConnectionStatsSchema {
  @ApiProperty({ example: 'paystack_gh_primary' }) id!: string;
  @ApiProperty({ ...timestamp, nullable: true }) stream_time!: string | null;
  @ApiProperty({ type: StatsWindowSchema }) window!: StatsWindowSchema;
  @ApiProperty({ type: 'integer' }) calls!: number;
  @ApiProperty({ type: 'integer' }) successful!: number;
  @ApiProperty({ type: 'integer' }) failed!: number;
  @ApiProperty({ type: 'integer' }) technical_failures!: number;
  @ApiProperty({ type: 'integer' }) declines!: number;
  @ApiProperty({ type: 'integer' }) slow!: number;
  @ApiProperty(successRate) success_rate!: SuccessRateSchema | null;
  @ApiProperty({ type: LatencySchema }) latency_ms!: LatencySchema;
  @ApiProperty({ type: [ErrorCodeCountSchema], description: 'at most 10, most frequent first' })
  error_codes!: ErrorCodeCountSchema[];
  @ApiProperty({ type: [MethodStatsSchema], description: 'at most 20, most calls first' })
  methods!: MethodStatsSchema[];
  @ApiProperty({ type: [CurrencyStatsSchema], description: 'at most 20, most calls first' })
  currencies!: CurrencyStatsSchema[];
  @ApiProperty({ type: [MinuteStatsSchema], description: '60 entries, oldest first (none before any event)' })
  minutes!: MinuteStatsSchema[];
  @ApiProperty({
    type: OutlookSchema,
    nullable: true,
    description:
      'the first later minute at which health_status changes with no further call (the same calls and validation cap, the window sliding), and to what; null when it stays the same for 60 minutes, or before any event',
  })
  outlook!: OutlookSchema | null;
}

export class ErrorBodySchema {
  @ApiProperty({ example: 'validation_error' }) error!: string;
  @ApiProperty({ example: 'invalid_limit' }) code!: string;
  @ApiProperty({ example: 'limit must be an integer between 1 and 200' }) message!: string;
  @ApiPropertyOptional({ type: 'object', additionalProperties: { type: 'string' }, example: { field: 'limit' } })
  details?: Record<string, string>;
}

/** The rate-limit headers of CONTRACT 1.1a, on every authenticated /v1 response. */
export const RATE_LIMIT_HEADERS = {
  'X-RateLimit-Limit': {
    description:
      'Requests allowed per org in each fixed one-minute window (RATE_LIMIT_PER_MINUTE). Every response after the key is verified carries the three X-RateLimit headers; none when the limit is off (0).',
    schema: { type: 'integer', minimum: 1, example: 1000 },
  },
  'X-RateLimit-Remaining': {
    description: 'Requests left to the org in this window, never negative.',
    schema: { type: 'integer', minimum: 0, example: 999 },
  },
  'X-RateLimit-Reset': {
    description: 'Whole seconds until this window (a minute of the clock) ends, 1 to 60.',
    schema: { type: 'integer', minimum: 1, maximum: 60, example: 42 },
  },
} as const;

const RETRY_AFTER_HEADER = {
  'Retry-After': {
    description: 'Whole seconds until the window ends (at least 1): then the limit starts afresh.',
    schema: { type: 'integer', minimum: 1, maximum: 60, example: 42 },
  },
} as const;

type ResponseLike = { description?: string; headers?: Record<string, unknown>; content?: unknown };

/**
 * Adds CONTRACT 1.1a to every /v1 operation, also to routes added later: the 429 (with Retry-After
 * and the three X-RateLimit headers) and those headers on every response but the 401 (a request
 * whose key failed is not counted against an org).
 */
export function addRateLimitsToDocument(document: OpenAPIObject): void {
  for (const [path, item] of Object.entries(document.paths)) {
    if (!path.startsWith('/v1/')) continue;
    for (const operation of Object.values(item)) {
      const responses = (operation as { responses?: Record<string, ResponseLike> }).responses;
      if (!responses) continue;
      for (const [status, response] of Object.entries(responses)) {
        if (status !== '401') response.headers = { ...RATE_LIMIT_HEADERS, ...(response.headers ?? {}) };
      }
      responses['429'] = {
        description:
          "rate_limited / rate_limit_exceeded: the org's requests in this minute are used up; or (then with the failed-authentication limit in the headers) the client address has failed authentication too often this minute. Not counted against the limit.",
        headers: { ...RETRY_AFTER_HEADER, ...RATE_LIMIT_HEADERS },
        content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorBodySchema' } } },
      };
    }
  }
}

/** Serves the OpenAPI document at /docs (Swagger UI) and /docs-json, generated from the controllers. */
export function serveOpenApi(app: INestApplication): void {
  const config = new DocumentBuilder()
    .setTitle('PSP connections')
    .setDescription(
      "The calling org's PSP connections (BYOK): configuration and health. Reference: docs/api.md in the repository.",
    )
    .setVersion('1')
    .addApiKey({ type: 'apiKey', in: 'header', name: 'X-Reevit-Key' }, 'api-key')
    .build();
  const document = SwaggerModule.createDocument(app, config, {
    extraModels: [ConnectionSchema, ErrorBodySchema],
    operationIdFactory: (_controller, method) => method,
  });
  addRateLimitsToDocument(document);
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });
}
