import { isIPv4, isIPv6 } from 'node:net';
import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { FastifyReply } from 'fastify';
import Redis from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { SETTINGS, Settings } from '@psp/config';

/** The contract's windows: fixed, one minute, aligned to the minutes of the clock (not to a first request). */
export const RATE_LIMIT_WINDOW_MS = 60_000;
/**
 * A window's Redis key lives this long past the window's end, so that an instance whose clock is a
 * little behind still finds the count (instead of starting a fresh one) in the window's last seconds.
 */
const KEY_GRACE_SECONDS = 5;
/** While Redis does not answer, the warning that requests pass unchecked is logged at most this often. */
export const FAIL_OPEN_WARNING_INTERVAL_MS = 60_000;
/** Orgs and addresses this instance knows to be over their limit until the window ends (memory bound). */
const MAX_KNOWN_OVER = 100_000;

/**
 * Replaces rate-limiter-flexible's increment script (same arguments: KEYS[1] the key, ARGV[1] the
 * points, ARGV[2] the key's lifetime in seconds, ARGV[3] the limit). The library's own script counts
 * every attempt, refused ones included; this one counts only what it lets through, so a 429 does not
 * count against the limit: over the limit it writes nothing and reports one past the limit, which the
 * library takes as a refusal. Atomic, one round trip, as before.
 */
export const COUNT_ONLY_ADMITTED_LUA = `redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX')
local points = tonumber(ARGV[1])
local consumed = tonumber(redis.call('get', KEYS[1]))
if points > 0 and consumed + points > tonumber(ARGV[3]) then
  return {consumed + points, redis.call('pttl', KEYS[1])}
end
consumed = redis.call('incrby', KEYS[1], points)
local ttl = redis.call('pttl', KEYS[1])
if ttl == -1 then
  redis.call('expire', KEYS[1], ARGV[2])
  ttl = 1000 * ARGV[2]
end
return {consumed, ttl}`;

/** Which limit a request met: its org's, or its address's failed authentications. */
export type RateLimitScope = 'org' | 'failed_auth';

/**
 * Where the rate limits report to the metrics. ApiModule provides NO_RATE_LIMIT_METRICS (does nothing)
 * under RATE_LIMIT_METRICS; the metrics replace it with counters (label values: the scope only, never
 * an org or an address).
 */
export interface RateLimitMetrics {
  /** A request was answered 429. */
  limited(scope: RateLimitScope): void;
  /** A request passed unchecked because Redis did not answer (fail open). */
  failedOpen(scope: RateLimitScope): void;
}
export const RATE_LIMIT_METRICS = Symbol('RATE_LIMIT_METRICS');
export const NO_RATE_LIMIT_METRICS: RateLimitMetrics = { limited: () => undefined, failedOpen: () => undefined };

/** The clock the windows are cut from (epoch ms); tests replace it. */
export const RATE_LIMIT_CLOCK = Symbol('RATE_LIMIT_CLOCK');
export type RateLimitClock = () => number;

/** The window holding `now`: its number (minutes since the epoch) and whole seconds until it ends (1-60). */
export function windowAt(now: number): { index: number; resetSeconds: number } {
  const index = Math.floor(now / RATE_LIMIT_WINDOW_MS);
  const resetSeconds = Math.max(1, Math.ceil(((index + 1) * RATE_LIMIT_WINDOW_MS - now) / 1000));
  return { index, resetSeconds };
}

/** What the rate-limit headers say about one request. */
export interface RateLimitVerdict {
  allowed: boolean;
  limit: number;
  /** Left in this window, never negative. */
  remaining: number;
  /** Whole seconds until the window ends, at least 1. */
  resetSeconds: number;
}

/** X-RateLimit-Limit, -Remaining, -Reset; and Retry-After on a refusal. */
export function setRateLimitHeaders(reply: FastifyReply, verdict: RateLimitVerdict): void {
  void reply
    .header('x-ratelimit-limit', String(verdict.limit))
    .header('x-ratelimit-remaining', String(verdict.remaining))
    .header('x-ratelimit-reset', String(verdict.resetSeconds));
  if (!verdict.allowed) void reply.header('retry-after', String(verdict.resetSeconds));
}

/** The first 64 bits of an IPv6 address, as four lowercase hex groups. */
function ipv6Prefix64(address: string): string {
  const [head, tail] = address.split('%')[0].toLowerCase().split('::');
  const groupsOf = (part: string | undefined): string[] =>
    part ? part.split(':').flatMap((g) => (g.includes('.') ? ['v4', 'v4'] : [g])) : [];
  const h = groupsOf(head);
  const t = groupsOf(tail);
  const groups =
    tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return groups
    .slice(0, 4)
    .map((g) => (g === 'v4' ? '0' : parseInt(g, 16).toString(16)))
    .join(':');
}

/**
 * The client address that failed authentications are counted under: an IPv4 address as it is (also
 * when mapped into IPv6), an IPv6 address by its /64 (one host usually holds a whole /64, so counting
 * single IPv6 addresses would give it 2^64 budgets).
 */
export function clientAddressKey(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped) return mapped[1];
  if (isIPv4(ip)) return ip;
  if (isIPv6(ip.split('%')[0])) return `${ipv6Prefix64(ip)}::/64`;
  return 'unknown';
}

