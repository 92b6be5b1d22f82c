import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { Logger } from '@nestjs/common';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { ConnectionEvent, validateMessage } from '@psp/domain';
import { appendEvents, EventToAppend } from '@psp/storage';
import { createRedis, Projection, RedisReadModel, unpackStateJson } from '@psp/read-model';
import { ApiModule } from '../../apps/api/src/api.module';
import { ConnectionReads } from '../../apps/api/src/connection-reads';
import { dropIsolated, eventually, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { startService } from '../support/service';
import { CONNECTION_FIELDS } from '../support/contract';

/**
 * CONTRACT section 1, black-box, against the API alone (ApiModule). The read model is seeded through
 * the real code: accepted events (validateMessage, as the writer does) appended to the event log and
 * projected with the real Projection; Redis is filled lazily by the API on first read.
 */

const JSON_CT = 'application/json; charset=utf-8';
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const PROVIDERS = ['paystack', 'hubtel', 'flutterwave', 'monnify', 'mpesa', 'stripe'];

const ORG_A = 'org_a';
const ORG_B = 'org_b';
const ORG_BIG = 'org_big';
const ORG_ETAG = 'org_etag';
const ORG_EMPTY = 'org_empty';
const ORG_C = 'org_c';

// Credential values sent in connection.configured: they must never be stored or shown.
const SECRET_1 = `sk_live_${randomBytes(16).toString('hex')}`;
const SECRET_2 = `whsec_${randomBytes(16).toString('hex')}`;

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

interface ConnectionJson {
  id: string;
  created_at: string;
  [field: string]: unknown;
}

const minute = 60000;
// A whole minute two hours ago: all seeded events are in the past (never "in the future").
const base = Math.floor((Date.now() - 120 * minute) / minute) * minute;
const at = (ms: number) => new Date(ms).toISOString();

describe('the query API contract (CONTRACT 1)', () => {
  let settings: Settings;
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  let store: ApiKeyStore;
  const extraApps: NestFastifyApplication[] = [];
  const keys: Record<string, string> = {};
  const sentSecrets = new Set<string>([SECRET_1, SECRET_2]);
  const responses: { path: string; res: Res }[] = [];
  const logLines: string[] = [];
  /** The API's JSON log lines (pino, LOG_LEVEL=debug: a line per request, its headers redacted). */
  const jsonLogLines: string[] = [];
  const loggerSpies: jest.SpyInstance[] = [];
  const restore: (() => void)[] = [];
  const versions = new Map<string, number>();
  let seedOffset = 0;

  // ---- HTTP -------------------------------------------------------------------------------------------

  /** A GET (or other method) with the path sent exactly as given: no normalisation, no re-encoding. */
  function call(
    path: string,
    headers: Record<string, string | string[]> = {},
    method = 'GET',
    origin = url,
  ): Promise<Res> {
    const target = new URL(origin);
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        { host: target.hostname, port: target.port, path, method, headers, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const r = {
              status: res.statusCode ?? 0,
              headers: res.headers,
              text: Buffer.concat(chunks).toString('utf8'),
            };
            responses.push({ path, res: r });
            resolve(r);
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  function get(
    path: string,
    key: string | null,
    org: string | null,
    headers: Record<string, string> = {},
    origin = url,
  ): Promise<Res> {
    const h: Record<string, string> = { ...headers };
    if (key !== null) h['X-Reevit-Key'] = key;
    if (org !== null) h['X-Org-Id'] = org;
    return call(path, h, 'GET', origin);
  }

  const asA = (path: string, headers: Record<string, string> = {}) => get(path, keys.a, ORG_A, headers);
  const asBig = (path: string) => get(path, keys.big, ORG_BIG);

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  type Json = any;

  function json<T = Json>(res: Res): T {
    expect(res.headers['content-type']).toBe(JSON_CT);
    return JSON.parse(res.text) as T;
  }

  function ok<T = Json>(res: Res): T {
    if (res.status !== 200) throw new Error(`expected 200, got ${res.status}: ${res.text.slice(0, 300)}`);
    return json<T>(res);
  }

  /** The contract's error body, exactly: {error, code, message[, details]} with string-only details. */
  function expectError(res: Res, status: number, error: string, code: string, field?: string): Record<string, unknown> {
    if (res.status !== status)
      throw new Error(`expected ${status} ${code}, got ${res.status}: ${res.text.slice(0, 300)}`);
    const body = json<Record<string, unknown>>(res);
    expect(body.error).toBe(error);
    expect(body.code).toBe(code);
    expect(typeof body.message).toBe('string');
    expect((body.message as string).length).toBeGreaterThan(0);
    const allowed = body.details === undefined ? ['error', 'code', 'message'] : ['error', 'code', 'message', 'details'];
    expect(Object.keys(body)).toEqual(allowed);
    if (body.details !== undefined) {
      expect(body.details).not.toBeNull();
      expect(typeof body.details).toBe('object');
      expect(Array.isArray(body.details)).toBe(false);
      for (const v of Object.values(body.details as object)) expect(typeof v).toBe('string');
    }
    if (field !== undefined) expect(body.details).toEqual({ field });
    return body;
  }

  const ids = (body: { connections: ConnectionJson[] }) => body.connections.map((c) => c.id);

  // ---- seeding through the real code -------------------------------------------------------------------

  function envelope(type: string, org: string, conn: string, atMs: number, data: object): Buffer {
    return Buffer.from(
      JSON.stringify({
        event_id: randomUUID(),
        type,
        schema_version: 1,
        org_id: org,
        connection_id: conn,
        occurred_at: at(atMs),
        data,
      }),
    );
  }

  /** Validates like the writer, appends with stream versions 1..n per connection, then projects. */
  async function seed(messages: Buffer[], redis: RedisReadModel | null = null): Promise<void> {
    const rows: EventToAppend[] = [];
    for (const value of messages) {
      const result = validateMessage(value, Date.now());
      if (!result.ok) throw new Error(`seed message rejected: ${result.reason} ${result.detail}`);
      const event: ConnectionEvent = result.event;
      const k = `${event.orgId}:${event.connectionId}`;
      const v = (versions.get(k) ?? 0) + 1;
      versions.set(k, v);
      rows.push({ event, streamVersion: v, source: { topic: 'seed', partition: 0, offset: String(seedOffset++) } });
    }
    await appendEvents(db, rows);
    // The projection reads only rows older than every running transaction on the server (the snapshot's
    // xmin, server-wide): a step can apply nothing while other runs hold transactions open. So step
    // until the checkpoint has applied every logged event, not merely until a step applies nothing.
    const [{ n }]: { n: number }[] = await db.query(`SELECT count(*)::int AS n FROM event_log`);
    const projection = new Projection(db, 1, redis, 1000);
    const deadline = Date.now() + 20000;
    for (;;) {
      const step = await projection.step();
      if (step.applied > 0) continue;
      if (step.checkpoint.eventsApplied >= n) return;
      if (Date.now() > deadline)
        throw new Error(`projection did not catch up: ${step.checkpoint.eventsApplied} of ${n} events`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function flushRunRedisKeys(): Promise<number> {
    const redis = new Redis(settings.redisUrl);
    let removed = 0;
    try {
      let cursor = '0';
      do {
        const [next, found] = await redis.scan(cursor, 'MATCH', `${settings.redisKeyPrefix}*`, 'COUNT', 1000);
        cursor = next;
        if (found.length > 0) removed += await redis.del(...found);
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
    return removed;
  }

  async function runRedisKeys(): Promise<string[]> {
    const redis = new Redis(settings.redisUrl);
    try {
      const all: string[] = [];
      let cursor = '0';
      do {
        const [next, found] = await redis.scan(cursor, 'MATCH', `${settings.redisKeyPrefix}*`, 'COUNT', 1000);
        cursor = next;
        all.push(...found);
      } while (cursor !== '0');
      return all;
    } finally {
      redis.disconnect();
    }
  }

  // The org_big fixture: 205 connections, in groups of 10 sharing created_at, ids of mixed alphabets.
  const BIG_N = 205;
  const bigIdPrefixes = ['-', '.', ':', 'A', '_', 'a', '0', 'Z', '9', 'z'];
  const bigConnections = Array.from({ length: BIG_N }, (_, i) => ({
    id: `${bigIdPrefixes[(i * 7) % bigIdPrefixes.length]}c${i}`,
    createdAt: base + Math.floor(i / 10) * 1000,
    provider: PROVIDERS[i % PROVIDERS.length],
    status: i % 3 === 0 ? 'inactive' : 'active',
    labels: i % 4 === 0 ? ['quarter'] : [],
  }));
  const plainOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const bigExpectedOrder = [...bigConnections]
    .sort((a, b) => b.createdAt - a.createdAt || plainOrder(a.id, b.id))
    .map((c) => c.id);

  // ---- setup ------------------------------------------------------------------------------------------

  beforeAll(async () => {
    // Capture every log line and Nest Logger call for the whole run (checked by the last test).
    for (const stream of [process.stdout, process.stderr]) {
      const original = stream.write.bind(stream);
      (stream as { write: unknown }).write = (chunk: unknown, ...rest: unknown[]) => {
        logLines.push(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
        return (original as (...a: unknown[]) => boolean)(chunk, ...rest);
      };
      restore.push(() => ((stream as { write: unknown }).write = original));
    }
    for (const method of ['log', 'error', 'warn', 'debug', 'verbose', 'fatal'] as const) {
      // Spies that call through: every Logger call is recorded, whatever the level let through.
      const onInstance = jest.spyOn(Logger.prototype, method);
      const onStatic = jest.spyOn(Logger, method);
      loggerSpies.push(onInstance as jest.SpyInstance, onStatic as jest.SpyInstance);
      restore.push(
        () => onInstance.mockRestore(),
        () => onStatic.mockRestore(),
      );
    }
    for (const method of ['log', 'error', 'warn', 'info', 'debug'] as const) {
      const original = console[method];
      const spy = jest.spyOn(console, method).mockImplementation((...args: unknown[]) => {
        logLines.push(args.map(String).join(' '));
        original(...args);
      });
      restore.push(() => spy.mockRestore());
    }

    settings = isolatedSettings('apicontract', { LOG_LEVEL: 'debug' });
    db = await openDatabase(settings);
    store = new ApiKeyStore(db);
    keys.a = (await store.create(ORG_A, ['connections:read'], 'test')).key;
    keys.a2 = (await store.create(ORG_A, ['connections:read'], 'live')).key;
    keys.b = (await store.create(ORG_B, ['connections:read'], 'live')).key;
    keys.big = (await store.create(ORG_BIG, ['connections:read'], 'test')).key;
    keys.etag = (await store.create(ORG_ETAG, ['connections:read'], 'test')).key;
    keys.empty = (await store.create(ORG_EMPTY, ['connections:read'], 'test')).key;
    keys.c = (await store.create(ORG_C, ['connections:read'], 'test')).key;
    keys.noScope = (await store.create(ORG_A, [], 'test')).key;
    const revocable = await store.create(ORG_A, ['connections:read'], 'live');
    keys.revocable = revocable.key;
    keys.revocableId = revocable.record.id;

    const m = (type: string, org: string, conn: string, atMs: number, data: object) =>
      envelope(type, org, conn, atMs, data);
    await seed([
      // org_a: order base+5m > base+4m (4-way tie) > base+2m > base+1m; one deleted, one never configured.
      m('connection.configured', ORG_A, 'gh.paystack:primary', base + 5 * minute, {
        provider: 'paystack',
        labels: ['Ghana', 'primary', 'GHANA'],
        capabilities: { payments: true, refunds: { partial: true } },
        routing_hints: { country_preference: ['GH', 'NG'], method_bias: { card: 'paystack' } },
        fee_structure: { percentage: 1.5, fixed: 100, per_method: { card: { percentage: 2 } } },
        credentials: { secret_key: SECRET_1, webhook_secret: SECRET_2 },
      }),
      m('psp.call.completed', ORG_A, 'gh.paystack:primary', base + 5 * minute + 1000, {
        outcome: 'success',
        latency_ms: 400,
      }),
      m('psp.call.completed', ORG_A, 'gh.paystack:primary', base + 5 * minute + 2000, {
        outcome: 'failure',
        latency_ms: 3500,
        error_code: 'timeout',
      }),
      m('connection.validation.completed', ORG_A, 'gh.paystack:primary', base + 5 * minute + 3000, {
        result: 'success',
      }),
      m('connection.configured', ORG_A, 'hubtel_gh', base + 4 * minute, {
        provider: 'hubtel',
        mode: 'sandbox',
        labels: ['ghana'],
      }),
      // A later full config replaces it: created_at stays, updated_at moves.
      m('connection.configured', ORG_A, 'hubtel_gh', base + 6 * minute, {
        provider: 'hubtel',
        mode: 'sandbox',
        labels: ['Ghana', 'Accra'],
        credentials: { api_secret: SECRET_2 },
      }),
      m('connection.configured', ORG_A, 'Hubtel_upper', base + 4 * minute, { provider: 'hubtel' }),
      m('connection.configured', ORG_A, 'mpesa_ke', base + 4 * minute, { provider: 'mpesa', labels: ['kenya'] }),
      m('connection.labels_changed', ORG_A, 'mpesa_ke', base + 7 * minute, { labels: ['Kenya', 'Primary', 'kenya'] }),
      m('connection.status_changed', ORG_A, 'mpesa_ke', base + 7 * minute, { status: 'inactive' }),
      m('connection.configured', ORG_A, 'monnify.ng:2', base + 4 * minute, { provider: 'monnify', labels: ['ng'] }),
      m('connection.configured', ORG_A, 'stripe_deleted', base + 3 * minute, {
        provider: 'stripe',
        labels: ['ghana', 'deleted_only'],
      }),
      m('connection.deleted', ORG_A, 'stripe_deleted', base + 8 * minute, {}),
      m('connection.configured', ORG_A, 'flw_ng', base + 2 * minute, {
        provider: 'flutterwave',
        labels: ['a_1', 'a1', 'a-1'],
        credentials: { secret_key: SECRET_1 },
      }),
      m('connection.configured', ORG_A, 'shared_id', base + 1 * minute, { provider: 'monnify' }),
      m('psp.call.completed', ORG_A, 'ghost', base + 1000, { outcome: 'success', latency_ms: 5 }),
      // org_b: never visible to org_a, also not under an id org_a uses too.
      m('connection.configured', ORG_B, 'shared_id', base + 9 * minute, { provider: 'stripe', labels: ['ghana'] }),
      m('connection.configured', ORG_B, 'b_only', base + 9 * minute, { provider: 'paystack', labels: ['ghana'] }),
      // org_c: the register rules of CONTRACT 3.2 as the API shows them.
      m('connection.configured', ORG_C, 'c_reborn', base, { provider: 'paystack', labels: ['one'] }),
      m('connection.deleted', ORG_C, 'c_reborn', base + minute, {}),
      m('connection.configured', ORG_C, 'c_reborn', base + 2 * minute, { provider: 'hubtel', labels: ['two'] }),
      m('connection.configured', ORG_C, 'c_stale', base + 5 * minute, { provider: 'stripe', labels: ['x'] }),
      m('connection.status_changed', ORG_C, 'c_stale', base + 4 * minute, { status: 'inactive' }),
      m('connection.labels_changed', ORG_C, 'c_stale', base + 6 * minute, { labels: ['Y'] }),
      m('connection.configured', ORG_C, 'c_del', base, { provider: 'mpesa' }),
      m('connection.deleted', ORG_C, 'c_del', base + minute, {}),
      m('connection.status_changed', ORG_C, 'c_del', base + 2 * minute, { status: 'inactive' }),
      m('psp.call.completed', ORG_C, 'c_early', base, {
        outcome: 'failure',
        latency_ms: 10,
        error_code: 'card_declined',
      }),
      m('connection.configured', ORG_C, 'c_early', base + minute, { provider: 'monnify' }),
      m('connection.configured', ORG_C, 'c_ancient', Date.parse('0001-01-01T00:00:00Z'), { provider: 'flutterwave' }),
      // org_etag: changed later by the ETag test.
      m('connection.configured', ORG_ETAG, 'e1', base, { provider: 'paystack', labels: ['etag'] }),
      // org_big
      ...bigConnections.map((c) =>
        m('connection.configured', ORG_BIG, c.id, c.createdAt, {
          provider: c.provider,
          status: c.status,
          labels: c.labels,
        }),
      ),
    ]);

    ({ app, url } = await startService(ApiModule, settings, { logLines: jsonLogLines }));
    const reads = app.get(ConnectionReads);
    await eventually(
      async () => reads.redisClient.status,
      (s) => s === 'ready',
      10000,
      'the API Redis client ready',
    );
  });

  afterAll(async () => {
    for (const extra of extraApps) await extra.close().catch(() => undefined);
    await app?.close();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
    for (const r of restore.reverse()) r();
  });

  // ---- 1.1 authentication and tenancy -------------------------------------------------------------------

  describe('authentication and tenancy (1.1)', () => {
    const routes = ['/v1/connections', '/v1/connections/labels', '/v1/connections/gh.paystack:primary'];

    it('a missing or empty X-Reevit-Key is 401 missing_api_key on every /v1 route', async () => {
      for (const route of routes) {
        expectError(await get(route, null, ORG_A), 401, 'unauthorized', 'missing_api_key');
        expectError(await get(route, '', ORG_A), 401, 'unauthorized', 'missing_api_key');
        expectError(await get(route, '   ', ORG_A), 401, 'unauthorized', 'missing_api_key');
        // Also before anything else: no org, bad query.
        expectError(await get(`${route}?limit=abc`, null, null), 401, 'unauthorized', 'missing_api_key');
      }
    });

    it('an unknown, malformed or revoked key is 401 invalid_api_key', async () => {
      const unknown = `pfk_live_${randomBytes(24).toString('base64url')}`;
      const malformed = [
        'abc',
        'pfk_live_short',
        `pfk_prod_${randomBytes(24).toString('base64url')}`,
        `pfk_live_${'!'.repeat(30)}`,
        `Bearer ${keys.a}`,
        keys.a.toUpperCase(),
        keys.a.slice(0, -1),
        `${keys.a}x`,
        `sk_${keys.a}`,
      ];
      for (const k of [unknown, ...malformed]) sentSecrets.add(k);
      for (const route of routes) {
        expectError(await get(route, unknown, ORG_A), 401, 'unauthorized', 'invalid_api_key');
        for (const k of malformed) expectError(await get(route, k, ORG_A), 401, 'unauthorized', 'invalid_api_key');
        // Key checks come before the org checks.
        expectError(await get(route, unknown, null), 401, 'unauthorized', 'invalid_api_key');
        expectError(await get(route, unknown, ORG_B), 401, 'unauthorized', 'invalid_api_key');
      }
      // The same key sent twice is not a key.
      expectError(
        await call('/v1/connections', { 'X-Reevit-Key': [keys.a, keys.a], 'X-Org-Id': ORG_A }),
        401,
        'unauthorized',
        'invalid_api_key',
      );
    });

    it('a revoked key stops working once the key cache has run out (within 5 s)', async () => {
      ok(await get('/v1/connections', keys.revocable, ORG_A));
      const revoked = await store.revoke(keys.revocableId);
      expect(revoked).toMatchObject({ id: keys.revocableId, orgId: ORG_A, scopes: ['connections:read'] });
      expect(revoked?.revokedAt).toBeInstanceOf(Date);
      expect(await store.revoke('key_no_such_key')).toBeNull();
      await new Promise((r) => setTimeout(r, settings.apiKeyCacheMs + 250));
      for (const route of routes) {
        expectError(await get(route, keys.revocable, ORG_A), 401, 'unauthorized', 'invalid_api_key');
        expectError(await get(route, keys.revocable, null), 401, 'unauthorized', 'invalid_api_key');
        expectError(await get(route, keys.revocable, ORG_B), 401, 'unauthorized', 'invalid_api_key');
      }
      // Other keys of the org keep working.
      ok(await get('/v1/connections', keys.a2, ORG_A));
    });

    it('a missing or empty X-Org-Id is 400 missing_org_id', async () => {
      for (const route of routes) {
        expectError(await get(route, keys.a, null), 400, 'validation_error', 'missing_org_id');
        expectError(await get(route, keys.a, ''), 400, 'validation_error', 'missing_org_id');
        expectError(await get(route, keys.a, '  '), 400, 'validation_error', 'missing_org_id');
        expectError(await get(route, keys.noScope, null), 400, 'validation_error', 'missing_org_id');
      }
    });

    it('a key of another org than X-Org-Id is 403 org_mismatch, also for orgs that do not exist', async () => {
      for (const route of routes) {
        expectError(await get(route, keys.a, ORG_B), 403, 'forbidden', 'org_mismatch');
        expectError(await get(route, keys.b, ORG_A), 403, 'forbidden', 'org_mismatch');
        expectError(await get(route, keys.a, 'ORG_A'), 403, 'forbidden', 'org_mismatch');
        expectError(await get(route, keys.a, 'no_such_org'), 403, 'forbidden', 'org_mismatch');
        // Mismatch comes before the scope check.
        expectError(await get(route, keys.noScope, ORG_B), 403, 'forbidden', 'org_mismatch');
      }
    });

    it('a key without connections:read is 403 insufficient_scopes', async () => {
      for (const route of routes)
        expectError(await get(route, keys.noScope, ORG_A), 403, 'forbidden', 'insufficient_scopes');
      expectError(await get('/v1/connections?limit=abc', keys.noScope, ORG_A), 403, 'forbidden', 'insufficient_scopes');
    });

    it('a valid key of the org gets through on every route', async () => {
      for (const route of routes) expect((await get(route, keys.a, ORG_A)).status).toBe(200);
      expect((await get('/v1/connections', keys.a2, ORG_A)).status).toBe(200);
    });
  });

  // ---- 1.2 query parameters -----------------------------------------------------------------------------

  describe('GET /v1/connections parameters (1.2)', () => {
    const allA = [
      'gh.paystack:primary',
      'Hubtel_upper',
      'hubtel_gh',
      'monnify.ng:2',
      'mpesa_ke',
      'flw_ng',
      'shared_id',
    ];

    it('defaults: limit 50, offset 0, every listed connection of the org, in order', async () => {
      const res = await asA('/v1/connections');
      const body = ok(res);
      expect(Object.keys(body)).toEqual(['connections', 'pagination']);
      expect(Object.keys(body.pagination)).toEqual(['total', 'limit', 'offset']);
      expect(body.pagination).toEqual({ total: allA.length, limit: 50, offset: 0 });
      expect(ids(body)).toEqual(allA);
    });

    it('an org with no connections gets an empty list', async () => {
      expect(ok(await get('/v1/connections', keys.empty, ORG_EMPTY))).toEqual({
        connections: [],
        pagination: { total: 0, limit: 50, offset: 0 },
      });
      expect(ok(await get('/v1/connections/labels', keys.empty, ORG_EMPTY))).toEqual([]);
      expectError(await get('/v1/connections/e1', keys.empty, ORG_EMPTY), 404, 'not_found', 'connection_not_found');
    });

    it('filters by label, provider and status, case-insensitively, and combined', async () => {
      const cases: [string, string[]][] = [
        ['label=ghana', ['gh.paystack:primary', 'hubtel_gh']],
        ['label=GHANA', ['gh.paystack:primary', 'hubtel_gh']],
        ['label=Primary', ['gh.paystack:primary', 'mpesa_ke']],
        ['label=a_1', ['flw_ng']],
        ['label=A-1', ['flw_ng']],
        ['label=accra', ['hubtel_gh']],
        ['label=deleted_only', []],
        ['label=nope', []],
        ['label=ghan', []],
        ['provider=hubtel', ['Hubtel_upper', 'hubtel_gh']],
        ['provider=HuBtEl', ['Hubtel_upper', 'hubtel_gh']],
        ['provider=MPESA', ['mpesa_ke']],
        ['provider=stripe', []],
        ['provider=visa', []],
        ['status=inactive', ['mpesa_ke']],
        ['status=INACTIVE', ['mpesa_ke']],
        ['status=Active', allA.filter((id) => id !== 'mpesa_ke')],
        ['label=primary&status=ACTIVE', ['gh.paystack:primary']],
        ['label=primary&status=inactive&provider=Mpesa', ['mpesa_ke']],
        ['label=ghana&provider=hubtel', ['hubtel_gh']],
        ['label=ghana&provider=mpesa', []],
      ];
      for (const [query, expected] of cases) {
        const body = ok(await asA(`/v1/connections?${query}`));
        expect({ query, ids: ids(body), total: body.pagination.total }).toEqual({
          query,
          ids: expected,
          total: expected.length,
        });
      }
    });

    it('percent-encoded and "+" encoded values are decoded before matching', async () => {
      expect(ids(ok(await asA('/v1/connections?status=%61ctive&label=%50rimary')))).toEqual(['gh.paystack:primary']);
      expect(ids(ok(await asA('/v1/connections?%6Cabel=accra')))).toEqual(['hubtel_gh']);
    });

    it('a bad status, limit or offset is 400 with details.field naming it', async () => {
      const bad: [string, string, string][] = [
        ['status=enabled', 'invalid_status', 'status'],
        ['status=active%20', 'invalid_status', 'status'],
        ['status=%20active', 'invalid_status', 'status'],
        ['status=deleted', 'invalid_status', 'status'],
        ['status=1', 'invalid_status', 'status'],
        ['status=active,inactive', 'invalid_status', 'status'],
      ];
      for (const v of [
        '0',
        '201',
        '1.5',
        '-1',
        '%2B5',
        '+5',
        '%205',
        '5%20',
        'abc',
        '1e2',
        '0x10',
        '5a',
        '999999999999999999999999',
        '%EF%BC%91%EF%BC%90',
        '1_0',
        '%D9%A3',
      ]) {
        bad.push([`limit=${v}`, 'invalid_limit', 'limit']);
      }
      for (const v of ['-1', '1e3', '1.5', '%2B1', '+1', '%201', 'abc', '0x1', '1.', '-0', '%EF%BC%91']) {
        bad.push([`offset=${v}`, 'invalid_offset', 'offset']);
      }
      for (const [query, code, field] of bad) {
        const res = await asA(`/v1/connections?${query}`);
        try {
          expectError(res, 400, 'validation_error', code, field);
        } catch (e) {
          throw new Error(`?${query}: ${(e as Error).message}`);
        }
      }
    });

    it('valid limits and offsets, including the bounds and leading zeros', async () => {
      const good: [string, number, number][] = [
        ['limit=1', 1, 0],
        ['limit=200', 200, 0],
        ['limit=050', 50, 0],
        ['limit=007', 7, 0],
        ['offset=0', 50, 0],
        ['offset=3', 50, 3],
        ['offset=0003', 50, 3],
        ['offset=1000000', 50, 1000000],
        ['limit=2&offset=1', 2, 1],
      ];
      for (const [query, limit, offset] of good) {
        const body = ok(await asA(`/v1/connections?${query}`));
        expect({ query, pagination: body.pagination }).toEqual({
          query,
          pagination: { total: allA.length, limit, offset },
        });
        expect(ids(body)).toEqual(allA.slice(offset, offset + limit));
      }
    });

    it('an empty value counts as absent', async () => {
      const all = ok(await asA('/v1/connections'));
      for (const query of [
        'label=',
        'provider=',
        'status=',
        'limit=',
        'offset=',
        'label',
        'limit',
        'label=&provider=&status=&limit=&offset=',
      ]) {
        const res = await asA(`/v1/connections?${query}`);
        expect({ query, text: res.text }).toEqual({ query, text: JSON.stringify(all) });
      }
      expect(ok(await asA('/v1/connections?limit=&offset=2')).pagination).toEqual({
        total: allA.length,
        limit: 50,
        offset: 2,
      });
    });

    it('a known parameter given twice is 400 duplicate_parameter naming it', async () => {
      for (const name of ['label', 'provider', 'status', 'limit', 'offset']) {
        const sample = { label: 'ghana', provider: 'hubtel', status: 'active', limit: '5', offset: '1' }[name];
        for (const query of [
          `${name}=${sample}&${name}=${sample}`,
          `${name}=&${name}=${sample}`,
          `${name}=${sample}&limit=1&${name}=x`,
        ]) {
          const res = await asA(`/v1/connections?${query}`);
          try {
            expectError(res, 400, 'validation_error', 'duplicate_parameter', name);
          } catch (e) {
            throw new Error(`?${query}: ${(e as Error).message}`);
          }
        }
      }
      // Percent-encoded names are the same parameter.
      expectError(
        await asA('/v1/connections?limit=5&%6Cimit=6'),
        400,
        'validation_error',
        'duplicate_parameter',
        'limit',
      );
    });

    it('unknown parameters are ignored, also when given twice or with bad values', async () => {
      const all = ok(await asA('/v1/connections'));
      for (const query of [
        'foo=bar',
        'foo=1&foo=2',
        'LIMIT=abc',
        'Status=nope',
        'page=2&per_page=1',
        'sort=-id',
        'limits=0',
        'label[]=x',
        '=x',
        '&&&',
      ]) {
        const res = await asA(`/v1/connections?${query}`);
        expect({ query, text: res.text }).toEqual({ query, text: JSON.stringify(all) });
      }
    });
  });

  // ---- order, paging, totals ----------------------------------------------------------------------------

  describe('order and paging (1.2)', () => {
    it('orders by created_at descending, then id ascending (plain code-point order on ties)', async () => {
      const body = ok(await asBig('/v1/connections?limit=200'));
      const list = body.connections as ConnectionJson[];
      for (let i = 1; i < list.length; i++) {
        const a = list[i - 1];
        const b = list[i];
        const ta = Date.parse(a.created_at);
        const tb = Date.parse(b.created_at);
        expect(ta > tb || (ta === tb && a.id < b.id)).toBe(true);
      }
      expect(ids(body)).toEqual(bigExpectedOrder.slice(0, 200));
    });

    it('limit=200 gives 200, total counts every match, and the last page holds the rest', async () => {
      const first = ok(await asBig('/v1/connections?limit=200'));
      expect(first.connections).toHaveLength(200);
      expect(first.pagination).toEqual({ total: BIG_N, limit: 200, offset: 0 });
      const rest = ok(await asBig('/v1/connections?limit=200&offset=200'));
      expect(ids(rest)).toEqual(bigExpectedOrder.slice(200));
      expect(rest.pagination).toEqual({ total: BIG_N, limit: 200, offset: 200 });
      const past = ok(await asBig(`/v1/connections?offset=${BIG_N}`));
      expect(past).toEqual({ connections: [], pagination: { total: BIG_N, limit: 50, offset: BIG_N } });
      const far = ok(await asBig('/v1/connections?offset=99999999999999999999'));
      expect(far.connections).toEqual([]);
      expect(far.pagination.total).toBe(BIG_N);
      expect(Number.isSafeInteger(far.pagination.offset)).toBe(true);
      // Default page size.
      const page = ok(await asBig('/v1/connections'));
      expect(ids(page)).toEqual(bigExpectedOrder.slice(0, 50));
      expect(page.pagination).toEqual({ total: BIG_N, limit: 50, offset: 0 });
    });

    it('paging with offset never repeats or skips a connection', async () => {
      for (const limit of [7, 50, 1]) {
        const seen: string[] = [];
        for (let offset = 0; offset < BIG_N + limit; offset += limit) {
          const body = ok(await asBig(`/v1/connections?limit=${limit}&offset=${offset}`));
          expect(body.pagination).toEqual({ total: BIG_N, limit, offset });
          expect(body.connections.length).toBe(Math.max(0, Math.min(limit, BIG_N - offset)));
          seen.push(...ids(body));
        }
        expect(new Set(seen).size).toBe(BIG_N);
        expect(seen).toEqual(bigExpectedOrder);
      }
    });

    it('filtered totals count every match, not the page; filtered pages keep the order', async () => {
      const inactive = bigConnections.filter((c) => c.status === 'inactive').map((c) => c.id);
      const inactiveOrdered = bigExpectedOrder.filter((id) => inactive.includes(id));
      const seen: string[] = [];
      for (let offset = 0; offset < inactive.length; offset += 10) {
        const body = ok(await asBig(`/v1/connections?status=inactive&limit=10&offset=${offset}`));
        expect(body.pagination.total).toBe(inactive.length);
        seen.push(...ids(body));
      }
      expect(seen).toEqual(inactiveOrdered);
      const quarter = bigConnections.filter((c) => c.labels.includes('quarter')).length;
      const paystackQuarter = bigConnections.filter(
        (c) => c.labels.includes('quarter') && c.provider === 'paystack',
      ).length;
      expect(ok(await asBig('/v1/connections?label=QUARTER&limit=1')).pagination).toEqual({
        total: quarter,
        limit: 1,
        offset: 0,
      });
      expect(ok(await asBig('/v1/connections?label=quarter&provider=paystack&limit=1')).pagination.total).toBe(
        paystackQuarter,
      );
    });
  });

  // ---- 1.3 the Connection object ------------------------------------------------------------------------

  describe('the Connection object (1.3)', () => {
    function expectConnectionShape(c: Record<string, unknown>): void {
      expect(Object.keys(c)).toEqual(CONNECTION_FIELDS);
      expect(typeof c.id).toBe('string');
      expect(PROVIDERS).toContain(c.provider);
      expect(['live', 'sandbox']).toContain(c.mode);
      expect(['active', 'inactive']).toContain(c.status);
      for (const field of ['capabilities', 'routing_hints', 'fee_structure']) {
        expect(c[field] !== null && typeof c[field] === 'object' && !Array.isArray(c[field])).toBe(true);
      }
      const hints = c.routing_hints as Record<string, unknown>;
      expect(Object.keys(hints)).toEqual(['country_preference', 'method_bias', 'fallback_only']);
      expect(Array.isArray(hints.country_preference)).toBe(true);
      for (const s of hints.country_preference as unknown[]) expect(typeof s).toBe('string');
      expect(
        hints.method_bias !== null && typeof hints.method_bias === 'object' && !Array.isArray(hints.method_bias),
      ).toBe(true);
      for (const s of Object.values(hints.method_bias as object)) expect(typeof s).toBe('string');
      expect(typeof hints.fallback_only).toBe('boolean');
      expect(Array.isArray(c.labels)).toBe(true);
      for (const l of c.labels as unknown[]) {
        expect(typeof l).toBe('string');
        expect(l).toBe((l as string).toLowerCase());
      }
      const fees = c.fee_structure as Record<string, unknown>;
      expect(Object.keys(fees)).toEqual(['percentage', 'fixed', 'per_method', 'per_currency']);
      expect(typeof fees.percentage).toBe('number');
      expect(Number.isInteger(fees.fixed)).toBe(true);
      for (const f of ['per_method', 'per_currency'])
        expect(fees[f] !== null && typeof fees[f] === 'object' && !Array.isArray(fees[f])).toBe(true);
      for (const f of ['total_calls', 'successful_calls', 'failed_calls', 'total_latency_ms', 'validation_failures']) {
        expect(Number.isInteger(c[f])).toBe(true);
        expect(c[f] as number).toBeGreaterThanOrEqual(0);
      }
      for (const f of ['last_success_at', 'last_failure_at', 'last_validated_at']) {
        if (c[f] !== null) expect(c[f]).toMatch(TIMESTAMP);
      }
      expect(c.created_at).toMatch(TIMESTAMP);
      expect(c.updated_at).toMatch(TIMESTAMP);
      expect(typeof c.health_score).toBe('number');
      expect(Number.isFinite(c.health_score)).toBe(true);
      expect(['healthy', 'degraded', 'unhealthy', 'unknown']).toContain(c.health_status);
      expect([null, 'success', 'failure']).toContain(c.last_validation_status);
      expect(c.last_validation_error === null || typeof c.last_validation_error === 'string').toBe(true);
      expect(JSON.stringify(c)).not.toContain('credentials');
    }

    it('every listed connection has every field, in order, with the contract types', async () => {
      for (const [key, org] of [
        [keys.a, ORG_A],
        [keys.b, ORG_B],
        [keys.big, ORG_BIG],
      ]) {
        const body = ok(await get('/v1/connections?limit=200', key, org));
        expect(body.connections.length).toBeGreaterThan(0);
        for (const c of body.connections) expectConnectionShape(c);
      }
    });

    it('shows the configured values, defaults filled, with the contract numbers and timestamps', async () => {
      const c = ok(await asA('/v1/connections/gh.paystack:primary'));
      expectConnectionShape(c);
      expect(c).toEqual({
        id: 'gh.paystack:primary',
        provider: 'paystack',
        mode: 'live',
        status: 'active',
        capabilities: { payments: true, refunds: { partial: true } },
        routing_hints: { country_preference: ['GH', 'NG'], method_bias: { card: 'paystack' }, fallback_only: false },
        labels: ['ghana', 'primary'],
        fee_structure: { percentage: 1.5, fixed: 100, per_method: { card: { percentage: 2 } }, per_currency: {} },
        total_calls: 2,
        successful_calls: 1,
        failed_calls: 1,
        total_latency_ms: 3900,
        last_success_at: at(base + 5 * minute + 1000),
        last_failure_at: at(base + 5 * minute + 2000),
        health_score: expect.any(Number),
        health_status: 'unknown',
        last_validated_at: at(base + 5 * minute + 3000),
        last_validation_status: 'success',
        last_validation_error: null,
        validation_failures: 0,
        created_at: at(base + 5 * minute),
        updated_at: at(base + 5 * minute + 3000),
      });
      const bare = ok(await asA('/v1/connections/shared_id'));
      expect(bare).toEqual({
        id: 'shared_id',
        provider: 'monnify',
        mode: 'live',
        status: 'active',
        capabilities: {},
        routing_hints: { country_preference: [], method_bias: {}, fallback_only: false },
        labels: [],
        fee_structure: { percentage: 0, fixed: 0, per_method: {}, per_currency: {} },
        total_calls: 0,
        successful_calls: 0,
        failed_calls: 0,
        total_latency_ms: 0,
        last_success_at: null,
        last_failure_at: null,
        health_score: 100,
        health_status: 'unknown',
        last_validated_at: null,
        last_validation_status: null,
        last_validation_error: null,
        validation_failures: 0,
        created_at: at(base + minute),
        updated_at: at(base + minute),
      });
      // The single route and the list give the same object, byte for byte.
      const list = await asA('/v1/connections');
      const single = await asA('/v1/connections/shared_id');
      expect(list.text).toContain(single.text);
    });

    it('created_at is the first configuration, updated_at the latest event of any type', async () => {
      const hubtel = ok(await asA('/v1/connections/hubtel_gh'));
      expect(hubtel).toMatchObject({
        mode: 'sandbox',
        labels: ['ghana', 'accra'],
        created_at: at(base + 4 * minute),
        updated_at: at(base + 6 * minute),
      });
      const mpesa = ok(await asA('/v1/connections/mpesa_ke'));
      expect(mpesa).toMatchObject({
        status: 'inactive',
        labels: ['kenya', 'primary'],
        created_at: at(base + 4 * minute),
        updated_at: at(base + 7 * minute),
      });
    });

    it('shows the register rules: re-created after delete, stale writes ignored, calls before configuration', async () => {
      const body = ok(await get('/v1/connections', keys.c, ORG_C));
      // c_reborn keeps the created_at of its first configuration, from before it was deleted.
      expect(ids(body)).toEqual(['c_stale', 'c_early', 'c_reborn', 'c_ancient']);
      expect(body.connections[0]).toMatchObject({
        status: 'active',
        labels: ['y'],
        created_at: at(base + 5 * minute),
        updated_at: at(base + 6 * minute),
      });
      expect(body.connections[1]).toMatchObject({
        total_calls: 1,
        failed_calls: 1,
        last_failure_at: at(base),
        created_at: at(base + minute),
      });
      expect(body.connections[2]).toMatchObject({
        provider: 'hubtel',
        labels: ['two'],
        created_at: at(base),
        updated_at: at(base + 2 * minute),
      });
      expect(body.connections[3].created_at).toBe('0001-01-01T00:00:00.000Z');
      for (const c of body.connections) {
        expect(c.created_at).toMatch(TIMESTAMP);
        expect(c.updated_at).toMatch(TIMESTAMP);
      }
      expectError(await get('/v1/connections/c_del', keys.c, ORG_C), 404, 'not_found', 'connection_not_found');
    });

    it('deleted and never-configured connections are not listed and are 404 by id', async () => {
      const all = ok(await asA('/v1/connections?limit=200'));
      expect(ids(all)).not.toContain('stripe_deleted');
      expect(ids(all)).not.toContain('ghost');
      expectError(await asA('/v1/connections/stripe_deleted'), 404, 'not_found', 'connection_not_found');
      expectError(await asA('/v1/connections/ghost'), 404, 'not_found', 'connection_not_found');
      expectError(await asA('/v1/connections/no_such_connection'), 404, 'not_found', 'connection_not_found');
    });

    it('ids with "." and ":" work as path segments, raw or percent-encoded', async () => {
      for (const path of [
        '/v1/connections/gh.paystack:primary',
        '/v1/connections/gh.paystack%3Aprimary',
        '/v1/connections/gh%2Epaystack%3aprimary',
      ]) {
        expect(ok(await asA(path)).id).toBe('gh.paystack:primary');
      }
      expect(ok(await asA('/v1/connections/monnify.ng:2')).id).toBe('monnify.ng:2');
      for (const id of bigExpectedOrder.filter((i) => /^[-.:]/.test(i)).slice(0, 6)) {
        expect(ok(await asBig(`/v1/connections/${encodeURIComponent(id)}`)).id).toBe(id);
      }
      // Ids are case-sensitive.
      expectError(await asA('/v1/connections/GH.PAYSTACK:PRIMARY'), 404, 'not_found', 'connection_not_found');
    });

    it("never shows another org's connections, not even under an id both orgs use", async () => {
      expect(ok(await asA('/v1/connections/shared_id')).provider).toBe('monnify');
      expect(ok(await get('/v1/connections/shared_id', keys.b, ORG_B)).provider).toBe('stripe');
      expectError(await asA('/v1/connections/b_only'), 404, 'not_found', 'connection_not_found');
      expect(ids(ok(await get('/v1/connections', keys.b, ORG_B)))).toEqual(['b_only', 'shared_id']);
      expect(ok(await asA('/v1/connections?label=ghana')).pagination.total).toBe(2);
    });
  });

  // ---- 1.4 labels ---------------------------------------------------------------------------------------

  describe('GET /v1/connections/labels (1.4)', () => {
    it("summarises the org's listed connections per label, sorted by label", async () => {
      const body = ok(await asA('/v1/connections/labels'));
      expect(body).toEqual([
        { label: 'a-1', total: 1, providers: { flutterwave: 1 }, statuses: { active: 1 } },
        { label: 'a1', total: 1, providers: { flutterwave: 1 }, statuses: { active: 1 } },
        { label: 'a_1', total: 1, providers: { flutterwave: 1 }, statuses: { active: 1 } },
        { label: 'accra', total: 1, providers: { hubtel: 1 }, statuses: { active: 1 } },
        { label: 'ghana', total: 2, providers: { hubtel: 1, paystack: 1 }, statuses: { active: 2 } },
        { label: 'kenya', total: 1, providers: { mpesa: 1 }, statuses: { inactive: 1 } },
        { label: 'ng', total: 1, providers: { monnify: 1 }, statuses: { active: 1 } },
        { label: 'primary', total: 2, providers: { mpesa: 1, paystack: 1 }, statuses: { active: 1, inactive: 1 } },
      ]);
      for (const entry of body) {
        expect(Object.keys(entry)).toEqual(['label', 'total', 'providers', 'statuses']);
        expect(Object.keys(entry.providers)).toEqual([...Object.keys(entry.providers)].sort());
      }
      const labelsB = ok(await get('/v1/connections/labels', keys.b, ORG_B));
      expect(labelsB).toEqual([
        { label: 'ghana', total: 2, providers: { paystack: 1, stripe: 1 }, statuses: { active: 2 } },
      ]);
      const big = ok(await asBig('/v1/connections/labels'));
      const quarter = bigConnections.filter((c) => c.labels.includes('quarter'));
      expect(big).toHaveLength(1);
      expect(big[0].total).toBe(quarter.length);
      expect(big[0].statuses).toEqual({
        active: quarter.filter((c) => c.status === 'active').length,
        inactive: quarter.filter((c) => c.status === 'inactive').length,
      });
    });

    it('ignores query parameters (even ones that would be bad on the list)', async () => {
      const plain = await asA('/v1/connections/labels');
      expect((await asA('/v1/connections/labels?limit=abc&status=x')).text).toBe(plain.text);
    });
  });

  // ---- ETags --------------------------------------------------------------------------------------------

  describe('ETag and If-None-Match', () => {
    const paths = ['/v1/connections', '/v1/connections?status=active', '/v1/connections/e1', '/v1/connections/labels'];
    const asE = (path: string, headers: Record<string, string> = {}) => get(path, keys.etag, ORG_ETAG, headers);

    it('every 200 carries a strong ETag, stable across requests, distinct per body', async () => {
      const seen = new Map<string, string>();
      for (const path of paths) {
        const r1 = await asE(path);
        const r2 = await asE(path);
        expect(r1.status).toBe(200);
        const etag = r1.headers.etag as string;
        expect(etag).toMatch(/^"[\x21\x23-\x7e]+"$/);
        expect(r2.headers.etag).toBe(etag);
        seen.set(r1.text, etag);
      }
      expect(new Set(seen.values()).size).toBe(seen.size);
      const one = await asA('/v1/connections?limit=1');
      const two = await asA('/v1/connections?limit=2');
      expect(one.headers.etag).not.toBe(two.headers.etag);
    });

    it('If-None-Match with the current ETag is 304 with no body; anything else is 200', async () => {
      for (const path of paths) {
        const first = await asE(path);
        const etag = first.headers.etag as string;
        const notModified = await asE(path, { 'If-None-Match': etag });
        expect(notModified.status).toBe(304);
        expect(notModified.text).toBe('');
        expect(notModified.headers.etag).toBe(etag);
        expect((await asE(path, { 'If-None-Match': `"other", ${etag}` })).status).toBe(304);
        expect((await asE(path, { 'If-None-Match': `W/${etag}` })).status).toBe(304);
        expect((await asE(path, { 'If-None-Match': '*' })).status).toBe(304);
        const other = await asE(path, { 'If-None-Match': '"not-the-etag"' });
        expect(other.status).toBe(200);
        expect(other.text).toBe(first.text);
      }
      // If-None-Match never bypasses auth or validation.
      const etag = (await asE('/v1/connections')).headers.etag as string;
      expectError(
        await get('/v1/connections', null, ORG_ETAG, { 'If-None-Match': etag }),
        401,
        'unauthorized',
        'missing_api_key',
      );
      expectError(
        await asE('/v1/connections?limit=0', { 'If-None-Match': '*' }),
        400,
        'validation_error',
        'invalid_limit',
        'limit',
      );
      expectError(
        await asE('/v1/connections/nope', { 'If-None-Match': '*' }),
        404,
        'not_found',
        'connection_not_found',
      );
    });

    it('the ETag changes when the data changes (the projector writing PostgreSQL and Redis)', async () => {
      const before = new Map<string, Res>();
      for (const path of paths) before.set(path, await asE(path));
      const redis = createRedis(settings, 'test-projector');
      try {
        await eventually(
          async () => redis.status,
          (s) => s === 'ready',
          10000,
          'the test Redis client ready',
        );
        await seed(
          [
            envelope('connection.status_changed', ORG_ETAG, 'e1', base + 10 * minute, { status: 'inactive' }),
            envelope('connection.configured', ORG_ETAG, 'e2', base + 11 * minute, {
              provider: 'stripe',
              labels: ['etag'],
            }),
          ],
          new RedisReadModel(redis, settings.redisKeyPrefix),
        );
      } finally {
        redis.disconnect();
      }
      const after = await eventually(
        () => asE('/v1/connections/e1', { 'If-None-Match': before.get('/v1/connections/e1')!.headers.etag as string }),
        (r) => r.status === 200,
        5000,
        'e1 changed',
      );
      expect(json(after).status).toBe('inactive');
      for (const path of paths) {
        const old = before.get(path)!;
        const res = await asE(path, { 'If-None-Match': old.headers.etag as string });
        expect({ path, status: res.status }).toEqual({ path, status: 200 });
        expect(res.headers.etag).not.toBe(old.headers.etag);
        expect(res.text).not.toBe(old.text);
        expect((await asE(path, { 'If-None-Match': res.headers.etag as string })).status).toBe(304);
      }
      expect(ids(ok(await asE('/v1/connections')))).toEqual(['e2', 'e1']);
      expect(ok(await asE('/v1/connections/labels'))).toEqual([
        { label: 'etag', total: 2, providers: { paystack: 1, stripe: 1 }, statuses: { active: 1, inactive: 1 } },
      ]);
    });
  });

  // ---- Redis and PostgreSQL give the same bytes -----------------------------------------------------------

  describe('read paths', () => {
    const reads: [string, string, string][] = [
      [ORG_A, 'a', '/v1/connections'],
      [ORG_A, 'a', '/v1/connections?label=ghana&limit=1&offset=1'],
      [ORG_A, 'a', '/v1/connections?status=inactive'],
      [ORG_A, 'a', '/v1/connections/gh.paystack:primary'],
      [ORG_A, 'a', '/v1/connections/monnify.ng:2'],
      [ORG_A, 'a', '/v1/connections/labels'],
      [ORG_B, 'b', '/v1/connections'],
      [ORG_BIG, 'big', '/v1/connections?limit=200'],
      [ORG_BIG, 'big', '/v1/connections?limit=200&offset=200'],
      [ORG_BIG, 'big', '/v1/connections/labels'],
    ];

    async function freshApp(): Promise<{ app: NestFastifyApplication; url: string; reads: ConnectionReads }> {
      const started = await startService(ApiModule, settings, { logLines: jsonLogLines });
      extraApps.push(started.app);
      const r = started.app.get(ConnectionReads);
      await eventually(
        async () => r.redisClient.status,
        (s) => s === 'ready',
        10000,
        'a fresh API Redis client ready',
      );
      return { ...started, reads: r };
    }

    async function readAll(
      origin: string,
      connectionReads: ConnectionReads,
      expectedSource: string | null,
    ): Promise<Map<string, Res>> {
      const out = new Map<string, Res>();
      const firstPerOrg = new Set<string>();
      for (const [org, key, path] of reads) {
        const res = await get(path, keys[key], org, {}, origin);
        expect(res.status).toBe(200);
        if (expectedSource !== null && !firstPerOrg.has(org)) {
          expect({ org, source: connectionReads.lastSource }).toEqual({ org, source: expectedSource });
          firstPerOrg.add(org);
        }
        out.set(`${org} ${path}`, res);
      }
      return out;
    }

    function expectSameBytes(a: Map<string, Res>, b: Map<string, Res>): void {
      expect([...b.keys()]).toEqual([...a.keys()]);
      for (const [k, res] of a) {
        const other = b.get(k)!;
        expect({ k, text: other.text }).toEqual({ k, text: res.text });
        expect({ k, etag: other.headers.etag }).toEqual({ k, etag: res.headers.etag });
        expect(other.headers['content-type']).toBe(JSON_CT);
      }
    }

    it('a first read comes from PostgreSQL and fills Redis; Redis then serves the same bytes; so does a fresh instance', async () => {
      await flushRunRedisKeys();
      expect(await runRedisKeys()).toEqual([]);

      const p = await freshApp();
      const fromPostgres = await readAll(p.url, p.reads, 'postgres');
      const filled = await runRedisKeys();
      for (const org of [ORG_A, ORG_B, ORG_BIG])
        expect(filled.some((k) => k.startsWith(settings.redisKeyPrefix) && k.includes(`:org:${org}:`))).toBe(true);
      expect(filled.every((k) => k.startsWith(settings.redisKeyPrefix))).toBe(true);

      const r = await freshApp();
      const fromRedis = await readAll(r.url, r.reads, 'redis');
      expectSameBytes(fromPostgres, fromRedis);

      // The long-running instance (its own memory, filled earlier in this run) agrees too.
      expectSameBytes(fromPostgres, await readAll(url, app.get(ConnectionReads), null));

      // Flush this run's keys: the instance that served from Redis goes back to PostgreSQL, same bytes.
      expect(await flushRunRedisKeys()).toBeGreaterThan(0);
      await new Promise((done) => setTimeout(done, 100)); // past the 50 ms an instance trusts a version check
      expectSameBytes(fromPostgres, await readAll(r.url, r.reads, 'postgres'));
      // ... and then Redis again, from a third instance.
      const r2 = await freshApp();
      expectSameBytes(fromPostgres, await readAll(r2.url, r2.reads, 'redis'));
    });
  });

  // ---- security -----------------------------------------------------------------------------------------

  describe('security', () => {
    it('very long header values get the contract body, never a 5xx or a bare status', async () => {
      const longKey = `pfk_live_${'A'.repeat(20 * 1024)}`;
      sentSecrets.add(longKey);
      expectError(await get('/v1/connections', longKey, ORG_A), 401, 'unauthorized', 'invalid_api_key');
      expectError(await get('/v1/connections', 'x'.repeat(20 * 1024), ORG_A), 401, 'unauthorized', 'invalid_api_key');
      expectError(await get('/v1/connections', keys.a, 'o'.repeat(20 * 1024)), 403, 'forbidden', 'org_mismatch');
      const res = await get('/v1/connections', keys.a, ORG_A, {
        'X-Padding': 'p'.repeat(20 * 1024),
        'If-None-Match': `"${'e'.repeat(10 * 1024)}"`,
      });
      expect(res.status).toBe(200);
    });

    it('headers or a URL beyond 64 KiB are 431 with the contract body', async () => {
      const hugeKey = `pfk_live_${'B'.repeat(70 * 1024)}`;
      sentSecrets.add(hugeKey);
      expectError(await get('/v1/connections', hugeKey, ORG_A), 431, 'bad_request', 'headers_too_large');
      expectError(await asA(`/v1/connections?label=${'x'.repeat(70 * 1024)}`), 431, 'bad_request', 'headers_too_large');
      // The server keeps answering.
      expect(ok(await asA('/v1/connections')).pagination.total).toBe(7);
    });

    it('very long query strings and ids are answered normally', async () => {
      const long = 'x'.repeat(30 * 1024);
      expect(ok(await asA(`/v1/connections?label=${long}`))).toEqual({
        connections: [],
        pagination: { total: 0, limit: 50, offset: 0 },
      });
      expect(ok(await asA(`/v1/connections?provider=${long}`)).pagination.total).toBe(0);
      expect(ok(await asA(`/v1/connections?junk=${long}&limit=1`)).pagination).toEqual({
        total: 7,
        limit: 1,
        offset: 0,
      });
      expect(ok(await asA(`/v1/connections?${'a=1&'.repeat(5000)}limit=2`)).pagination.limit).toBe(2);
      expectError(await asA(`/v1/connections?status=${long}`), 400, 'validation_error', 'invalid_status', 'status');
      expectError(
        await asA(`/v1/connections?limit=${'9'.repeat(10000)}`),
        400,
        'validation_error',
        'invalid_limit',
        'limit',
      );
      expectError(
        await asA(`/v1/connections?limit=1&limit=${long}`),
        400,
        'validation_error',
        'duplicate_parameter',
        'limit',
      );
      expectError(await asA(`/v1/connections/${'c'.repeat(129)}`), 404, 'not_found', 'connection_not_found');
      expectError(await asA(`/v1/connections/${'c'.repeat(5000)}`), 404, 'not_found', 'connection_not_found');
      expectError(
        await get(`/v1/connections/${'c'.repeat(5000)}`, null, ORG_A),
        401,
        'unauthorized',
        'missing_api_key',
      );
    });

    it('SQL metacharacters in every filter and in the id are plain text: normal answers, no 5xx', async () => {
      const nasty = [
        "'",
        '"',
        ';',
        '--',
        '%',
        "' OR '1'='1",
        "ghana'; DROP TABLE event_log; --",
        '%25',
        '_',
        '\\',
        '*',
        '$1',
        '\0',
        '(',
        ')',
      ];
      for (const value of nasty) {
        const v = encodeURIComponent(value);
        expect(ok(await asA(`/v1/connections?label=${v}`)).pagination.total).toBe(0);
        expect(ok(await asA(`/v1/connections?provider=${v}`)).pagination.total).toBe(0);
        expectError(await asA(`/v1/connections?status=${v}`), 400, 'validation_error', 'invalid_status', 'status');
        expectError(await asA(`/v1/connections?limit=${v}`), 400, 'validation_error', 'invalid_limit', 'limit');
        expectError(await asA(`/v1/connections?offset=${v}`), 400, 'validation_error', 'invalid_offset', 'offset');
        expectError(await asA(`/v1/connections/${v}`), 404, 'not_found', 'connection_not_found');
        expectError(await asA(`/v1/connections/gh.paystack${v}`), 404, 'not_found', 'connection_not_found');
        const org = await get('/v1/connections', keys.a, value === '\0' ? 'x' : value);
        expectError(org, 403, 'forbidden', 'org_mismatch');
      }
      // Raw (not percent-encoded) metacharacters in the path and the query.
      for (const path of [
        "/v1/connections/'",
        '/v1/connections/a;b',
        '/v1/connections/a--b',
        '/v1/connections/"x"',
        "/v1/connections?label='",
        '/v1/connections?label=a;b--',
      ]) {
        const res = await asA(path);
        expect(res.status).toBeLessThan(500);
        expect([200, 404]).toContain(res.status);
        json(res);
      }
      // A lone "%" in the path is a malformed escape: 400 with the contract body (the path not echoed).
      for (const path of [
        '/v1/connections/%',
        '/v1/connections/50%',
        '/v1/connections/%E0%A4%A',
        '/v1/connections/%zz',
        '/nope/%',
      ]) {
        for (const key of [keys.a, null]) {
          const body = expectError(await get(path, key, ORG_A), 400, 'bad_request', 'malformed_url');
          expect(JSON.stringify(body)).not.toContain(path);
        }
      }
      // In the query, a stray "%" is taken literally (WHATWG form decoding): a label that matches nothing.
      for (const path of ['/v1/connections?label=%', '/v1/connections?label=%zz', '/v1/connections?provider=50%']) {
        expect(ok(await asA(path)).pagination.total).toBe(0);
      }
      // The tables are intact.
      expect(ok(await asA('/v1/connections')).pagination.total).toBe(7);
    });

    it('no response had a 5xx and every response was JSON', () => {
      const bad = responses.filter((r) => r.res.status >= 500);
      expect(bad.map((r) => `${r.res.status} ${r.path.slice(0, 100)}`)).toEqual([]);
      for (const r of responses.filter((x) => x.res.status !== 304))
        expect({ path: r.path.slice(0, 100), ct: r.res.headers['content-type'] }).toEqual({
          path: r.path.slice(0, 100),
          ct: JSON_CT,
        });
    });
  });

  // ---- health and unknown routes ------------------------------------------------------------------------

  describe('health endpoints and unknown routes', () => {
    it('/healthz is 200 without auth', async () => {
      const res = await get('/healthz', null, null);
      expect(res.status).toBe(200);
      json(res);
    });

    it('/readyz is 200 with the checks when PostgreSQL, Redis and Kafka answer', async () => {
      const res = await get('/readyz', null, null);
      expect(res.status).toBe(200);
      const body = json(res);
      expect(body.checks).toEqual({ postgres: 'up', redis: 'up', kafka: 'up' });
    });

    it('an unknown route is 404 with the contract error body', async () => {
      for (const path of [
        '/nope',
        '/v1',
        '/v1/',
        '/v2/connections',
        '/v1/connection',
        '/v1/connections/a/b',
        '/v1/connectionsX',
      ]) {
        for (const [key, org] of [
          [null, null],
          [keys.a, ORG_A],
        ]) {
          const res = await get(path, key, org);
          try {
            expectError(res, 404, 'not_found', (JSON.parse(res.text) as { code: string }).code);
          } catch (e) {
            throw new Error(`${path}: ${(e as Error).message}`);
          }
        }
      }
    });

    it('other methods get the contract error body', async () => {
      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
        const res = await call('/v1/connections', { 'X-Reevit-Key': keys.a, 'X-Org-Id': ORG_A }, method);
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        const body = json<Record<string, unknown>>(res);
        expect(Object.keys(body).slice(0, 3)).toEqual(['error', 'code', 'message']);
      }
    });
  });

  // ---- no secret anywhere -------------------------------------------------------------------------------

  describe('secrets (1.1: no response, log line or error message holds a key, a key hash or credentials)', () => {
    it('no response body or header, no log line and no stored row contains a key, a key hash or a credential', async () => {
      const apiKeys = Object.entries(keys)
        .filter(([name]) => name !== 'revocableId')
        .map(([, k]) => k);
      const needles = new Set<string>([SECRET_1, SECRET_2]);
      for (const k of [...apiKeys, ...sentSecrets]) {
        needles.add(k);
        const hash = createHash('sha256').update(k, 'utf8').digest();
        needles.add(hash.toString('hex'));
        needles.add(hash.toString('hex').toUpperCase());
        needles.add(hash.toString('base64'));
        needles.add(hash.toString('base64url'));
        needles.add(`\\x${hash.toString('hex')}`);
      }
      // Keys that are merely malformed junk (like "abc") are too short to be meaningful needles.
      const meaningful = [...needles].filter((n) => n.length >= 20);
      expect(responses.length).toBeGreaterThan(100);
      const leaks: string[] = [];
      for (const { path, res } of responses) {
        const text = `${res.text}\n${JSON.stringify(res.headers)}`;
        for (const n of meaningful)
          if (text.includes(n)) leaks.push(`response to ${path.slice(0, 60)} holds ${n.slice(0, 12)}...`);
      }
      // The capture works: a Logger call and a stdout write made now are both seen.
      new Logger('ApiContractTest').error('capture-probe-1 (expected output of the log-capture check)');
      process.stdout.write('capture-probe-2\n');
      const loggerLines = loggerSpies.flatMap((spy) =>
        spy.mock.calls.map((args: unknown[]) =>
          args
            .map((a) =>
              a instanceof Error ? `${a.message} ${a.stack}` : typeof a === 'string' ? a : JSON.stringify(a),
            )
            .join(' '),
        ),
      );
      expect(loggerLines.some((l) => l.includes('capture-probe-1'))).toBe(true);
      // Nest's Logger writes through the API's pino logger: JSON lines.
      expect(jsonLogLines.some((l) => l.includes('capture-probe-1') && JSON.parse(l).level === 'error')).toBe(true);
      expect(logLines.some((l) => l.includes('capture-probe-2'))).toBe(true);
      // The JSON logs: a line per request, with its request id and its headers, the key one redacted.
      const requestLines = jsonLogLines.map((l) => JSON.parse(l)).filter((e) => e.request_id && e.req);
      expect(requestLines.length).toBeGreaterThan(100);
      const keyed = requestLines.filter((e) => e.req.headers['x-reevit-key'] !== undefined);
      expect(keyed.length).toBeGreaterThan(100);
      for (const e of keyed) expect(e.req.headers['x-reevit-key']).toBe('[redacted]');
      for (const line of [...logLines, ...loggerLines, ...jsonLogLines]) {
        for (const n of meaningful)
          if (line.includes(n)) leaks.push(`log line holds ${n.slice(0, 12)}...: ${line.slice(0, 100)}`);
      }
      const stored: { t: string }[] = await db.query(
        `SELECT data::text AS t FROM event_log
         UNION ALL SELECT row_to_json(a)::text FROM api_key a`,
      );
      // The read model's rows with their states as stored (packed: deflated JSON, read back as JSON).
      const modelRows: { document: string | null; state: string | null; packed_state: Buffer | null }[] =
        await db.query(`SELECT document, state::text AS state, packed_state FROM connection_read_model`);
      expect(modelRows.length).toBeGreaterThan(0);
      for (const r of modelRows)
        stored.push({
          t: (r.document ?? '') + (r.packed_state ? unpackStateJson(r.packed_state) : r.state),
        });
      for (const { t } of stored) {
        for (const n of [SECRET_1, SECRET_2, ...apiKeys])
          if (t.includes(n)) leaks.push(`stored row holds ${n.slice(0, 12)}...`);
        expect(t).not.toContain('credentials');
      }
      expect(leaks).toEqual([]);
    });
  });
});
