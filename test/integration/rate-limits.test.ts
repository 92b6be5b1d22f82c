import { Logger } from '@nestjs/common';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { SETTINGS, Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { ApiModule } from '../../apps/api/src/api.module';
import { apiHttpAdapter, configureHttpApp, listen } from '../../apps/api/src/http-app';
import { RATE_LIMIT_CLOCK, RATE_LIMIT_METRICS, RateLimitMetrics, RateLimitScope } from '../../apps/api/src/rate-limits';
import { dropIsolated, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { freePort } from '../support/processes';

/**
 * CONTRACT 1.1a against the real Redis: fixed one-minute windows per org shared by every API
 * instance, the three headers on every authenticated response, 429 with Retry-After, refusals not
 * counted, failed authentications limited per client address, 0 turns a limit off, and fail open when
 * Redis does not answer. Most apps run on a clock the test moves (each test in a minute of its own),
 * so counts and Reset values are exact; one runs on the real clock.
 */

const MINUTE = 60_000;
const ORG_A = 'org_rl_a';
const ORG_B = 'org_rl_b';
const ORG_LIMIT = 6;
const FAILED_AUTH_LIMIT = 3;
const UNKNOWN_KEY = `pfk_test_${'A'.repeat(32)}`;

interface Res {
  status: number;
  headers: Headers;
  body: string;
}

/** The rate-limit headers of a response, as numbers (undefined when absent). */
function limits(res: Res): { limit?: number; remaining?: number; reset?: number; retryAfter?: number } {
  const n = (name: string) => (res.headers.has(name) ? Number(res.headers.get(name)) : undefined);
  return {
    limit: n('x-ratelimit-limit'),
    remaining: n('x-ratelimit-remaining'),
    reset: n('x-ratelimit-reset'),
    retryAfter: n('retry-after'),
  };
}

describe('rate limits (CONTRACT 1.1a)', () => {
  let settings: Settings;
  let db: DataSource;
  let redis: Redis;
  const apps: NestFastifyApplication[] = [];
  const keys: Record<string, string> = {};
  // The clock of the apps that do not run on the real one: 17.4 s into a minute of its own per test.
  let now = 0;
  let window = Math.floor(Date.now() / MINUTE) + 1;
  const nextMinute = (secondsIn = 17.4) => {
    window += 1;
    now = window * MINUTE + secondsIn * 1000;
  };
  const counted: { limited: RateLimitScope[]; failedOpen: RateLimitScope[] } = { limited: [], failedOpen: [] };
  const metrics: RateLimitMetrics = {
    limited: (scope) => counted.limited.push(scope),
    failedOpen: (scope) => counted.failedOpen.push(scope),
  };
  let one: string;
  let two: string;

  /** An ApiModule app like startService's, with the clock and the metrics hook replaced. */
  async function startApi(appSettings: Settings, clock: (() => number) | null = () => now): Promise<string> {
    let builder = Test.createTestingModule({ imports: [ApiModule] })
      .overrideProvider(SETTINGS)
      .useValue(appSettings)
      .overrideProvider(RATE_LIMIT_METRICS)
      .useValue(metrics);
    if (clock) builder = builder.overrideProvider(RATE_LIMIT_CLOCK).useValue(clock);
    const moduleRef = await builder.compile();
    const app = configureHttpApp(
      moduleRef.createNestApplication<NestFastifyApplication>(apiHttpAdapter(), { logger: ['error', 'warn'] }),
    );
    await app.init();
    apps.push(app);
    return (await listen(app)).replace('[::1]', '127.0.0.1');
  }

  async function get(origin: string, path: string, key?: string, org?: string, extra: Record<string, string> = {}) {
    const headers: Record<string, string> = { ...extra };
    if (key !== undefined) headers['x-reevit-key'] = key;
    if (org !== undefined) headers['x-org-id'] = org;
    const res = await fetch(`${origin}${path}`, { headers });
    return { status: res.status, headers: res.headers, body: await res.text() } as Res;
  }

  beforeAll(async () => {
    settings = isolatedSettings('ratelimits', {
      RATE_LIMIT_PER_MINUTE: String(ORG_LIMIT),
      RATE_LIMIT_FAILED_AUTH_PER_MINUTE: String(FAILED_AUTH_LIMIT),
    });
    db = await openDatabase(settings);
    redis = new Redis(settings.redisUrl);
    const store = new ApiKeyStore(db);
    keys.a = (await store.create(ORG_A, ['connections:read'], 'test')).key;
    keys.a2 = (await store.create(ORG_A, ['connections:read'], 'live')).key;
    keys.aNoScope = (await store.create(ORG_A, [], 'test')).key;
    keys.b = (await store.create(ORG_B, ['connections:read'], 'test')).key;
    one = await startApi(settings);
    two = await startApi(settings);
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
    redis?.disconnect();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('every authenticated /v1 response carries the three headers, counting down: 200, 404, 400, 304, 403 alike; 401 carries none', async () => {
    nextMinute();
    const list = await get(one, '/v1/connections', keys.a, ORG_A);
    expect(list.status).toBe(200);
    expect(limits(list)).toEqual({ limit: ORG_LIMIT, remaining: 5, reset: 43, retryAfter: undefined });

    const missing = await get(one, '/v1/connections/no_such_connection', keys.a, ORG_A);
    expect(missing.status).toBe(404);
    expect(limits(missing)).toMatchObject({ limit: ORG_LIMIT, remaining: 4, reset: 43 });

    now += 10_000; // 27.4 s into the minute: 33 s left
    const badLimit = await get(one, '/v1/connections?limit=0', keys.a, ORG_A);
    expect(badLimit.status).toBe(400);
    expect(JSON.parse(badLimit.body).code).toBe('invalid_limit');
    expect(limits(badLimit)).toMatchObject({ limit: ORG_LIMIT, remaining: 3, reset: 33 });

    const notModified = await get(one, '/v1/connections', keys.a, ORG_A, {
      'if-none-match': list.headers.get('etag')!,
    });
    expect(notModified.status).toBe(304);
    expect(limits(notModified)).toMatchObject({ limit: ORG_LIMIT, remaining: 2, reset: 33 });

    // The key is verified, so the request counts against the key's org, whatever X-Org-Id says.
    const noOrg = await get(one, '/v1/connections', keys.a);
    expect(noOrg.status).toBe(400);
    expect(JSON.parse(noOrg.body).code).toBe('missing_org_id');
    expect(limits(noOrg)).toMatchObject({ remaining: 1 });
    const noScope = await get(one, '/v1/connections', keys.aNoScope, ORG_A);
    expect(noScope.status).toBe(403);
    expect(limits(noScope)).toMatchObject({ remaining: 0 });

    const unauthorized = await get(one, '/v1/connections', UNKNOWN_KEY, ORG_A);
    expect(unauthorized.status).toBe(401);
    expect(limits(unauthorized)).toEqual({});

    // Routes without auth are never counted and carry no headers.
    for (const path of ['/healthz', '/docs-json']) expect(limits(await get(one, path))).toEqual({});
  });

  it('over the limit: 429 rate_limited / rate_limit_exceeded with Retry-After and the headers; the 429 is not counted; the next minute starts afresh', async () => {
    nextMinute();
    for (let i = 0; i < ORG_LIMIT; i++) expect((await get(one, '/v1/connections', keys.a, ORG_A)).status).toBe(200);
    for (let i = 0; i < 5; i++) {
      const refused = await get(one, '/v1/connections', keys.a, ORG_A);
      expect(refused.status).toBe(429);
      expect(refused.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(JSON.parse(refused.body)).toEqual({
        error: 'rate_limited',
        code: 'rate_limit_exceeded',
        message: expect.any(String),
      });
      expect(limits(refused)).toEqual({ limit: ORG_LIMIT, remaining: 0, reset: 43, retryAfter: 43 });
    }
    // Refused before anything else is looked at: the same 429 for a 404 or a 400 to be.
    expect((await get(one, '/v1/connections/no_such_connection', keys.a, ORG_A)).status).toBe(429);
    expect((await get(one, '/v1/connections', keys.a)).status).toBe(429);

    // The count in Redis is what was let through: the 429s added nothing. Only org id and minute in the name.
    const names = await redis.keys(`${settings.redisKeyPrefix}ratelimit:*`);
    expect(names).toContain(`${settings.redisKeyPrefix}ratelimit:org:${ORG_A}:${window}`);
    for (const name of names)
      expect(name).toMatch(
        new RegExp(`^${settings.redisKeyPrefix}ratelimit:(org|failed-auth):[A-Za-z0-9_.:/-]+:\\d+$`),
      );
    expect(await redis.get(`${settings.redisKeyPrefix}ratelimit:org:${ORG_A}:${window}`)).toBe(String(ORG_LIMIT));
    const ttl = await redis.ttl(`${settings.redisKeyPrefix}ratelimit:org:${ORG_A}:${window}`);
    expect(ttl).toBeGreaterThan(40);
    expect(ttl).toBeLessThanOrEqual(48); // the window's 43 s and 5 s of grace

    // Another org is counted apart.
    expect(limits(await get(one, '/v1/connections', keys.b, ORG_B))).toMatchObject({ remaining: ORG_LIMIT - 1 });

    // Retry-After is whole seconds, at least 1, up to the window's end.
    now = (window + 1) * MINUTE - 200;
    expect(limits(await get(one, '/v1/connections', keys.a, ORG_A))).toEqual({
      limit: ORG_LIMIT,
      remaining: 0,
      reset: 1,
      retryAfter: 1,
    });
    expect(counted.limited.filter((s) => s === 'org').length).toBeGreaterThanOrEqual(8);

    nextMinute(0);
    const fresh = await get(one, '/v1/connections', keys.a, ORG_A);
    expect(fresh.status).toBe(200);
    expect(limits(fresh)).toEqual({ limit: ORG_LIMIT, remaining: ORG_LIMIT - 1, reset: 60, retryAfter: undefined });
  });

  it('two API instances share one count per org (and per key of the org)', async () => {
    nextMinute();
    const seen: number[] = [];
    for (let i = 0; i < ORG_LIMIT; i++) {
      const res = await get(i % 2 === 0 ? one : two, '/v1/connections', i % 3 === 0 ? keys.a2 : keys.a, ORG_A);
      expect(res.status).toBe(200);
      seen.push(limits(res).remaining!);
    }
    expect(seen).toEqual([5, 4, 3, 2, 1, 0]);
    for (const origin of [two, one]) {
      const refused = await get(origin, '/v1/connections', keys.a, ORG_A);
      expect(refused.status).toBe(429);
      expect(limits(refused)).toMatchObject({ remaining: 0, retryAfter: 43 });
    }
  });

  it('requests arriving together, on both instances, are counted exactly: the limit let through with Remaining counting down, the rest 429', async () => {
    nextMinute();
    // Sent at once: each instance counts the requests of one turn of its event loop in one batch.
    const answers = await Promise.all(
      Array.from({ length: 2 * ORG_LIMIT }, (_, i) => get(i % 2 === 0 ? one : two, '/v1/connections', keys.a, ORG_A)),
    );
    const through = answers.filter((r) => r.status === 200);
    expect(through).toHaveLength(ORG_LIMIT);
    expect(through.map((r) => limits(r).remaining).sort()).toEqual([0, 1, 2, 3, 4, 5]);
    const refused = answers.filter((r) => r.status !== 200);
    expect(refused.map((r) => r.status)).toEqual(Array(ORG_LIMIT).fill(429));
    for (const r of refused) expect(limits(r)).toEqual({ limit: ORG_LIMIT, remaining: 0, reset: 43, retryAfter: 43 });
    expect(await redis.get(`${settings.redisKeyPrefix}ratelimit:org:${ORG_A}:${window}`)).toBe(String(ORG_LIMIT));
  });

  it('failed authentications are limited per client address across instances: over the limit, the same 429; then the key is not looked at', async () => {
    nextMinute();
    const missingKey = await get(one, '/v1/connections', undefined, ORG_A);
    expect(missingKey.status).toBe(401);
    expect(JSON.parse(missingKey.body).code).toBe('missing_api_key');
    expect((await get(two, '/v1/connections', 'pfk_test_short', ORG_A)).status).toBe(401);
    expect((await get(one, '/v1/connections', UNKNOWN_KEY, ORG_A)).status).toBe(401);

    const refused = await get(two, '/v1/connections', UNKNOWN_KEY, ORG_A);
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'rate_limited', code: 'rate_limit_exceeded' });
    expect(limits(refused)).toEqual({ limit: FAILED_AUTH_LIMIT, remaining: 0, reset: 43, retryAfter: 43 });
    // The refusal was not counted.
    expect(await redis.get(`${settings.redisKeyPrefix}ratelimit:failed-auth:127.0.0.1:${window}`)).toBe(
      String(FAILED_AUTH_LIMIT),
    );

    // An instance that has refused the address refuses it before looking at the key, so a right
    // guess cannot be told from a wrong one; the org's count is not touched.
    const validKey = await get(two, '/v1/connections', keys.b, ORG_B);
    expect(validKey.status).toBe(429);
    expect(limits(validKey)).toMatchObject({ limit: FAILED_AUTH_LIMIT, remaining: 0 });
    // The other instance learns it from the shared count at its next failed authentication.
    expect((await get(one, '/v1/connections', undefined, ORG_A)).status).toBe(429);
    expect((await get(one, '/v1/connections', keys.b, ORG_B)).status).toBe(429);
    expect(await redis.get(`${settings.redisKeyPrefix}ratelimit:org:${ORG_B}:${window}`)).toBeNull();
    expect(counted.limited).toContain('failed_auth');

    nextMinute();
    expect((await get(one, '/v1/connections', UNKNOWN_KEY, ORG_A)).status).toBe(401);
    expect((await get(two, '/v1/connections', keys.b, ORG_B)).status).toBe(200);
  });

  it('windows are the minutes of the real clock: X-RateLimit-Reset is the whole seconds left in the minute', async () => {
    const real = await startApi(settings, null);
    const before = Date.now();
    const res = await get(real, '/v1/connections', keys.b, ORG_B);
    const after = Date.now();
    expect(res.status).toBe(200);
    const secondsLeft = (t: number) => Math.ceil((Math.floor(t / MINUTE + 1) * MINUTE - t) / 1000);
    const reset = limits(res).reset!;
    expect(reset).toBeGreaterThanOrEqual(1);
    expect(reset).toBeLessThanOrEqual(60);
    // Between what it was when the request left and when its answer came (across a minute's turn too).
    const candidates = new Set([secondsLeft(before), secondsLeft(after)]);
    for (let t = before; t <= after; t += 100) candidates.add(secondsLeft(t));
    expect(candidates).toContain(reset);
  });

  it('0 turns each limit off: no headers, no 429', async () => {
    const off = await startApi({ ...settings, rateLimitPerMinute: 0, rateLimitFailedAuthPerMinute: 0 });
    nextMinute();
    for (let i = 0; i < ORG_LIMIT + 3; i++) {
      const res = await get(off, '/v1/connections', keys.a, ORG_A);
      expect(res.status).toBe(200);
      expect(limits(res)).toEqual({});
    }
    for (let i = 0; i < FAILED_AUTH_LIMIT + 3; i++)
      expect((await get(off, '/v1/connections', UNKNOWN_KEY, ORG_A)).status).toBe(401);
    expect(await redis.keys(`${settings.redisKeyPrefix}ratelimit:*:${window}`)).toEqual([]);
  });

  it('fails open when Redis does not answer: requests pass with the headers (nothing counted), one warning a minute, counted by the metrics hook', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn');
    try {
      const closedPort = await freePort();
      const down = await startApi({ ...settings, redisUrl: `redis://127.0.0.1:${closedPort}/0` });
      nextMinute();
      counted.failedOpen.length = 0;
      for (let i = 0; i < ORG_LIMIT + 4; i++) {
        const res = await get(down, '/v1/connections', keys.a, ORG_A);
        expect(res.status).toBe(200);
        expect(limits(res)).toEqual({ limit: ORG_LIMIT, remaining: ORG_LIMIT, reset: 43, retryAfter: undefined });
      }
      for (let i = 0; i < FAILED_AUTH_LIMIT + 2; i++)
        expect((await get(down, '/v1/connections', UNKNOWN_KEY, ORG_A)).status).toBe(401);
      expect(counted.failedOpen.filter((s) => s === 'org')).toHaveLength(ORG_LIMIT + 4);
      expect(counted.failedOpen.filter((s) => s === 'failed_auth')).toHaveLength(FAILED_AUTH_LIMIT + 2);
      const warnings = () =>
        warn.mock.calls.map((c) => String(c[0])).filter((m) => m.startsWith('rate limits not enforced'));
      expect(warnings()).toHaveLength(1);
      expect(warnings()[0]).not.toContain('pfk_');

      // A minute later (on its clock), the next request that passes unchecked warns again, with the count.
      now += MINUTE;
      await get(down, '/v1/connections', keys.a, ORG_A);
      expect(warnings()).toHaveLength(2);
      expect(warnings()[1]).toMatch(/\b\d+ request\(s\) passed unchecked since the last warning/);
    } finally {
      warn.mockRestore();
    }
  });
});
