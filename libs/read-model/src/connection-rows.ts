import { Sql } from '@psp/storage';

/**
 * The connections of the read model (table connection_read_model: one row per generation and
 * connection, with its stored state, its rendered document and the tail of its chain of health
 * changes). Every statement that writes it, and every read but the API's (org-read-model.ts, which
 * reads an org's documents with its version in one statement), is here.
 */

/** The key of a connection in maps and caches: `<org>:<connection>`. */
export function connectionKey(orgId: string, connectionId: string): string {
  return `${orgId}:${connectionId}`;
}

/** The tail of a connection's chain of health changes: the `to` of its latest message and its sequence. */
export interface HealthChain {
  reported: string | null;
  sequence: number;
}

/**
 * Inserts or replaces connections' rows, given as one JSON array (json_to_recordset: pg's array
 * literals would escape every ~3 KB element in JavaScript); each row's `packed_state` is its state
 * packed (packState, projection.ts) in base64, stored as bytes, and `state` (the JSON column of rows
 * written before migration 0014) is cleared. With `keepChains` the rows' chain tails are written too
 * (the live generation); without, a row keeps the tail it has.
 */
export async function upsertConnectionRows(
  sql: Sql,
  generation: number,
  rowsJson: string,
  keepChains: boolean,
): Promise<void> {
  const chainColumns = keepChains
    ? `, health_reported = EXCLUDED.health_reported, health_sequence = EXCLUDED.health_sequence`
    : '';
  await sql.query(
    `INSERT INTO connection_read_model (generation, org_id, connection_id, listed, provider, status, labels, health_score,
                                        health_status, created_at, updated_at, last_call_minute, document, state,
                                        packed_state, health_next_change, health_reported, health_sequence)
     SELECT $1, c.org_id, c.connection_id, c.listed, c.provider, c.status,
            ARRAY(SELECT json_array_elements_text(c.labels)), c.health_score, c.health_status, c.created_at, c.updated_at,
            c.last_call_minute, c.document, NULL, decode(c.packed_state, 'base64'), c.health_next_change,
            c.health_reported, c.health_sequence
       FROM json_to_recordset($2::json)
            AS c(org_id text, connection_id text, listed boolean, provider text, status text, labels json,
                 health_score float8, health_status text, created_at timestamptz, updated_at timestamptz,
                 last_call_minute bigint, document text, packed_state text, health_next_change bigint,
                 health_reported text, health_sequence int)
     ON CONFLICT (generation, org_id, connection_id) DO UPDATE SET
       listed = EXCLUDED.listed, provider = EXCLUDED.provider, status = EXCLUDED.status, labels = EXCLUDED.labels,
       health_score = EXCLUDED.health_score, health_status = EXCLUDED.health_status, created_at = EXCLUDED.created_at,
       updated_at = EXCLUDED.updated_at, last_call_minute = EXCLUDED.last_call_minute, document = EXCLUDED.document,
       state = NULL, packed_state = EXCLUDED.packed_state, health_next_change = EXCLUDED.health_next_change${chainColumns}`,
    [generation, rowsJson],
  );
}

/** A stored state as read: packed (packState) or, in a row written before migration 0014, its JSON text. */
export type StoredState = { packed: Buffer } | { stateJson: string };

/**
 * The stored states of those of `wanted` the generation holds, as stored (unpacked or parsed by the
 * caller one at a time, so that a step does not hold every state it reads as objects at once), with
 * their health-change chain tails, by key.
 */
