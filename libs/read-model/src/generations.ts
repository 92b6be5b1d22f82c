import { DataSource } from 'typeorm';
import { LOG_START, LogPosition, Sql, StreamKey } from '@psp/storage';
import { allShards } from '@psp/domain';
import { continueHealthChains } from './connection-rows';
import { lockShardStep } from './shard-lock';

/**
 * The read model's generations (table projection_generation): one `live` generation that the API
 * serves, at most one `building` beside it during a replay, and `retired` ones kept briefly after a
 * switch. Every statement about generations is here.
 */

/** The generation being built by an interrupted replay, if any (the newest). */
export async function buildingGeneration(sql: Sql): Promise<number | null> {
  const rows: { generation: number }[] = await sql.query(
    `SELECT generation FROM projection_generation WHERE status = 'building' ORDER BY generation DESC LIMIT 1`,
  );
  return rows.length > 0 ? rows[0].generation : null;
}

/** Creates a new, empty generation in state `building`; returns its number. */
export async function createBuildingGeneration(sql: Sql): Promise<number> {
  const rows: { generation: number }[] = await sql.query(
    `INSERT INTO projection_generation (generation, status) SELECT max(generation) + 1, 'building' FROM projection_generation RETURNING generation`,
  );
  return rows[0].generation;
}

/**
 * Makes `generation` the live one and retires the one before it, in one transaction. It waits for the
 * steps of the retired generation in flight (every shard's advisory lock), and the new generation continues
 * every connection's chain of health changes where the retired one left it (CONTRACT 2.5).
 */
export async function switchLiveGeneration(db: DataSource, generation: number): Promise<void> {
  await db.transaction(async (tx) => {
    const live: { generation: number }[] = await tx.query(
      `SELECT generation FROM projection_generation WHERE status = 'live'`,
    );
    const previous = live[0].generation;
    // Every shard's step lock of the retired generation: no step of it is in flight past this point.
    for (const shard of allShards()) await lockShardStep(tx, previous, shard);
    await tx.query(
      `UPDATE projection_generation SET status = 'retired', updated_at = clock_timestamp() WHERE status = 'live'`,
    );
    await tx.query(
      `UPDATE projection_generation SET status = 'live', switched_at = clock_timestamp(), updated_at = clock_timestamp() WHERE generation = $1`,
      [generation],
    );
    await continueHealthChains(tx, previous, generation);
  });
}

/** Drops the retired generations other than `keep` (their rows go with them); returns their numbers. */
export async function dropRetiredGenerations(sql: Sql, keep: number): Promise<number[]> {
  // Wrapped in a SELECT: TypeORM answers a bare DELETE … RETURNING with [rows, rowCount].
  const rows: { generation: number }[] = await sql.query(
    `WITH dropped AS (DELETE FROM projection_generation WHERE status = 'retired' AND generation <> $1 RETURNING generation)
     SELECT generation FROM dropped ORDER BY generation`,
    [keep],
  );
  return rows.map((r) => r.generation);
}

/** Every generation with its status, oldest first (for ops). */
export async function listGenerations(sql: Sql): Promise<{ generation: number; status: string }[]> {
  return sql.query(`SELECT generation, status FROM projection_generation ORDER BY generation`);
}

/**
 * A fold by stream in progress in a generation being built (docs/read-model.md, "Replay by stream"):
 * the end of the range it reads, the stream time every connection is rendered at, and the events the
 * generation holds once it ends. Each shard folds its own streams (`ShardFold`), in parallel.
 */
export interface GenerationFold {
  through: LogPosition;
  streamTime: number | null;
  events: number;
}

/** How far one shard's fold is: the last stream of the shard written (null before the first). */
export interface ShardFold {
  shard: number;
  after: StreamKey | null;
  finished: boolean;
}

