import { Sql } from '@psp/storage';
import {
  ApiKeyEnvironment,
  generateApiKey,
  generateKeyId,
  hashApiKey,
  isWellFormedOrgId,
  KNOWN_SCOPES,
  sameKeyHash,
} from './api-key';

/** What the service knows of a key: never the key, never its hash. */
export interface ApiKeyRecord {
  id: string;
  orgId: string;
  environment: ApiKeyEnvironment;
  scopes: string[];
  createdAt: Date;
  revokedAt: Date | null;
}

interface Row {
  id: string;
  org_id: string;
  environment: ApiKeyEnvironment;
  scopes: string[];
  key_hash: Buffer;
  created_at: Date;
  revoked_at: Date | null;
}

function toRecord(r: Row): ApiKeyRecord {
  return {
    id: r.id,
    orgId: r.org_id,
    environment: r.environment,
    scopes: r.scopes,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
  };
}

export class ApiKeyError extends Error {}

/** Creates, lists, revokes and looks up API keys in PostgreSQL (only hashes are stored). */
export class ApiKeyStore {
  constructor(private readonly sql: Sql) {}

  /** Creates a key; the returned `key` is shown once and never again. */
  async create(
    orgId: string,
    scopes: string[],
    environment: ApiKeyEnvironment,
  ): Promise<{ key: string; record: ApiKeyRecord }> {
    if (!isWellFormedOrgId(orgId)) throw new ApiKeyError('org id must be 1-64 of A-Z a-z 0-9 _ -');
    const unknown = scopes.filter((s) => !(KNOWN_SCOPES as readonly string[]).includes(s));
    if (unknown.length > 0)
      throw new ApiKeyError(`unknown scope(s): ${unknown.join(', ')} (known: ${KNOWN_SCOPES.join(', ')})`);
    if (environment !== 'live' && environment !== 'test') throw new ApiKeyError('environment must be live or test');
    const key = generateApiKey(environment);
    const rows: Row[] = await this.sql.query(
      `INSERT INTO api_key (id, org_id, environment, scopes, key_hash) VALUES ($1, $2, $3, $4, $5)
       RETURNING id, org_id, environment, scopes, key_hash, created_at, revoked_at`,
      [generateKeyId(), orgId, environment, [...new Set(scopes)], hashApiKey(key)],
    );
    return { key, record: toRecord(rows[0]) };
  }

  async list(orgId?: string): Promise<ApiKeyRecord[]> {
    const rows: Row[] = await this.sql.query(
      `SELECT id, org_id, environment, scopes, key_hash, created_at, revoked_at FROM api_key
        WHERE ($1::text IS NULL OR org_id = $1) ORDER BY org_id, created_at, id`,
      [orgId ?? null],
    );
    return rows.map(toRecord);
  }

  /** Revokes a key by id; returns the record, or null when no such key. Revoking twice is harmless. */
  async revoke(id: string): Promise<ApiKeyRecord | null> {
    // Wrapped in a SELECT: TypeORM answers a bare UPDATE with [rows, rowCount], not the rows.
    const rows: Row[] = await this.sql.query(
      `WITH revoked AS (
         UPDATE api_key SET revoked_at = COALESCE(revoked_at, clock_timestamp()) WHERE id = $1
         RETURNING id, org_id, environment, scopes, key_hash, created_at, revoked_at)
       SELECT * FROM revoked`,
      [id],
    );
    return rows.length > 0 ? toRecord(rows[0]) : null;
  }

  /** The key whose hash this is (revoked or not), compared in constant time; null when none. */
  async findByHash(keyHash: Buffer): Promise<ApiKeyRecord | null> {
    const rows: Row[] = await this.sql.query(
      `SELECT id, org_id, environment, scopes, key_hash, created_at, revoked_at FROM api_key WHERE key_hash = $1`,
      [keyHash],
    );
    if (rows.length === 0 || !sameKeyHash(rows[0].key_hash, keyHash)) return null;
    return toRecord(rows[0]);
  }

  /**
   * `findByHash` for several hashes in one statement (the API batches the lookups of concurrent
   * requests through it, so statements per request do not grow with the keys in use): one answer per
   * hash, in that order, null when no key has it; compared in constant time.
   */
  async findByHashes(keyHashes: Buffer[]): Promise<(ApiKeyRecord | null)[]> {
    if (keyHashes.length === 0) return [];
    const rows: Row[] = await this.sql.query(
      `SELECT id, org_id, environment, scopes, key_hash, created_at, revoked_at FROM api_key WHERE key_hash = ANY($1::bytea[])`,
      [keyHashes],
    );
    const byHash = new Map(rows.map((r) => [r.key_hash.toString('base64'), r]));
    return keyHashes.map((hash) => {
      const r = byHash.get(hash.toString('base64'));
      return r && sameKeyHash(r.key_hash, hash) ? toRecord(r) : null;
    });
  }
}
