import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { ConnectionEvent, ConnectionState } from '@psp/domain';
import { SETTINGS, Settings } from '@psp/config';
import {
  blamedCopyLine,
  classifyAppendFailure,
  copyEvents,
  CopyClient,
  EventSource,
  EventToAppend,
  findLoggedEventIds,
  isUniqueViolation,
  readStreamsAfter,
  Sql,
  unstorableDetail,
  violatedConstraint,
} from '@psp/storage';
import { SourceMessage } from '@psp/messaging';
import { AggregateCache } from './aggregate-cache';
import { ConnectionAggregate, streamKey } from './connection-aggregate';

/** An accepted event and the Kafka message it came from. */
export interface SourcedEvent {
  event: ConnectionEvent;
  source: EventSource;
  /** The message itself (key, value, headers), for the DLQ should the log refuse to store it. */
  message?: Pick<SourceMessage, 'key' | 'value' | 'headers' | 'timestamp'>;
}

/** An event that the log refused to store because of what it holds (CONTRACT 2.4 `unstorable`). */
export interface UnstorableEvent extends SourcedEvent {
  /** The `dlq-detail`: the database's complaint by SQLSTATE, never quoting the value. */
  detail: string;
}

export interface RecordOutcome {
  appended: number;
  duplicates: number;
  conflictsRetried: number;
  /** Events left out of the log because it refused their content; the caller sends them to the DLQ. */
  unstorable: UnstorableEvent[];
}

const MAX_ATTEMPTS = 20;
/**
 * An aggregate evicted from memory with at least this many events since its last snapshot gets a
 * snapshot in the append that evicted it, so loading it again reads at most this many events.
 */
const SNAPSHOT_ON_EVICTION = 50;

/**
 * The write side's connection streams: keeps each connection's aggregate in memory (loaded from its
 * latest snapshot plus the events after it), and appends a batch of events to the log with expected
 * stream versions, in one transaction. A version or event_id conflict (another writer got there
 * first) is retried with fresh aggregates, never lost; an event_id already logged is a duplicate and
 * changes nothing.
 */
@Injectable()
export class ConnectionStreams {
  private readonly logger = new Logger('ConnectionStreams');
  private readonly aggregates: AggregateCache;
  private queue: Promise<unknown> = Promise.resolve();
  /** The event a failed append's COPY blamed, by error (see recordIsolating). */
  private readonly blamedEvent = new WeakMap<object, string>();

  constructor(
    @Inject(DataSource) private readonly db: DataSource,
    @Inject(SETTINGS) private readonly settings: Settings,
  ) {
    this.aggregates = new AggregateCache(settings.writerAggregateCache);
  }

  /**
   * Appends the events not yet in the log. One append at a time per process. Events the log refuses
   * because of what they hold are left out and returned as `unstorable`; every other failure rejects.
   */
  record(events: SourcedEvent[]): Promise<RecordOutcome> {
    const run = this.queue.then(() => this.recordIsolating(events));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * One message never holds back the others (CONTRACT 2.4): when PostgreSQL refuses the append
   * because of what a message holds (`classifyAppendFailure` says `content`), the events are split
   * and the parts appended one after the other, until the refused ones stand alone. When the COPY
   * names the row it refused, that row is split off first (three appends find it); otherwise the
   * events are halved (about 2·log2(n) appends per refused message). Parts are appended in order,
   * so a stream's events keep their order. An infrastructure failure rejects as before: the caller
   * retries everything, nothing is dropped for it.
   */
  private async recordIsolating(events: SourcedEvent[]): Promise<RecordOutcome> {
    try {
      return { ...(await this.recordWithRetry(events)), unstorable: [] };
    } catch (error) {
      if (classifyAppendFailure(error) !== 'content') throw error;
      if (events.length === 1) {
        const detail = unstorableDetail(error);
        const { source, event } = events[0];
        this.logger.warn(
          `event ${event.eventId} (${source.topic}/${source.partition}@${source.offset}) refused by the event log: ${detail} It goes to the DLQ as unstorable`,
        );
        return { appended: 0, duplicates: 0, conflictsRetried: 0, unstorable: [{ ...events[0], detail }] };
      }
      const total: RecordOutcome = { appended: 0, duplicates: 0, conflictsRetried: 0, unstorable: [] };
      for (const part of this.splitAround(events, error)) {
        const outcome = await this.recordIsolating(part);
        total.appended += outcome.appended;
        total.duplicates += outcome.duplicates;
        total.conflictsRetried += outcome.conflictsRetried;
        total.unstorable.push(...outcome.unstorable);
      }
      return total;
    }
  }

