import { DataSource, QueryRunner } from 'typeorm';
import { ConnectionEvent } from '@psp/domain';
import { eventFromRow, LoggedEvent, LogPosition, OCCURRED_AT_MS, Sql } from './event-log';

/**
 * The event log read stream by stream, for a replay that folds each connection once
 * (docs/read-model.md, "Replay by stream"). A range of the log's global order, (after, through], is
 * read sorted by (org_id, connection_id) and, within a connection, in the log's order (its stream
 * order). Every statement of that reading is here.
 */

/** A stream: one connection's events. */
export interface StreamKey {
  orgId: string;
  connectionId: string;
}

/** What a fold by stream will read: the range's end, its events and their greatest occurred_at. */
export interface LogRange {
  through: LogPosition;
  events: number;
  maxOccurredAt: number | null;
}

/**
 * The range of the log after `after` that can be read now and never grows: it ends at the last
 * event written by a transaction older than every transaction still running (readLogAfter's rule),
 * so no event can later commit inside it. Null when there is none. With `bounds`, the range of one
 * projection shard's next events, at most `limit` of them (what a step of a shard that is behind
 * reads: one index range of `event_log_shard_tail` and its rows' occurred_at).
 */
export async function planLogRange(
  sql: Sql,
  after: LogPosition,
  bounds?: { shard: number; limit: number },
): Promise<LogRange | null> {
  if (bounds) return planShardRange(sql, after, bounds.shard, bounds.limit);
  const tail: { tx: string; pos: string }[] = await sql.query(
    `SELECT transaction_id::text AS tx, position::text AS pos
       FROM event_log
      WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
        AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY transaction_id DESC, position DESC
      LIMIT 1`,
    [after.transactionId, after.position],
  );
  if (tail.length === 0) return null;
  const through = { transactionId: tail[0].tx, position: tail[0].pos };
  const totals: { events: string; max_occurred_at: Date | null }[] = await sql.query(
    `SELECT count(*)::text AS events, max(occurred_at) AS max_occurred_at
       FROM event_log
      WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
        AND (transaction_id, position) <= ($3::xid8, $4::bigint)`,
    [after.transactionId, after.position, through.transactionId, through.position],
  );
  return {
    through,
    events: Number(totals[0].events),
    maxOccurredAt: totals[0].max_occurred_at === null ? null : totals[0].max_occurred_at.getTime(),
  };
}

async function planShardRange(sql: Sql, after: LogPosition, shard: number, limit: number): Promise<LogRange | null> {
  const rows: { events: number; last_tx: string | null; last_position: string | null; latest: Date | null }[] =
    await sql.query(
      `WITH ahead AS MATERIALIZED (
         SELECT e.transaction_id AS tx, e.position AS pos, e.occurred_at
           FROM event_log e
          WHERE (e.transaction_id, e.position) > ($1::xid8, $2::bigint)
            AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
            AND psp_shard(e.org_id) = $4
          ORDER BY psp_shard(e.org_id), e.transaction_id, e.position
          LIMIT $3)
       SELECT (SELECT count(*) FROM ahead)::int AS events, (SELECT max(occurred_at) FROM ahead) AS latest,
              l.tx::text AS last_tx, l.pos::text AS last_position
         FROM (SELECT tx, pos FROM ahead ORDER BY tx DESC, pos DESC LIMIT 1) l`,
      [after.transactionId, after.position, limit, shard],
    );
  const r = rows[0];
  if (!r || r.events === 0 || r.last_tx === null || r.last_position === null) return null;
  return {
    through: { transactionId: r.last_tx, position: r.last_position },
    events: r.events,
    maxOccurredAt: r.latest === null ? null : r.latest.getTime(),
  };
}

/** The range of streams a cursor reads: (after, through] of the log, streams after `afterStream`, one shard's or all. */
export interface StreamRange {
  after: LogPosition;
  through: LogPosition;
  afterStream: StreamKey | null;
  shard?: number;
}

/**
 * Declares `cursor` over the events of `range` sorted by stream, each stream's in its log order (in
 * the caller's transaction). With `positions`, each row also has its place in the log (`tx`,
 * `position`) and its trace context.
 */
