import { randomUUID } from 'node:crypto';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { ConnectionEvent } from '@psp/domain';
import { configuredEvent } from '@psp/domain/testing/events';
import { createRedis, Projection, RedisReadModel } from '@psp/read-model';
import { ApiModule } from '../../apps/api/src/api.module';
import { ConnectionReads } from '../../apps/api/src/connection-reads';
import { dropIsolated, eventually, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { projectAll, seedLog } from '../support/seed';
import { startService } from '../support/service';

/**
 * The API batches what concurrent requests ask of the tiers (one Redis MGET of versions, one
 * PostgreSQL statement for versions and for orgs, one for key lookups): under many concurrent
 * requests over many orgs, each org still gets its own connections, each key its own org, and an
 * update is served within the documented bounds, also one that never reached Redis.
 */
describe('the API over many orgs at once (batched reads)', () => {
  const ORGS = 40;
  const org = (i: number) => `org_many_${i}`;
  const t0 = Date.UTC(2026, 10, 24, 7, 0, 0);
  let settings: Settings;
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  let redis: Redis;
  let withRedis: Projection;
  let withoutRedis: Projection;
  const keys: string[] = [];

  const configured = (orgId: string, id: string, at: number): ConnectionEvent =>
    configuredEvent(randomUUID(), at, { provider: 'hubtel' }, { orgId, connectionId: id });

  async function get(i: number, key = keys[i]): Promise<{ status: number; ids: string[] }> {
    const res = await fetch(`${url}/v1/connections`, { headers: { 'X-Reevit-Key': key, 'X-Org-Id': org(i) } });
    const text = await res.text();
    if (res.status !== 200) return { status: res.status, ids: [] };
    return { status: 200, ids: (JSON.parse(text) as { connections: { id: string }[] }).connections.map((c) => c.id) };
  }

  /** Every org read `times` times, all requests at once, in a shuffled order. */
  async function readAllAtOnce(times: number): Promise<Map<number, string[][]>> {
    const order: number[] = [];
    for (let t = 0; t < times; t++) for (let i = 0; i < ORGS; i++) order.push(i);
    order.sort(() => Math.random() - 0.5);
    const answers = await Promise.all(order.map(async (i) => ({ i, res: await get(i) })));
    const byOrg = new Map<number, string[][]>();
    for (const { i, res } of answers) {
      expect({ org: i, status: res.status }).toEqual({ org: i, status: 200 });
      byOrg.set(i, [...(byOrg.get(i) ?? []), res.ids]);
    }
    return byOrg;
  }

  beforeAll(async () => {
    settings = isolatedSettings('manyorgs', { RATE_LIMIT_PER_MINUTE: '0', RATE_LIMIT_FAILED_AUTH_PER_MINUTE: '0' });
    db = await openDatabase(settings);
    redis = createRedis(settings, 'test-projector');
    await eventually(
      async () => redis.status,
      (s) => s === 'ready',
      10000,
      'the test Redis client ready',
    );
    withRedis = new Projection(db, 1, new RedisReadModel(redis, settings.redisKeyPrefix), 1000);
    withoutRedis = new Projection(db, 1, null, 1000);
    const events: ConnectionEvent[] = [];
    for (let i = 0; i < ORGS; i++) {
      events.push(configured(org(i), `o${i}.a`, t0), configured(org(i), `o${i}.b`, t0 + 1000));
    }
    await seedLog(db, events);
    await projectAll(withRedis);
    ({ app, url } = await startService(ApiModule, settings));
    const store = new ApiKeyStore(db);
    for (let i = 0; i < ORGS; i++) keys.push((await store.create(org(i), ['connections:read'], 'test')).key);
  });

  afterAll(async () => {
    await app?.close();
    redis?.disconnect();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('answers each org with its own connections when their requests are batched together', async () => {
    for (const round of [1, 2]) {
      const byOrg = await readAllAtOnce(3);
      for (let i = 0; i < ORGS; i++)
        for (const ids of byOrg.get(i)!)
          expect({ round, org: i, ids }).toEqual({ round, org: i, ids: [`o${i}.b`, `o${i}.a`] });
    }
    expect(app.get(ConnectionReads).cacheStats().orgs).toBe(ORGS);
  });

  it('keeps keys apart in batched lookups: unknown keys 401, another org’s key 403', async () => {
    const answers = await Promise.all(
      Array.from({ length: ORGS }, (_, i) => [
        get(i),
        get(i, keys[(i + 1) % ORGS]),
        get(i, `${keys[i].slice(0, -4)}zzzz`),
      ]).flat(),
    );
    for (let i = 0; i < ORGS; i++) {
      expect(answers[3 * i].status).toBe(200);
      expect(answers[3 * i + 1].status).toBe(403);
      expect(answers[3 * i + 2].status).toBe(401);
    }
  });

  it('serves an update within the bounds: through Redis at once, and one that missed Redis within about a second', async () => {
    await readAllAtOnce(1); // every org cached in this instance
    // Orgs 0-9 through the projector with Redis; org 10 committed in PostgreSQL only (Redis missed it).
    await seedLog(
      db,
      Array.from({ length: 10 }, (_, i) => configured(org(i), `o${i}.c`, t0 + 2000)),
    );
    await projectAll(withRedis);
    await seedLog(db, [configured(org(10), 'o10.c', t0 + 2000)]);
    const committedAt = Date.now();
    await projectAll(withoutRedis);
    const seen = await eventually(
      () => readAllAtOnce(1),
      (byOrg) => [...Array(11).keys()].every((i) => byOrg.get(i)![0].length === 3),
      5000,
      'the updates in every org',
    );
    expect(Date.now() - committedAt).toBeLessThan(2500); // PostgreSQL re-check: every second per org
    for (let i = 0; i < ORGS; i++)
      expect({ org: i, ids: seen.get(i)![0] }).toEqual({
        org: i,
        ids: i <= 10 ? [`o${i}.c`, `o${i}.b`, `o${i}.a`] : [`o${i}.b`, `o${i}.a`],
      });
  });
});
