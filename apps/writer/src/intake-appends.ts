import type { RecordOutcome, SourcedEvent } from './connection-streams';

/** The next offset to consume in one topic partition: what Kafka stores as the group's position. */
export interface PartitionOffset {
  topic: string;
  partition: number;
  /** The offset after the last message handled, as Kafka's commit wants it. */
  offset: string;
}

export interface IntakeAppendsOptions {
  /** Appends events to the event log, durably; resolves after the commit. */
  record(events: SourcedEvent[]): Promise<RecordOutcome>;
  /** Commits consumer offsets to Kafka. A failure is reported to onCommitFailure, never retried here. */
  commit(offsets: PartitionOffset[]): Promise<void>;
  /**
   * How much may wait for the next append before add() waits for room: events, and bytes of the
   * messages they came from (what keeps memory bounded when messages are large, up to 64 KiB each).
   */
  maxWaiting: { events: number; bytes: number };
  /** After every durable append (for the totals). */
  onAppended?(outcome: RecordOutcome): void;
  /** An offset commit failed: harmless (a re-delivery is a duplicate), but worth a line in the log. */
  onCommitFailure?(error: unknown): void;
  /**
   * An append failed. Everything waiting was dropped and no later offset will be committed; the owner
   * must restart consumption from the last committed offsets, then call reset().
   */
  onAppendFailure(error: unknown): void;
  /** The clock, for the recovery after shrink() (tests). */
  now?: () => number;
}

/** After shrink(), the bound doubles back after this long without another shrink (up to maxWaiting). */
export const WAITING_RECOVERY_MS = 10_000;
/** shrink() never takes the bound below this share of maxWaiting. */
export const MIN_WAITING_SCALE = 1 / 16;

interface Waiting {
  events: SourcedEvent[];
  /** Σ of the message sizes of `events`. */
  bytes: number;
  /** Per topic partition, the newest offset handled, and the consumer generation it was handled in. */
  offsets: Map<string, PartitionOffset>;
}

const ZERO: RecordOutcome = { appended: 0, duplicates: 0, conflictsRetried: 0, unstorable: [] };

/**
 * The write side's group append. Kafka batches (one partition each) are validated and handed here
 * without waiting for PostgreSQL, so the consumer fetches the next batches while the log is written.
 * Everything that arrived while an append was in flight goes into the next one: one transaction for
 * the batches of several partitions (group commit). One append at a time, in arrival order.
 *
 * Offsets are committed only after the append holding their events is durable, in append order, so a
 * committed offset never passes an event that is not in the log. Offsets noted before a rebalance are
 * not committed at all (the partition may be someone else's now); the re-delivery that follows is
 * recognised by event_id and changes nothing. If an append fails, whatever waits behind it is dropped
 * uncommitted and the owner restarts consumption from the committed offsets: nothing is skipped.
 */
export class IntakeAppends {
  private waiting: Waiting = emptyWaiting();
  private appending: Promise<void> | null = null;
  private commits: Promise<void> = Promise.resolve();
  /** Bumped by newGeneration(); offsets are committed only if noted in the current one. */
  private generation = 0;
  private waitingGeneration = 0;
  private failure: unknown = null;
  private roomWaiters: (() => void)[] = [];
  /** The share of maxWaiting in force: 1 unless memory ran short (shrink). */
  private scale = 1;
  private shrunkAt = -Infinity;

  constructor(private readonly options: IntakeAppendsOptions) {}

  /** Whether an append failed and the owner has not reset yet. */
  get failed(): boolean {
    return this.failure !== null;
  }

  /** Events waiting for the next append (not counting the one in flight). */
  get waitingEvents(): number {
    return this.waiting.events.length;
  }

  /**
   * Hands over a batch's accepted events (`bytes`: the size of their messages) and the offset after
   * its last message. Resolves true once there is room for more (the caller may then mark the batch as
   * handled and fetch on), false if an append failed: the batch was not taken and must be consumed
   * again after the restart.
   */
  async add(events: SourcedEvent[], offset: PartitionOffset, bytes = 0): Promise<boolean> {
    if (this.failure !== null) return false;
    if (this.waitingGeneration !== this.generation) {
      // Offsets from an older generation are never committed; the events still go in.
      this.waiting.offsets.clear();
      this.waitingGeneration = this.generation;
    }
    for (const e of events) this.waiting.events.push(e);
    this.waiting.bytes += bytes;
    this.waiting.offsets.set(`${offset.topic}\u0000${offset.partition}`, offset);
    this.startAppending();
    while (this.full() && this.failure === null) await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    return this.failure === null;
  }

  /** After a rebalance: what was noted so far is appended but its offsets are not committed. */
  newGeneration(): void {
    this.generation += 1;
  }

  /** Waits until everything handed over is appended and its offsets are committed (or failed). */
  async drain(): Promise<void> {
    while (this.appending !== null) await this.appending;
    await this.commits;
  }

  /**
   * Memory runs short: from now on half as much may wait for the next append (so appends get
   * smaller too), down to MIN_WAITING_SCALE of maxWaiting. The bound doubles back after every
   * WAITING_RECOVERY_MS without another shrink. Kafka keeps what is not fetched meanwhile.
   */
  shrink(): void {
    this.scale = Math.max(MIN_WAITING_SCALE, this.scale / 2);
    this.shrunkAt = this.now();
  }

  /** What may wait for the next append now: events, and bytes of their messages. */
  get waitingBound(): { events: number; bytes: number } {
    const max = this.options.maxWaiting;
    return { events: Math.max(1, Math.floor(max.events * this.scale)), bytes: Math.max(1, max.bytes * this.scale) };
  }

  /** After the owner restarted consumption following a failed append. */
  reset(): void {
    this.failure = null;
    this.waiting = emptyWaiting();
    this.generation += 1;
    this.waitingGeneration = this.generation;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private full(): boolean {
    const max = this.waitingBound;
    return this.waiting.events.length >= max.events || this.waiting.bytes >= max.bytes;
  }

  private startAppending(): void {
    if (this.appending !== null || this.failure !== null) return;
    if (this.waiting.events.length === 0 && this.waiting.offsets.size === 0) return;
    this.appending = this.appendAll().finally(() => {
      this.appending = null;
      this.startAppending();
    });
  }

  private async appendAll(): Promise<void> {
    while (this.failure === null && (this.waiting.events.length > 0 || this.waiting.offsets.size > 0)) {
      const taken = this.waiting;
      const generation = this.waitingGeneration;
      this.waiting = emptyWaiting();
      this.releaseRoomWaiters();
      let outcome: RecordOutcome;
      try {
        outcome = taken.events.length > 0 ? await this.options.record(taken.events) : ZERO;
      } catch (error) {
        this.fail(error);
        return;
      }
      this.options.onAppended?.(outcome);
      if (this.scale < 1 && this.now() - this.shrunkAt >= WAITING_RECOVERY_MS) {
        this.scale = Math.min(1, this.scale * 2);
        this.shrunkAt = this.now(); // the next doubling after another quiet while
      }
      if (generation === this.generation && taken.offsets.size > 0) {
        const offsets = [...taken.offsets.values()];
        this.commits = this.commits.then(() =>
          this.options.commit(offsets).catch((error) => this.options.onCommitFailure?.(error)),
        );
      }
    }
  }

  private fail(error: unknown): void {
    this.failure = error;
    this.waiting = emptyWaiting();
    this.releaseRoomWaiters();
    this.options.onAppendFailure(error);
  }

  private releaseRoomWaiters(): void {
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

function emptyWaiting(): Waiting {
  return { events: [], bytes: 0, offsets: new Map() };
}
