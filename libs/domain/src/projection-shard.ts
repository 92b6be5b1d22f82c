import { createHash } from 'node:crypto';

/**
 * The projection's shards (docs/read-model.md, "Sharded projection"). Every org belongs to one of
 * PROJECTION_SHARDS shards, a stable function of its id: the first byte of the MD5 of the id's UTF-8
 * bytes, modulo the shard count. An org's connections, its Redis document and its health-change
 * chains are therefore all projected by the holder of one shard.
 *
 * The count is fixed, chosen once: 16 shards are enough for 16 projector processes, and the function
 * is also defined in PostgreSQL (`psp_shard(org_id)`, migration 0011), where the event log and the
 * read model are indexed by it. Changing it means a new function, new indexes and a replay.
 */
export const PROJECTION_SHARDS = 16;

/** The shard of an org: `get_byte(decode(md5(org_id), 'hex'), 0) % 16` in PostgreSQL. */
export function shardOfOrg(orgId: string): number {
  return createHash('md5').update(orgId, 'utf8').digest()[0] % PROJECTION_SHARDS;
}

/** Every shard number, 0 … PROJECTION_SHARDS - 1. */
export function allShards(): number[] {
  return Array.from({ length: PROJECTION_SHARDS }, (_, i) => i);
}
