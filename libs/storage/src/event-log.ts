import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { ConnectionEvent } from '@psp/domain';

/** Anything that runs SQL: a TypeORM DataSource, EntityManager or QueryRunner. */
export interface Sql {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  query(sql: string, parameters?: unknown[]): Promise<any>;
}

/** Where an event came from in Kafka. */
export interface EventSource {
  topic: string;
  partition: number;
  offset: string;
}

/** An event about to be appended to its connection's stream at `streamVersion`. */
export interface EventToAppend {
  event: ConnectionEvent;
  streamVersion: number;
  source: EventSource;
  /** The W3C trace context its Kafka message carried (`traceparent[ tracestate]`), if any. */
  traceContext?: string | null;
}

/** The position of an event in the log's global order: (writing transaction id, position). */
export interface LogPosition {
  transactionId: string;
  position: string;
}

export const LOG_START: LogPosition = { transactionId: '0', position: '0' };

/** An event read back from the log, with its place in the global order. */
export interface LoggedEvent {
  at: LogPosition;
  event: ConnectionEvent;
  /** The W3C trace context stored with it (null: its message carried none). */
  traceContext?: string | null;
}

interface EventRow {
  event_id: string;
  org_id: string;
  connection_id: string;
  type: ConnectionEvent['type'];
  /** A timestamp, or epoch milliseconds where the statement selects OCCURRED_AT_MS (no date parsing per row). */
  occurred_at: Date | number;
  data: ConnectionEvent['data'];
}

/**
 * `occurred_at` as epoch milliseconds, for the statements that read many events: pg would parse each
 * timestamp's text into a Date (postgres-date, 4.5% of a replay's CPU). Exact: stored instants have
 * millisecond precision (they are written from `toISOString()`), and float8 holds every such integer.
 */
export const OCCURRED_AT_MS = `(extract(epoch FROM e.occurred_at) * 1000)::float8 AS occurred_at`;

export function eventFromRow(row: EventRow): ConnectionEvent {
  return {
    eventId: row.event_id,
    type: row.type,
    orgId: row.org_id,
    connectionId: row.connection_id,
    occurredAt: typeof row.occurred_at === 'number' ? row.occurred_at : row.occurred_at.getTime(),
    data: row.data,
  } as ConnectionEvent;
}

/**
 * The ids among `eventIds` that the log already holds, or ever held (one probe each of
 * `event_log_ids`, which keeps every logged id also after its partition was compacted or dropped).
 */
export async function findLoggedEventIds(sql: Sql, eventIds: string[]): Promise<Set<string>> {
  if (eventIds.length === 0) return new Set();
  const rows: { event_id: string }[] = await sql.query(
    `SELECT e.event_id FROM unnest($1::text[]) AS k(event_id) JOIN event_log_ids e ON e.event_id = k.event_id`,
    [eventIds],
  );
  return new Set(rows.map((r) => r.event_id));
}

/**
 * Appends events in one statement. The append's trigger makes it fail (SQLSTATE 23505) when an
 * event_id was ever logged (constraint `event_log_event_id`) or a stream does not continue exactly
 * from its current version (`event_log_stream_version`): the caller retries with fresh versions.
 */
export async function appendEvents(sql: Sql, events: EventToAppend[]): Promise<void> {
  if (events.length === 0) return;
  const cols: unknown[][] = [[], [], [], [], [], [], [], [], [], [], []];
  for (const { event, streamVersion, source, traceContext } of events) {
    cols[0].push(event.eventId);
    cols[1].push(event.orgId);
    cols[2].push(event.connectionId);
    cols[3].push(streamVersion);
    cols[4].push(event.type);
    cols[5].push(new Date(event.occurredAt).toISOString());
    cols[6].push(JSON.stringify(event.data));
    cols[7].push(source.topic);
    cols[8].push(source.partition);
    cols[9].push(source.offset);
    cols[10].push(traceContext ?? null);
  }
  await sql.query(
    `INSERT INTO event_log (event_id, org_id, connection_id, stream_version, type, occurred_at, data,
                            source_topic, source_partition, source_offset, trace_context)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::timestamptz[],
                          $7::json[], $8::text[], $9::int[], $10::bigint[], $11::text[])`,
    cols,
  );
}

