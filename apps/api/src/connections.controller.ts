import { Controller, Get, Param, Req, Res, UseGuards } from '@nestjs/common';
import {
  ApiHeader,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiQuery,
  ApiResponse,
  ApiSecurity,
  ApiTags,
} from '@nestjs/swagger';
import { FastifyReply } from 'fastify';
import { parseListQuery } from '@psp/domain';
import { API_ERRORS, ApiError, codesOf, JSON_CONTENT_TYPE } from './api-error';
import { ApiKeyGuard, AuthenticatedRequest } from './api-key.guard';
import { ConnectionReads, RenderedBody } from './connection-reads';
import {
  ConnectionListSchema,
  ConnectionSchema,
  ConnectionStatsSchema,
  ErrorBodySchema,
  LabelSummarySchema,
} from './openapi';

/** The query string's pairs in order, duplicates kept (Fastify's parsed object merges them). */
export function queryPairs(url: string): [string, string][] {
  const q = url.indexOf('?');
  return q < 0 ? [] : [...new URLSearchParams(url.slice(q + 1))];
}

/** Sends a rendered body, or 304 when the client already holds it (If-None-Match). */
export function sendRendered(request: AuthenticatedRequest, reply: FastifyReply, rendered: RenderedBody): void {
  const ifNoneMatch = request.headers['if-none-match'];
  void reply.header('etag', rendered.etag).header('cache-control', 'private, no-cache');
  if (typeof ifNoneMatch === 'string' && matchesEtag(ifNoneMatch, rendered.etag)) {
    void reply.status(304).send();
    return;
  }
  void reply.status(200).header('content-type', JSON_CONTENT_TYPE).send(rendered.body);
}

/** If-None-Match: `*`, or a list of entity tags (weak ones compared weakly, as RFC 9110 says for it). */
export function matchesEtag(ifNoneMatch: string, etag: string): boolean {
  if (ifNoneMatch.trim() === '*') return true;
  return ifNoneMatch.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

/** An OpenAPI response description from API_ERRORS: `validation_error (missing_org_id, duplicate_parameter, …)`. */
function errorsOf(status: number, category?: string): string {
  const codes = codesOf(status).filter((c) => category === undefined || API_ERRORS[c].error === category);
  return `${category ?? API_ERRORS[codes[0]].error} (${codes.join(', ')})`;
}

@Controller('v1/connections')
@UseGuards(ApiKeyGuard)
@ApiTags('connections')
@ApiSecurity('api-key')
@ApiHeader({ name: 'X-Org-Id', required: true, description: 'Organization identifier for multi-tenancy' })
@ApiResponse({ status: 400, description: errorsOf(400, 'validation_error'), type: ErrorBodySchema })
@ApiResponse({ status: 401, description: errorsOf(401), type: ErrorBodySchema })
@ApiResponse({ status: 403, description: errorsOf(403), type: ErrorBodySchema })
@ApiResponse({ status: 304, description: 'Not modified (If-None-Match matched the ETag)' })
export class ConnectionsController {
  constructor(private readonly reads: ConnectionReads) {}

  @Get()
  @ApiOperation({ summary: 'List PSP connections for the calling org (BYOK)' })
  @ApiQuery({ name: 'label', required: false, description: 'connections whose labels include it (case-insensitive)' })
  @ApiQuery({ name: 'provider', required: false, description: 'connections of this provider (case-insensitive)' })
  @ApiQuery({ name: 'status', required: false, enum: ['active', 'inactive'], description: 'case-insensitive' })
  @ApiQuery({ name: 'limit', required: false, schema: { type: 'integer', minimum: 1, maximum: 200, default: 50 } })
  @ApiQuery({ name: 'offset', required: false, schema: { type: 'integer', minimum: 0, default: 0 } })
  @ApiOkResponse({ type: ConnectionListSchema })
  async list(@Req() request: AuthenticatedRequest, @Res() reply: FastifyReply): Promise<void> {
    const parsed = parseListQuery(queryPairs(request.url));
    if (!parsed.ok) throw ApiError.ofListQuery(parsed.rejection);
    sendRendered(request, reply, await this.reads.list(request.orgId!, parsed.query));
  }

  @Get('labels')
  @ApiOperation({ summary: "Labels of the calling org's listed connections, with counts by provider and status" })
  @ApiOkResponse({ type: [LabelSummarySchema] })
  async labels(@Req() request: AuthenticatedRequest, @Res() reply: FastifyReply): Promise<void> {
    sendRendered(request, reply, await this.reads.labels(request.orgId!));
  }

  @Get(':id/stats')
  @ApiOperation({
    summary:
      "The calls of one connection inside its health window (the 60 minute buckets up to stream time's), as plain counts: for routers",
  })
  @ApiOkResponse({ type: ConnectionStatsSchema })
  @ApiNotFoundResponse({ description: 'not_found / connection_not_found', type: ErrorBodySchema })
  async stats(
    @Req() request: AuthenticatedRequest,
    @Res() reply: FastifyReply,
    @Param('id') id: string,
  ): Promise<void> {
    const rendered = await this.reads.stats(request.orgId!, id);
    if (!rendered) throw ApiError.of('connection_not_found');
    sendRendered(request, reply, rendered);
  }

  @Get(':id')
  @ApiOperation({ summary: 'One connection of the calling org' })
  @ApiOkResponse({ type: ConnectionSchema })
  @ApiNotFoundResponse({ description: 'not_found / connection_not_found', type: ErrorBodySchema })
  async one(@Req() request: AuthenticatedRequest, @Res() reply: FastifyReply, @Param('id') id: string): Promise<void> {
    const rendered = await this.reads.one(request.orgId!, id);
    if (!rendered) throw ApiError.of('connection_not_found');
    sendRendered(request, reply, rendered);
  }
}
