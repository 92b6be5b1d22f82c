import { isIPv4, isIPv6 } from 'node:net';
import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { FastifyReply } from 'fastify';
import Redis from 'ioredis';
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
 * Counts `ARGV[1]` requests of one window at once (KEYS[1] the window's key, ARGV[2] its lifetime in
 * seconds, ARGV[3] the limit): admits as many as the limit leaves, `min(asking, limit - counted)`, adds
 * only those (a refused request is not counted), gives a new key its lifetime, and answers
 * `{counted before, admitted}`. Atomic: the requests are admitted as if they had arrived one after the
 * other, so the counts and the X-RateLimit-Remaining values are exactly those of one call per request.
 */
export const ADMIT_REQUESTS_LUA = `local counted = tonumber(redis.call('get', KEYS[1]) or '0')
local admitted = math.min(tonumber(ARGV[1]), math.max(0, tonumber(ARGV[3]) - counted))
if admitted > 0 and redis.call('incrby', KEYS[1], admitted) == admitted then
  redis.call('expire', KEYS[1], ARGV[2])
end
return {counted, admitted}`;

/** The command ADMIT_REQUESTS_LUA is defined as on the API's ioredis client (EVALSHA, EVAL on NOSCRIPT). */
const ADMIT_COMMAND = 'pspAdmitRequests';
type AdmitCommand = (key: string, asking: number, lifetimeSeconds: number, limit: number) => Promise<[number, number]>;

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

/** One limit: its Redis key prefix and how many requests a window admits. */
interface Limit {
  scope: RateLimitScope;
  /** `<REDIS_KEY_PREFIX>ratelimit:org:` or `<REDIS_KEY_PREFIX>ratelimit:failed-auth:`. */
  keyPrefix: string;
  points: number;
}

/** The requests of one window key counted in the next batch, each waiting for its verdict. */
interface PendingWindow {
  limit: Limit;
  knownKey: string;
  index: number;
  resetSeconds: number;
  waiting: ((verdict: RateLimitVerdict) => void)[];
}

/**
 * CONTRACT 1.1a, shared by every API instance through Redis (one script, ADMIT_REQUESTS_LUA, on the
 * API's own ioredis client):
 * - per org: RATE_LIMIT_PER_MINUTE requests in each fixed minute of the clock. Each window has its own
 *   key, `<REDIS_KEY_PREFIX>ratelimit:org:<org_id>:<minute number>`, created with a lifetime reaching
 *   past the window's end: the windows are the clock's minutes and X-RateLimit-Reset is the seconds
 *   left in the minute. A refused request is not counted.
 * - per client address: RATE_LIMIT_FAILED_AUTH_PER_MINUTE failed authentications, under
 *   `<REDIS_KEY_PREFIX>ratelimit:failed-auth:<address>:<minute number>`.
 * - batched: the requests counted in one turn of the event loop go to Redis together, one script call
 *   per window key (all of an org's requests of that turn in one call, which admits them in order) and
 *   one pipeline (one write, one round trip) for all keys. Exact: the same counts, verdicts and headers
 *   as one call per request; a request waits at most until the end of the turn it arrived in.
 * - fail open: when Redis does not answer, the request passes, a warning is logged (at most once per
 *   FAIL_OPEN_WARNING_INTERVAL_MS, with the number that passed since) and RATE_LIMIT_METRICS counts it.
 * Only org ids and addresses appear in the key names; never a key or its hash.
 */
@Injectable()
export class RateLimits {
  private readonly logger = new Logger('RateLimits');
  private readonly orgs?: Limit;
  private readonly failedAuth?: Limit;
  /** `org:<id>` / `addr:<address>` known here to be over the limit in window `knownOverWindow`. */
  private readonly knownOver = new Set<string>();
  private knownOverWindow = -1;
  private lastWarningAt = -Infinity;
  private passedUnchecked = 0;
  private readonly metrics: RateLimitMetrics;
  private readonly now: RateLimitClock;
  /** The requests to count in the next batch, by window key. */
  private pending = new Map<string, PendingWindow>();
  private flushScheduled = false;

  constructor(
    @Inject(Redis) private readonly redis: Redis,
    @Inject(SETTINGS) private readonly settings: Settings,
    @Optional() @Inject(RATE_LIMIT_METRICS) metrics?: RateLimitMetrics,
    @Optional() @Inject(RATE_LIMIT_CLOCK) clock?: RateLimitClock,
  ) {
    this.metrics = metrics ?? NO_RATE_LIMIT_METRICS;
    this.now = clock ?? Date.now;
    const prefix = `${settings.redisKeyPrefix}ratelimit:`;
    if (settings.rateLimitPerMinute > 0)
      this.orgs = { scope: 'org', keyPrefix: `${prefix}org:`, points: settings.rateLimitPerMinute };
    if (settings.rateLimitFailedAuthPerMinute > 0)
      this.failedAuth = {
        scope: 'failed_auth',
        keyPrefix: `${prefix}failed-auth:`,
        points: settings.rateLimitFailedAuthPerMinute,
      };
    if ((this.orgs || this.failedAuth) && !(ADMIT_COMMAND in redis))
      redis.defineCommand(ADMIT_COMMAND, { numberOfKeys: 1, lua: ADMIT_REQUESTS_LUA });
  }

