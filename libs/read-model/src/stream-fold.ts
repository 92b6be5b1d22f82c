import { DataSource, QueryRunner } from 'typeorm';
import { advanceStreamTime, applyEvent, ConnectionState, initialConnectionState } from '@psp/domain';
import { planLogRange, readLogByStream, StreamKey } from '@psp/storage';
import {
  advanceShardFold,
  beginGenerationFold,
  finishGenerationFold,
  GenerationFold,
  readCheckpoint,
  readGenerationFold,
  readShardFolds,
  ShardFold,
} from './generations';
import { hasShardProgress } from './shard-checkpoints';
import { storedState, writeConnections } from './projection';
import { hasRowsAfter, readStoredStates } from './connection-rows';
import { bumpOrgVersions } from './org-read-model';
import { claimShardFold } from './shard-leases';
import { lockShardStep } from './shard-lock';

/**
 * Replay by stream (docs/read-model.md): a generation being built folds the log up to a fixed
 * position `through` connection by connection, not event by event in the log's order. The database
 * sorts the range by stream; each connection's events are applied in its stream order (the order a
 * step applies them in), and the connection is written ONCE, rendered at the stream time of
 * `through`. Memory holds one page of events and the states of the streams in it, whatever the
 * number of connections; each connection costs one row write. The read model is a function of each
 * connection's events (order-independence.test.ts), so this gives what the steps would give.
 *
 * The shards fold in parallel (`parallel` at a time in this process; other `ops replay` processes
 * take the shards left): one shard's fold is taken under a session advisory lock (claimShardFold) and
 * reads only that shard's streams. Each write commits the streams it wrote and how far that shard's
 * fold is (generations.ts); interrupted, a replay resumes each shard after the last stream it wrote,
 * with the same `through` and stream time. Two replays cannot both write a stream: each write checks
 * that its shard's fold is where it left it. The fold ends when every shard's has.
 */

/**
 * Events fetched at a time by the whole process (two pages are in memory per shard being folded: one
 * folded, the next one being fetched), shared by the shards folded at once, so that memory does not
 * grow with --parallel.
 */
const FOLD_PAGE_EVENTS = 10000;
/**
 * Connections per write at most, shared likewise: what the writes render and hold (~5 KB each with a
 * full window), whatever the number of events per connection.
 */
const FOLD_WRITE_CONNECTIONS = 2000;

/** One shard fold's share of the process's page and write bounds when `parallel` fold at once. */
export function foldShare(pageSize: number, parallel: number): { pageEvents: number; writeConnections: number } {
  return {
    pageEvents: Math.max(Math.min(pageSize, 1000), Math.floor(Math.min(pageSize, FOLD_PAGE_EVENTS) / parallel)),
    writeConnections: Math.max(250, Math.floor(FOLD_WRITE_CONNECTIONS / parallel)),
  };
}

export interface StreamFoldOptions {
  /** At most the events per write (the replay's batch size). */
  pageSize: number;
  shouldStop: () => boolean;
  log: (line: string) => void;
  /** The generation's events applied so far, against what it will hold at `through`. */
  progress?: (applied: number, total: number) => void;
  /** The database's work_mem for each shard's sort (beyond it, PostgreSQL sorts on disk). */
  sortMemory?: string;
  /** Shards folded at once by this process (default DEFAULT_FOLD_PARALLELISM). */
  parallel?: number;
}

/** Shards a replay folds at once: PostgreSQL reads and sorts one shard while this process folds another. */
export const DEFAULT_FOLD_PARALLELISM = 2;

export interface StreamFoldOutcome {
  /** Events this call folded. */
  folded: number;
  connections: number;
  /** The fold reached `through` (or there was nothing to fold): the steps go on from there. */
  finished: boolean;
}

/** What this process folded so far, shared by its shards' folds. */
interface FoldTally {
  folded: number;
  connections: number;
  applied: number;
}

