import { DataSource } from 'typeorm';
import { orgVersionsInPostgres, readOrgsFromPostgres } from './org-read-model';
import { OrgDocuments, RedisReadModel } from './redis-read-model';

/** Where an org's read model came from. */
export type ReadTier = 'memory' | 'redis' | 'postgres';

/** What a reader holds of the org already: its version, and when it last compared it with PostgreSQL. */
export interface HeldOrg {
  version: number;
  checkedInPostgresAt: number;
}

/** One org's answer: `documents` null means the version held is still the latest (served from memory). */
export interface OrgRead {
  documents: OrgDocuments | null;
  tier: ReadTier;
  redisError?: unknown;
}

/**
 * Several orgs' read models through the tiers, memory → Redis → PostgreSQL, in a few round trips
 * whatever their number: one MGET of their versions in Redis; one PostgreSQL statement comparing
 * the versions of those last compared more than `recheckMs` ago; one pipeline reading from Redis
 * the orgs whose version is not the one held; one statement reading from PostgreSQL (and one
 * pipeline filling into Redis, version-guarded) those Redis does not hold. Redis holds the same
 * stored documents as PostgreSQL at the same version, so the bytes are identical whichever answers.
 * Every `recheckMs` an org's version in Redis is compared with PostgreSQL's, so an update that missed
 * Redis is served within it. When Redis is down or slow, PostgreSQL answers alone. One answer per
 * org given, in that order; each org gets its own version and documents, never another's.
 */
export async function readOrgsThroughTiers(
  db: DataSource,
  redis: RedisReadModel,
  generation: number,
  orgs: { orgId: string; held?: HeldOrg }[],
  recheckMs: number,
): Promise<OrgRead[]> {
  const results: (OrgRead | undefined)[] = new Array(orgs.length);
  const unanswered = (): number[] => orgs.map((_, i) => i).filter((i) => results[i] === undefined);
  try {
    const versions = await redis.versions(
      generation,
      orgs.map((o) => o.orgId),
    );
    // Bounded staleness: should an update ever have missed Redis, PostgreSQL's newer version wins.
    const now = Date.now();
    const due = orgs
      .map((_, i) => i)
      .filter((i) => versions[i] !== null && orgs[i].held && now - orgs[i].held!.checkedInPostgresAt > recheckMs);
    if (due.length > 0) {
      const committed = await orgVersionsInPostgres(
        db,
        generation,
        due.map((i) => orgs[i].orgId),
      );
      const checkedAt = Date.now();
      due.forEach((i, j) => {
        orgs[i].held!.checkedInPostgresAt = checkedAt;
        if (committed[j] > versions[i]!) versions[i] = null;
      });
    }
    const fromRedis: number[] = [];
    orgs.forEach(({ held }, i) => {
      const version = versions[i];
      if (version === null) return;
      if (held && held.version === version) results[i] = { documents: null, tier: 'memory' };
      else fromRedis.push(i);
    });
    const read = await redis.readMany(
      generation,
      fromRedis.map((i) => orgs[i].orgId),
    );
    fromRedis.forEach((i, j) => {
      if (read[j]) results[i] = { documents: read[j], tier: 'redis' };
    });
    const fromPostgres = unanswered();
    if (fromPostgres.length > 0) {
      const documents = await readOrgsFromPostgres(
        db,
        generation,
        fromPostgres.map((i) => orgs[i].orgId),
      );
      fromPostgres.forEach((i, j) => (results[i] = { documents: documents[j], tier: 'postgres' }));
      await redis.fillMany(
        generation,
        fromPostgres.map((i, j) => ({ orgId: orgs[i].orgId, org: documents[j] })),
      );
    }
    return results as OrgRead[];
  } catch (error) {
    // Redis is down or slow: PostgreSQL holds the same read model.
    for (const r of results) if (r) r.redisError = error;
    const rest = unanswered();
    const ids = rest.map((i) => orgs[i].orgId);
    const committed = await orgVersionsInPostgres(db, generation, ids);
    const toRead: number[] = [];
    rest.forEach((i, j) => {
      const held = orgs[i].held;
      if (held && held.version === committed[j]) results[i] = { documents: null, tier: 'memory', redisError: error };
      else toRead.push(i);
    });
    const documents = await readOrgsFromPostgres(
      db,
      generation,
      toRead.map((i) => orgs[i].orgId),
    );
    toRead.forEach((i, j) => (results[i] = { documents: documents[j], tier: 'postgres', redisError: error }));
    return results as OrgRead[];
  }
}
