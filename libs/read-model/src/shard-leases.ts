import { Client } from 'pg';
import { DataSource, QueryRunner } from 'typeorm';
import { PROJECTION_SHARDS } from '@psp/domain';
import { planShards } from './shard-assignment';
import { shardLockKey } from './shard-lock';

/**
 * Which projector process projects which shard (docs/read-model.md, "Sharded projection"), decided
 * by PostgreSQL, as Marten's async daemon does: no election of our own.
 *
 * - Membership: each process holds one session advisory lock of the member key (the first free slot
 *   of MAX_MEMBERS) on a connection of its own; the members are the holders PostgreSQL lists in
 *   pg_locks. A process that dies (kill -9 included) loses its connection, and with it every lock.
 * - Assignment: a shard is held by whoever holds its session advisory lock on that connection; each
 *   process aims at its fair share (shard-assignment.ts) each time it rebalances.
 * - Fencing: taking a shard moves its lease (projection_shard_lease.lease + 1) and the taker keeps the
 *   new value; a step commits only if the lease is still that value (read FOR SHARE last in the
 *   step's transaction: a later claim waits for the step, or the step sees the new lease and rolls
 *   back). A process that lost a shard, however slow, can never commit to it.
 */

/** Advisory lock keys (first half of the two-key form): 'PS' 0 1 … 'PS' 0 4. */
const SHARD_LOCK_KEY = 0x50530001;
const MEMBER_LOCK_KEY = 0x50530002;
const SHARD_FOLD_LOCK_KEY = 0x50530003;
const CATCH_UP_LOCK_KEY = 0x50530004;
/** The most projector processes that can be members at once. */
export const MAX_MEMBERS = 64;

export interface Rebalance {
  members: number;
  taken: number[];
  released: number[];
  /** Shards lost with the connection (it broke): every one held before. */
  lost: number[];
}

export class ShardLeases {
  private runner: Client | null = null;
  private slot: number | null = null;
  private readonly held = new Map<number, string>();

  constructor(
    /** A connection of its own (not the pool's: a pooled connection would keep its locks when returned). */
    private readonly databaseUrl: string,
    /** Named in projection_shard_lease.holder for ops (host and pid: no credential). */
    private readonly holder: string,
    private readonly shards = PROJECTION_SHARDS,
  ) {}

  /** The shards this process holds, with the lease it took each one under. */
  get leases(): ReadonlyMap<number, string> {
    return this.held;
  }

  /** Joins (once), counts the members and takes or releases shards toward the fair share. */
  async rebalance(): Promise<Rebalance> {
    try {
      const runner = await this.connection();
      const members = await this.countMembers(runner);
      const plan = planShards(this.shards, members, [...this.held.keys()], this.slot ?? 0);
      const released: number[] = [];
      for (const shard of plan.release) {
        await this.release(runner, shard);
        released.push(shard);
      }
      const taken: number[] = [];
      for (const shard of plan.candidates) {
        if (taken.length >= plan.want) break;
        const { rows } = await runner.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock($1, $2) AS ok`, [
          SHARD_LOCK_KEY,
          shard,
        ]);
        const ok = rows[0].ok;
        if (!ok) continue;
        const {
          rows: [{ lease }],
        } = await runner.query<{ lease: string }>(
          `UPDATE projection_shard_lease SET lease = lease + 1, holder = $2, taken_at = clock_timestamp()
            WHERE shard = $1 RETURNING lease::text AS lease`,
          [shard, this.holder],
        );
        this.held.set(shard, lease);
        taken.push(shard);
      }
      return { members, taken, released, lost: [] };
    } catch (error) {
      // The connection (and so every lock on it) may be gone: hold nothing; the next call rejoins.
      const lost = [...this.held.keys()];
      this.held.clear();
      await this.disconnect();
      if (lost.length > 0) return { members: 0, taken: [], released: [], lost };
      throw error;
    }
  }

  /** Lets go of one shard (between steps). */
  async releaseShard(shard: number): Promise<void> {
    if (!this.runner || !this.held.has(shard)) return;
    await this.release(this.runner, shard);
  }

  /** Lets go of every shard and leaves (shutdown): the others take the shards at once. */
  async leave(): Promise<void> {
    this.held.clear();
    await this.disconnect();
  }

  private async release(runner: Client, shard: number): Promise<void> {
    this.held.delete(shard);
    await runner.query(`SELECT pg_advisory_unlock($1, $2)`, [SHARD_LOCK_KEY, shard]);
  }

  private async connection(): Promise<Client> {
    if (this.runner) return this.runner;
    const runner = new Client({
      connectionString: this.databaseUrl,
      keepAlive: true,
      application_name: 'psp-shard-leases',
    });
    runner.on('error', () => undefined); // a broken connection fails the next query: rebalance() handles it
    await runner.connect();
    this.runner = runner;
    for (let slot = 0; slot < MAX_MEMBERS; slot++) {
      const { rows } = await runner.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock($1, $2) AS ok`, [
        MEMBER_LOCK_KEY,
        slot,
      ]);
      if (rows[0].ok) {
        this.slot = slot;
        return runner;
      }
    }
    await this.disconnect();
    throw new Error(`more than ${MAX_MEMBERS} projector processes: this one holds no shard`);
  }

