import { callEvent, T0 } from '@psp/domain/testing/events';
import type { RecordOutcome, SourcedEvent } from './connection-streams';
import { IntakeAppends, IntakeAppendsOptions, PartitionOffset, WAITING_RECOVERY_MS } from './intake-appends';

/** A record() whose appends complete when the test says so. */
class ControlledLog {
  readonly appends: { events: SourcedEvent[]; done: (error?: Error) => void }[] = [];
  readonly committed: PartitionOffset[][] = [];
  readonly failures: unknown[] = [];
  readonly commitFailures: unknown[] = [];
  failCommits = false;

  options(maxWaiting = 1000, maxBytes = 1_000_000): IntakeAppendsOptions {
    return {
      maxWaiting: { events: maxWaiting, bytes: maxBytes },
      record: (events) =>
        new Promise<RecordOutcome>((resolve, reject) =>
          this.appends.push({
            events,
            done: (error) =>
              error
                ? reject(error)
                : resolve({ appended: events.length, duplicates: 0, conflictsRetried: 0, unstorable: [] }),
          }),
        ),
      commit: async (offsets) => {
        if (this.failCommits) throw new Error('not the coordinator');
        this.committed.push(offsets);
      },
      onCommitFailure: (error) => this.commitFailures.push(error),
      onAppendFailure: (error) => this.failures.push(error),
    };
  }
}

let sequence = 0;
function events(n: number, partition = 0): SourcedEvent[] {
  return Array.from({ length: n }, () => {
    const offset = String(sequence++);
    return {
      event: callEvent(`e${offset}`, T0),
      source: { topic: 'calls', partition, offset },
    };
  });
}
const at = (partition: number, offset: number): PartitionOffset => ({
  topic: 'calls',
  partition,
  offset: String(offset),
});
const settle = () => new Promise((r) => setImmediate(r));

