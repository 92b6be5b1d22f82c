import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { allShards } from '@psp/domain';
import { readOrgsFromPostgres, RedisReadModel, ShardProjection } from '@psp/read-model';
import { dropIsolated, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { mixedEvents, seedLog } from '../support/seed';

/**
 * A step of a shard that is behind reads its events connection by connection (docs/read-model.md, "A
 * shard that is behind"): the same events, folded per connection and written once, must give exactly
 * what the log-order steps over the same ranges give: the same rows byte for byte (documents, packed
 * states, chain tails, when each is due), the same health-change messages and the same org versions.
 * Two databases seeded with the same log; one projected in log order, one in catch-up steps whose
 * cursor reads 7 events at a time (so connections span chunks).
 */
describe('catch-up steps (events read connection by connection)', () => {
  const inLogOrder = isolatedSettings('catchup-ref');
  const byConnection = isolatedSettings('catchup');
  const dbs: DataSource[] = [];
  const redis = new Redis(byConnection.redisUrl, { lazyConnect: true });

  beforeAll(async () => {
    for (const settings of [inLogOrder, byConnection]) dbs.push(await openDatabase(settings));
    await redis.connect();
  });

  afterAll(async () => {
    await Promise.all(dbs.map((db) => db.destroy()));
    await Promise.all([inLogOrder, byConnection].map((s) => dropIsolated(s)));
    redis.disconnect();
  });

  /** Steps every shard of generation 1 in steps of `limit` events until none is left. */
  async function projectShards(db: DataSource, make: (shard: number) => ShardProjection, limit: number) {
    const projections = allShards().map(make);
    for (;;) {
      let applied = 0;
      for (const p of projections) applied += (await p.step(limit)).applied;
      if (applied === 0) break;
    }
    await Promise.all(projections.map((p) => p.settled()));
    return projections;
  }

  async function readModel(db: DataSource) {
    const rows = await db.query(
      `SELECT org_id, connection_id, listed, provider, status, labels, health_score, health_status, created_at,
              updated_at, last_call_minute, document, encode(packed_state, 'base64') AS packed_state,
              health_next_change::text AS next_change, health_reported, health_sequence
         FROM connection_read_model WHERE generation = 1 ORDER BY org_id, connection_id`,
    );
    const outbox = await db.query(
      `SELECT org_id, connection_id, sequence, message FROM health_change_outbox
        WHERE generation = 1 ORDER BY org_id, connection_id, sequence`,
    );
    const orgs = await db.query(
      `SELECT org_id, version::text AS version FROM org_read_model WHERE generation = 1 ORDER BY org_id`,
    );
    const checkpoints = await db.query(
      `SELECT shard, events_applied::text AS applied, stream_time::text AS stream_time
         FROM projection_shard WHERE generation = 1 ORDER BY shard`,
    );
    return { rows, outbox, orgs, checkpoints };
  }

  it('gives the read model, the health changes and the versions that log-order steps give', async () => {
    // ~4,000 events over 60 orgs × 12 connections (every shard), out-of-order times over 3 hours.
    const events = mixedEvents({ orgs: 60, connections: 12, events: 4000, seed: 23, start: Date.UTC(2026, 11, 7, 9) });
    for (const db of dbs) await seedLog(db, events, 500);
    const [refDb, db] = dbs;

    const reference = await projectShards(refDb, (shard) => new ShardProjection(refDb, 1, shard, null, 120), 120);
    const readModelRedis = new RedisReadModel(redis, byConnection.redisKeyPrefix);
    const caughtUp = await projectShards(
      db,
      (shard) =>
        new ShardProjection(db, 1, shard, readModelRedis, 10, { catchUpChunkEvents: 7, redisDocumentBytes: 4096 }),
      120,
    );
    expect(reference.reduce((n, p) => n + p.catchUpSteps, 0)).toBe(0);
    expect(caughtUp.reduce((n, p) => n + p.catchUpSteps, 0)).toBeGreaterThanOrEqual(allShards().length);

    const expected = await readModel(refDb);
    const got = await readModel(db);
    expect(expected.rows.length).toBe(720);
    expect(expected.outbox.length).toBeGreaterThan(50); // the chains are exercised
    expect(got.checkpoints).toEqual(expected.checkpoints);
    expect(got.orgs).toEqual(expected.orgs);
    expect(got.outbox).toEqual(expected.outbox);
    expect(got.rows).toEqual(expected.rows);
  });

  it('a step that wrote more documents than it keeps for Redis drops those orgs there, never leaving them stale', async () => {
    const db = dbs[1];
    const readModelRedis = new RedisReadModel(redis, byConnection.redisKeyPrefix);
    const orgIds = Array.from({ length: 60 }, (_, i) => `org_${i}`);
    // Redis holds every org, as the API leaves it after reading them.
    const before = await readOrgsFromPostgres(db, 1, orgIds);
    await readModelRedis.fillMany(
      1,
      before.map((org, i) => ({ orgId: orgIds[i], org })),
    );
    expect((await readModelRedis.readMany(1, orgIds)).every((o) => o !== null)).toBe(true);

    const more = mixedEvents({ orgs: 60, connections: 12, events: 2000, seed: 24, start: Date.UTC(2026, 11, 7, 12) });
    await seedLog(db, more.slice(720), 500); // calls and changes only (their connections exist)
    await projectShards(
      db,
      (shard) =>
        new ShardProjection(db, 1, shard, readModelRedis, 10, { catchUpChunkEvents: 50, redisDocumentBytes: 8192 }),
      400,
    );
    const inPostgres = await readOrgsFromPostgres(db, 1, orgIds);
    const inRedis = await readModelRedis.readMany(1, orgIds);
    let dropped = 0;
    let updated = 0;
    for (const [i, held] of inRedis.entries()) {
      if (held === null) {
        dropped++;
        continue;
      }
      // Whatever Redis still holds is PostgreSQL's org at its version, document for document.
      expect({ org: orgIds[i], version: held.version, documents: [...held.documents].sort() }).toEqual({
        org: orgIds[i],
        version: inPostgres[i].version,
        documents: [...inPostgres[i].documents].sort(),
      });
      if (held.version > before[i].version) updated++;
    }
    expect(dropped).toBeGreaterThan(0);
    expect(updated).toBeGreaterThan(0);
    // A reader that read PostgreSQL before the step cannot put the older org back.
    const stale = before.findIndex((org, i) => inRedis[i] === null && org.version < inPostgres[i].version);
    expect(stale).toBeGreaterThanOrEqual(0);
    await readModelRedis.fillMany(1, [{ orgId: orgIds[stale], org: before[stale] }]);
    expect((await readModelRedis.readMany(1, [orgIds[stale]]))[0]).toBeNull();
  });
});
