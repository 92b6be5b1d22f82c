import { randomUUID } from 'node:crypto';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { ConnectionEvent } from '@psp/domain';
import { configuredEvent } from '@psp/domain/testing/events';
import { Projection } from '@psp/read-model';
import { ApiModule } from '../../apps/api/src/api.module';
import { ConnectionReads } from '../../apps/api/src/connection-reads';
import { dropIsolated, eventually, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { projectAll, seedLog } from '../support/seed';
import { startService } from '../support/service';

/** An update that never reached Redis (Redis down at that moment) is served within about a second anyway. */
describe('Redis never keeps serving an older version', () => {
  let settings: Settings;
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  let key: string;
  const t0 = Date.UTC(2026, 10, 24, 7, 0, 0);

  const configured = (id: string, at: number): ConnectionEvent =>
    configuredEvent(randomUUID(), at, { provider: 'hubtel' }, { orgId: 'org_s', connectionId: id });

  async function ids(): Promise<string[]> {
    const res = await fetch(`${url}/v1/connections`, { headers: { 'X-Reevit-Key': key, 'X-Org-Id': 'org_s' } });
    return (JSON.parse(await res.text()) as { connections: { id: string }[] }).connections.map((c) => c.id);
  }

  beforeAll(async () => {
    settings = isolatedSettings('stale');
    db = await openDatabase(settings);
    ({ app, url } = await startService(ApiModule, settings));
    key = (await new ApiKeyStore(db).create('org_s', ['connections:read'], 'test')).key;
  });

  afterAll(async () => {
    await app?.close();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('serves what PostgreSQL committed even when the projector could not update Redis', async () => {
    await seedLog(db, [configured('first', t0)]);
    // No Redis for this projection: as if Redis had been unreachable when it committed.
    const projection = new Projection(db, 1, null, 100);
    await projectAll(projection);
    expect(await ids()).toEqual(['first']);
    expect(app.get(ConnectionReads).lastSource).toBe('postgres'); // and Redis is now filled at that version

    const more = configured('second', t0 + 1000);
    await db.query(
      `INSERT INTO event_log (event_id, org_id, connection_id, stream_version, type, occurred_at, data, source_topic, source_partition, source_offset)
       VALUES ($1, 'org_s', 'second', 1, 'connection.configured', $2, $3, 'seed', 0, 1)`,
      [more.eventId, new Date(more.occurredAt).toISOString(), JSON.stringify(more.data)],
    );
    await projectAll(projection); // committed in PostgreSQL; Redis still holds the older version
    const seen = await eventually(ids, (list) => list.length === 2, 5000, 'the committed connection');
    expect(seen).toEqual(['second', 'first']);
  });
});
