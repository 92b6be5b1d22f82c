import { DataSource } from 'typeorm';
import { eventFromRow, Sql } from './event-log';
import { sqlState } from './append-failure';
import { assertPartitionName, LogPartition, readLogPartitions } from './log-partitions';
import {
  COMPACTED,
  COMPACTING,
  createSummarySet,
  deleteSummarySet,
  FoldPosition,
  foldIntoSummaries,
  lockSummaries,
  readSummarySet,
  SummarySet,
  swapCompactingIntoCompacted,
} from './log-summaries';

/**
 * Compaction of the event log (docs/event-log.md, "Partitions, roll-ups and archives"): the events of
 * closed partitions are folded into the per-connection summaries (`log-summaries.ts`), and the
 * partitions are detached from the log, then dropped.
 *
 * A partition is folded in batches, each its own short transaction, into the set `compacting` (on top
 * of `compacted`), with the last row folded; an interrupted fold resumes there. Then one transaction
 * swaps `compacting` into `compacted`, marks the partition compacted and detaches it: a replay sees
 * either the partition in the log or its events in the summaries, never both, never neither. The
 * swap waits until every live or building read-model generation has read past the partition's rows,
 * so no projection misses an event.
 */

/** Only one compaction, archive or drop at a time, across every process (session-level advisory lock). */
const RUN_LOCK = `hashtext('psp-connections:log-maintenance')`;

export class LogMaintenanceBusy extends Error {
  constructor() {
    super('another compaction, archive or drop of the event log is running (one at a time)');
  }
}

/**
 * Runs `run` holding the log-maintenance lock on a connection of its own; throws LogMaintenanceBusy
 * when another process holds it.
 */
export async function withLogMaintenanceLock<T>(db: DataSource, run: () => Promise<T>): Promise<T> {
  const runner = db.createQueryRunner();
  await runner.connect();
  try {
    const [{ locked }]: { locked: boolean }[] = await runner.query(
      `SELECT pg_try_advisory_lock(${RUN_LOCK}) AS locked`,
    );
    if (!locked) throw new LogMaintenanceBusy();
    try {
      return await run();
    } finally {
      await runner.query(`SELECT pg_advisory_unlock(${RUN_LOCK})`).catch(() => undefined);
    }
  } finally {
    await runner.release();
  }
}

export interface CompactionOptions {
  /** Partitions whose range ends at or before this instant (epoch ms). */
  before: number;
  /** Drop the compacted partitions' tables (before `before`) afterwards. */
  drop: boolean;
  /** Rows per fold transaction. */
  batchSize?: number;
  log?: (line: string) => void;
  /** Rows folded so far, of the rows to fold. */
  progress?: (done: number, total: number) => void;
  /** Checked between batches: stop there (the next run resumes). */
  shouldStop?: () => boolean;
  /** Run before each partition's table is dropped (the archive, when there is one). */
  beforeDrop?: (partition: LogPartition) => Promise<void>;
  /**
   * The read model's generations that have not yet read past every row of the partition table named
   * (libs/read-model `generationsBehindLogTable`; the read model's tables are its own): a partition
   * is compacted only once none is.
   */
  generationsBehind: (sql: Sql, partitionTable: string) => Promise<number[]>;
}

export interface CompactionOutcome {
  compacted: { name: string; rows: number }[];
  dropped: string[];
  /** Partitions before `before` left as they are, and why. */
  skipped: { name: string; reason: string }[];
  stopped: boolean;
  summaries: SummarySet | null;
}

export const COMPACTION_BATCH_SIZE = 10_000;

/** Compacts (and with `drop`, drops) the closed partitions before `options.before`; see the file's comment. */
export async function compactLog(db: DataSource, options: CompactionOptions): Promise<CompactionOutcome> {
  return withLogMaintenanceLock(db, () => compactHoldingLock(db, options));
}

async function compactHoldingLock(db: DataSource, options: CompactionOptions): Promise<CompactionOutcome> {
  const log = options.log ?? (() => undefined);
  const outcome: CompactionOutcome = { compacted: [], dropped: [], skipped: [], stopped: false, summaries: null };
  const partitions = (await readLogPartitions(db)).filter((p) => p.to <= options.before && p.table === 'attached');
  const compacting = await readSummarySet(db, COMPACTING);
  if (compacting && !partitions.some((p) => p.name === compacting.folding)) {
    // A fold of a partition that is no longer to be compacted (another --before): start afresh later.
    await deleteSummarySet(db, COMPACTING);
  }
  const closed: LogPartition[] = [];
  for (const p of partitions) {
    if (!p.closed) {
      outcome.skipped.push({ name: p.name, reason: 'open: rows may still arrive' });
      break; // later partitions are open too
    }
    closed.push(p);
  }
  let total = 0;
  for (const p of closed) total += await countRows(db, p.name);
  let done = 0;
  for (const p of closed) {
    const folded = await foldPartition(db, p, options, (n) => options.progress?.((done += n), total));
    if (folded === null) {
      outcome.stopped = true;
      break;
    }
    const behind = await finishCompaction(db, p, options.generationsBehind);
    if (behind.length > 0) {
      const reason = `not yet projected by read-model generation ${behind.join(', ')} (run again once it has caught up)`;
      outcome.skipped.push({ name: p.name, reason });
      log(`${p.name}: ${reason}`);
      break;
    }
    outcome.compacted.push({ name: p.name, rows: folded });
    log(`${p.name}: ${folded} events folded into the summaries; detached from the log`);
  }
  if (options.drop && !outcome.stopped)
    outcome.dropped = await dropCompacted(db, options.before, options.beforeDrop, log);
  outcome.summaries = await readSummarySet(db, COMPACTED);
  return outcome;
}