async function declareByStream(sql: Sql, cursor: string, range: StreamRange, positions: boolean): Promise<void> {
  const after = range.afterStream ?? { orgId: '', connectionId: '' };
  // ('', '') sorts before every stream: org and connection ids are never empty (CONTRACT 2.2).
  await sql.query(
    `DECLARE ${cursor} NO SCROLL CURSOR FOR
     SELECT ${positions ? 'e.transaction_id::text AS tx, e.position, e.trace_context, ' : ''}e.event_id, e.org_id,
            e.connection_id, e.type, ${OCCURRED_AT_MS}, e.data
       FROM event_log e
      WHERE (e.transaction_id, e.position) > ($1::xid8, $2::bigint)
        AND (e.transaction_id, e.position) <= ($3::xid8, $4::bigint)
        AND (e.org_id, e.connection_id) > ($5::text, $6::text)
        ${range.shard === undefined ? '' : 'AND psp_shard(e.org_id) = $7'}
      ORDER BY e.org_id, e.connection_id, e.transaction_id, e.position`,
    [
      range.after.transactionId,
      range.after.position,
      range.through.transactionId,
      range.through.position,
      after.orgId,
      after.connectionId,
      ...(range.shard === undefined ? [] : [range.shard]),
    ],
  );
}

/**
 * A shard's events of a range planned in the same transaction (`planLogRange` with its bounds), by
 * stream, read through a cursor of the caller's transaction in chunks: what a step of a shard that is
 * behind folds connection by connection, holding one chunk at a time whatever the range's size. The
 * range's end was planned in the same transaction, so it holds exactly the events it counted. Closed
 * with the transaction, or by `close`.
 */
export class LogRangeByConnection {
  private static opened = 0;
  private readonly cursor = `log_by_connection_${++LogRangeByConnection.opened}`;
  private done = false;

  private constructor(private readonly sql: Sql) {}

  static async open(sql: Sql, after: LogPosition, through: LogPosition, shard: number): Promise<LogRangeByConnection> {
    const range = new LogRangeByConnection(sql);
    await declareByStream(sql, range.cursor, { after, through, afterStream: null, shard }, true);
    return range;
  }

  /** The next up to `count` events (none once the range is read). */
  async next(count: number): Promise<LoggedEvent[]> {
    if (this.done) return [];
    const rows: (Parameters<typeof eventFromRow>[0] & {
      tx: string;
      position: string;
      trace_context: string | null;
    })[] = await this.sql.query(`FETCH FORWARD ${Math.max(1, Math.floor(count))} FROM ${this.cursor}`);
    if (rows.length < count) this.done = true;
    return rows.map((r) => ({
      at: { transactionId: r.tx, position: String(r.position) },
      event: eventFromRow(r),
      traceContext: r.trace_context,
    }));
  }

  async close(): Promise<void> {
    await this.sql.query(`CLOSE ${this.cursor}`);
  }
}

/**
 * The events of (after, through] of streams after `afterStream` (all when null), sorted by stream,
 * each stream's in its log order, in pages of `pageSize` events; with `shard`, only the streams of
 * that projection shard's orgs (`psp_shard(org_id)`, read through the log's shard index). One
 * read-only REPEATABLE READ transaction with a cursor on its own connection: it takes no transaction
 * id, so it never holds back the xmin that live projectors read the log below; the database sorts
 * (`sortMemory` as its work_mem; beyond that it sorts on disk).
 */
export async function* readLogByStream(
  db: DataSource,
  range: StreamRange,
  /** `connection`: a connection of the caller's to read on (kept open; by default one of the pool's). */
  options: { pageSize: number; sortMemory?: string; connection?: QueryRunner },
): AsyncGenerator<ConnectionEvent[]> {
  const runner = options.connection ?? db.createQueryRunner('slave');
  if (!options.connection) await runner.connect();
  let open = false;
  try {
    await runner.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`);
    open = true;
    await runner.query(`SELECT set_config('work_mem', $1, true)`, [options.sortMemory ?? '256MB']);
    await declareByStream(runner, 'log_by_stream', range, false);
    for (;;) {
      const rows: Parameters<typeof eventFromRow>[0][] = await runner.query(
        `FETCH FORWARD ${Math.max(1, Math.floor(options.pageSize))} FROM log_by_stream`,
      );
      if (rows.length === 0) break;
      yield rows.map(eventFromRow);
    }
    await runner.query(`COMMIT`);
    open = false;
  } finally {
    if (open) await runner.query(`ROLLBACK`).catch(() => undefined);
    if (!options.connection) await runner.release();
  }
}
