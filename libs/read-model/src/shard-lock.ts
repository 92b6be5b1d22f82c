import { Sql } from '@psp/storage';

/**
 * The second key of a shard's step lock (pg_advisory_xact_lock(hashtext('psp-connections:projection'),
 * key)): one step of a shard of a generation at a time, whoever runs it; a switch takes every shard's
 * lock of the generation it retires.
 */
export function shardLockKey(generation: number, shard: number): number {
  return generation * 64 + shard;
}

/**
 * Takes a shard's step lock for the transaction (released at its end): waits while another step of
 * the shard, a replay's write to it or a switch holds it. Takes no transaction id (no row lock), so a
 * step that holds it does not hold back the log's xmin while it reads.
 */
export async function lockShardStep(tx: Sql, generation: number, shard: number): Promise<void> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtext('psp-connections:projection'), $1)`, [
    shardLockKey(generation, shard),
  ]);
}
