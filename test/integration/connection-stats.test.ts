import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { callEvent, configuredEvent, MINUTE, T0, validationEvent } from '@psp/domain/testing/events';
import { ConnectionEvent } from '@psp/domain';
import { Projection, replay } from '@psp/read-model';
import { ApiModule } from '../../apps/api/src/api.module';
import { dropIsolated, eventually, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { projectAll, seedLog } from '../support/seed';
import { startService } from '../support/service';

const ORG = 'org_stats';
const where = (connectionId: string, orgId = ORG) => ({ orgId, connectionId });

/** GET /v1/connections/{id}/stats (CONTRACT 1.5, 1.5b) against the real read model, byte for byte. */
describe('connection stats', () => {
  let settings: Settings;
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  let key: string;
  let projection: Projection;

  async function get(path: string, headers: Record<string, string> = {}) {
    const res = await fetch(url + path, { headers: { 'X-Reevit-Key': key, 'X-Org-Id': ORG, ...headers } });
    return { status: res.status, etag: res.headers.get('etag'), body: await res.text() };
  }

  beforeAll(async () => {
    settings = isolatedSettings('stats');
    db = await openDatabase(settings);
    projection = new Projection(db, 1, null, 1000);
    const events: ConnectionEvent[] = [
      configuredEvent('cfg-a', T0, {}, where('a')),
      configuredEvent('cfg-other', T0, {}, where('a', 'org_other')),
      // Minute T0: 3 calls; minute T0+2: 2 calls. Stream time ends at T0 + 2 min + 30.5 s.
      callEvent('a1', T0 + 1000, { latency_ms: 412, method: 'card', currency: 'GHS' }, where('a')),
      callEvent(
        'a2',
        T0 + 2000,
        { outcome: 'failure', error_code: 'timeout', latency_ms: 3500, method: 'card', currency: 'GHS' },
        where('a'),
      ),
      callEvent('a3', T0 + 3000, { outcome: 'failure', error_code: 'card_declined', latency_ms: 90 }, where('a')),
      callEvent(
        'a4',
        T0 + 2 * MINUTE + 10_000,
        { outcome: 'failure', latency_ms: 10, method: 'mobile_money' },
        where('a'),
      ),
      callEvent('a5', T0 + 2 * MINUTE + 30_500, { latency_ms: 200, currency: 'KES' }, where('a')),
      // h: 40 good calls at T0, healthy; v: the same, then a failed validation (the cap of 3.3).
      configuredEvent('cfg-h', T0, {}, where('h')),
      configuredEvent('cfg-v', T0, {}, where('v')),
      ...Array.from({ length: 40 }, (_, i) => callEvent(`h${i}`, T0 + i, {}, where('h'))),
      ...Array.from({ length: 40 }, (_, i) => callEvent(`v${i}`, T0 + i, {}, where('v'))),
      validationEvent('v-failed', T0 + 5000, { result: 'failure', error: 'invalid key' }, where('v')),
    ];
    await seedLog(db, events);
    await projectAll(projection);
    ({ app, url } = await startService(ApiModule, settings));
    key = (await new ApiKeyStore(db).create(ORG, ['connections:read'], 'test')).key;
  });

  afterAll(async () => {
    await app?.close();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('answers the contract, member by member and byte for byte', async () => {
    const res = await get('/v1/connections/a/stats');
    expect(res.status).toBe(200);
    const minutes = Array.from({ length: 60 }, (_, i) => {
      const at = new Date(T0 + (i - 57) * MINUTE).toISOString();
      if (i === 57) return { at, calls: 3, technical_failures: 1, slow: 1 };
      if (i === 59) return { at, calls: 2, technical_failures: 1, slow: 0 };
      return { at, calls: 0, technical_failures: 0, slow: 0 };
    });
    // 5 calls: latencies 10, 90, 200, 412, 3500 → bounds 10, 100, 200, 500, 5000.
    // p50: ceil(2.5) = 3 calls ≤ 200; p90: ceil(4.5) = 5 ≤ 5000; p95, p99: 5 ≤ 5000.
    // success_rate (1.5b), 3 of 5: p = 0.6, z²/5 = 0.76829, d = 1.76829; center = (0.6 + 0.38415) / d
    // = 0.55655; half = z·√(0.048 + 0.03841) / d = 1.95996·0.29396 / 1.76829 = 0.32583 → 0.2307 .. 0.8824.
    // card 1 of 2 → 0.5, 0.0945 .. 0.9055; mobile_money 0 of 1 → 0 .. z²/(1 + z²) = 0.7935; KES 1 of 1 →
    // 1/(1 + z²) = 0.2065 .. 1.
    // outlook: at b = T0 + 2 min, N = 3·2^(-2/15) + 2 = 4.74 < 20 and score 75.72: unknown, and it stays
    // unknown as N falls (the score rises toward 100): null.
    const half = { value: 0.5, low: 0.0945, high: 0.9055 };
    const expected = {
      id: 'a',
      stream_time: '2026-11-24T10:02:30.500Z',
      window: { from: '2026-11-24T09:03:00.000Z', to: '2026-11-24T10:03:00.000Z' },
      calls: 5,
      successful: 2,
      failed: 3,
      technical_failures: 2,
      declines: 1,
      slow: 1,
      success_rate: { value: 0.6, low: 0.2307, high: 0.8824 },
      latency_ms: { p50: 200, p90: 5000, p95: 5000, p99: 5000, max: 3500 },
      error_codes: [
        { code: 'card_declined', count: 1 },
        { code: 'timeout', count: 1 },
        { code: 'unknown', count: 1 },
      ],
      methods: [
        { method: 'card', calls: 2, technical_failures: 1, success_rate: half },
        {
          method: 'mobile_money',
          calls: 1,
          technical_failures: 1,
          success_rate: { value: 0, low: 0, high: 0.7935 },
        },
      ],
      currencies: [
        { currency: 'GHS', calls: 2, technical_failures: 1, success_rate: half },
        { currency: 'KES', calls: 1, technical_failures: 0, success_rate: { value: 1, low: 0.2065, high: 1 } },
      ],
      minutes,
      outlook: null,
    };
    expect(res.body).toBe(JSON.stringify(expected));
  });

  it('answers the outlook (1.5b): when a healthy connection turns unknown by itself, and none under the validation cap', async () => {
    // h at b = T0 + 2 min: N = 40·2^(-2/15) = 36.5, score 100: healthy. N = 40·2^(-a/15) stays ≥ 20
    // up to a = 15 (N = 20) and is 19.14 at a = 16: unknown from bucket T0 + 16 min. 40 of 40 good:
    // 1, from 40 / (40 + z²) = 0.91238.
    const minutes = Array.from({ length: 60 }, (_, i) => ({
      at: new Date(T0 + (i - 57) * MINUTE).toISOString(),
      calls: i === 57 ? 40 : 0,
      technical_failures: 0,
      slow: 0,
    }));
    const expected = {
      id: 'h',
      stream_time: '2026-11-24T10:02:30.500Z',
      window: { from: '2026-11-24T09:03:00.000Z', to: '2026-11-24T10:03:00.000Z' },
      calls: 40,
      successful: 40,
      failed: 0,
      technical_failures: 0,
      declines: 0,
      slow: 0,
      success_rate: { value: 1, low: 0.9124, high: 1 },
      latency_ms: { p50: 100, p90: 100, p95: 100, p99: 100, max: 100 },
      error_codes: [],
      methods: [],
      currencies: [],
      minutes,
      outlook: { at: '2026-11-24T10:16:00.000Z', to: 'unknown' },
    };
    const h = await get('/v1/connections/h/stats');
    expect(h.status).toBe(200);
    expect(h.body).toBe(JSON.stringify(expected));
    // v: the same calls, but its latest validation failed after its last success: unhealthy at every
    // later bucket, so no outlook; the success rate counts calls only.
    const v = await get('/v1/connections/v/stats');
    expect(v.body).toBe(JSON.stringify({ ...expected, id: 'v', outlook: null }));
    const connection = JSON.parse((await get('/v1/connections/v')).body);
    expect(connection.health_status).toBe('unhealthy');
  });

  it('answers 404 for a connection of another org, or none, and 304 for its ETag', async () => {
    expect((await get('/v1/connections/nope/stats')).status).toBe(404);
    const other = await get('/v1/connections/a/stats', { 'X-Org-Id': 'org_other' });
    expect(other.status).toBe(403); // the key is org_stats's
    const first = await get('/v1/connections/a/stats');
    expect(first.etag).toMatch(/^"/);
    expect((await get('/v1/connections/a/stats', { 'If-None-Match': first.etag! })).status).toBe(304);
  });

  it('moves with stream time, and answers the same bytes after a replay', async () => {
    // Another connection's event 59 minutes after T0: minute T0 is b-59, still in the window.
    await seedLog(db, [configuredEvent('cfg-b', T0 + 59 * MINUTE + 1, {}, where('b'))]);
    await projectAll(projection);
    const moved = await eventually(
      async () => JSON.parse((await get('/v1/connections/a/stats')).body),
      (s) => s.stream_time === '2026-11-24T10:59:00.001Z',
      5000,
      'stream time at 10:59:00.001',
    );
    expect(moved.calls).toBe(5);
    expect(moved.minutes[0]).toEqual({ at: '2026-11-24T10:00:00.000Z', calls: 3, technical_failures: 1, slow: 1 });
    const before = (await get('/v1/connections/a/stats')).body;
    const beforeH = (await get('/v1/connections/h/stats')).body;
    const beforeV = (await get('/v1/connections/v/stats')).body;
    expect(JSON.parse(beforeH).success_rate).toEqual({ value: 1, low: 0.9124, high: 1 });

    await replay(db, null, { batchSize: 1000, shouldStop: () => false, log: () => undefined });
    await new Promise((r) => setTimeout(r, 1200));
    expect((await get('/v1/connections/a/stats')).body).toBe(before);
    expect((await get('/v1/connections/h/stats')).body).toBe(beforeH);
    expect((await get('/v1/connections/v/stats')).body).toBe(beforeV);

    // One more minute: the calls of minute T0 leave the window.
    await seedLog(db, [configuredEvent('cfg-c', T0 + 60 * MINUTE, {}, where('c'))]);
    const live = (await db.query(`SELECT generation FROM projection_generation WHERE status = 'live'`))[0].generation;
    await projectAll(new Projection(db, live, null, 1000));
    const after = await eventually(
      async () => JSON.parse((await get('/v1/connections/a/stats')).body),
      (s) => s.stream_time === '2026-11-24T11:00:00.000Z',
      5000,
      'stream time at 11:00',
    );
    expect([after.calls, after.failed, after.latency_ms.max]).toEqual([2, 1, 200]);
  });
});
