import { formatTimestamp, healthOfWindow, minuteBucket, nextStatusChange } from '@psp/domain';
import { Sql } from '@psp/storage';
import { parseStoredDocument } from './stored-document';
import { readDueConnections, writeChainTails } from './connection-rows';

/**
 * Health changes for payment routers (CONTRACT 2.5), kept exactly once by the projection's own
 * transaction: each connection row of a generation holds the chain's tail (`health_reported`: the
 * `to` of its latest message, `health_sequence`) and `health_next_change`, the minute at which it must
 * be looked at again. A step compares the status of every listed connection it writes with its tail
 * (held in memory with the state) and writes a message for each change (`writeHealthChanges`);
 * `sweepHealthChanges`, in the same transaction, evaluates the connections that are due without new
 * events at the step's stream time, likewise, and sets when each is due next (the minute its status
 * would change with no new call, from its stored window: `nextStatusChange`). So a new minute costs
 * work only for the connections whose health it changes. The relay produces the outbox
 * to Kafka (apps/projector/src/health-change-relay.ts). See docs/read-model.md, "Health changes".
 */

export const HEALTH_CHANGED = 'connection.health_changed';

/** One change of a connection's health status, as CONTRACT 2.5 describes it. */
export interface HealthChangedInput {
  orgId: string;
  connectionId: string;
  sequence: number;
  streamTimeMs: number;
  from: string | null;
  to: string;
  score: number;
}

/** The message value of CONTRACT 2.5, members in the contract's order. */
export function healthChangedMessage(change: HealthChangedInput): string {
  return JSON.stringify({
    event_id: `${change.orgId}:${change.connectionId}:${change.sequence}`,
    type: HEALTH_CHANGED,
    schema_version: 1,
    org_id: change.orgId,
    connection_id: change.connectionId,
    occurred_at: formatTimestamp(change.streamTimeMs),
    data: { sequence: change.sequence, from: change.from, to: change.to, health_score: change.score },
  });
}

/** Connections looked at per sweep: a step's cost stays bounded; the rest are due at the next one. */
export const SWEEP_LIMIT = 10_000;

/**
 * Evaluates the due connections of one shard of the generation at `streamTimeMs` and writes their health changes to
 * the outbox. Returns the number of messages written. Only for the live generation (a generation
 * being rebuilt produces nothing; its connections are all due at the switch).
 */
export async function sweepHealthChanges(
  sql: Sql,
  generation: number,
  shard: number,
  streamTimeMs: number,
  limit = SWEEP_LIMIT,
  /** Told each chain the sweep moved, so a caller holding chains in memory stays right. */
  onChain?: (orgId: string, connectionId: string, chain: { reported: string | null; sequence: number }) => void,
  /** The trace context of the step, kept with each message written (tracing on). */
  traceContext: string | null = null,
): Promise<number> {
  const b = minuteBucket(streamTimeMs);
  const due = await readDueConnections(sql, generation, shard, b, limit);
  if (due.length === 0) return 0;
  const rows = {
    org: [] as string[],
    conn: [] as string[],
    reported: [] as (string | null)[],
    seq: [] as number[],
    next: [] as (number | null)[],
  };
  const outbox = { org: [] as string[], conn: [] as string[], seq: [] as number[], message: [] as string[] };
  for (const r of due) {
    let reported = r.health_reported;
    let sequence = r.health_sequence;
    let next: number | null = null;
    if (r.listed && r.document !== null) {
      const { window } = parseStoredDocument(r.document);
      const health = healthOfWindow(window, b);
      if (health.status !== reported) {
        sequence += 1;
        const message = healthChangedMessage({
          orgId: r.org_id,
          connectionId: r.connection_id,
          sequence,
          streamTimeMs,
          from: reported,
          to: health.status,
          score: health.score,
        });
        outbox.org.push(r.org_id);
        outbox.conn.push(r.connection_id);
        outbox.seq.push(sequence);
        outbox.message.push(message);
        reported = health.status;
        onChain?.(r.org_id, r.connection_id, { reported, sequence });
      }
      next = nextStatusChange(window, b);
    }
    rows.org.push(r.org_id);
    rows.conn.push(r.connection_id);
    rows.reported.push(reported);
    rows.seq.push(sequence);
    rows.next.push(next);
  }
  await writeChainTails(sql, generation, rows);
  await insertOutbox(
    sql,
    generation,
    outbox,
    traceContext === null ? undefined : outbox.message.map(() => traceContext),
  );
  return outbox.message.length;
}

