import {
  advanceStreamTime,
  applyEvent,
  ConnectionEvent,
  ConnectionState,
  initialConnectionState,
  pruneHealthWindow,
  upgradeStoredState,
} from '@psp/domain';
import { LogPosition, Sql } from './event-log';

/**
 * Summaries of compacted events (docs/event-log.md, "Partitions, roll-ups and archives"): per
 * connection, the domain's ConnectionState folded over the events (`applyEvent`, the projection's own
 * fold), and per set the greatest occurred_at folded (its stream time) and how many events it holds.
 *
 * Every rule of the contract folds with mergeable operations (counts and sums, maxima and minima,
 * last-writer-wins registers ordered by (occurred_at, event_id), minute buckets), so folding the
 * summarised events and then the rest gives exactly the state that folding all of them gives, in any
 * order. The one thing dropped is what can never count again: minute buckets older than the set's
 * stream time's minute − 59 (stream time only moves forward; `pruneHealthWindow`).
 */

/** The summaries of every compacted partition: what a replay starts from. */
export const COMPACTED = 'compacted';
/** The partition being compacted, folded on top of `compacted` until it is swapped in. */
export const COMPACTING = 'compacting';

/** What a replay and a compaction take turns on (transaction-level advisory lock). */
export async function lockSummaries(sql: Sql): Promise<void> {
  await sql.query(`SELECT pg_advisory_xact_lock(hashtext('psp-connections:log-summaries'))`);
}

/** Where a fold stands: the last row folded, in (org_id, connection_id, transaction_id, position) order. */
export interface FoldPosition extends LogPosition {
  orgId: string;
  connectionId: string;
}

export interface SummarySet {
  name: string;
  /** Greatest occurred_at folded (epoch ms), null when nothing was. */
  streamTime: number | null;
  events: number;
  /** Partitions whose events it holds, oldest first. */
  partitions: string[];
  /** While a partition is being folded: its name, and the last row folded (in the fold's order). */
  folding: string | null;
  foldedTo: FoldPosition | null;
  connections: number;
}

interface SetRow {
  name: string;
  stream_time: Date | null;
  events: string;
  partitions: string[];
  folding: string | null;
  org: string | null;
  conn: string | null;
  tx: string | null;
  pos: string | null;
  connections: string;
}

export async function readSummarySet(sql: Sql, name: string): Promise<SummarySet | null> {
  const rows: SetRow[] = await sql.query(
    `SELECT s.name, s.stream_time, s.events::text AS events, s.partitions, s.folding,
            s.folded_org_id AS org, s.folded_connection_id AS conn,
            s.folded_transaction_id::text AS tx, s.folded_position::text AS pos,
            (SELECT count(*) FROM log_summary m WHERE m.summary_set = s.name)::text AS connections
       FROM log_summary_set s WHERE s.name = $1`,
    [name],
  );
  if (rows.length === 0) return null;
  const r = rows[0];
  return {
    name: r.name,
    streamTime: r.stream_time === null ? null : r.stream_time.getTime(),
    events: Number(r.events),
    partitions: r.partitions,
    folding: r.folding,
    foldedTo:
      r.org === null || r.conn === null || r.tx === null || r.pos === null
        ? null
        : { orgId: r.org, connectionId: r.conn, transactionId: r.tx, position: r.pos },
    connections: Number(r.connections),
  };
}

/** Creates an empty set (nothing when it exists). */
export async function createSummarySet(
  sql: Sql,
  name: string,
  fields: { partitions?: string[]; folding?: string | null } = {},
): Promise<void> {
  await sql.query(
    `INSERT INTO log_summary_set (name, partitions, folding) VALUES ($1, $2::text[], $3) ON CONFLICT (name) DO NOTHING`,
    [name, fields.partitions ?? [], fields.folding ?? null],
  );
}

/** Deletes a set and its summaries. */
export async function deleteSummarySet(sql: Sql, name: string): Promise<void> {
  await sql.query(`DELETE FROM log_summary_set WHERE name = $1`, [name]);
}

/**
 * Folds `events` into set `name`, in the caller's transaction: each touched connection's state is
 * read from `name`, else from `base` (the set it builds on), else starts empty; every event is applied
 * once; the buckets that can no longer enter a health window at the new stream time (the greater of
 * this set's and `base`'s) are dropped; the states, the set's count, stream time and `foldedTo` are
 * written. The caller applies each event once (a partition's rows once, in order).
 */
