import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import {
  claimShardFold,
  createBuildingGeneration,
  HeldLock,
  Projection,
  readGenerationFold,
  readShardFolds,
  replay,
} from '@psp/read-model';
import { advanceStreamTime } from '@psp/domain';
import { createDataSource, ensureDatabase, LOG_START, migrate, MIGRATIONS, planLogRange } from '@psp/storage';
import { dropIsolated, eventually, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { mixedEvents, projectAll, seedLog } from '../support/seed';

/**
 * A replay folds the 16 shards in parallel (docs/read-model.md, "Replay by stream"): several tasks of
 * one process, or several `ops replay` processes (here: DataSources of their own), each folding the
 * shards it claims; the generation is the same as one replay folding alone.
 */
describe('replay folds shards in parallel', () => {
  let settings: Settings;
  let db: DataSource;
  const EVENTS = 12000;

  /** Every row of a generation, as stored (state and rendered document included). */
  async function rowsOf(generation: number, database = db): Promise<string[]> {
    const rows: { org_id: string; connection_id: string; listed: boolean; state: string; document: string | null }[] =
      await database.query(
        `SELECT org_id, connection_id, listed, coalesce(encode(packed_state, 'base64'), state::text) AS state, document FROM connection_read_model
          WHERE generation = $1 ORDER BY org_id, connection_id`,
        [generation],
      );
    return rows.map((r) => `${r.org_id}/${r.connection_id} ${r.listed} ${r.state} ${r.document}`);
  }

  async function eventsApplied(generation: number): Promise<number> {
    const [{ n }] = await db.query(`SELECT events_applied::int AS n FROM projection_progress WHERE generation = $1`, [
      generation,
    ]);
    return n as number;
  }

  beforeAll(async () => {
    settings = isolatedSettings('replay-shards');
    db = await openDatabase(settings);
    await seedLog(
      db,
      mixedEvents({ orgs: 40, connections: 5, events: EVENTS, seed: 7, start: Date.UTC(2026, 10, 24, 8, 0, 0) }),
    );
    await projectAll(new Projection(db, 1, null, 1000));
  });

  afterAll(async () => {
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('two replays share the shards of one generation and build what one replay alone builds', async () => {
    // Reference: one replay, one shard at a time.
    const alone = await replay(db, null, {
      batchSize: 500,
      parallel: 1,
      shouldStop: () => false,
      log: () => undefined,
    });
    expect(alone).toMatchObject({ switched: true, eventsApplied: EVENTS });
    const reference = await rowsOf(alone.generation);
    expect(reference.length).toBe(200);

    // Two "processes": the second starts once the first has planned its fold, and takes the shards left.
    const second = await createDataSource(settings.databaseUrl, { poolSize: 4 }).initialize();
    try {
      const linesA: string[] = [];
      const linesB: string[] = [];
      let startB!: () => void;
      const bMayStart = new Promise<void>((resolve) => (startB = resolve));
      const a = replay(db, null, {
        batchSize: 100,
        parallel: 1,
        shouldStop: () => false,
        log: (l) => {
          linesA.push(l);
          if (l.startsWith('folding')) startB();
        },
      });
      await bMayStart;
      const b = replay(second, null, {
        batchSize: 100,
        parallel: 2,
        shouldStop: () => false,
        log: (l) => linesB.push(l),
      });
      const [outA, outB] = await Promise.all([a, b]);
      // The same generation, folded by both (each wrote some of it), switched by one of them.
      expect(outB.generation).toBe(outA.generation);
      expect(outB.resumed).toBe(true);
      const folded = (lines: string[]) => Number(/folded (\d+) events/.exec(lines.join('\n'))?.[1] ?? 0);
      expect(folded(linesA)).toBeGreaterThan(0);
      expect(folded(linesB)).toBeGreaterThan(0);
      expect(folded(linesA) + folded(linesB)).toBe(EVENTS);
      expect([linesA, linesB].filter((l) => l.join('\n').includes('was switched by another replay')).length).toBe(1);
      expect(outA.switched && outB.switched).toBe(true);
      // Each event applied once; every row as the lone replay wrote it; nothing of the fold left.
      expect(await eventsApplied(outA.generation)).toBe(EVENTS);
      expect(await rowsOf(outA.generation)).toEqual(reference);
      expect(await readGenerationFold(db, outA.generation)).toBeNull();
      expect(await readShardFolds(db, outA.generation)).toEqual([]);
    } finally {
      await second.destroy();
    }
  });

  it('leaves a shard another fold holds to it, and finishes once that shard is folded', async () => {
    const reference = await rowsOf(
      (await db.query(`SELECT max(generation)::int AS g FROM projection_generation`))[0].g,
    );
    // Another "process" holds the folds of shards 0-7 of the next generation.
    const other = await createDataSource(settings.databaseUrl, { poolSize: 10 }).initialize();
    const held: HeldLock[] = [];
    try {
      const next = (await db.query(`SELECT max(generation)::int + 1 AS g FROM projection_generation`))[0].g as number;
      for (let shard = 0; shard < 8; shard++) held.push((await claimShardFold(other, next, shard))!);
      expect(held.every((h) => h !== null)).toBe(true);
      const running = replay(db, null, { batchSize: 500, parallel: 3, shouldStop: () => false, log: () => undefined });
      // Shards 8-15 get folded; 0-7 are not touched while held.
      const folds = await eventually(
        () => readShardFolds(db, next),
        (f) => f.length === 16 && f.filter((s) => s.finished).length === 8,
        30000,
        'shards 8-15 folded',
      );
      expect(folds.filter((s) => s.finished).map((s) => s.shard)).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
      expect(folds.filter((s) => s.shard < 8).every((s) => s.after === null)).toBe(true);
      // Still waiting for them a while later.
      await new Promise((r) => setTimeout(r, 600));
      expect((await readShardFolds(db, next)).filter((s) => s.finished).length).toBe(8);
      // Once let go, the replay folds them and switches.
      for (const h of held.splice(0)) await h.release();
      const done = await running;
      expect(done).toMatchObject({ generation: next, switched: true, eventsApplied: EVENTS });
      expect(await rowsOf(next)).toEqual(reference);
    } finally {
      for (const h of held) await h.release();
      await other.destroy();
    }
  });

  it('a fold begun before the shards folded apart (migration 0013) resumes shard by shard', async () => {
    const url = new URL(settings.databaseUrl);
    url.pathname = `${url.pathname}_pre13`;
    await ensureDatabase(url.toString());
    const before = new DataSource({
      type: 'postgres',
      url: url.toString(),
      // Up to 0012 (the later ones run with the others below).
      migrations: MIGRATIONS.slice(
        0,
        MIGRATIONS.findIndex((m) => m.name === 'ShardFolds1732400000013'),
      ),
      migrationsTableName: 'schema_migration',
      logging: false,
    });
    await before.initialize();
    let after: DataSource | null = null;
    try {
      await before.runMigrations({ transaction: 'each' });
      await seedLog(
        before,
        mixedEvents({ orgs: 40, connections: 5, events: EVENTS, seed: 7, start: Date.UTC(2026, 10, 24, 8, 0, 0) }),
      );
      // A replay had planned its fold (one position for the whole generation, as before 0013)...
      const building = await createBuildingGeneration(before);
      const range = (await planLogRange(before, LOG_START))!;
      await before.query(
        `UPDATE projection_generation SET fold_through_transaction_id = $2::xid8, fold_through_position = $3,
                fold_stream_time = $4, fold_events = $5 WHERE generation = $1`,
        [
          building,
          range.through.transactionId,
          range.through.position,
          new Date(advanceStreamTime(null, range.maxOccurredAt!)!).toISOString(),
          range.events,
        ],
      );
      // ...and another (retired, to look at only) had written streams up to org_3/conn_2.
      await before.query(
        `INSERT INTO projection_generation (generation, status, fold_through_transaction_id, fold_through_position,
                                            fold_events, fold_after_org, fold_after_connection)
         VALUES (90, 'retired', '1', 1, 0, 'org_3', 'conn_2')`,
      );
      await before.destroy();

      await migrate(url.toString());
      after = await createDataSource(url.toString(), { poolSize: 6 }).initialize();
      const copied = await readShardFolds(after, 90);
      expect(copied).toHaveLength(16);
      expect(copied.every((f) => f.after?.orgId === 'org_3' && f.after.connectionId === 'conn_2' && !f.finished)).toBe(
        true,
      );
      await after.query(`DELETE FROM projection_generation WHERE generation = 90`);
      expect((await readShardFolds(after, building)).map((f) => f.after)).toEqual(Array(16).fill(null));
      // The live generation projected meanwhile (this code writes the columns of the later migrations).
      await projectAll(new Projection(after, 1, null, 1000));

      const done = await replay(after, null, { batchSize: 500, shouldStop: () => false, log: () => undefined });
      expect(done).toMatchObject({ generation: building, resumed: true, switched: true, eventsApplied: EVENTS });
      // As a replay begun after the migration builds it (the log's event ids are this database's own).
      const fresh = await replay(after, null, { batchSize: 500, shouldStop: () => false, log: () => undefined });
      expect(fresh).toMatchObject({ resumed: false, switched: true, eventsApplied: EVENTS });
      expect(await rowsOf(building, after)).toEqual(await rowsOf(fresh.generation, after));
    } finally {
      if (before.isInitialized) await before.destroy();
      await after?.destroy();
      const admin = new DataSource({ type: 'postgres', url: new URL('/postgres', url).toString(), logging: false });
      await admin.initialize();
      await admin.query(`DROP DATABASE IF EXISTS "${url.pathname.slice(1)}" WITH (FORCE)`);
      await admin.destroy();
    }
  });
});
