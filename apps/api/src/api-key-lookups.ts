import { ApiKeyEnvironment, ApiKeyRecord, sameKeyHash } from '@psp/api-keys';
import { Sql } from '@psp/storage';

interface Row {
  id: string;
  org_id: string;
  environment: ApiKeyEnvironment;
  scopes: string[];
  key_hash: Buffer;
  created_at: Date;
  revoked_at: Date | null;
}

/**
 * Looks up several keys by their hashes in one statement (the batched form of
 * `ApiKeyStore.findByHash`, same columns, same constant-time comparison): one answer per hash given,
 * in that order, null when no key has it. The API guard batches the lookups of concurrent requests
 * through it, so the statements per request do not grow with the number of keys in use.
 */
export async function findApiKeysByHashes(sql: Sql, hashes: Buffer[]): Promise<(ApiKeyRecord | null)[]> {
  if (hashes.length === 0) return [];
  const rows: Row[] = await sql.query(
    `SELECT id, org_id, environment, scopes, key_hash, created_at, revoked_at FROM api_key WHERE key_hash = ANY($1::bytea[])`,
    [hashes],
  );
  const byHash = new Map(rows.map((r) => [r.key_hash.toString('base64'), r]));
  return hashes.map((hash) => {
    const r = byHash.get(hash.toString('base64'));
    if (!r || !sameKeyHash(r.key_hash, hash)) return null;
    return {
      id: r.id,
      orgId: r.org_id,
      environment: r.environment,
      scopes: r.scopes,
      createdAt: r.created_at,
      revokedAt: r.revoked_at,
    };
  });
}
