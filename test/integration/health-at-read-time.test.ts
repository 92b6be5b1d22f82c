import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { callEvent, configuredEvent, MINUTE, T0 } from '@psp/domain/testing/events';
import { ConnectionEvent, minuteBucket } from '@psp/domain';
import { parseStoredDocument, Projection, replay } from '@psp/read-model';
import { ApiModule } from '../../apps/api/src/api.module';
import { dropIsolated, eventually, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { projectAll, seedLog } from '../support/seed';
import { startService } from '../support/service';

const ORG = 'org_minute';
const where = (connectionId: string) => ({ orgId: ORG, connectionId });

/**
 * When stream time enters a new minute, the health of every connection with calls in its window
 * changes, but nothing is re-rendered: the API evaluates each stored health window at the stream time
 * it serves, the same for every connection of a response, and a replay answers byte for byte the same.
 */
describe('health evaluated at read time', () => {
  let settings: Settings;
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  let key: string;
  let projection: Projection;

  async function get(path: string): Promise<{ status: number; body: string }> {
    const res = await fetch(url + path, { headers: { 'X-Reevit-Key': key, 'X-Org-Id': ORG } });
    return { status: res.status, body: await res.text() };
  }

  async function renderedAt(connectionId: string): Promise<number | null> {
    const rows: { document: string }[] = await db.query(
      `SELECT document FROM connection_read_model WHERE generation = 1 AND org_id = $1 AND connection_id = $2`,
      [ORG, connectionId],
    );
    return parseStoredDocument(rows[0].document).window.renderedAt;
  }

  beforeAll(async () => {
    settings = isolatedSettings('minute');
    db = await openDatabase(settings);
    projection = new Projection(db, 1, null, 1000);
    ({ app, url } = await startService(ApiModule, settings));
    key = (await new ApiKeyStore(db).create(ORG, ['connections:read'], 'test')).key;
  });

  afterAll(async () => {
    await app?.close();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('shows health at the current minute without re-rendering, and the same bytes after a replay', async () => {
    const M = minuteBucket(T0);
    // Connection a: 40 calls in minute M, 10 of them technical failures.
    const a: ConnectionEvent[] = [configuredEvent('a-cfg', T0, {}, where('a'))];
    for (let i = 0; i < 40; i++)
      a.push(
        callEvent(
          `a-call-${i}`,
          T0 + i * 1000,
          i < 10 ? { outcome: 'failure', error_code: 'timeout' } : {},
          where('a'),
        ),
      );
    await seedLog(db, [...a, configuredEvent('b-cfg', T0, {}, where('b'))]);
    await projectAll(projection);

    const at = async (connectionId: string) => JSON.parse((await get(`/v1/connections/${connectionId}`)).body);
    await eventually(
      () => at('a'),
      (v) => v.health_status === 'degraded',
      5000,
      'a served',
    );
    // At minute M: N 40, F 10: (40 - 10 + 5) / 45 = 77.78, degraded.
    expect(await at('a')).toMatchObject({ health_score: 77.78, health_status: 'degraded' });

    // Only connection c gets an event, 30 minutes later: stream time moves to M + 30.
    await seedLog(db, [configuredEvent('c-cfg', T0 + 30 * MINUTE, {}, where('c'))]);
    await projectAll(projection);
    expect(await renderedAt('a')).toBe(M); // a was not re-rendered
    expect(await renderedAt('c')).toBe(M + 30);
    // a at M + 30: weight 1/4: N 10, F 2.5: 12.5 / 15 = 83.33, N < 20: unknown.
    const seen = await eventually(
      () => at('a'),
      (v) => v.health_score === 83.33,
      5000,
      'a at M + 30',
    );
    expect(seen.health_status).toBe('unknown');

    // One response, one stream time: the list shows a at M + 30 too, and b and c (no calls) at 100.
    // (This projection does not write Redis, so the API sees c once it re-checks PostgreSQL: ≤ 1 s.)
    const list = await eventually(
      async () => JSON.parse((await get('/v1/connections')).body) as { connections: Record<string, unknown>[] },
      (l) => l.connections.length === 3,
      5000,
      'c listed',
    );
    expect(list.connections.map((c) => [c.id, c.health_score, c.health_status])).toEqual([
      ['c', 100, 'unknown'],
      ['a', 83.33, 'unknown'],
      ['b', 100, 'unknown'],
    ]);

    // A replay renders every connection at M + 30: the API answers byte for byte the same.
    const paths = ['/v1/connections', '/v1/connections/a', '/v1/connections/b', '/v1/connections/labels'];
    const before = await Promise.all(paths.map(get));
    const outcome = await replay(db, null, { batchSize: 1000, shouldStop: () => false, log: () => undefined });
    expect(outcome.switched).toBe(true);
    await new Promise((r) => setTimeout(r, 1200)); // the API's view of the live generation refreshes
    expect(await Promise.all(paths.map(get))).toEqual(before);
  });
});
