import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { ConnectionEvent } from '@psp/domain';
import { SETTINGS, Settings } from '@psp/config';
import {
  blamedCopyLine,
  classifyAppendFailure,
  copyEvents,
  CopyClient,
  ensureLogPartitions,
  EventSource,
  EventToAppend,
  findLoggedEventIds,
  isMissingPartition,
  isUniqueViolation,
  readStreamVersions,
  unstorableDetail,
  violatedConstraint,
} from '@psp/storage';
import { SourceMessage } from '@psp/messaging';
import { writerMetrics } from './metrics';
import { streamKey, StreamVersions } from './stream-versions';

/** An accepted event and the Kafka message it came from. */
export interface SourcedEvent {
  event: ConnectionEvent;
  source: EventSource;
  /** The message itself (key, value, headers), for the DLQ should the log refuse to store it. */
  message?: Pick<SourceMessage, 'key' | 'value' | 'headers' | 'timestamp'>;
  /** The W3C trace context its message carried (`traceparent[ tracestate]`), kept with the event. */
  traceContext?: string | null;
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
 * The write side's connection streams: appends a batch of events to the log with expected stream
 * versions, in one transaction. It holds only what the append needs, each stream's version, in a
 * cache bounded in bytes (a stream not in it costs one index probe). A version or event_id conflict
 * (another writer got there first) is retried with fresh versions, never lost; an event_id already
 * logged is a duplicate and changes nothing. The contract's counters and health are folded once, by
 * the projection (docs/decisions.md, "What the write side holds").
 */
@Injectable()
export class ConnectionStreams {
  private readonly logger = new Logger('ConnectionStreams');
  private readonly versions: StreamVersions;
  private queue: Promise<unknown> = Promise.resolve();
  /** The event a failed append's COPY blamed, by error (see recordIsolating). */
  private readonly blamedEvent = new WeakMap<object, string>();

  constructor(
    @Inject(DataSource) private readonly db: DataSource,
    @Inject(SETTINGS) private readonly settings: Settings,
  ) {
    this.versions = new StreamVersions(settings.writerStreamCacheBytes);
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
        if (isMissingPartition(error) && attempt < MAX_ATTEMPTS) {
          // The partitions ahead were not created in time (the writer creates them at start and
          // every LOG_MAINTENANCE_MS): create the one now needed and append again.
          const created = await ensureLogPartitions(this.db, {
            widthDays: this.settings.logPartitionDays,
            aheadDays: this.settings.logPartitionsAheadDays,
          });
          this.logger.warn(`no event-log partition for the append's time: created ${created}; appending again`);
          continue;
        }
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
    if (fresh.length === 0) {
      writerMetrics().recorded(events, fresh);
      return { appended: 0, duplicates };
    }

    const versions = await this.currentVersions(fresh.map((e) => e.event));
    try {
      // Each event gets its stream version as the COPY stream takes it, so PostgreSQL inserts the
      // first rows while the later ones are built.
      const rows = (function* (): Generator<EventToAppend> {
        for (const { event, source, traceContext } of fresh) {
          const key = streamKey(event.orgId, event.connectionId);
          const streamVersion = versions.get(key)! + 1;
          versions.set(key, streamVersion);
          yield { event, source, streamVersion, traceContext };
        }
      })();
      await this.db.transaction(async (tx) => {
        await copyEvents((await tx.queryRunner!.connect()) as CopyClient, rows);
      });
      for (const [key, version] of versions) this.versions.set(key, version);
      writerMetrics().recorded(events, fresh);
      return { appended: fresh.length, duplicates };
    } catch (error) {
      // Another writer may have moved these streams: look their versions up again next time.
      for (const key of versions.keys()) this.versions.delete(key);
      const line = blamedCopyLine(error);
      if (line !== undefined && line >= 1 && line <= fresh.length && typeof error === 'object' && error !== null)
        this.blamedEvent.set(error, fresh[line - 1].event.eventId);
      throw error;
    }
  }

  /** The current version of each stream the events belong to (a copy: the append moves it on). */
  private async currentVersions(events: ConnectionEvent[]): Promise<Map<string, number>> {
    const result = new Map<string, number>();
    const missing = new Map<string, { orgId: string; connectionId: string }>();
    for (const e of events) {
      const key = streamKey(e.orgId, e.connectionId);
      if (result.has(key) || missing.has(key)) continue;
      const cached = this.versions.get(key);
      if (cached !== undefined) result.set(key, cached);
      else missing.set(key, { orgId: e.orgId, connectionId: e.connectionId });
    }
    if (missing.size > 0)
      for (const s of await readStreamVersions(this.db, [...missing.values()]))
        result.set(streamKey(s.orgId, s.connectionId), s.version);
    return result;
  }

  /** Forgets every stream version in memory (after a rebalance, streams may be written elsewhere). */
  forget(): void {
    this.versions.clear();
  }

  /** Memory runs short: forgets the less recently used half of the stream versions; returns how many. */
  shedOlderVersions(): number {
    return this.versions.shedOlder();
  }

  /** Streams whose version is in memory, and the bytes their tables take. */
  get cachedVersions(): { streams: number; bytes: number } {
    return { streams: this.versions.size, bytes: this.versions.bytes };
  }
}
