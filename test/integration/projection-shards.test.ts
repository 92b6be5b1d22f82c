import { DataSource } from 'typeorm';
import { PROJECTION_SHARDS, shardOfOrg } from '@psp/domain';
import { applyEvent, initialConnectionState, stateToJson } from '@psp/domain';
import { callEvent, configuredEvent, MINUTE, T0 } from '@psp/domain/testing/events';
import {
  generationLag,
  readShardCheckpoint,
  ShardLeaseLost,
  ShardLeases,
  ShardProjection,
  unpackStateJson,
} from '@psp/read-model';
import { dropIsolated, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { seedLog } from '../support/seed';

/** An org id in the given shard (org_0, org_1, … until one falls in it). */
function orgInShard(shard: number): string {
  for (let i = 0; ; i++) if (shardOfOrg(`org_${i}`) === shard) return `org_${i}`;
}

/**
 * The sharded projection's coordination on a real PostgreSQL (docs/read-model.md, "Sharded
 * projection"): the shard function is the same in TypeScript and SQL; projectors share the shards
 * through advisory locks, a dead one's shards go to the others, and a process that lost a shard can
 * never commit to it (fencing by lease).
 */
describe('projection shards', () => {
  const settings = isolatedSettings('shards');
  let db: DataSource;
  const leases: ShardLeases[] = [];
  const member = (name: string) => {
    const l = new ShardLeases(settings.databaseUrl, name);
    leases.push(l);
    return l;
  };

  beforeAll(async () => {
    db = await openDatabase(settings);
  });

  afterEach(async () => {
    await Promise.all(leases.splice(0).map((l) => l.leave()));
  });

  afterAll(async () => {
    await db?.destroy();
    await dropIsolated(settings);
  });

  it('psp_shard(org_id) in PostgreSQL is shardOfOrg in TypeScript, for 2,000 org ids', async () => {
    const orgs = Array.from({ length: 2000 }, (_, i) => (i % 3 === 0 ? `org_${i}` : `Ørg-${i}-ünïcode-${i * 7919}`));
    const rows: { shard: number }[] = await db.query(`SELECT psp_shard(o) AS shard FROM unnest($1::text[]) AS o`, [
      orgs,
    ]);
    expect(rows.map((r) => r.shard)).toEqual(orgs.map(shardOfOrg));
    // Every shard is used.
    expect(new Set(orgs.map(shardOfOrg)).size).toBe(PROJECTION_SHARDS);
  });

  it('two projectors split the shards; a third joining takes its share; a dead one’s shards go to the others', async () => {
    const a = member('a');
    const b = member('b');
    await a.rebalance();
    expect(a.leases.size).toBe(16);
    await b.rebalance(); // sees 2 members, finds nothing free yet
    await a.rebalance(); // releases down to 8
    await b.rebalance(); // takes the 8 released
    expect(a.leases.size).toBe(8);
    expect(b.leases.size).toBe(8);
    expect(new Set([...a.leases.keys(), ...b.leases.keys()]).size).toBe(16);

    const c = member('c');
    for (let round = 0; round < 2; round++) for (const m of [c, a, b, c]) await m.rebalance();
    const held = [a, b, c].map((m) => m.leases.size);
    expect(held.reduce((x, y) => x + y, 0)).toBe(16);
    expect(Math.max(...held)).toBe(6);
    expect(new Set([a, b, c].flatMap((m) => [...m.leases.keys()])).size).toBe(16);

    // A dies as kill -9 would leave it: its connection goes (here: the server ends its session).
    await db.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'psp-shard-leases'
          AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid::bigint = $1 AND objid = 0)`,
      [0x50530002],
    );
    const survivors = [b, c];
    for (let round = 0; round < 2; round++) for (const m of survivors) await m.rebalance();
    expect(survivors.map((m) => m.leases.size).reduce((x, y) => x + y, 0)).toBe(16);
    expect(new Set(survivors.flatMap((m) => [...m.leases.keys()])).size).toBe(16);
    // The dead member finds out at its next look: it holds nothing.
    const lost = await a.rebalance().catch(() => null);
    expect(lost === null || lost.lost.length > 0 || a.leases.size === 0).toBe(true);
  });

  it('fencing: a projector whose shard was taken commits nothing of its step', async () => {
    const shard = 5;
    const org = orgInShard(shard);
    await seedLog(db, [
      configuredEvent('f-1', T0, {}, { orgId: org, connectionId: 'c1' }),
      callEvent('f-2', T0 + MINUTE, {}, { orgId: org, connectionId: 'c1' }),
    ]);
    const stale = member('stale');
    await stale.rebalance();
    const lease = stale.leases.get(shard)!;
    expect(lease).toBeDefined();
    const before = await readShardCheckpoint(db, 1, shard);

    // Its connection breaks, and another projector takes the shard (the lease moves on) …
    await stale.leave();
    const taker = member('taker');
    await taker.rebalance();
    expect(taker.leases.get(shard)).not.toBe(lease);

    // … while the stale process still has a step to commit under the old lease.
    const projection = new ShardProjection(db, 1, shard, null, 100);
    projection.lease = lease;
    await expect(projection.step()).rejects.toBeInstanceOf(ShardLeaseLost);
    expect(await readShardCheckpoint(db, 1, shard)).toEqual(before);
    const [{ n }] = await db.query(`SELECT count(*)::int AS n FROM connection_read_model WHERE org_id = $1`, [org]);
    expect(n).toBe(0);

    // The holder's step commits.
    const holder = new ShardProjection(db, 1, shard, null, 100);
    holder.lease = taker.leases.get(shard)!;
    expect((await holder.step()).applied).toBe(2);
    expect((await readShardCheckpoint(db, 1, shard)).eventsApplied).toBe(2);
  });

  it('counts the events a shard is behind up to a limit, exactly below it, "at least" past it', async () => {
    const shard = 9;
    const org = orgInShard(shard);
    await seedLog(
      db,
      Array.from({ length: 12 }, (_, i) => callEvent(`lag-${i}`, T0 + i, {}, { orgId: org, connectionId: 'c1' })),
    );
    const exact = await generationLag(db, 1, Infinity);
    const behind = exact.shards[shard].behindEvents;
    expect(behind).toBeGreaterThanOrEqual(12);
    expect(exact.shards[shard].behindAtLeast).toBe(false);
    expect(exact.atLeast).toBe(false);

    const bounded = await generationLag(db, 1, 5);
    expect(bounded.shards[shard]).toMatchObject({ behindEvents: 5, behindAtLeast: true });
    expect(bounded.atLeast).toBe(true);
    expect(bounded.shards[shard].behindSeconds).toBeGreaterThan(0);
    // A shard with fewer events behind than the limit is counted exactly.
    const roomy = await generationLag(db, 1, behind);
    expect(roomy.shards[shard]).toMatchObject({ behindEvents: behind, behindAtLeast: true });
    const above = await generationLag(db, 1, behind + 1);
    expect(above.shards[shard]).toMatchObject({ behindEvents: behind, behindAtLeast: false });
  });

  it('reads a state stored as JSON before migration 0014, and writes it back packed', async () => {
    const shard = 3;
    const org = orgInShard(shard);
    const where = { orgId: org, connectionId: 'legacy' };
    const events = [
      configuredEvent('legacy-1', T0, { labels: ['ghana'] }, where),
      callEvent('legacy-2', T0 + MINUTE, { outcome: 'failure', error_code: 'timeout' }, where),
      callEvent('legacy-3', T0 + 2 * MINUTE, {}, where),
    ];
    const stepAll = async (projection: ShardProjection) => {
      while ((await projection.step()).applied > 0);
    };
    const stored = async () =>
      (
        await db.query(
          `SELECT state::text AS state, packed_state FROM connection_read_model
            WHERE generation = 1 AND org_id = $1 AND connection_id = 'legacy'`,
          [org],
        )
      )[0] as { state: string | null; packed_state: Buffer | null };
    await seedLog(db, events.slice(0, 2));
    await stepAll(new ShardProjection(db, 1, shard, null, 100));
    // The row as a release before 0014 wrote it: the state as JSON, nothing packed.
    const packed = (await stored()).packed_state!;
    await db.query(
      `UPDATE connection_read_model SET state = $2::json, packed_state = NULL
        WHERE generation = 1 AND org_id = $1 AND connection_id = 'legacy'`,
      [org, unpackStateJson(packed)],
    );

    // A new projector (nothing cached) applies the next event on top of the JSON state.
    await seedLog(db, events.slice(2));
    await stepAll(new ShardProjection(db, 1, shard, null, 100));
    const expected = initialConnectionState(org, 'legacy');
    for (const e of events) applyEvent(expected, e);
    const after = await stored();
    expect(after.state).toBeNull();
    expect(unpackStateJson(after.packed_state!)).toBe(stateToJson(expected));
  });
});