  /** Parts, each smaller than `events`: around the event the error blames, or two halves. */
  private splitAround(events: SourcedEvent[], error: unknown): SourcedEvent[][] {
    const blamed = this.blamedEvent.get(error as object);
    const i = blamed === undefined ? -1 : events.findIndex((e) => e.event.eventId === blamed);
    if (i < 0) {
      const half = events.length >>> 1;
      return [events.slice(0, half), events.slice(half)];
    }
    return [events.slice(0, i), [events[i]], events.slice(i + 1)].filter((part) => part.length > 0);
  }

  private async recordWithRetry(events: SourcedEvent[]): Promise<Omit<RecordOutcome, 'unstorable'>> {
    // Optimistic: append without asking the log first; the unique index on event_id refuses a
    // duplicate. Only after such a refusal (a re-delivery, a producer's retry, a concurrent writer)
    // does the next attempt look the batch's ids up and leave the logged ones out.
    let lookUpDuplicates = false;
    for (let attempt = 1; ; attempt++) {
      try {
        const outcome = await this.tryRecord(events, lookUpDuplicates);
        return { ...outcome, conflictsRetried: attempt - 1 };
      } catch (error) {
        if (!isUniqueViolation(error) || attempt >= MAX_ATTEMPTS) throw error;
        if (violatedConstraint(error) === 'event_log_event_id') {
          lookUpDuplicates = true;
        } else {
          this.logger.warn(
            `append conflict (attempt ${attempt}): another writer appended to the same streams; retrying with fresh versions`,
          );
          await new Promise((r) => setTimeout(r, Math.min(1000, 10 * 2 ** attempt) * Math.random()));
        }
      }
    }
  }

  private async tryRecord(
    events: SourcedEvent[],
    lookUpDuplicates: boolean,
  ): Promise<Pick<RecordOutcome, 'appended' | 'duplicates'>> {
    // The same event_id twice in one batch: the first one counts.
    const firstById = new Map<string, SourcedEvent>();
    for (const e of events) if (!firstById.has(e.event.eventId)) firstById.set(e.event.eventId, e);
    const logged = lookUpDuplicates ? await findLoggedEventIds(this.db, [...firstById.keys()]) : new Set<string>();
    const fresh = [...firstById.values()].filter((e) => !logged.has(e.event.eventId));
    const duplicates = events.length - fresh.length;
    if (fresh.length === 0) return { appended: 0, duplicates };

    const { touched, evicted } = await this.load(fresh.map((e) => e.event));
    try {
      // Each event is applied to its aggregate (and so gets its stream version) as the COPY stream
      // takes it, so PostgreSQL inserts the first rows while the later ones are applied and built.
      const rows = (function* (): Generator<EventToAppend> {
        for (const { event, source } of fresh)
          yield {
            event,
            source,
            streamVersion: touched.get(streamKey(event.orgId, event.connectionId))!.record(event),
          };
      })();
      let due: ConnectionAggregate[] = [];
      await this.db.transaction(async (tx) => {
        await copyEvents((await tx.queryRunner!.connect()) as CopyClient, rows);
        // Written in this transaction, so each snapshot's (version, state) is that of the committed
        // log; an evicted aggregate that this append also touched is snapshotted after its events.
        const dueNow = new Set<ConnectionAggregate>();
        for (const a of touched.values())
          if (a.version - a.snapshotVersion >= this.settings.writerSnapshotEvery) dueNow.add(a);
        for (const a of evicted) if (a.version - a.snapshotVersion >= SNAPSHOT_ON_EVICTION) dueNow.add(a);
        due = [...dueNow];
        await saveSnapshots(tx, due);
      });
      for (const a of due) a.snapshotVersion = a.version;
      return { appended: fresh.length, duplicates };
    } catch (error) {
      // The in-memory aggregates may be ahead of the log now: forget them, they reload next time.
      for (const key of touched.keys()) this.aggregates.delete(key);
      const line = blamedCopyLine(error);
      if (line !== undefined && line >= 1 && line <= fresh.length && typeof error === 'object' && error !== null)
        this.blamedEvent.set(error, fresh[line - 1].event.eventId);
      throw error;
    }
  }