async function countRows(sql: Sql, name: string): Promise<number> {
  assertPartitionName(name);
  return Number((await sql.query(`SELECT count(*)::text AS n FROM "${name}"`))[0].n);
}

/**
 * Folds the partition's rows into `compacting`, batch by batch, from where an interrupted fold
 * stopped; returns the rows the set holds for it, or null when told to stop.
 *
 * The rows are read in (org_id, connection_id, transaction_id, position) order, through one cursor
 * in a read-only transaction (it takes no transaction id, so it holds no projector back): each
 * connection's events come together, so each summary is read and written about once per partition
 * instead of once per batch. The order does not change the result (the fold is a function of the set
 * of events); it only makes the fold cheap.
 */
async function foldPartition(
  db: DataSource,
  partition: LogPartition,
  options: CompactionOptions,
  progressed: (rows: number) => void,
): Promise<number | null> {
  assertPartitionName(partition.name);
  const existing = await readSummarySet(db, COMPACTING);
  if (existing && existing.folding !== partition.name) await deleteSummarySet(db, COMPACTING);
  await createSummarySet(db, COMPACTING, { partitions: [partition.name], folding: partition.name });
  const set = (await readSummarySet(db, COMPACTING))!;
  if (set.events > 0) progressed(set.events);
  const from = set.foldedTo;
  const batchSize = options.batchSize ?? COMPACTION_BATCH_SIZE;
  const reader = db.createQueryRunner();
  await reader.connect();
  try {
    await reader.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`);
    await reader.query(
      `DECLARE fold_rows NO SCROLL CURSOR FOR
       SELECT transaction_id::text AS tx, position::text AS pos, event_id, org_id, connection_id, type, occurred_at, data
         FROM "${partition.name}"
        WHERE $1::text IS NULL OR (org_id, connection_id, transaction_id, position) > ($1::text, $2::text, $3::xid8, $4::bigint)
        ORDER BY org_id, connection_id, transaction_id, position`,
      [from?.orgId ?? null, from?.connectionId ?? null, from?.transactionId ?? '0', from?.position ?? '0'],
    );
    for (;;) {
      if (options.shouldStop?.()) return null;
      const rows = await reader.query(`FETCH FORWARD ${Math.floor(batchSize)} FROM fold_rows`);
      if (rows.length === 0) break;
      const last = rows[rows.length - 1];
      const foldedTo: FoldPosition = {
        orgId: last.org_id,
        connectionId: last.connection_id,
        transactionId: last.tx,
        position: last.pos,
      };
      await db.transaction((tx) =>
        foldIntoSummaries(tx, COMPACTING, rows.map(eventFromRow), { base: COMPACTED, foldedTo }),
      );
      progressed(rows.length);
    }
  } finally {
    await reader.query(`ROLLBACK`).catch(() => undefined);
    await reader.release();
  }
  return (await readSummarySet(db, COMPACTING))!.events;
}

/**
 * The commit point of a partition's compaction: one transaction swaps its summaries in, marks it
 * compacted and detaches it, unless a live or building generation of the read model has not read
 * past its rows yet (`generationsBehind`: then nothing changes; returns those generations).
 */
async function finishCompaction(
  db: DataSource,
  partition: LogPartition,
  generationsBehind: CompactionOptions['generationsBehind'],
): Promise<number[]> {
  return db.transaction(async (tx) => {
    await lockSummaries(tx);
    const behind = await generationsBehind(tx, partition.name);
    if (behind.length > 0) return behind;
    const set = (await readSummarySet(tx, COMPACTING))!;
    await swapCompactingIntoCompacted(tx);
    await tx.query(
      `UPDATE event_log_partition SET compacted_at = clock_timestamp(), compacted_rows = $2 WHERE name = $1`,
      [partition.name, set.events],
    );
    await detachPartition(tx, partition.name);
    return [];
  });
}

/**
 * DETACH PARTITION takes an ACCESS EXCLUSIVE lock on event_log. It waits at most a second at a time,
 * so that appends and reads queued behind it wait no longer; each try is a savepoint, so the
 * transaction's work is kept between tries (at most 60).
 */
async function detachPartition(tx: Sql, name: string): Promise<void> {
  assertPartitionName(name);
  for (let attempt = 1; ; attempt++) {
    await tx.query(`SAVEPOINT detach_partition`);
    try {
      await tx.query(`SET LOCAL lock_timeout = '1s'`);
      await tx.query(`ALTER TABLE event_log DETACH PARTITION "${name}"`);
      await tx.query(`RELEASE SAVEPOINT detach_partition`);
      return;
    } catch (error) {
      if (sqlState(error) !== '55P03' || attempt >= 60) throw error;
      await tx.query(`ROLLBACK TO SAVEPOINT detach_partition`);
      await new Promise((r) => setTimeout(r, 250 + Math.random() * 500));
    }
  }
}

/** Drops the detached tables of compacted partitions before `before`; returns their names. */
export async function dropCompacted(
  db: DataSource,
  before: number,
  beforeDrop: ((partition: LogPartition) => Promise<void>) | undefined,
  log: (line: string) => void,
): Promise<string[]> {
  const dropped: string[] = [];
  for (const p of await readLogPartitions(db)) {
    if (p.to > before || p.table !== 'detached' || (p.state !== 'compacted' && p.state !== 'archived')) continue;
    if (beforeDrop) await beforeDrop(p);
    assertPartitionName(p.name);
    await db.transaction(async (tx) => {
      await tx.query(`DROP TABLE "${p.name}"`);
      await tx.query(`UPDATE event_log_partition SET dropped_at = clock_timestamp() WHERE name = $1`, [p.name]);
    });
    dropped.push(p.name);
    log(`${p.name}: dropped`);
  }
  return dropped;
}
