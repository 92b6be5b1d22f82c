import { INestApplication } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional, DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
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

export class ErrorBodySchema {
  @ApiProperty({ example: 'validation_error' }) error!: string;
  @ApiProperty({ example: 'invalid_limit' }) code!: string;
  @ApiProperty({ example: 'limit must be an integer between 1 and 200' }) message!: string;
  @ApiPropertyOptional({ type: 'object', additionalProperties: { type: 'string' }, example: { field: 'limit' } })
  details?: Record<string, string>;
}

/** Serves the OpenAPI document at /docs (Swagger UI) and /docs-json, generated from the controllers. */
export function serveOpenApi(app: INestApplication): void {
  const config = new DocumentBuilder()
    .setTitle('PSP connections')
    .setDescription("The calling org's PSP connections (BYOK): configuration and health. See CONTRACT.md section 1.")
    .setVersion('1')
    .addApiKey({ type: 'apiKey', in: 'header', name: 'X-Reevit-Key' }, 'api-key')
    .build();
  const document = SwaggerModule.createDocument(app, config, {
    extraModels: [ConnectionSchema, ErrorBodySchema],
    operationIdFactory: (_controller, method) => method,
  });
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });
}
