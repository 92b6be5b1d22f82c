/**
 * How projector processes share the projection's shards (docs/read-model.md, "Sharded projection"):
 * pure rules, the coordination itself is PostgreSQL's (advisory locks, shard-leases.ts).
 *
 * Each process holds a member lock, so every process can count the members; each aims at its fair
 * share, ceil(shards / members). A process above it releases shards (the highest numbers first); one
 * below it tries to take free shards, starting at an offset set by its member slot so that processes
 * starting together try different shards first. Since the fair shares add up to at least the shard
 * count, every shard is held once the members have looked (each looks every PROJECTOR_REBALANCE_MS).
 */

/** The number of shards one of `members` processes aims to hold. */
export function fairShare(shards: number, members: number): number {
  return Math.ceil(shards / Math.max(1, members));
}

export interface ShardPlan {
  /** Shards to let go of (this process holds more than its share). */
  release: number[];
  /** Shards to try to take, in order, until `want` are taken (others may hold some of them). */
  candidates: number[];
  /** How many more shards this process wants. */
  want: number;
}

/**
 * What a process holding `held` does when it sees `members` processes (itself included); `slot` is
 * its member slot (0 … the most members there can be).
 */
export function planShards(shards: number, members: number, held: readonly number[], slot: number): ShardPlan {
  const share = fairShare(shards, members);
  const sorted = [...held].sort((a, b) => a - b);
  if (sorted.length > share) return { release: sorted.slice(share), candidates: [], want: 0 };
  const holding = new Set(sorted);
  const start = (slot * share) % shards;
  const candidates: number[] = [];
  for (let i = 0; i < shards; i++) {
    const shard = (start + i) % shards;
    if (!holding.has(shard)) candidates.push(shard);
  }
  return { release: [], candidates, want: share - sorted.length };
}

/**
 * The fencing rule: a step may commit to a shard only while the shard's lease is still the one its
 * process took. Any later claim (another process took the shard) moved the lease on.
 */
export function leaseStillHeld(taken: string | null, current: string): boolean {
  return taken !== null && taken === current;
}