  private async countMembers(runner: Client): Promise<number> {
    const {
      rows: [{ n }],
    } = await runner.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid::bigint = $1
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [MEMBER_LOCK_KEY],
    );
    return n;
  }

  private async disconnect(): Promise<void> {
    const runner = this.runner;
    this.runner = null;
    this.slot = null;
    // Closing the session releases its locks.
    if (runner) await runner.end().catch(() => undefined);
  }
}

/** The lease a shard is under now (for the step's fencing check: read FOR SHARE, see ShardLeases). */
export async function currentShardLease(
  sql: { query(q: string, p?: unknown[]): Promise<unknown> },
  shard: number,
): Promise<string> {
  const rows = (await sql.query(`SELECT lease::text AS lease FROM projection_shard_lease WHERE shard = $1 FOR SHARE`, [
    shard,
  ])) as { lease: string }[];
  return rows[0].lease;
}

/**
 * Who holds each shard now (for ops): the holder named by the latest claim, for the shards whose
 * advisory lock some session holds (a shard whose holder died is free, whatever the table says).
 */
export async function readShardHolders(sql: {
  query(q: string, p?: unknown[]): Promise<unknown>;
}): Promise<Map<number, string>> {
  const rows = (await sql.query(
    `SELECT l.shard, l.holder FROM projection_shard_lease l
      WHERE EXISTS (SELECT 1 FROM pg_locks k
                     WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 2 AND k.classid::bigint = $1
                       AND k.objid::bigint = l.shard
                       AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database()))`,
    [SHARD_LOCK_KEY],
  )) as { shard: number; holder: string | null }[];
  return new Map(rows.map((r) => [r.shard, r.holder ?? '?']));
}

/** A session advisory lock held on a pooled connection until `release` (which unlocks it). */
export interface HeldLock {
  /** The connection holding the lock, out of the pool until `release` (its holder may read on it). */
  connection: QueryRunner;
  release(): Promise<void>;
}

/**
 * Takes one shard's fold of a generation being replayed (stream-fold.ts) for as long as this process
 * folds it (the fold reads the shard's log on the lock's connection). Null when another fold holds
 * it; a process that dies frees it with its connection. Coordination only: each write of a fold also
 * checks where that shard's fold stands.
 */
export function claimShardFold(db: DataSource, generation: number, shard: number): Promise<HeldLock | null> {
  return tryAdvisoryLock(db, SHARD_FOLD_LOCK_KEY, shardLockKey(generation, shard));
}

/**
 * Waits until this replay is the only one catching a generation up with the log and switching it
 * (replay.ts): its steps keep changes in memory between writes, so two at once would overwrite each
 * other. Another replay that folded shards of the same generation waits here, then finds it switched.
 */
export async function claimGenerationCatchUp(db: DataSource, generation: number): Promise<HeldLock> {
  for (;;) {
    const held = await tryAdvisoryLock(db, CATCH_UP_LOCK_KEY, generation);
    if (held) return held;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * pg_try_advisory_lock on a pooled connection kept out of the pool until `release`; null (and the
 * connection back in the pool) when another session holds it.
 */
async function tryAdvisoryLock(db: DataSource, key1: number, key2: number): Promise<HeldLock | null> {
  const runner = db.createQueryRunner();
  await runner.connect();
  try {
    const rows: { ok: boolean }[] = await runner.query(`SELECT pg_try_advisory_lock($1, $2) AS ok`, [key1, key2]);
    if (!rows[0].ok) {
      await runner.release();
      return null;
    }
  } catch (error) {
    await runner.release();
    throw error;
  }
  return {
    connection: runner,
    release: async () => {
      try {
        await runner.query(`SELECT pg_advisory_unlock($1, $2)`, [key1, key2]);
        await runner.release();
      } catch (error) {
        // The connection is broken (its locks went with it): the pool drops it instead of reusing it.
        await (runner as unknown as { releasePostgresConnection(e: unknown): Promise<void> })
          .releasePostgresConnection(error)
          .catch(() => undefined);
      }
    },
  };
}