describe('IntakeAppends (the writer group append)', () => {
  it('appends the first batch at once and everything that arrives meanwhile in one next append', async () => {
    const log = new ControlledLog();
    const appends = new IntakeAppends(log.options());
    expect(await appends.add(events(3, 0), at(0, 3))).toBe(true);
    expect(await appends.add(events(2, 1), at(1, 2))).toBe(true);
    expect(await appends.add(events(4, 2), at(2, 4))).toBe(true);
    await settle();
    expect(log.appends.map((a) => a.events.length)).toEqual([3]);
    log.appends[0].done();
    await settle();
    expect(log.appends.map((a) => a.events.length)).toEqual([3, 6]);
    log.appends[1].done();
    await appends.drain();
    expect(log.appends).toHaveLength(2);
  });

  it('commits offsets only after the append holding their events is durable, in order, newest per partition', async () => {
    const log = new ControlledLog();
    const appends = new IntakeAppends(log.options());
    await appends.add(events(3, 0), at(0, 3));
    await appends.add(events(2, 0), at(0, 5));
    await appends.add(events(1, 1), at(1, 1));
    await settle();
    expect(log.committed).toEqual([]);
    log.appends[0].done();
    await settle();
    expect(log.committed).toEqual([[at(0, 3)]]);
    log.appends[1].done();
    await appends.drain();
    expect(log.committed).toEqual([[at(0, 3)], [at(0, 5), at(1, 1)]]);
  });

  it('commits the offset of a batch without accepted events (all to the DLQ) after the appends before it', async () => {
    const log = new ControlledLog();
    const appends = new IntakeAppends(log.options());
    await appends.add(events(2, 0), at(0, 2));
    await appends.add([], at(0, 7));
    await settle();
    expect(log.committed).toEqual([]);
    log.appends[0].done();
    await appends.drain();
    expect(log.appends).toHaveLength(1);
    expect(log.committed).toEqual([[at(0, 2)], [at(0, 7)]]);
  });

  it('holds the consumer back while too many events wait, and lets it on when the next append takes them', async () => {
    const log = new ControlledLog();
    const appends = new IntakeAppends(log.options(5));
    await appends.add(events(1), at(0, 1)); // taken at once by the first append
    let room = false;
    const adding = appends.add(events(6), at(0, 7)).then((ok) => (room = ok));
    await settle();
    expect(room).toBe(false);
    expect(appends.waitingEvents).toBe(6);
    log.appends[0].done();
    await adding;
    expect(room).toBe(true);
    expect(appends.waitingEvents).toBe(0);
    log.appends[1].done();
    await appends.drain();
  });

  it('holds the consumer back while the waiting messages are too many bytes, whatever their number', async () => {
    const log = new ControlledLog();
    const appends = new IntakeAppends(log.options(1000, 64 * 1024));
    await appends.add(events(1), at(0, 1), 100); // taken at once by the first append
    expect(await appends.add(events(1), at(0, 2), 32 * 1024)).toBe(true);
    let room = false;
    const adding = appends.add(events(1), at(0, 3), 32 * 1024).then((ok) => (room = ok));
    await settle();
    expect(room).toBe(false);
    log.appends[0].done();
    await adding;
    expect(room).toBe(true);
    log.appends[1].done();
    await appends.drain();
  });

  it('after a failed append: drops what waits, commits nothing later, refuses batches until reset', async () => {
    const log = new ControlledLog();
    const appends = new IntakeAppends(log.options(5));
    await appends.add(events(2, 0), at(0, 2));
    await appends.add(events(1, 0), at(0, 3));
    const heldBack = appends.add(events(5, 1), at(1, 5));
    await settle();
    log.appends[0].done(new Error('connection terminated'));
    expect(await heldBack).toBe(false);
    await appends.drain();
    expect(log.failures).toHaveLength(1);
    expect(log.committed).toEqual([]);
    expect(log.appends).toHaveLength(1);
    expect(appends.failed).toBe(true);
    expect(await appends.add(events(1, 0), at(0, 4))).toBe(false);
    expect(log.appends).toHaveLength(1);

    appends.reset();
    expect(appends.failed).toBe(false);
    expect(await appends.add(events(2, 0), at(0, 2))).toBe(true);
    await settle();
    expect(log.appends[1].events).toHaveLength(2);
    log.appends[1].done();
    await appends.drain();
    expect(log.committed).toEqual([[at(0, 2)]]);
  });

  it('after a rebalance: appends what was handed over but never commits the offsets noted before it', async () => {
    const log = new ControlledLog();
    const appends = new IntakeAppends(log.options());
    await appends.add(events(2, 0), at(0, 2)); // in flight during the rebalance
    await appends.add(events(1, 1), at(1, 1)); // waiting during the rebalance
    appends.newGeneration();
    await appends.add(events(1, 2), at(2, 1)); // after it
    await settle();
    log.appends[0].done();
    await settle();
    expect(log.appends[1].events).toHaveLength(2);
    log.appends[1].done();
    await appends.drain();
    expect(log.committed).toEqual([[at(2, 1)]]);
  });

  it('a failed offset commit is reported and later commits still happen', async () => {
    const log = new ControlledLog();
    const appends = new IntakeAppends(log.options());
    log.failCommits = true;
    await appends.add(events(1, 0), at(0, 1));
    await settle();
    log.appends[0].done();
    await appends.drain();
    expect(log.commitFailures).toHaveLength(1);
    log.failCommits = false;
    await appends.add(events(1, 0), at(0, 2));
    await settle();
    log.appends[1].done();
    await appends.drain();
    expect(log.committed).toEqual([[at(0, 2)]]);
  });

  it('drain() waits for the appends in hand and their commits', async () => {
    const log = new ControlledLog();
    const appends = new IntakeAppends(log.options());
    await appends.add(events(1, 0), at(0, 1));
    await appends.add(events(1, 0), at(0, 2));
    let drained = false;
    const draining = appends.drain().then(() => (drained = true));
    await settle();
    expect(drained).toBe(false);
    log.appends[0].done();
    await settle();
    expect(drained).toBe(false);
    log.appends[1].done();
    await draining;
    expect(log.committed).toEqual([[at(0, 1)], [at(0, 2)]]);
  });
});

describe('IntakeAppends under memory pressure (shrink)', () => {
  it('halves what may wait at each shrink, down to a sixteenth, and doubles back after quiet appends', async () => {
    const log = new ControlledLog();
    let now = 0;
    const appends = new IntakeAppends({ ...log.options(1600, 1_600_000), now: () => now });
    expect(appends.waitingBound).toEqual({ events: 1600, bytes: 1_600_000 });
    appends.shrink();
    expect(appends.waitingBound).toEqual({ events: 800, bytes: 800_000 });
    for (let i = 0; i < 10; i++) appends.shrink();
    expect(appends.waitingBound).toEqual({ events: 100, bytes: 100_000 });

    // With the bound shrunk, add() waits for room at 100 events.
    expect(await appends.add(events(1, 0), at(0, 1))).toBe(true); // taken by the first append at once
    let resolved = false;
    const adding = appends.add(events(100, 0), at(0, 101)).then((ok) => (resolved = ok));
    await settle();
    expect(resolved).toBe(false);

    // A quiet while later, each completed append doubles the bound back.
    now = WAITING_RECOVERY_MS;
    log.appends[0].done();
    await settle();
    await adding;
    expect(appends.waitingBound.events).toBe(200);
    log.appends[1].done();
    await settle();
    expect(appends.waitingBound.events).toBe(200); // no quiet while since the last doubling
    now = 2 * WAITING_RECOVERY_MS;
    await appends.add(events(1, 0), at(0, 102));
    log.appends[2].done();
    await appends.drain();
    expect(appends.waitingBound.events).toBe(400);
  });
});
