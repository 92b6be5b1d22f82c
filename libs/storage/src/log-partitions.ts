import { DataSource } from 'typeorm';
import { Sql } from './event-log';

/**
 * The event log's partitions (docs/event-log.md, "Partitions, roll-ups and archives"): ranges of
 * `recorded_at` (the time of the append) of whole UTC days, created ahead of time, listed with what
 * they hold. Every statement about partitions is here.
 */

/** How the log is cut: partition width and how far ahead partitions exist (LOG_PARTITION_DAYS, LOG_PARTITIONS_AHEAD_DAYS). */
export interface PartitionLayout {
  widthDays: number;
  aheadDays: number;
}

export const DEFAULT_PARTITION_LAYOUT: PartitionLayout = { widthDays: 1, aheadDays: 3 };

/** How long a partition DDL statement may wait for its lock before giving up (it is retried later). */
const DDL_LOCK_TIMEOUT = '5s';

/**
 * Creates the partitions that cover [`from`, `to`] (epoch ms; now and now + aheadDays by default, on
 * PostgreSQL's clock) that do not exist yet; returns how many it created. Safe to call from several
 * processes at once (one creates, the others find them).
 */
export async function ensureLogPartitions(
  db: DataSource,
  layout: PartitionLayout,
  range: { from?: number; to?: number } = {},
): Promise<number> {
  return db.transaction(async (tx) => {
    await tx.query(`SET LOCAL lock_timeout = '${DDL_LOCK_TIMEOUT}'`);
    const rows: { n: number }[] = await tx.query(
      `SELECT event_log_create_partitions(
                COALESCE($1::timestamptz, clock_timestamp()),
                COALESCE($2::timestamptz, clock_timestamp() + make_interval(days => $3::int)),
                $4::int) AS n`,
      [
        range.from === undefined ? null : new Date(range.from).toISOString(),
        range.to === undefined ? null : new Date(range.to).toISOString(),
        layout.aheadDays,
        layout.widthDays,
      ],
    );
    return rows[0].n;
  });
}

/**
 * True when an append failed because no partition covers its `recorded_at` (the writer did not
 * create them ahead in time). That is the infrastructure's fault, not the message's: the writer
 * creates the partition and appends again.
 */
export function isMissingPartition(error: unknown): boolean {
  const e = error as { code?: string; message?: string; driverError?: { code?: string; message?: string } };
  const code = e?.code ?? e?.driverError?.code;
  const message = e?.driverError?.message ?? e?.message ?? '';
  return code === '23514' && /^no partition of relation "event_log" found for row/.test(message);
}

/**
 * open: rows may still arrive; closed: complete (its range has passed and no transaction that could
 * write there is running); compacted: folded into the summaries and detached from the log; archived:
 * written to an archive file (and compacted or not).
 */
export type PartitionState = 'open' | 'closed' | 'compacted' | 'archived';

export interface LogPartition {
  name: string;
  /** Its range of recorded_at: [from, to), epoch ms. */
  from: number;
  to: number;
  state: PartitionState;
  /** Complete: its range has passed and nothing can be added to it any more (whatever its state). */
  closed: boolean;
  /** attached: part of event_log; detached: a table of its own (compacted, not yet dropped); dropped: gone. */
  table: 'attached' | 'detached' | 'dropped';
  /** Rows it holds (a full count), or held when it was compacted or archived; null when unknown. */
  rows: number | null;
  /** Bytes on disk (table, indexes, TOAST); 0 once dropped. */
  bytes: number;
  /** The archive file it was written to (relative to the archive directory), if any. */
  archiveFile: string | null;
}

interface PartitionRow {
  name: string;
  range_from: Date;
  range_to: Date;
  attached: boolean;
  exists: boolean;
  bytes: string | null;
  closed: boolean;
  compacted: boolean;
  archived: boolean;
  compacted_rows: string | null;
  archived_rows: string | null;
  archive_file: string | null;
}