  /**
   * The aggregates of the events' streams, loading the ones not in memory; and the aggregates that
   * loading them evicted from memory.
   */
  private async load(
    events: ConnectionEvent[],
  ): Promise<{ touched: Map<string, ConnectionAggregate>; evicted: ConnectionAggregate[] }> {
    const result = new Map<string, ConnectionAggregate>();
    const evicted: ConnectionAggregate[] = [];
    const missing = new Map<string, { orgId: string; connectionId: string }>();
    for (const e of events) {
      const key = streamKey(e.orgId, e.connectionId);
      if (result.has(key) || missing.has(key)) continue;
      const cached = this.aggregates.get(key);
      if (cached) result.set(key, cached);
      else missing.set(key, { orgId: e.orgId, connectionId: e.connectionId });
    }
    if (missing.size > 0) {
      const loaded = await loadAggregates(this.db, [...missing.values()]);
      for (const [key, aggregate] of loaded) {
        for (const old of this.aggregates.set(key, aggregate)) evicted.push(old);
        result.set(key, aggregate);
      }
    }
    return { touched: result, evicted };
  }

  /** Forgets every aggregate in memory (after a rebalance, streams may be written elsewhere). */
  forget(): void {
    this.aggregates.clear();
  }
}

/** Loads aggregates from their snapshots and the events logged after them. */
export async function loadAggregates(
  sql: Sql,
  streams: { orgId: string; connectionId: string }[],
): Promise<Map<string, ConnectionAggregate>> {
  const snapshots: { org_id: string; connection_id: string; stream_version: number; state: ConnectionState }[] =
    await sql.query(
      `SELECT s.org_id, s.connection_id, s.stream_version, s.state
       FROM unnest($1::text[], $2::text[]) AS k(org_id, connection_id)
       JOIN connection_snapshot s ON s.org_id = k.org_id AND s.connection_id = k.connection_id`,
      [streams.map((s) => s.orgId), streams.map((s) => s.connectionId)],
    );
  const result = new Map<string, ConnectionAggregate>();
  for (const s of streams)
    result.set(streamKey(s.orgId, s.connectionId), ConnectionAggregate.empty(s.orgId, s.connectionId));
  for (const row of snapshots) {
    result.set(
      streamKey(row.org_id, row.connection_id),
      ConnectionAggregate.fromSnapshot(row.org_id, row.connection_id, row.stream_version, row.state),
    );
  }
  const tail = await readStreamsAfter(
    sql,
    [...result.values()].map((a) => ({ orgId: a.orgId, connectionId: a.connectionId, afterVersion: a.version })),
  );
  for (const { event, streamVersion } of tail) {
    const aggregate = result.get(streamKey(event.orgId, event.connectionId))!;
    aggregate.record(event);
    if (aggregate.version !== streamVersion)
      throw new Error(`stream ${event.orgId}/${event.connectionId} has a gap before version ${streamVersion}`);
  }
  return result;
}

async function saveSnapshots(sql: Sql, aggregates: ConnectionAggregate[]): Promise<void> {
  if (aggregates.length === 0) return;
  await sql.query(
    `INSERT INTO connection_snapshot (org_id, connection_id, stream_version, state)
     SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::json[])
     ON CONFLICT (org_id, connection_id) DO UPDATE
       SET stream_version = EXCLUDED.stream_version, state = EXCLUDED.state, taken_at = clock_timestamp()
       WHERE connection_snapshot.stream_version < EXCLUDED.stream_version`,
    [
      aggregates.map((a) => a.orgId),
      aggregates.map((a) => a.connectionId),
      aggregates.map((a) => a.version),
      aggregates.map((a) => JSON.stringify(a.state)),
    ],
  );
}
