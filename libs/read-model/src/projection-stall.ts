import { LogPosition, Sql } from '@psp/storage';

/**
 * How long a projection may fail on the same event before it counts as stuck: /readyz answers 503
 * and `ops lag` says so. Shorter failures (a PostgreSQL restart) are retried without alarm.
 */
export const STUCK_AFTER_MS = 5000;

/** A projection that cannot get past an event (table projection_stall). */
export interface ProjectionStall {
  generation: number;
  /** The event it fails on; null when the failure came before any event was read. */
  eventId: string | null;
  at: LogPosition | null;
  /** When the failures on this event began (database clock). */
  since: Date;
  /** How long it has failed, by the database clock. */
  stuckForMs: number;
  attempts: number;
  /** The last failure's message (for ops; /readyz does not show it). */
  error: string;
}

const MAX_ERROR_CHARS = 500;

/**
 * Notes one more failed attempt. The time it began is kept while the event stays the same and starts
 * again when the projection fails on another one.
 */
export async function recordProjectionStall(
  sql: Sql,
  generation: number,
  failure: { eventId: string | null; at: LogPosition | null; error: string },
): Promise<ProjectionStall> {
  const rows: StallRow[] = await sql.query(
    `INSERT INTO projection_stall AS s (generation, event_id, log_transaction_id, log_position, since, attempts, error)
     VALUES ($1, $2, $3::xid8, $4, clock_timestamp(), 1, $5)
     ON CONFLICT (generation) DO UPDATE SET
       since = CASE WHEN s.event_id IS NOT DISTINCT FROM EXCLUDED.event_id THEN s.since ELSE EXCLUDED.since END,
       attempts = CASE WHEN s.event_id IS NOT DISTINCT FROM EXCLUDED.event_id THEN s.attempts + 1 ELSE 1 END,
       event_id = EXCLUDED.event_id, log_transaction_id = EXCLUDED.log_transaction_id,
       log_position = EXCLUDED.log_position, error = EXCLUDED.error, updated_at = clock_timestamp()
     RETURNING ${STALL_COLUMNS}`,
    [
      generation,
      failure.eventId,
      failure.at?.transactionId ?? null,
      failure.at?.position ?? null,
      failure.error.slice(0, MAX_ERROR_CHARS),
    ],
  );
  return fromRow(rows[0]);
}

/** The projection got past it: forget the stall. Returns whether there was one. */
export async function clearProjectionStall(sql: Sql, generation: number): Promise<boolean> {
  const rows: unknown[] = await sql.query(`DELETE FROM projection_stall WHERE generation = $1 RETURNING generation`, [
    generation,
  ]);
  return rows.length > 0;
}

/** The generation's stall, or null when it is not failing. */
export async function readProjectionStall(sql: Sql, generation: number): Promise<ProjectionStall | null> {
  const rows: StallRow[] = await sql.query(`SELECT ${STALL_COLUMNS} FROM projection_stall WHERE generation = $1`, [
    generation,
  ]);
  return rows.length > 0 ? fromRow(rows[0]) : null;
}

/** Whether a stall has lasted long enough to count as stuck. */
export function isStuck(stall: ProjectionStall | null): stall is ProjectionStall {
  return stall !== null && stall.stuckForMs >= STUCK_AFTER_MS;
}

const STALL_COLUMNS = `generation, event_id, log_transaction_id::text AS tx, log_position::text AS pos, since, attempts, error,
  (EXTRACT(EPOCH FROM clock_timestamp() - since) * 1000)::float8 AS stuck_for_ms`;

interface StallRow {
  generation: number;
  event_id: string | null;
  tx: string | null;
  pos: string | null;
  since: Date;
  attempts: number;
  error: string;
  stuck_for_ms: number;
}

function fromRow(r: StallRow): ProjectionStall {
  return {
    generation: r.generation,
    eventId: r.event_id,
    at: r.tx === null || r.pos === null ? null : { transactionId: r.tx, position: r.pos },
    since: r.since,
    stuckForMs: Math.max(0, r.stuck_for_ms),
    attempts: r.attempts,
    error: r.error,
  };
}