export async function foldLogByStream(
  db: DataSource,
  generation: number,
  options: StreamFoldOptions,
): Promise<StreamFoldOutcome> {
  const checkpoint = await readCheckpoint(db, generation);
  let fold = await readGenerationFold(db, generation);
  /** Whether the generation was seeded; undefined when resuming (each shard then looks for itself). */
  let seeded: boolean | undefined;
  // Shards stepped past the fold's end already (a replay interrupted while catching up): the steps
  // go on from each shard's checkpoint; a new fold would apply their events twice.
  if (fold === null && (await hasShardProgress(db, generation))) return { folded: 0, connections: 0, finished: true };
  if (fold === null) {
    const range = await planLogRange(db, checkpoint.at);
    if (range === null) return { folded: 0, connections: 0, finished: true };
    const planned: GenerationFold = {
      through: range.through,
      streamTime:
        range.maxOccurredAt === null
          ? checkpoint.streamTime
          : advanceStreamTime(checkpoint.streamTime, range.maxOccurredAt),
      // What the generation holds once the fold ends.
      events: checkpoint.eventsApplied + range.events,
    };
    // Rows already there were seeded (from summaries): known now for every shard, before any write.
    seeded = await hasRowsAfter(db, generation, null, null);
    if (!(await beginGenerationFold(db, generation, planned)))
      throw new Error(`generation ${generation} is not being built, or another replay began folding it`);
    fold = planned;
    options.log(
      `folding ${range.events} events by connection into generation ${generation} ` +
        `(up to log position ${range.through.transactionId}/${range.through.position}), shards in parallel`,
    );
  } else {
    const left = (await readShardFolds(db, generation)).filter((f) => !f.finished).length;
    options.log(`resuming the fold of generation ${generation}: ${left} of 16 shards still folding`);
  }

  const tally: FoldTally = { folded: 0, connections: 0, applied: checkpoint.eventsApplied };
  // Each shard being folded holds a connection (its claim and its sorted read) and needs a second
  // one now and then to write: at most the pool's size less one at once, so a write always gets one.
  const pool = (db.options as { poolSize?: number }).poolSize ?? 10;
  const parallel = Math.max(1, Math.min(16, pool - 1, Math.floor(options.parallel ?? DEFAULT_FOLD_PARALLELISM)));
  let failed = false;
  const stopping = (): boolean => failed || options.shouldStop();
  for (;;) {
    const left = (await readShardFolds(db, generation)).filter((f) => !f.finished);
    if (left.length === 0) break;
    // Each task takes the next shard no other fold holds and folds it to its end.
    let heldElsewhere = 0;
    const queue = [...left];
    const task = async (): Promise<void> => {
      for (let next = queue.shift(); next !== undefined && !stopping(); next = queue.shift()) {
        const claim = await claimShardFold(db, generation, next.shard);
        if (claim === null) {
          heldElsewhere += 1;
          continue;
        }
        try {
          // Read again under the claim: a fold that held the shard until now moved it.
          const current = (await readShardFolds(db, generation)).find((f) => f.shard === next!.shard)!;
          if (!current.finished)
            await foldShard(
              db,
              generation,
              fold!,
              current,
              tally,
              claim.connection,
              seeded,
              foldShare(options.pageSize, parallel),
              {
                ...options,
                shouldStop: stopping,
              },
            );
        } finally {
          await claim.release();
        }
      }
    };
    const outcomes = await Promise.allSettled(
      Array.from({ length: Math.min(parallel, left.length) }, () =>
        task().catch((error: unknown) => {
          failed = true;
          throw error;
        }),
      ),
    );
    const rejected = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (rejected) throw rejected.reason;
    if (options.shouldStop()) return { folded: tally.folded, connections: tally.connections, finished: false };
    // Shards another replay holds: wait for it to fold them (or to die, which frees them).
    if (heldElsewhere > 0) await new Promise((r) => setTimeout(r, 250));
  }
  // Every shard folded (another process may have ended the fold already).
  await finishGenerationFold(db, generation);
  return { folded: tally.folded, connections: tally.connections, finished: true };
}

