import { DataSource } from 'typeorm';
import { orgVersionInPostgres, readOrgFromPostgres } from './postgres-read-model';
import { OrgDocuments, RedisReadModel } from './redis-read-model';

/** Where an org's read model came from. */
export type ReadTier = 'memory' | 'redis' | 'postgres';

/** What a reader holds of the org already: its version, and when it last compared it with PostgreSQL. */
export interface HeldOrg {
  version: number;
  checkedInPostgresAt: number;
}

/**
 * One org's read model through the tiers, memory → Redis → PostgreSQL: `documents` null means the
 * version `held` is still the latest (served from memory). Redis holds the same stored documents as
 * PostgreSQL at the same version, so the bytes are identical whichever answers; an org Redis does not
 * hold is read from PostgreSQL and filled into Redis (version-guarded). Every `recheckMs` the version
 * in Redis is compared with PostgreSQL's, so an update that missed Redis is served within it. When
 * Redis is down or slow, PostgreSQL answers alone.
 */
export async function readOrgThroughTiers(
  db: DataSource,
  redis: RedisReadModel,
  generation: number,
  orgId: string,
  held: HeldOrg | undefined,
  recheckMs: number,
): Promise<{ documents: OrgDocuments | null; tier: ReadTier; redisError?: unknown }> {
  let documents: OrgDocuments | null = null;
  let tier: ReadTier = 'memory';
  try {
    let version = await redis.version(generation, orgId);
    if (version !== null && held && Date.now() - held.checkedInPostgresAt > recheckMs) {
      // Bounded staleness: should an update ever have missed Redis, PostgreSQL's newer version wins.
      const committed = await orgVersionInPostgres(db, generation, orgId);
      held.checkedInPostgresAt = Date.now();
      if (committed > version) version = null;
    }
    if (version !== null) {
      if (held && held.version === version) return { documents: null, tier: 'memory' };
      documents = await redis.read(generation, orgId);
      if (documents) tier = 'redis';
    }
    if (!documents) {
      documents = await readOrgFromPostgres(db, generation, orgId);
      tier = 'postgres';
      await redis.fill(generation, orgId, documents);
    }
    return { documents, tier };
  } catch (error) {
    // Redis is down or slow: PostgreSQL holds the same read model.
    if (documents) return { documents, tier, redisError: error };
    const version = await orgVersionInPostgres(db, generation, orgId);
    if (held && held.version === version) return { documents: null, tier: 'memory', redisError: error };
    return { documents: await readOrgFromPostgres(db, generation, orgId), tier: 'postgres', redisError: error };
  }
}