export async function readStoredStates(
  sql: Sql,
  generation: number,
  wanted: { orgId: string; connectionId: string }[],
): Promise<Map<string, { stored: StoredState; chain: HealthChain }>> {
  const found = new Map<string, { stored: StoredState; chain: HealthChain }>();
  if (wanted.length === 0) return found;
  const rows: {
    org_id: string;
    connection_id: string;
    packed_state: Buffer | null;
    state: string | null;
    health_reported: string | null;
    health_sequence: number;
  }[] = await sql.query(
    `SELECT c.org_id, c.connection_id, c.packed_state, c.state::text AS state, c.health_reported, c.health_sequence
       FROM unnest($2::text[], $3::text[]) AS k(org_id, connection_id)
       JOIN connection_read_model c ON c.generation = $1 AND c.org_id = k.org_id AND c.connection_id = k.connection_id`,
    [generation, wanted.map((w) => w.orgId), wanted.map((w) => w.connectionId)],
  );
  for (const r of rows)
    found.set(connectionKey(r.org_id, r.connection_id), {
      stored: r.packed_state !== null ? { packed: r.packed_state } : { stateJson: r.state! },
      chain: { reported: r.health_reported, sequence: r.health_sequence },
    });
  return found;
}

/**
 * Whether the generation holds a connection (of `shard`, or of any when null) after `after` in (org,
 * connection) order (any, when null): a shard's fold writes its connections in that order, so such a
 * row was seeded, not folded.
 */
export async function hasRowsAfter(
  sql: Sql,
  generation: number,
  shard: number | null,
  after: { orgId: string; connectionId: string } | null,
): Promise<boolean> {
  const rows: unknown[] = await sql.query(
    `SELECT 1 FROM connection_read_model
      WHERE generation = $1 AND (org_id, connection_id) > ($2::text, $3::text)
        ${shard === null ? '' : 'AND psp_shard(org_id) = $4'} LIMIT 1`,
    [generation, after?.orgId ?? '', after?.connectionId ?? '', ...(shard === null ? [] : [shard])],
  );
  return rows.length > 0;
}

/** A connection due to be looked at by the clock (health-changes.ts, the sweep). */
export interface DueConnection {
  org_id: string;
  connection_id: string;
  listed: boolean;
  document: string | null;
  health_reported: string | null;
  health_sequence: number;
}

/**
 * The connections of one shard of the generation whose health may have changed by `minute` without
 * new events (`health_next_change` ≤ it), the most overdue first, at most `limit`.
 */
export async function readDueConnections(
  sql: Sql,
  generation: number,
  shard: number,
  minute: number,
  limit: number,
): Promise<DueConnection[]> {
  return sql.query(
    `SELECT org_id, connection_id, listed, document, health_reported, health_sequence
       FROM connection_read_model
      WHERE generation = $1 AND psp_shard(org_id) = $4 AND health_next_change <= $2
      ORDER BY health_next_change LIMIT $3`,
    [generation, minute, limit, shard],
  );
}

/** Writes connections' chain tails and when each is due next (null: not by the clock). */
export async function writeChainTails(
  sql: Sql,
  generation: number,
  rows: { org: string[]; conn: string[]; reported: (string | null)[]; seq: number[]; next: (number | null)[] },
): Promise<void> {
  await sql.query(
    `UPDATE connection_read_model c
        SET health_reported = u.reported, health_sequence = u.seq, health_next_change = u.next
       FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[]) AS u(org_id, connection_id, reported, seq, next)
      WHERE c.generation = $1 AND c.org_id = u.org_id AND c.connection_id = u.connection_id`,
    [generation, rows.org, rows.conn, rows.reported, rows.seq, rows.next],
  );
}

/**
 * At a switch (in its transaction): the new generation continues each connection's chain where the
 * retired one left it, and every listed connection is due, so the first sweeps produce one catch-up
 * message for each connection whose status differs from its latest message (CONTRACT 2.5).
 */
export async function continueHealthChains(sql: Sql, from: number, to: number): Promise<void> {
  await sql.query(
    `UPDATE connection_read_model n
        SET health_reported = o.health_reported, health_sequence = o.health_sequence
       FROM connection_read_model o
      WHERE n.generation = $2 AND o.generation = $1 AND o.org_id = n.org_id AND o.connection_id = n.connection_id`,
    [from, to],
  );
  await sql.query(
    `UPDATE connection_read_model SET health_next_change = -9223372036854775808 WHERE generation = $1 AND listed`,
    [to],
  );
}
