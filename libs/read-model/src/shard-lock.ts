/**
 * The second key of a shard's step lock (pg_advisory_xact_lock(hashtext('psp-connections:projection'),
 * key)): one step of a shard of a generation at a time, whoever runs it; a switch takes every shard's
 * lock of the generation it retires.
 */
export function shardLockKey(generation: number, shard: number): number {
  return generation * 64 + shard;
}
