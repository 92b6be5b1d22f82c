import { Sql } from '@psp/storage';
import { OrgDocuments } from './redis-read-model';

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

/** One org's listed connections and its version, read in one statement (one snapshot). */
export async function readOrgFromPostgres(sql: Sql, generation: number, orgId: string): Promise<OrgDocuments> {
  const rows: { version: string; connection_id: string | null; document: string | null }[] = await sql.query(
    `WITH v AS (SELECT version FROM org_read_model WHERE generation = $1 AND org_id = $2)
     SELECT v.version::text AS version, c.connection_id, c.document
       FROM v LEFT JOIN connection_read_model c ON c.generation = $1 AND c.org_id = $2 AND c.listed`,
    [generation, orgId],
  );
  const documents = new Map<string, string>();
  for (const r of rows) if (r.connection_id !== null && r.document !== null) documents.set(r.connection_id, r.document);
  return { version: rows.length > 0 ? Number(rows[0].version) : 0, documents };
}

/** The org's read-model version in PostgreSQL (0 when the projector has not seen the org). */
export async function orgVersionInPostgres(sql: Sql, generation: number, orgId: string): Promise<number> {
  const rows: { version: string }[] = await sql.query(
    `SELECT version::text AS version FROM org_read_model WHERE generation = $1 AND org_id = $2`,
    [generation, orgId],
  );
  return rows.length > 0 ? Number(rows[0].version) : 0;
}

/**
 * Several orgs' read-model versions in PostgreSQL, in one statement: one per org id given, in that
 * order (0 for an org the projector has not seen).
 */
export async function orgVersionsInPostgres(sql: Sql, generation: number, orgIds: string[]): Promise<number[]> {
  if (orgIds.length === 0) return [];
  const rows: { org_id: string; version: string }[] = await sql.query(
    `SELECT org_id, version::text AS version FROM org_read_model WHERE generation = $1 AND org_id = ANY($2::text[])`,
    [generation, orgIds],
  );
  const versions = new Map(rows.map((r) => [r.org_id, Number(r.version)]));
  return orgIds.map((orgId) => versions.get(orgId) ?? 0);
}

/**
 * Several orgs' listed connections and versions, in one statement (one snapshot): one per org id
 * given, in that order, each as `readOrgFromPostgres` reads it.
 */
export async function readOrgsFromPostgres(sql: Sql, generation: number, orgIds: string[]): Promise<OrgDocuments[]> {
  if (orgIds.length === 0) return [];
  const rows: { org_id: string; version: string; connection_id: string | null; document: string | null }[] =
    await sql.query(
      `WITH v AS (SELECT org_id, version FROM org_read_model WHERE generation = $1 AND org_id = ANY($2::text[]))
       SELECT v.org_id, v.version::text AS version, c.connection_id, c.document
         FROM v LEFT JOIN connection_read_model c ON c.generation = $1 AND c.org_id = v.org_id AND c.listed`,
      [generation, orgIds],
    );
  const byOrg = new Map<string, OrgDocuments>();
  for (const r of rows) {
    let org = byOrg.get(r.org_id);
    if (!org) byOrg.set(r.org_id, (org = { version: Number(r.version), documents: new Map() }));
    if (r.connection_id !== null && r.document !== null) org.documents.set(r.connection_id, r.document);
  }
  return orgIds.map((orgId) => byOrg.get(orgId) ?? { version: 0, documents: new Map() });
}
