import { CanActivate, ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { FastifyReply, FastifyRequest } from 'fastify';
import { DataSource } from 'typeorm';
import { SETTINGS, Settings } from '@psp/config';
import { ApiKeyRecord, ApiKeyStore, hashApiKeyBase64, isWellFormedApiKey, READ_SCOPE } from '@psp/api-keys';
import { ApiError } from './api-error';
import { KeyLookupCache } from './key-lookup-cache';
import { clientAddressKey, RateLimits, RateLimitVerdict, setRateLimitHeaders } from './rate-limits';
import { Batcher } from './batcher';

/** At most this many key lookups go to PostgreSQL in one statement. */
const KEY_BATCH = 500;

/** The org a request was authenticated for. */
export interface AuthenticatedRequest extends FastifyRequest {
  orgId?: string;
}

/** Bytes a found key's record is counted at (its strings, two dates, the cache key, object overhead). */
export function apiKeyRecordBytes(record: ApiKeyRecord, cacheKey: string): number {
  let bytes = cacheKey.length + record.id.length + record.orgId.length + record.environment.length + 192;
  for (const scope of record.scopes) bytes += scope.length + 16;
  return bytes;
}

function header(request: FastifyRequest, name: string): string {
  const value = request.headers[name];
  return (Array.isArray(value) ? value.join(',') : (value ?? '')).trim();
}

/** A 429 with its headers (Retry-After and the three X-RateLimit-* of the limit met). */
function refuse(reply: FastifyReply, verdict: RateLimitVerdict): ApiError {
  setRateLimitHeaders(reply, verdict);
  return ApiError.of('rate_limit_exceeded');
}

/**
 * CONTRACT 1.1, in its table's order: key missing, key unknown/malformed/revoked, org missing, org
 * mismatch, scope; with the rate limits of 1.1a woven in (docs/api.md, "Rate limits"):
 * - an address this instance knows to be over its failed-authentication limit is refused (429) before
 *   its key is looked at;
 * - a 401 counts against the client address, and over that limit is answered 429 instead;
 * - once the key is verified, the request counts against the key's org (which X-Org-Id must then
 *   name) and carries the rate-limit headers, whatever follows (400, 403, 404, 304, 200); over the
 *   limit it is answered 429.
 * Lookups are cached for at most API_KEY_CACHE_MS (≤ 5 s), keyed by the key's hash,
 * so a revocation takes effect on every instance within that time. Found keys and misses are cached
 * apart, each bounded by bytes, least recently used evicted first (KeyLookupCache).
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  private readonly cache: KeyLookupCache<ApiKeyRecord>;
  /** Lookups not in the cache, batched: the keys asked for in one turn of the event loop, in one statement. */
  private readonly lookups: Batcher<string, ApiKeyRecord | null>;

  constructor(
    @Inject(DataSource) db: DataSource,
    @Inject(SETTINGS) settings: Settings,
    private readonly rateLimits: RateLimits,
  ) {
    const keys = new ApiKeyStore(db);
    this.lookups = new Batcher(async (cacheKeys) => {
      const records = await keys.findByHashes(cacheKeys.map((k) => Buffer.from(k, 'base64')));
      cacheKeys.forEach((k, i) => this.cache.set(k, records[i]));
      return records;
    }, KEY_BATCH);
    this.cache = new KeyLookupCache<ApiKeyRecord>(
      {
        ttlMs: settings.apiKeyCacheMs,
        foundBytes: settings.apiKeyCacheBytes,
        missEntries: settings.apiKeyMissCacheEntries,
        missBytes: settings.apiKeyMissCacheBytes,
      },
      apiKeyRecordBytes,
    );
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const reply = context.switchToHttp().getResponse<FastifyReply>();
    const knownOver = this.rateLimits.addressKnownOver(request.ip);
    if (knownOver) throw refuse(reply, knownOver);
    const key = header(request, 'x-reevit-key');
    if (key === '') throw await this.failedAuth(reply, request.ip, 'missing_api_key');
    const record = isWellFormedApiKey(key) ? await this.lookup(key) : null;
    if (!record || record.revokedAt !== null) throw await this.failedAuth(reply, request.ip, 'invalid_api_key');
    const verdict = await this.rateLimits.countOrg(record.orgId);
    if (verdict) {
      setRateLimitHeaders(reply, verdict);
      if (!verdict.allowed) throw ApiError.of('rate_limit_exceeded');
    }
    const orgId = header(request, 'x-org-id');
    if (orgId === '') throw ApiError.of('missing_org_id');
    if (orgId !== record.orgId) throw ApiError.of('org_mismatch');
    if (!record.scopes.includes(READ_SCOPE)) throw ApiError.of('insufficient_scopes');
    request.orgId = orgId;
    return true;
  }

  /** The 401, or the 429 that replaces it once the address is over its failed-authentication limit. */
  private async failedAuth(
    reply: FastifyReply,
    ip: string,
    code: 'missing_api_key' | 'invalid_api_key',
  ): Promise<ApiError> {
    const verdict = await this.rateLimits.countFailedAuth(clientAddressKey(ip));
    return verdict && !verdict.allowed ? refuse(reply, verdict) : ApiError.of(code);
  }

  private lookup(key: string): ApiKeyRecord | null | Promise<ApiKeyRecord | null> {
    const cacheKey = hashApiKeyBase64(key);
    const cached = this.cache.get(cacheKey);
    if (cached) return cached.record;
    return this.lookups.load(cacheKey);
  }
}