/**
 * Writes changes seen by a projection step to the outbox (in the step's transaction); with
 * `traceContexts` (tracing on), each row keeps its own (see StepTrace.outboxContexts).
 */
export async function writeHealthChanges(
  sql: Sql,
  generation: number,
  changes: HealthChangedInput[],
  traceContexts?: string[],
): Promise<void> {
  await insertOutbox(
    sql,
    generation,
    {
      org: changes.map((c) => c.orgId),
      conn: changes.map((c) => c.connectionId),
      seq: changes.map((c) => c.sequence),
      message: changes.map(healthChangedMessage),
    },
    traceContexts,
  );
}

async function insertOutbox(
  sql: Sql,
  generation: number,
  rows: { org: string[]; conn: string[]; seq: number[]; message: string[] },
  traceContexts?: (string | null)[],
): Promise<void> {
  if (rows.message.length === 0) return;
  if (traceContexts === undefined)
    await sql.query(
      `INSERT INTO health_change_outbox (generation, org_id, connection_id, sequence, message)
       SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int[], $5::text[])`,
      [generation, rows.org, rows.conn, rows.seq, rows.message],
    );
  else
    await sql.query(
      `INSERT INTO health_change_outbox (generation, org_id, connection_id, sequence, message, trace_context)
       SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::text[])`,
      [generation, rows.org, rows.conn, rows.seq, rows.message, traceContexts],
    );
}

export interface OutboxMessage {
  id: string;
  orgId: string;
  connectionId: string;
  message: string;
  /** The step's trace context, then those of the call events behind the change, one a line (or null). */
  traceContext: string | null;
}

/**
 * Takes the relay's turn for the current transaction: false when another relay holds it. One relay at
 * a time keeps the outbox's order the topic's order.
 */
export async function takeRelayTurn(sql: Sql): Promise<boolean> {
  const rows: { locked: boolean }[] = await sql.query(
    `SELECT pg_try_advisory_xact_lock(hashtext('psp-connections:health-relay')) AS locked`,
  );
  return rows[0].locked;
}

/**
 * The oldest messages of the outbox, in the order they were written (by the bigint id: the output
 * column is named apart from it, because ORDER BY prefers an output column's name, and an id sorted as
 * text puts 100 before 99 — issue 19 item 1).
 */
export async function readHealthOutbox(sql: Sql, limit: number): Promise<OutboxMessage[]> {
  const rows: {
    outbox_id: string;
    org_id: string;
    connection_id: string;
    message: string;
    trace_context: string | null;
  }[] = await sql.query(
    `SELECT o.id::text AS outbox_id, o.org_id, o.connection_id, o.message, o.trace_context
       FROM health_change_outbox o ORDER BY o.id LIMIT $1`,
    [limit],
  );
  return rows.map((r) => ({
    id: r.outbox_id,
    orgId: r.org_id,
    connectionId: r.connection_id,
    message: r.message,
    traceContext: r.trace_context,
  }));
}

export async function deleteHealthOutbox(sql: Sql, ids: string[]): Promise<void> {
  if (ids.length > 0) await sql.query(`DELETE FROM health_change_outbox WHERE id = ANY($1::bigint[])`, [ids]);
}

/** Messages waiting in the outbox (for /metrics and ops). */
export async function healthOutboxBacklog(sql: Sql): Promise<number> {
  const rows: { n: string }[] = await sql.query(`SELECT count(*)::text AS n FROM health_change_outbox`);
  return Number(rows[0].n);
}