/** Folds one shard's streams after where its fold stands, to `through`; returns early when told to stop. */
async function foldShard(
  db: DataSource,
  generation: number,
  fold: GenerationFold,
  shardFold: ShardFold,
  tally: FoldTally,
  /** The connection the shard's claim holds: the shard's log is read on it. */
  connection: QueryRunner,
  /** Whether the generation was seeded, when known (a fold begun by this call). */
  seededGeneration: boolean | undefined,
  /** This fold's share of the process's page and write bounds (foldShare). */
  share: { pageEvents: number; writeConnections: number },
  options: StreamFoldOptions,
): Promise<void> {
  const { shard } = shardFold;
  const checkpoint = await readCheckpoint(db, generation);
  let after = shardFold.after;
  // Whole streams folded and waiting to be written (and their events), and the stream the last page
  // ended in (it may go on in the next one).
  let ready: ConnectionState[] = [];
  let readyEvents = 0;
  let open: ConnectionState | null = null;
  let openEvents = 0;
  // One write in flight at a time, while the next streams are folded: PostgreSQL writes while this
  // process folds and renders. Writes commit in order (each checks the shard's fold is where the one
  // before left it).
  let inFlight: Promise<void> = Promise.resolve();
  const write = async (states: ConnectionState[], events: number, last: boolean): Promise<void> => {
    const expected = after;
    const tail = states.length > 0 ? states[states.length - 1] : null;
    if (tail !== null) after = { orgId: tail.orgId, connectionId: tail.connectionId };
    const move = { expected, after: tail === null ? null : after, applied: events, finished: last };
    await inFlight;
    inFlight = writeStreams(db, generation, shard, fold, states, move).then(() => {
      tally.folded += events;
      tally.connections += states.length;
      tally.applied += events;
      options.progress?.(tally.applied, Math.max(fold.events, tally.applied));
    });
    inFlight.catch(() => undefined); // awaited by the next write or at the end; never left unhandled
    if (last) await inFlight;
  };
  const flush = async (): Promise<void> => {
    const states = ready;
    const events = readyEvents;
    ready = [];
    readyEvents = 0;
    await write(states, events, false);
  };

  // Rows of this shard's streams still to fold exist only when the generation was seeded (from
  // summaries): the fold writes each stream once, after `after`. Without any, no page needs to look.
  const seeded = seededGeneration ?? (await hasRowsAfter(db, generation, shard, after));
  // The next page is fetched while this one is folded (the sort's cursor and the writes run on their
  // own connections).
  const pages = readLogByStream(
    db,
    { after: checkpoint.at, through: fold.through, afterStream: after, shard },
    { pageSize: share.pageEvents, sortMemory: options.sortMemory, connection },
  );
  try {
    let next = pages.next();
    for (;;) {
      const fetched = await next;
      if (fetched.done) break;
      next = pages.next();
      next.catch(() => undefined); // awaited above on the next turn; never left unhandled
      const page = fetched.value;
      // The stored states of the streams that begin in this page (seeded from summaries, else none).
      const begun = new Map<string, StreamKey>();
      for (const e of page) {
        if (open !== null && open.orgId === e.orgId && open.connectionId === e.connectionId) continue;
        begun.set(`${e.orgId}:${e.connectionId}`, { orgId: e.orgId, connectionId: e.connectionId });
      }
      const stored: Awaited<ReturnType<typeof readStoredStates>> = seeded
        ? await readStoredStates(db, generation, [...begun.values()])
        : new Map();
      for (const event of page) {
        if (open !== null && (open.orgId !== event.orgId || open.connectionId !== event.connectionId)) {
          ready.push(open);
          readyEvents += openEvents;
          open = null;
          if (readyEvents >= options.pageSize || ready.length >= share.writeConnections) await flush();
        }
        if (open === null) {
          const seed = stored.get(`${event.orgId}:${event.connectionId}`);
          open = seed ? storedState(seed.stored) : initialConnectionState(event.orgId, event.connectionId);
          openEvents = 0;
        }
        applyEvent(open, event);
        openEvents++;
      }
      if (options.shouldStop()) {
        // The whole streams folded are written; the one the page ended in is folded again next time.
        if (ready.length > 0) await flush();
        await inFlight;
        return;
      }
    }
  } finally {
    await pages.return(undefined);
    await inFlight.catch(() => undefined);
  }
  if (open !== null) {
    ready.push(open);
    readyEvents += openEvents;
  }
  await write(ready, readyEvents, true);
}

/**
 * One transaction under the shard's step lock: the streams written, the shard's fold moved past them
 * (its last write also marks it finished).
 */
async function writeStreams(
  db: DataSource,
  generation: number,
  shard: number,
  fold: GenerationFold,
  states: ConnectionState[],
  move: Parameters<typeof advanceShardFold>[3],
): Promise<void> {
  await db.transaction(async (tx) => {
    await lockShardStep(tx, generation, shard);
    if (states.length > 0) {
      const written = await writeConnections(tx, generation, states, fold.streamTime);
      await bumpOrgVersions(tx, generation, written);
    }
    if (!(await advanceShardFold(tx, generation, shard, move)))
      throw new Error(
        `the fold of shard ${shard} of generation ${generation} moved meanwhile: another replay is folding it`,
      );
  });
}
