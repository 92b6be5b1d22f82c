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
 * given, in that order (version 0 and no documents for an org the projector has not seen).
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
