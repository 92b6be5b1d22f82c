/**
 * The orgs of the read model (table org_read_model: one version per org and generation, raised by
 * every step that changes one of its connections), and the API's reads of an org's listed documents
 * with its version (one statement, one snapshot). Every statement about org_read_model is here.
 */
import { Sql } from '@psp/storage';
import { OrgDocuments } from './redis-read-model';

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

/** A new version of each org of `written`, in the step's transaction; returns each org's new version. */
export async function bumpOrgVersions(
  sql: Sql,
  generation: number,
  written: { orgId: string }[],
): Promise<{ orgId: string; version: number }[]> {
  const rows: { org_id: string; version: string }[] = await sql.query(
    `INSERT INTO org_read_model (generation, org_id, version)
     SELECT $1, o, 1 FROM unnest($2::text[]) AS o
     ON CONFLICT (generation, org_id) DO UPDATE SET version = org_read_model.version + 1
     RETURNING org_id, version::text AS version`,
    [generation, [...new Set(written.map((w) => w.orgId))]],
  );
  return rows.map((r) => ({ orgId: r.org_id, version: Number(r.version) }));
}

/** Version 1 for each org of a generation being seeded that has none yet (summary-seed.ts). */
export async function seedOrgVersions(sql: Sql, generation: number, orgIds: string[]): Promise<void> {
  await sql.query(
    `INSERT INTO org_read_model (generation, org_id, version)
     SELECT $1, o, 1 FROM unnest($2::text[]) AS o ON CONFLICT (generation, org_id) DO NOTHING`,
    [generation, [...new Set(orgIds)]],
  );
}
