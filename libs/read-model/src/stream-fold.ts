import { DataSource } from 'typeorm';
import { advanceStreamTime, applyEvent, ConnectionState, initialConnectionState } from '@psp/domain';
import { planLogRange, readLogByStream, StreamKey } from '@psp/storage';
import {
  advanceGenerationFold,
  beginGenerationFold,
  finishGenerationFold,
  GenerationFold,
  readGenerationFold,
} from './generations';
import { hasShardProgress } from './shard-checkpoints';
import { bumpOrgVersions, hasRowsAfter, readCheckpoint, readStoredStates, writeConnections } from './projection';

/**
 * Replay by stream (docs/read-model.md): a generation being built folds the log up to a fixed
 * position `through` connection by connection, not event by event in the log's order. The database
 * sorts the range by stream; each connection's events are applied in its stream order (the order a
 * step applies them in), and the connection is written ONCE, rendered at the stream time of
 * `through`. Memory holds one page of events and the states of the streams in it, whatever the
 * number of connections; each connection costs one row write. The read model is a function of each
 * connection's events (order-independence.test.ts), so this gives what the steps would give.
 *
 * Each write commits the streams it wrote and how far the fold is (generations.ts); interrupted, a
 * replay resumes after the last stream written, with the same `through` and stream time. Two replays
 * of one generation cannot both write a stream: each write checks that the fold is where it left it.
 */

/** Events fetched at a time (two pages are in memory: one folded, the next one being fetched). */
const FOLD_PAGE_EVENTS = 10000;
/**
 * Connections per write at most: what one write renders and holds (~5 KB each with a full window),
 * whatever the number of events per connection.
 */
const FOLD_WRITE_CONNECTIONS = 2000;

export interface StreamFoldOptions {
  /** At most the events per write (the replay's batch size). */
  pageSize: number;
  shouldStop: () => boolean;
  log: (line: string) => void;
  /** The generation's events applied so far, against what it will hold at `through`. */
  progress?: (applied: number, total: number) => void;
  /** The database's work_mem for the sort (beyond it, PostgreSQL sorts on disk). */
  sortMemory?: string;
}

export interface StreamFoldOutcome {
  /** Events this call folded. */
  folded: number;
  connections: number;
  /** The fold reached `through` (or there was nothing to fold): the steps go on from there. */
  finished: boolean;
}

export async function foldLogByStream(
  db: DataSource,
  generation: number,
  options: StreamFoldOptions,
): Promise<StreamFoldOutcome> {
  const checkpoint = await readCheckpoint(db, generation);
  let fold = await readGenerationFold(db, generation);
  // Shards stepped past the fold's end already (a replay interrupted while catching up): the steps
  // go on from each shard's checkpoint; a new fold would apply their events twice.
  if (fold === null && (await hasShardProgress(db, generation))) return { folded: 0, connections: 0, finished: true };
  if (fold === null) {
    const range = await planLogRange(db, checkpoint.at);
    if (range === null) return { folded: 0, connections: 0, finished: true };
    const planned = {
      through: range.through,
      streamTime:
        range.maxOccurredAt === null
          ? checkpoint.streamTime
          : advanceStreamTime(checkpoint.streamTime, range.maxOccurredAt),
      // What the generation holds once the fold ends.
      events: checkpoint.eventsApplied + range.events,
    };
    if (!(await beginGenerationFold(db, generation, planned)))
      throw new Error(`generation ${generation} is not being built, or another replay began folding it`);
    fold = { ...planned, after: null };
    options.log(
      `folding ${range.events} events by connection into generation ${generation} ` +
        `(up to log position ${range.through.transactionId}/${range.through.position})`,
    );
  } else {
    options.log(
      `resuming the fold of generation ${generation} after ${fold.after ? `${fold.after.orgId}/${fold.after.connectionId}` : 'the first connection'}`,
    );
  }

  let applied = checkpoint.eventsApplied;
  let folded = 0;
  let connections = 0;
  // Whole streams folded and waiting to be written (and their events), and the stream the last page
  // ended in (it may go on in the next one).
  let ready: ConnectionState[] = [];
  let readyEvents = 0;
  let open: ConnectionState | null = null;
  let openEvents = 0;
  // One write in flight at a time, while the next streams are folded: PostgreSQL writes while this
  // process folds and renders. Writes commit in order (each checks the fold is where the one before
  // left it).
  let inFlight: Promise<void> = Promise.resolve();
  const write = async (states: ConnectionState[], events: number, last: boolean): Promise<void> => {
    const expected = fold!.after;
    if (states.length > 0) {
      const tail = states[states.length - 1];
      fold = { ...fold!, after: { orgId: tail.orgId, connectionId: tail.connectionId } };
    }
    await inFlight;
    inFlight = writeStreams(db, generation, { ...fold!, after: expected }, states, events, last).then(() => {
      folded += events;
      connections += states.length;
      applied += events;
      options.progress?.(applied, Math.max(fold!.events, applied));
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

  // Rows of streams still to fold exist only when the generation was seeded (from summaries): the
  // fold writes each stream once, after `fold.after`. Without any, no page needs to look.
  const seeded = await hasRowsAfter(db, generation, fold.after);
  // The next page is fetched while this one is folded (the sort's cursor and the writes run on their
  // own connections).
  const pages = readLogByStream(
    db,
    { after: checkpoint.at, through: fold.through, afterStream: fold.after },
    { pageSize: Math.min(options.pageSize, FOLD_PAGE_EVENTS), sortMemory: options.sortMemory },
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
          if (readyEvents >= options.pageSize || ready.length >= FOLD_WRITE_CONNECTIONS) await flush();
        }
        if (open === null) {
          open =
            stored.get(`${event.orgId}:${event.connectionId}`)?.state ??
            initialConnectionState(event.orgId, event.connectionId);
          openEvents = 0;
        }
        applyEvent(open, event);
        openEvents++;
      }
      if (options.shouldStop()) {
        // The whole streams folded are written; the one the page ended in is folded again next time.
        if (ready.length > 0) await flush();
        await inFlight;
        return { folded, connections, finished: false };
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
  return { folded, connections, finished: true };
}

/** One transaction: the streams written, the fold moved past them; the last write also ends the fold. */
async function writeStreams(
  db: DataSource,
  generation: number,
  fold: GenerationFold,
  states: ConnectionState[],
  events: number,
  last: boolean,
): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('psp-connections:projection'), $1)`, [generation]);
    if (states.length > 0) {
      const written = await writeConnections(tx, generation, states, fold.streamTime);
      await bumpOrgVersions(tx, generation, written);
      const tail = states[states.length - 1];
      const after = { orgId: tail.orgId, connectionId: tail.connectionId };
      if (!(await advanceGenerationFold(tx, generation, fold.after, after, events)))
        throw new Error(`the fold of generation ${generation} moved meanwhile: another replay is folding it`);
    }
    if (last) await finishGenerationFold(tx, generation);
  });
}
