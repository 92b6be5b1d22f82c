import { DataSource } from 'typeorm';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { createRedis, liveGeneration, Projection, RedisReadModel, replay } from '@psp/read-model';
import { ApiModule } from '../../apps/api/src/api.module';
import { dropIsolated, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { mixedEvents, projectAll, seedLog } from '../support/seed';
import { startService } from '../support/service';

/** CONTRACT 3.4: a rebuild from the log gives byte-identical responses; the API serves throughout. */
describe('replay of the read model', () => {
  let settings: Settings;
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  const keys = new Map<string, string>();
  const ORGS = 3;

  const paths = [
    '/v1/connections',
    '/v1/connections?limit=7&offset=3',
    '/v1/connections?label=ghana',
    '/v1/connections?status=inactive',
    '/v1/connections?provider=PAYSTACK',
    '/v1/connections/labels',
    '/v1/connections/conn.3:x',
  ];

  async function snapshotResponses(): Promise<string[]> {
    const out: string[] = [];
    for (let o = 0; o < ORGS; o++) {
      for (const p of paths) {
        const res = await fetch(url + p, {
          headers: { 'X-Reevit-Key': keys.get(`org_${o}`)!, 'X-Org-Id': `org_${o}` },
        });
        out.push(`${o} ${p} ${res.status} ${await res.text()}`);
      }
    }
    return out;
  }

  beforeAll(async () => {
    settings = isolatedSettings('replay');
    db = await openDatabase(settings);
    await seedLog(
      db,
      mixedEvents({ orgs: ORGS, connections: 25, events: 6000, seed: 42, start: Date.UTC(2026, 10, 24, 8, 0, 0) }),
    );
    await projectAll(new Projection(db, 1, null, 1000));
    ({ app, url } = await startService(ApiModule, settings));
    const store = new ApiKeyStore(db);
    for (let o = 0; o < ORGS; o++)
      keys.set(`org_${o}`, (await store.create(`org_${o}`, ['connections:read'], 'test')).key);
  });

  afterAll(async () => {
    await app?.close();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('rebuilds into a new generation, resumes after an interruption, and answers byte for byte as before', async () => {
    const before = await snapshotResponses();
    expect(before.filter((r) => r.includes(' 200 ')).length).toBeGreaterThan(ORGS * 5);
    for (let o = 0; o < ORGS; o++)
      expect(JSON.parse(before[o * paths.length].split(' 200 ')[1]).pagination.total).toBeGreaterThan(5);

    const redis = createRedis(settings, 'test-replay');
    const readModel = new RedisReadModel(redis, settings.redisKeyPrefix);
    try {
      // Interrupted once 1,500 events are folded (the shards fold in parallel, each stops after its
      // page; the whole connections folded are written): not switched, the API still serves generation 1.
      let folded = 0;
      const firstLines: string[] = [];
      const interrupted = await replay(db, readModel, {
        batchSize: 1000,
        shouldStop: () => folded >= 1500,
        log: (l) => firstLines.push(l),
        progress: { update: (done) => (folded = done), finish: () => undefined },
      });
      expect(interrupted.switched).toBe(false);
      expect(firstLines.join('\n')).toContain('folding 6000 events by connection');
      expect(interrupted.eventsApplied).toBeGreaterThan(1000);
      expect(interrupted.eventsApplied).toBeLessThan(6000);
      // Some connections written (whole: the rest resumes after the last one written).
      const written: { connections: string }[] = await db.query(
        `SELECT count(*)::text AS connections FROM connection_read_model WHERE generation = $1`,
        [interrupted.generation],
      );
      expect(Number(written[0].connections)).toBeGreaterThan(0);
      expect(Number(written[0].connections)).toBeLessThan(ORGS * 25);
      expect(await liveGeneration(db)).toBe(1);
      expect(await snapshotResponses()).toEqual(before);

      // Run again: resumes the same generation and switches.
      const lines: string[] = [];
      const done = await replay(db, readModel, { batchSize: 1000, shouldStop: () => false, log: (l) => lines.push(l) });
      expect(done).toMatchObject({
        generation: interrupted.generation,
        resumed: true,
        switched: true,
        eventsApplied: 6000,
        previous: 1,
      });
      expect(lines.join('\n')).toMatch(
        new RegExp(`resuming the fold of generation ${done.generation}: ([1-9]|1[0-5]) of 16 shards still folding`),
      );
      expect(lines.join('\n')).toContain(`generation ${done.generation} is live`);
      expect(await liveGeneration(db)).toBe(done.generation);
    } finally {
      redis.disconnect();
    }
    await new Promise((r) => setTimeout(r, 1100)); // API instances re-read the live generation every second
    const after = await snapshotResponses();
    expect(after).toEqual(before);

    // A second replay retires the first rebuild and drops the original generation.
    const redis2 = createRedis(settings, 'test-replay-2');
    try {
      const again = await replay(db, new RedisReadModel(redis2, settings.redisKeyPrefix), {
        batchSize: 5000,
        shouldStop: () => false,
        log: () => undefined,
      });
      expect(again).toMatchObject({ switched: true, resumed: false, droppedGenerations: [1] });
      const left: { generation: number; status: string }[] = await db.query(
        `SELECT generation, status FROM projection_generation ORDER BY generation`,
      );
      expect(left.map((g) => g.status)).toEqual(['retired', 'live']);
    } finally {
      redis2.disconnect();
    }
    await new Promise((r) => setTimeout(r, 1100));
    expect(await snapshotResponses()).toEqual(before);
  });
});