export async function readGenerationFold(sql: Sql, generation: number): Promise<GenerationFold | null> {
  const rows: { tx: string | null; pos: string | null; stream_time: Date | null; events: string | null }[] =
    await sql.query(
      `SELECT fold_through_transaction_id::text AS tx, fold_through_position::text AS pos, fold_stream_time AS stream_time,
              fold_events::text AS events
         FROM projection_generation WHERE generation = $1`,
      [generation],
    );
  const r = rows[0];
  if (!r || r.tx === null || r.pos === null) return null;
  return {
    through: { transactionId: r.tx, position: r.pos },
    streamTime: r.stream_time === null ? null : r.stream_time.getTime(),
    events: Number(r.events),
  };
}

/**
 * Records the fold a building generation starts (only when none is recorded), with one fold row per
 * shard at its start, in one statement; false when one was recorded.
 */
export async function beginGenerationFold(sql: Sql, generation: number, fold: GenerationFold): Promise<boolean> {
  const rows: unknown[] = await sql.query(
    `WITH begun AS (
       UPDATE projection_generation
          SET fold_through_transaction_id = $2::xid8, fold_through_position = $3, fold_stream_time = $4, fold_events = $5,
              updated_at = clock_timestamp()
        WHERE generation = $1 AND status = 'building' AND fold_through_transaction_id IS NULL
        RETURNING generation),
     shards AS (
       INSERT INTO projection_shard_fold (generation, shard)
       SELECT b.generation, s FROM begun b, unnest($6::smallint[]) s
       RETURNING 1)
     SELECT 1 FROM begun, (SELECT count(*) FROM shards) n`,
    [
      generation,
      fold.through.transactionId,
      fold.through.position,
      fold.streamTime === null ? null : new Date(fold.streamTime).toISOString(),
      fold.events,
      allShards(),
    ],
  );
  return rows.length === 1;
}

/** Every shard's fold of the generation (none when no fold runs), by shard. */
export async function readShardFolds(sql: Sql, generation: number): Promise<ShardFold[]> {
  const rows: { shard: number; after_org: string | null; after_connection: string | null; finished: boolean }[] =
    await sql.query(
      `SELECT shard, after_org, after_connection, finished FROM projection_shard_fold WHERE generation = $1 ORDER BY shard`,
      [generation],
    );
  return rows.map((r) => ({
    shard: r.shard,
    after:
      r.after_org === null || r.after_connection === null
        ? null
        : { orgId: r.after_org, connectionId: r.after_connection },
    finished: r.finished,
  }));
}

/**
 * Moves one shard's fold past the streams just written (`applied` events; `finished` when they were
 * its last), in the transaction that wrote them; false (nothing changed) when that shard's fold is
 * not at `expected` any more: another replay moved it. The generation's count of events is raised
 * last (a short row lock shared by the shards' writes).
 */
export async function advanceShardFold(
  sql: Sql,
  generation: number,
  shard: number,
  move: { expected: StreamKey | null; after: StreamKey | null; applied: number; finished: boolean },
): Promise<boolean> {
  const after = move.after ?? move.expected;
  const rows: unknown[] = await sql.query(
    `WITH moved AS (
       UPDATE projection_shard_fold
          SET after_org = $5, after_connection = $6, finished = $7, updated_at = clock_timestamp()
        WHERE generation = $1 AND shard = $2 AND NOT finished
          AND after_org IS NOT DISTINCT FROM $3 AND after_connection IS NOT DISTINCT FROM $4
        RETURNING 1)
     SELECT 1 FROM moved`,
    [
      generation,
      shard,
      move.expected?.orgId ?? null,
      move.expected?.connectionId ?? null,
      after?.orgId ?? null,
      after?.connectionId ?? null,
      move.finished,
    ],
  );
  if (rows.length !== 1) return false;
  if (move.applied > 0)
    await sql.query(
      `UPDATE projection_generation SET events_applied = events_applied + $2, updated_at = clock_timestamp() WHERE generation = $1`,
      [generation, move.applied],
    );
  return true;
}

/**
 * Ends the fold once every shard's is finished: the generation's checkpoint moves to its end and
 * stream time, and the shards' fold rows go, in one transaction. False while a shard is still folding.
 */
