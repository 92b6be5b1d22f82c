import { PROJECTION_SHARDS } from '@psp/domain';
import { LOG_START, LogPosition, Sql } from '@psp/storage';
import { raiseGenerationStreamTime } from './generations';

/**
 * The checkpoints of a generation's projection shards (table projection_shard; docs/read-model.md,
 * "Sharded projection"). A shard without a row stands at its generation's base checkpoint (the
 * columns of projection_generation: where a replay's fold ended, or the log's start), with no events
 * of its own applied. The generation's stream time (projection_generation.stream_time, what the API
 * serves) is the greatest of its shards': each shard's step raises it in the step's transaction.
 * Every statement about shard checkpoints is here.
 */

export type GenerationStatus = 'building' | 'live' | 'retired';

/** Where one shard of a generation stands. */
export interface ShardCheckpoint {
  at: LogPosition;
  /** The generation's stream time when read (the greatest of all its shards'). */
  streamTime: number | null;
  /** Events this shard applied beyond the generation's base. */
  eventsApplied: number;
  status: GenerationStatus;
}

function position(tx: string, pos: string): LogPosition {
  return tx === '0' && pos === '0' ? LOG_START : { transactionId: tx, position: pos };
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

export async function readShardCheckpoint(sql: Sql, generation: number, shard: number): Promise<ShardCheckpoint> {
  const rows: { tx: string; pos: string; stream_time: Date | null; events: string; status: GenerationStatus }[] =
    await sql.query(
      `SELECT coalesce(s.checkpoint_transaction_id, g.checkpoint_transaction_id)::text AS tx,
              coalesce(s.checkpoint_position, g.checkpoint_position)::text AS pos,
              g.stream_time, coalesce(s.events_applied, 0)::text AS events, g.status
         FROM projection_generation g
         LEFT JOIN projection_shard s ON s.generation = g.generation AND s.shard = $2
        WHERE g.generation = $1`,
      [generation, shard],
    );
  if (rows.length === 0) throw new Error(`read-model generation ${generation} does not exist`);
  const r = rows[0];
  return {
    at: position(r.tx, r.pos),
    streamTime: r.stream_time === null ? null : r.stream_time.getTime(),
    eventsApplied: Number(r.events),
    status: r.status,
  };
}

/**
 * Moves a shard's checkpoint (in the transaction that wrote what it reaches) and raises the
 * generation's stream time to `streamTime` when it is later (a short row lock, taken last).
 */
export async function writeShardCheckpoint(
  sql: Sql,
  generation: number,
  shard: number,
  checkpoint: { at: LogPosition; streamTime: number | null; eventsApplied: number },
): Promise<void> {
  await sql.query(
    `INSERT INTO projection_shard (generation, shard, checkpoint_transaction_id, checkpoint_position, stream_time, events_applied, updated_at)
     VALUES ($1, $2, $3::xid8, $4, $5, $6, clock_timestamp())
     ON CONFLICT (generation, shard) DO UPDATE SET
       checkpoint_transaction_id = EXCLUDED.checkpoint_transaction_id, checkpoint_position = EXCLUDED.checkpoint_position,
       stream_time = EXCLUDED.stream_time, events_applied = EXCLUDED.events_applied, updated_at = EXCLUDED.updated_at`,
    [
      generation,
      shard,
      checkpoint.at.transactionId,
      checkpoint.at.position,
      iso(checkpoint.streamTime),
      checkpoint.eventsApplied,
    ],
  );
  if (checkpoint.streamTime !== null) await raiseGenerationStreamTime(sql, generation, checkpoint.streamTime);
}

/** Whether any shard of the generation has moved past the generation's base checkpoint. */
export async function hasShardProgress(sql: Sql, generation: number): Promise<boolean> {
  const rows: unknown[] = await sql.query(`SELECT 1 FROM projection_shard WHERE generation = $1 LIMIT 1`, [generation]);
  return rows.length > 0;
}

/** One shard of a generation as ops see it: where it stands and what is left for it in the log. */
export interface ShardLag {
  shard: number;
  at: LogPosition;
  /** The stream time of the shard's latest step (null before its first). */
  streamTime: number | null;
  eventsApplied: number;
  /** Events of its orgs after its checkpoint, counted up to the count's limit (then: at least this many). */
  behindEvents: number;
  /** The count stopped at its limit: more events than `behindEvents` are waiting. */
  behindAtLeast: boolean;
  /** Age of the oldest event it has not applied (0 when none). */
  behindSeconds: number;
}

/**
 * How far generationLag counts each shard's events behind by default: a count costs one index entry
 * per event (event_log_shard_tail), so an unbounded one costs what the backlog holds: at 1,100,000
 * events behind, 3.2 s of PostgreSQL per call, a third of the projector's wall time while it caught
 * up (its report every 10 s; /readyz and /metrics too); at 10,000 per shard still ~1 s under that
 * load (each entry also reads its row for the oldest recorded_at). Bounded, a call reads at most
 * 16 × this.
 */
export const LAG_COUNT_LIMIT = 1000;

/**
 * Every shard of a generation behind the log (events of its orgs after its checkpoint): a count per
 * shard, for ops, /readyz and /metrics (not for hot paths), up to `countLimit` events per shard
 * (LAG_COUNT_LIMIT; Infinity counts all: `ops lag --exact`). Totals: the sum of events (`atLeast`
 * when a shard's count stopped at the limit), the oldest age.
 */
export async function generationLag(
  sql: Sql,
  generation: number,
  countLimit = LAG_COUNT_LIMIT,
): Promise<{ events: number; atLeast: boolean; seconds: number; shards: ShardLag[] }> {
  const rows: {
    shard: number;
    tx: string;
    pos: string;
    stream_time: Date | null;
    events_applied: string;
    behind: string;
    seconds: number | null;
  }[] = await sql.query(
    `SELECT s.shard, c.tx::text AS tx, c.pos::text AS pos, c.stream_time, c.events_applied::text AS events_applied,
            l.behind::text AS behind, l.seconds
       FROM generate_series(0, $2::int - 1) AS s(shard)
       CROSS JOIN LATERAL (
         SELECT coalesce(p.checkpoint_transaction_id, g.checkpoint_transaction_id) AS tx,
                coalesce(p.checkpoint_position, g.checkpoint_position) AS pos,
                p.stream_time, coalesce(p.events_applied, 0) AS events_applied
           FROM projection_generation g
           LEFT JOIN projection_shard p ON p.generation = g.generation AND p.shard = s.shard
          WHERE g.generation = $1) c
       CROSS JOIN LATERAL (
         SELECT count(*) AS behind, EXTRACT(EPOCH FROM clock_timestamp() - min(x.recorded_at))::float8 AS seconds
           FROM (SELECT e.recorded_at FROM event_log e
                  WHERE psp_shard(e.org_id) = s.shard AND (e.transaction_id, e.position) > (c.tx, c.pos)
                  ORDER BY e.transaction_id, e.position
                  LIMIT $3) x) l
      ORDER BY s.shard`,
    [generation, PROJECTION_SHARDS, Number.isFinite(countLimit) ? countLimit : null],
  );
  const shards = rows.map((r) => ({
    shard: r.shard,
    at: position(r.tx, r.pos),
    streamTime: r.stream_time === null ? null : r.stream_time.getTime(),
    eventsApplied: Number(r.events_applied),
    behindEvents: Number(r.behind),
    behindAtLeast: Number.isFinite(countLimit) && Number(r.behind) >= countLimit,
    behindSeconds: r.seconds === null ? 0 : Math.max(0, r.seconds),
  }));
  return {
    events: shards.reduce((n, s) => n + s.behindEvents, 0),
    atLeast: shards.some((s) => s.behindAtLeast),
    seconds: shards.reduce((m, s) => Math.max(m, s.behindSeconds), 0),
    shards,
  };
}

/**
 * Which of `shards` have events of their orgs in the log after their checkpoint (committed below the
 * snapshot's xmin, as a step reads them): one statement, an index probe per shard, so that a projector
 * whose shards have all caught up polls with one query instead of a transaction per shard.
 */
export async function shardsWithEvents(sql: Sql, generation: number, shards: number[]): Promise<number[]> {
  if (shards.length === 0) return [];
  const rows: { shard: number }[] = await sql.query(
    `SELECT s.shard
       FROM unnest($2::int[]) AS s(shard)
       JOIN projection_generation g ON g.generation = $1
       LEFT JOIN projection_shard p ON p.generation = g.generation AND p.shard = s.shard
      WHERE EXISTS (
        SELECT 1 FROM event_log e
         WHERE psp_shard(e.org_id) = s.shard
           AND (e.transaction_id, e.position) >
               (coalesce(p.checkpoint_transaction_id, g.checkpoint_transaction_id),
                coalesce(p.checkpoint_position, g.checkpoint_position))
           AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()))`,
    [generation, shards],
  );
  return rows.map((r) => r.shard);
}

/**
 * The live or building generations that have not yet read past every row of the event-log table
 * `table` (a partition; its name checked by the caller), each row against its shard's checkpoint
 * (a log compaction must not fold away what a generation has still to project).
 */
export async function generationsBehindLogTable(sql: Sql, table: string): Promise<number[]> {
  if (!/^[a-z0-9_]+$/.test(table)) throw new Error(`not an event-log table name: ${table}`);
  const rows: { generation: number }[] = await sql.query(
    `SELECT g.generation FROM projection_generation g
      WHERE g.status IN ('live', 'building')
        AND EXISTS (SELECT 1 FROM "${table}" e
                      LEFT JOIN projection_shard s ON s.generation = g.generation AND s.shard = psp_shard(e.org_id)
                     WHERE (e.transaction_id, e.position) >
                           (coalesce(s.checkpoint_transaction_id, g.checkpoint_transaction_id),
                            coalesce(s.checkpoint_position, g.checkpoint_position)))
      ORDER BY g.generation`,
  );
  return rows.map((r) => r.generation);
}