/** A pg client, as a transaction's TypeORM QueryRunner holds it (COPY needs one connection). */
export interface CopyClient {
  query<T>(stream: T): T;
}

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/**
 * A field of COPY's text format. Backslash, tab, newline and carriage return are escaped; every other
 * character stands for itself. Since a backslash in the text is doubled, a text can never be read as
 * NULL (`\N`) or as the end-of-data marker (`\.`); an empty text is an empty string.
 */
function copyField(text: string): string {
  return COPY_SPECIAL.test(text) ? text.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c]) : text;
}

/** Years 0000 to 9999, where `toISOString()` has the fixed `YYYY-MM-DDTHH:MM:SS.mmmZ` shape. */
const FOUR_DIGIT_YEARS = { from: -62_167_219_200_000, to: 253_402_300_800_000 }; // 0000-01-01, 10000-01-01
let formattedSecond = NaN;
let formattedSecondText = '';

/**
 * `new Date(ms).toISOString()`, faster for runs of instants in the same second (the common case in
 * one append): the text up to the second is kept from the previous call.
 */
function isoTimestamp(ms: number): string {
  if (!(ms >= FOUR_DIGIT_YEARS.from && ms < FOUR_DIGIT_YEARS.to)) return new Date(ms).toISOString();
  const second = Math.floor(ms / 1000);
  if (second !== formattedSecond) {
    formattedSecondText = new Date(second * 1000).toISOString().slice(0, 19);
    formattedSecond = second;
  }
  const milli = ms - second * 1000;
  return `${formattedSecondText}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

/** Rows per chunk of the COPY stream: PostgreSQL inserts one chunk while the next is being built. */
const COPY_CHUNK_ROWS = 1000;

/**
 * The same append as `appendEvents`, with COPY (text format): one stream of rows instead of one
 * statement's parameter arrays (faster to build and to insert). The rows are built and sent in chunks
 * as the iterable yields them, so PostgreSQL works on the first ones while the rest are built.
 * `transaction_id` and `recorded_at` take their defaults; a duplicate event_id or a taken stream
 * version fails the COPY with SQLSTATE 23505, as the INSERT does.
 */
export async function copyEvents(client: CopyClient, events: Iterable<EventToAppend>): Promise<void> {
  const stream = client.query(
    copyFrom(
      `COPY event_log (event_id, org_id, connection_id, stream_version, type, occurred_at, data,
                       source_topic, source_partition, source_offset, trace_context) FROM STDIN`,
    ),
  );
  await pipeline(Readable.from(copyChunks(events), { objectMode: false }), stream);
}

function* copyChunks(events: Iterable<EventToAppend>): Generator<string> {
  let chunk = '';
  let rows = 0;
  for (const { event, streamVersion, source, traceContext } of events) {
    chunk +=
      `${copyField(event.eventId)}\t${copyField(event.orgId)}\t${copyField(event.connectionId)}\t${streamVersion}\t` +
      `${copyField(event.type)}\t${isoTimestamp(event.occurredAt)}\t${copyField(JSON.stringify(event.data))}\t` +
      `${copyField(source.topic)}\t${source.partition}\t${copyField(source.offset)}\t` +
      `${traceContext ? copyField(traceContext) : '\\N'}\n`;
    if (++rows === COPY_CHUNK_ROWS) {
      yield chunk;
      chunk = '';
      rows = 0;
    }
  }
  if (chunk.length > 0) yield chunk;
}

/**
 * The current version (number of events ever logged) of each stream, 0 for a stream with none: one
 * primary-key probe per stream of `event_log_streams`, which every append moves on in its own
 * transaction.
 *
 * A scalar subquery per key, not a LEFT JOIN: with the keys' count known (thousands), the planner
 * joined by hashing the whole table (a sequential scan of every stream, spilling to temporary files,
 * in parallel workers): 410 ms for 17,000 keys among 1,000,000 streams, against 117 ms for the
 * probes (EXPLAIN ANALYZE, docs/event-log.md). The probes cost what the keys are, not the table.
 */
export async function readStreamVersions(
  sql: Sql,
  streams: { orgId: string; connectionId: string }[],
): Promise<{ orgId: string; connectionId: string; version: number }[]> {
  if (streams.length <= STREAM_VERSIONS_PER_QUERY) return readStreamVersionsOnce(sql, streams);
  const result: { orgId: string; connectionId: string; version: number }[] = [];
  for (let i = 0; i < streams.length; i += STREAM_VERSIONS_PER_QUERY)
    result.push(...(await readStreamVersionsOnce(sql, streams.slice(i, i + STREAM_VERSIONS_PER_QUERY))));
  return result;
}

/**
 * Keys per query of readStreamVersions: at ~8.5 a probe, the planner's cost of 17,000 keys (143,000)
 * passed `jit_above_cost` (100,000), and every lookup compiled its expressions first (6-13 ms of
 * JIT for 17,000 keys). 8,000 keys stay below it.
 */
const STREAM_VERSIONS_PER_QUERY = 8000;

async function readStreamVersionsOnce(
  sql: Sql,
  streams: { orgId: string; connectionId: string }[],
): Promise<{ orgId: string; connectionId: string; version: number }[]> {
  if (streams.length === 0) return [];
  const rows: { org_id: string; connection_id: string; version: number }[] = await sql.query(
    `SELECT k.org_id, k.connection_id,
            COALESCE((SELECT s.version FROM event_log_streams s
                       WHERE s.org_id = k.org_id AND s.connection_id = k.connection_id), 0) AS version
       FROM unnest($1::text[], $2::text[]) AS k(org_id, connection_id)`,
    [streams.map((s) => s.orgId), streams.map((s) => s.connectionId)],
  );
  return rows.map((r) => ({ orgId: r.org_id, connectionId: r.connection_id, version: r.version }));
}

/**
 * Up to `limit` events after `after` in the log's global order, never skipping one that commits late:
 * only rows written by transactions older than every transaction still running (the snapshot's xmin)
 * are read, so no row can later appear before the returned ones. See docs/event-log.md. With `shard`,
 * only the events of that projection shard's orgs (`psp_shard(org_id)`, index event_log_shard_tail).
 */
export async function readLogAfter(
  sql: Sql,
  after: LogPosition,
  limit: number,
  shard: number | null = null,
): Promise<LoggedEvent[]> {
  // The text copy of the transaction id must not be named `transaction_id`: ORDER BY would then
  // sort by that text ('10000' < '9999') and skip events, and could not use the index.
  const rows: (EventRow & { tx: string; position: string; trace_context: string | null })[] = await sql.query(
    `SELECT e.transaction_id::text AS tx, e.position, e.event_id, e.org_id, e.connection_id, e.type, ${OCCURRED_AT_MS}, e.data,
            e.trace_context
       FROM event_log e
      WHERE (e.transaction_id, e.position) > ($1::xid8, $2::bigint)
        AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
        ${shard === null ? '' : 'AND psp_shard(e.org_id) = $4'}
      ORDER BY ${shard === null ? '' : 'psp_shard(e.org_id), '}e.transaction_id, e.position
      LIMIT $3`,
    shard === null ? [after.transactionId, after.position, limit] : [after.transactionId, after.position, limit, shard],
  );
  return rows.map((r) => ({
    at: { transactionId: r.tx, position: String(r.position) },
    event: eventFromRow(r),
    traceContext: r.trace_context,
  }));
}

/** Events in the log (a full count: for progress totals, not for hot paths). */
export async function countLoggedEvents(sql: Sql): Promise<number> {
  const rows: { n: string }[] = await sql.query(`SELECT count(*)::text AS n FROM event_log`);
  return Number(rows[0].n);
}

/**
 * How far a reader at `after` is behind the log: events not yet read, and the age of the oldest. With
 * `shard`, a reader of that projection shard only.
 */
export async function logLagAfter(
  sql: Sql,
  after: LogPosition,
  shard: number | null = null,
): Promise<{ events: number; seconds: number }> {
  const rows: { events: string; seconds: number | null }[] = await sql.query(
    `SELECT count(*)::text AS events, EXTRACT(EPOCH FROM clock_timestamp() - min(recorded_at))::float8 AS seconds
       FROM event_log WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
       ${shard === null ? '' : 'AND psp_shard(org_id) = $3'}`,
    shard === null ? [after.transactionId, after.position] : [after.transactionId, after.position, shard],
  );
  return { events: Number(rows[0].events), seconds: rows[0].seconds === null ? 0 : Math.max(0, rows[0].seconds) };
}

/** The name of the constraint (index) an error violated, when PostgreSQL says. */
export function violatedConstraint(error: unknown): string | undefined {
  const e = error as { constraint?: string; driverError?: { constraint?: string } };
  return e?.constraint ?? e?.driverError?.constraint;
}

/** True when PostgreSQL says the error is a unique violation (a concurrent append won the race). */
export function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: string; driverError?: { code?: string } };
  return e?.code === '23505' || e?.driverError?.code === '23505';
}