export async function foldIntoSummaries(
  sql: Sql,
  name: string,
  events: ConnectionEvent[],
  options: { base?: string; foldedTo?: FoldPosition } = {},
): Promise<void> {
  if (events.length === 0) return;
  const sets: { name: string; stream_time: Date | null }[] = await sql.query(
    `SELECT name, stream_time FROM log_summary_set WHERE name = ANY($1::text[]) FOR UPDATE`,
    [[name, options.base ?? name]],
  );
  const own = sets.find((s) => s.name === name);
  if (!own) throw new Error(`summary set ${name} does not exist`);
  const baseTime = sets.find((s) => s.name === options.base)?.stream_time?.getTime() ?? null;
  const states = await loadStates(sql, name, options.base ?? null, events);
  let streamTime = own.stream_time === null ? null : own.stream_time.getTime();
  for (const event of events) {
    applyEvent(states.get(key(event.orgId, event.connectionId))!, event);
    streamTime = advanceStreamTime(streamTime, event.occurredAt);
  }
  const pruneAt = Math.max(streamTime!, baseTime ?? -Infinity);
  const list = [...states.values()];
  await sql.query(
    `INSERT INTO log_summary (summary_set, org_id, connection_id, state)
     SELECT $1, s.org_id, s.connection_id, s.state FROM unnest($2::text[], $3::text[], $4::json[]) AS s(org_id, connection_id, state)
     ON CONFLICT (summary_set, org_id, connection_id) DO UPDATE SET state = EXCLUDED.state`,
    [
      name,
      list.map((s) => s.orgId),
      list.map((s) => s.connectionId),
      list.map((s) => JSON.stringify(pruneHealthWindow(s, pruneAt))),
    ],
  );
  await sql.query(
    `UPDATE log_summary_set
        SET events = events + $2, stream_time = $3, folded_org_id = $4, folded_connection_id = $5,
            folded_transaction_id = $6::xid8, folded_position = $7, updated_at = clock_timestamp()
      WHERE name = $1`,
    [
      name,
      events.length,
      new Date(streamTime!).toISOString(),
      options.foldedTo?.orgId ?? null,
      options.foldedTo?.connectionId ?? null,
      options.foldedTo?.transactionId ?? null,
      options.foldedTo?.position ?? null,
    ],
  );
}

function key(orgId: string, connectionId: string): string {
  return `${orgId}:${connectionId}`;
}

async function loadStates(
  sql: Sql,
  name: string,
  base: string | null,
  events: ConnectionEvent[],
): Promise<Map<string, ConnectionState>> {
  const wanted = new Map<string, { orgId: string; connectionId: string }>();
  for (const e of events) wanted.set(key(e.orgId, e.connectionId), { orgId: e.orgId, connectionId: e.connectionId });
  const list = [...wanted.values()];
  const rows: { summary_set: string; org_id: string; connection_id: string; state: ConnectionState }[] =
    await sql.query(
      `SELECT m.summary_set, m.org_id, m.connection_id, m.state
       FROM unnest($1::text[], $2::text[]) AS k(org_id, connection_id)
       JOIN log_summary m ON m.summary_set = ANY($3::text[]) AND m.org_id = k.org_id AND m.connection_id = k.connection_id`,
      [list.map((w) => w.orgId), list.map((w) => w.connectionId), base === null ? [name] : [name, base]],
    );
  const found = new Map<string, ConnectionState>();
  // The set's own state wins over its base's.
  for (const r of rows) if (r.summary_set !== name) found.set(key(r.org_id, r.connection_id), r.state);
  for (const r of rows) if (r.summary_set === name) found.set(key(r.org_id, r.connection_id), r.state);
  const states = new Map<string, ConnectionState>();
  for (const [k, w] of wanted) {
    const stored = found.get(k);
    states.set(k, stored ? upgradeStoredState(stored) : initialConnectionState(w.orgId, w.connectionId));
  }
  return states;
}

/** A page of a set's summaries, in (org_id, connection_id) order after `after`. */
export async function readSummaries(
  sql: Sql,
  name: string,
  after: { orgId: string; connectionId: string } | null,
  limit: number,
): Promise<ConnectionState[]> {
  const rows: { state: ConnectionState }[] = await sql.query(
    `SELECT state FROM log_summary
      WHERE summary_set = $1 AND ($2::text IS NULL OR (org_id, connection_id) > ($2::text, $3::text))
      ORDER BY org_id, connection_id LIMIT $4`,
    [name, after?.orgId ?? null, after?.connectionId ?? null, limit],
  );
  return rows.map((r) => upgradeStoredState(r.state));
}

/**
 * Swaps the set `compacting` into `compacted`, in the caller's transaction (under lockSummaries):
 * its states replace those of the same connections, its count and partitions are added and the
 * stream times merged; `compacting` is gone after.
 */
export async function swapCompactingIntoCompacted(sql: Sql): Promise<void> {
  await createSummarySet(sql, COMPACTED);
  await sql.query(
    `DELETE FROM log_summary c USING log_summary n
      WHERE c.summary_set = $1 AND n.summary_set = $2 AND c.org_id = n.org_id AND c.connection_id = n.connection_id`,
    [COMPACTED, COMPACTING],
  );
  await sql.query(`UPDATE log_summary SET summary_set = $1 WHERE summary_set = $2`, [COMPACTED, COMPACTING]);
  await sql.query(
    `UPDATE log_summary_set c
        SET events = c.events + n.events, stream_time = GREATEST(c.stream_time, n.stream_time),
            partitions = c.partitions || n.partitions, updated_at = clock_timestamp()
       FROM log_summary_set n
      WHERE c.name = $1 AND n.name = $2`,
    [COMPACTED, COMPACTING],
  );
  await deleteSummarySet(sql, COMPACTING);
}
