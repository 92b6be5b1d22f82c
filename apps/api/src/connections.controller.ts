import { Controller, Get, Param, Req, Res, UseGuards } from '@nestjs/common';
import { FastifyReply } from 'fastify';
import { parseListQuery } from '@psp/domain';
import { ApiError, JSON_CONTENT_TYPE } from './api-error';
import { ApiKeyGuard, AuthenticatedRequest } from './api-key.guard';
import { ConnectionReads, RenderedBody } from './connection-reads';

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

@Controller('v1/connections')
@UseGuards(ApiKeyGuard)
export class ConnectionsController {
  constructor(private readonly reads: ConnectionReads) {}

  @Get()
  async list(@Req() request: AuthenticatedRequest, @Res() reply: FastifyReply): Promise<void> {
    const parsed = parseListQuery(queryPairs(request.url));
    if (!parsed.ok) throw new ApiError(parsed.error.status, parsed.error.body);
    sendRendered(request, reply, await this.reads.list(request.orgId!, parsed.query));
  }

  @Get('labels')
  async labels(@Req() request: AuthenticatedRequest, @Res() reply: FastifyReply): Promise<void> {
    sendRendered(request, reply, await this.reads.labels(request.orgId!));
  }

  @Get(':id')
  async one(@Req() request: AuthenticatedRequest, @Res() reply: FastifyReply, @Param('id') id: string): Promise<void> {
    const rendered = await this.reads.one(request.orgId!, id);
    if (!rendered) throw ApiError.notFound('connection_not_found', 'No connection with this id in your org.');
    sendRendered(request, reply, rendered);
  }
}