  /**
   * Counts an authenticated request (its key verified) against its org. Null when the limit is off
   * (RATE_LIMIT_PER_MINUTE=0): then no headers are sent.
   */
  countOrg(orgId: string): Promise<RateLimitVerdict | null> | null {
    return this.count(this.orgs, `org:${orgId}`, orgId);
  }

  /**
   * Counts a failed authentication (a 401) against the client address; `allowed: false` turns the 401
   * into a 429. Null when that limit is off.
   */
  countFailedAuth(address: string): Promise<RateLimitVerdict | null> | null {
    return this.count(this.failedAuth, `addr:${address}`, address);
  }

  /**
   * Whether this instance already knows the address to be over its failed-authentication limit in
   * this window (a refusal answered here; `ip` is counted as clientAddressKey says). Such requests are refused before their key is looked at,
   * so a correct guess cannot be told from a wrong one. Never asks Redis: a request with a valid key
   * costs nothing more.
   */
  addressKnownOver(ip: string | undefined): RateLimitVerdict | null {
    if (!this.failedAuth || this.knownOver.size === 0) return null;
    const { index, resetSeconds } = windowAt(this.now());
    if (index !== this.knownOverWindow || !this.knownOver.has(`addr:${clientAddressKey(ip)}`)) return null;
    this.metrics.limited('failed_auth');
    return { allowed: false, limit: this.failedAuth.points, remaining: 0, resetSeconds };
  }

  /** Null when the limit is off; else the verdict, at once when this window is known to be over. */
  private count(limit: Limit | undefined, knownKey: string, id: string): Promise<RateLimitVerdict> | null {
    if (!limit) return null;
    const { index, resetSeconds } = windowAt(this.now());
    if (index === this.knownOverWindow && this.knownOver.has(knownKey)) {
      this.metrics.limited(limit.scope);
      return Promise.resolve({ allowed: false, limit: limit.points, remaining: 0, resetSeconds });
    }
    const key = `${limit.keyPrefix}${id}:${index}`;
    let window = this.pending.get(key);
    if (!window) {
      window = { limit, knownKey, index, resetSeconds, waiting: [] };
      this.pending.set(key, window);
    }
    const waiting = window.waiting;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return new Promise((resolve) => waiting.push(resolve));
  }

  /** Sends the pending counts: one script call per window key, all in one pipeline. */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = new Map();
    const pipeline = this.redis.pipeline() as ReturnType<Redis['pipeline']> &
      Record<typeof ADMIT_COMMAND, AdmitCommand>;
    for (const [key, w] of batch)
      pipeline[ADMIT_COMMAND](key, w.waiting.length, w.resetSeconds + KEY_GRACE_SECONDS, w.limit.points);
    pipeline.exec().then(
      (results) => {
        let i = 0;
        for (const w of batch.values()) {
          const [error, answer] = results?.[i++] ?? [new Error('no answer from Redis'), null];
          if (error) this.settleUnchecked(w, error);
          else this.settle(w, answer as [number, number]);
        }
      },
      (error: unknown) => {
        for (const w of batch.values()) this.settleUnchecked(w, error);
      },
    );
  }

  /** The waiting requests in order: the first `admitted` let through, counting down; the rest refused. */
  private settle(w: PendingWindow, [counted, admitted]: [number, number]): void {
    const { points } = w.limit;
    const before = Number(counted);
    const through = Number(admitted);
    w.waiting.forEach((resolve, i) => {
      if (i < through)
        resolve({
          allowed: true,
          limit: points,
          remaining: Math.max(0, points - (before + i + 1)),
          resetSeconds: w.resetSeconds,
        });
      else {
        this.rememberOver(w.knownKey, w.index);
        this.metrics.limited(w.limit.scope);
        resolve({ allowed: false, limit: points, remaining: 0, resetSeconds: w.resetSeconds });
      }
    });
  }

  /** Redis did not answer: every waiting request passes uncounted (fail open). */
  private settleUnchecked(w: PendingWindow, error: unknown): void {
    for (const resolve of w.waiting) {
      this.failOpen(w.limit.scope, error);
      resolve({ allowed: true, limit: w.limit.points, remaining: w.limit.points, resetSeconds: w.resetSeconds });
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