/**
 * CONTRACT 1.1a, shared by every API instance through Redis (rate-limiter-flexible's RateLimiterRedis
 * on the API's own client):
 * - per org: RATE_LIMIT_PER_MINUTE requests in each fixed minute of the clock. The library's fixed
 *   window starts at a key's first request, so each window gets its own key,
 *   `<REDIS_KEY_PREFIX>ratelimit:org:<org_id>:<minute number>`, created with a lifetime reaching past
 *   the window's end: the windows are the clock's minutes and X-RateLimit-Reset is the seconds left in
 *   the minute. A refused request is not counted (COUNT_ONLY_ADMITTED_LUA).
 * - per client address: RATE_LIMIT_FAILED_AUTH_PER_MINUTE failed authentications, under
 *   `<REDIS_KEY_PREFIX>ratelimit:failed-auth:<address>:<minute number>`.
 * - fail open: when Redis does not answer, the request passes, a warning is logged (at most once per
 *   FAIL_OPEN_WARNING_INTERVAL_MS, with the number that passed since) and RATE_LIMIT_METRICS counts it.
 * Only org ids and addresses appear in the key names; never a key or its hash.
 */
@Injectable()
export class RateLimits {
  private readonly logger = new Logger('RateLimits');
  private readonly orgs?: RateLimiterRedis;
  private readonly failedAuth?: RateLimiterRedis;
  /** `org:<id>` / `addr:<address>` known here to be over the limit in window `knownOverWindow`. */
  private readonly knownOver = new Set<string>();
  private knownOverWindow = -1;
  private lastWarningAt = -Infinity;
  private passedUnchecked = 0;
  private readonly metrics: RateLimitMetrics;
  private readonly now: RateLimitClock;

  constructor(
    @Inject(Redis) redis: Redis,
    @Inject(SETTINGS) private readonly settings: Settings,
    @Optional() @Inject(RATE_LIMIT_METRICS) metrics?: RateLimitMetrics,
    @Optional() @Inject(RATE_LIMIT_CLOCK) clock?: RateLimitClock,
  ) {
    this.metrics = metrics ?? NO_RATE_LIMIT_METRICS;
    this.now = clock ?? Date.now;
    const limiter = (points: number, name: string): RateLimiterRedis =>
      new RateLimiterRedis({
        storeClient: redis,
        points,
        duration: RATE_LIMIT_WINDOW_MS / 1000,
        keyPrefix: `${settings.redisKeyPrefix}ratelimit:${name}`,
        customIncrTtlLuaScript: COUNT_ONLY_ADMITTED_LUA,
        // A client that is not connected answers at once (the API's client queues nothing anyway).
        rejectIfRedisNotReady: true,
      });
    if (settings.rateLimitPerMinute > 0) this.orgs = limiter(settings.rateLimitPerMinute, 'org');
    if (settings.rateLimitFailedAuthPerMinute > 0)
      this.failedAuth = limiter(settings.rateLimitFailedAuthPerMinute, 'failed-auth');
  }

  /**
   * Counts an authenticated request (its key verified) against its org. Null when the limit is off
   * (RATE_LIMIT_PER_MINUTE=0): then no headers are sent.
   */
  countOrg(orgId: string): Promise<RateLimitVerdict | null> {
    return this.count(this.orgs, 'org', `org:${orgId}`, orgId);
  }

  /**
   * Counts a failed authentication (a 401) against the client address; `allowed: false` turns the 401
   * into a 429. Null when that limit is off.
   */
  countFailedAuth(address: string): Promise<RateLimitVerdict | null> {
    return this.count(this.failedAuth, 'failed_auth', `addr:${address}`, address);
  }

  /**
   * Whether this instance already knows the address to be over its failed-authentication limit in
   * this window (a refusal answered here). Such requests are refused before their key is looked at,
   * so a correct guess cannot be told from a wrong one. Never asks Redis: a request with a valid key
   * costs nothing more.
   */
  addressKnownOver(address: string): RateLimitVerdict | null {
    if (!this.failedAuth) return null;
    const { index, resetSeconds } = windowAt(this.now());
    if (index !== this.knownOverWindow || !this.knownOver.has(`addr:${address}`)) return null;
    this.metrics.limited('failed_auth');
    return { allowed: false, limit: this.settings.rateLimitFailedAuthPerMinute, remaining: 0, resetSeconds };
  }

  private async count(
    limiter: RateLimiterRedis | undefined,
    scope: RateLimitScope,
    knownKey: string,
    id: string,
  ): Promise<RateLimitVerdict | null> {
    if (!limiter) return null;
    const { index, resetSeconds } = windowAt(this.now());
    const limit = limiter.points;
    if (index === this.knownOverWindow && this.knownOver.has(knownKey)) {
      this.metrics.limited(scope);
      return { allowed: false, limit, remaining: 0, resetSeconds };
    }
    try {
      const res = await limiter.consume(`${id}:${index}`, 1, { customDuration: resetSeconds + KEY_GRACE_SECONDS });
      return { allowed: true, limit, remaining: Math.max(0, limit - res.consumedPoints), resetSeconds };
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) {
        this.failOpen(scope, error);
        return { allowed: true, limit, remaining: limit, resetSeconds };
      }
      this.rememberOver(knownKey, index);
      this.metrics.limited(scope);
      return { allowed: false, limit, remaining: 0, resetSeconds };
    }
  }

  private rememberOver(knownKey: string, index: number): void {
    if (index !== this.knownOverWindow) {
      this.knownOver.clear();
      this.knownOverWindow = index;
    }
    if (this.knownOver.size < MAX_KNOWN_OVER) this.knownOver.add(knownKey);
  }

  private failOpen(scope: RateLimitScope, error: unknown): void {
    this.metrics.failedOpen(scope);
    this.passedUnchecked += 1;
    const now = this.now();
    if (now - this.lastWarningAt < FAIL_OPEN_WARNING_INTERVAL_MS) return;
    const reason = error instanceof Error ? error.message.slice(0, 200) : 'unknown error';
    this.logger.warn(
      `rate limits not enforced: Redis did not answer (${reason}); ${this.passedUnchecked} request(s) passed unchecked since the last warning`,
    );
    this.lastWarningAt = now;
    this.passedUnchecked = 0;
  }
}