/**
 * Whether a partition is closed (complete): its range has passed on PostgreSQL's clock, and no
 * transaction of this database that could have written into it is still running. A row's
 * recorded_at is taken when it is inserted, after its transaction started, so only a transaction
 * that started before the range's end (and holds a transaction id: it wrote something) can still
 * commit rows there; a prepared transaction wrote its rows before it was prepared.
 */
const CLOSED = `(p.range_to <= clock_timestamp()
   AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                    WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL
                      AND a.pid <> pg_backend_pid() AND a.xact_start < p.range_to)
   AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts x
                    WHERE x.database = current_database() AND x.prepared >= p.range_from))`;

/** Every partition ever created, oldest first, without row counts (see countPartitionRows). */
export async function readLogPartitions(sql: Sql): Promise<LogPartition[]> {
  const rows: PartitionRow[] = await sql.query(
    `SELECT p.name, p.range_from, p.range_to,
            to_regclass(quote_ident(p.name)) IS NOT NULL AS exists,
            EXISTS (SELECT 1 FROM pg_inherits i
                     WHERE i.inhrelid = to_regclass(quote_ident(p.name)) AND i.inhparent = 'event_log'::regclass) AS attached,
            pg_total_relation_size(to_regclass(quote_ident(p.name)))::text AS bytes,
            ${CLOSED} AS closed,
            p.compacted_at IS NOT NULL AS compacted, p.archived_at IS NOT NULL AS archived,
            p.compacted_rows::text AS compacted_rows, p.archived_rows::text AS archived_rows, p.archive_file
       FROM event_log_partition p
      ORDER BY p.range_from`,
  );
  return rows.map((r) => {
    const known = r.compacted_rows ?? r.archived_rows;
    return {
      name: r.name,
      from: r.range_from.getTime(),
      to: r.range_to.getTime(),
      state: r.archived ? 'archived' : r.compacted ? 'compacted' : r.attached && r.closed ? 'closed' : 'open',
      closed: r.closed,
      table: r.attached ? 'attached' : r.exists ? 'detached' : 'dropped',
      rows: r.exists ? null : known === null ? null : Number(known),
      bytes: r.bytes === null ? 0 : Number(r.bytes),
      archiveFile: r.archive_file,
    };
  });
}

/** The rows of one partition's table (a full count). */
export async function countPartitionRows(sql: Sql, name: string): Promise<number> {
  assertPartitionName(name);
  const rows: { n: string }[] = await sql.query(`SELECT count(*)::text AS n FROM "${name}"`);
  return Number(rows[0].n);
}

/** Partition names are ours (`event_log_pYYYYMMDD`); anything else is refused before it reaches SQL. */
export function assertPartitionName(name: string): void {
  if (!/^event_log_p\d{8}$/.test(name)) throw new Error(`not an event-log partition name: ${JSON.stringify(name)}`);
}

/** The log's side tables: every event id ever logged, and each stream's version. */
export interface LogSideTables {
  ids: { rows: number; bytes: number };
  streams: { rows: number; bytes: number };
}

/** Sizes of the side tables; rows from the planner's estimate when there is one, else counted. */
export async function readLogSideTables(sql: Sql): Promise<LogSideTables> {
  const rows: { name: string; estimate: number; bytes: string }[] = await sql.query(
    `SELECT c.relname AS name, c.reltuples::float8 AS estimate, pg_total_relation_size(c.oid)::text AS bytes
       FROM pg_class c WHERE c.oid IN ('event_log_ids'::regclass, 'event_log_streams'::regclass)`,
  );
  const side = async (name: string): Promise<{ rows: number; bytes: number }> => {
    const r = rows.find((x) => x.name === name)!;
    const rowCount =
      r.estimate >= 0
        ? Math.round(r.estimate)
        : Number((await sql.query(`SELECT count(*)::text AS n FROM ${name}`))[0].n);
    return { rows: rowCount, bytes: Number(r.bytes) };
  };
  return { ids: await side('event_log_ids'), streams: await side('event_log_streams') };
}