export async function finishGenerationFold(sql: Sql, generation: number): Promise<boolean> {
  const rows: unknown[] = await sql.query(
    `WITH finished AS (
       UPDATE projection_generation
          SET checkpoint_transaction_id = fold_through_transaction_id, checkpoint_position = fold_through_position,
              stream_time = fold_stream_time,
              fold_through_transaction_id = NULL, fold_through_position = NULL, fold_stream_time = NULL, fold_events = NULL,
              updated_at = clock_timestamp()
        WHERE generation = $1 AND fold_through_transaction_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM projection_shard_fold WHERE generation = $1 AND NOT finished)
        RETURNING generation),
     gone AS (DELETE FROM projection_shard_fold f USING finished WHERE f.generation = finished.generation RETURNING 1)
     SELECT 1 FROM finished, (SELECT count(*) FROM gone) n`,
    [generation],
  );
  return rows.length === 1;
}

export interface Checkpoint {
  at: LogPosition;
  streamTime: number | null;
  eventsApplied: number;
  status: 'building' | 'live' | 'retired';
}

/**
 * A generation as a whole: its base checkpoint (where a replay's fold ended, or the log's start: every
 * shard without a row of its own stands there), its stream time (the greatest of its shards'), the
 * events it holds (the base's and every shard's since) and its status. How far each shard is behind:
 * generationLag (shard-checkpoints.ts).
 */
export async function readCheckpoint(sql: Sql, generation: number): Promise<Checkpoint> {
  const rows: {
    tx: string;
    pos: string;
    stream_time: Date | null;
    events_applied: string;
    status: Checkpoint['status'];
  }[] = await sql.query(
    `SELECT g.checkpoint_transaction_id::text AS tx, g.checkpoint_position::text AS pos, g.stream_time,
            (g.events_applied + coalesce((SELECT sum(s.events_applied) FROM projection_shard s WHERE s.generation = g.generation), 0))::text AS events_applied,
            g.status
       FROM projection_generation g WHERE g.generation = $1`,
    [generation],
  );
  if (rows.length === 0) throw new Error(`read-model generation ${generation} does not exist`);
  const r = rows[0];
  return {
    at: r.tx === '0' && r.pos === '0' ? LOG_START : { transactionId: r.tx, position: r.pos },
    streamTime: r.stream_time === null ? null : r.stream_time.getTime(),
    eventsApplied: Number(r.events_applied),
    status: r.status,
  };
}

/** The generation of the read model that the API serves. */
export async function liveGeneration(sql: Sql): Promise<number> {
  const rows: { generation: number }[] = await sql.query(
    `SELECT generation FROM projection_generation WHERE status = 'live'`,
  );
  if (rows.length === 0) throw new Error('no live read-model generation (migrations not run?)');
  return rows[0].generation;
}

/** The generation the API serves, and its stream time (epoch ms; null before any event). */
export async function liveReadModel(sql: Sql): Promise<{ generation: number; streamTime: number | null }> {
  const rows: { generation: number; stream_time: Date | null }[] = await sql.query(
    `SELECT generation, stream_time FROM projection_generation WHERE status = 'live'`,
  );
  if (rows.length === 0) throw new Error('no live read-model generation (migrations not run?)');
  return { generation: rows[0].generation, streamTime: rows[0].stream_time?.getTime() ?? null };
}

/**
 * Raises the generation's stream time to `streamTime` when it is later (the greatest of its shards';
 * a shard's step does it last in its transaction: a short row lock).
 */
export async function raiseGenerationStreamTime(sql: Sql, generation: number, streamTime: number): Promise<void> {
  await sql.query(
    `UPDATE projection_generation SET stream_time = $2
      WHERE generation = $1 AND (stream_time IS NULL OR stream_time < $2)`,
    [generation, new Date(streamTime).toISOString()],
  );
}

/** What a generation seeded from the compaction summaries holds before any event: their stream time and events. */
export async function setGenerationSeed(
  sql: Sql,
  generation: number,
  seed: { streamTime: number | null; events: number },
): Promise<void> {
  await sql.query(
    `UPDATE projection_generation SET stream_time = $2, events_applied = $3, updated_at = clock_timestamp()
      WHERE generation = $1`,
    [generation, seed.streamTime === null ? null : new Date(seed.streamTime).toISOString(), seed.events],
  );
}
