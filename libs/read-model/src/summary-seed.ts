import { DataSource } from 'typeorm';
import { ConnectionState } from '@psp/domain';
import { COMPACTED, lockSummaries, readSummaries, readSummarySet, Sql } from '@psp/storage';
import { createBuildingGeneration, setGenerationSeed } from './generations';
import { writeConnections } from './projection';
import { seedOrgVersions } from './org-read-model';

/**
 * A replay after compaction (docs/event-log.md, "Partitions, roll-ups and archives") starts from the
 * summaries of the compacted partitions instead of their events: the new generation gets every
 * summarised connection, rendered at the summaries' stream time, that stream time and the count of
 * summarised events; the projection then applies the partitions still in the log on top, from the
 * start of the log. Since the read model is a function of the set of events (every rule folds with
 * mergeable operations), this gives the same state, and the same API answers, as a replay of the
 * whole log.
 */

export interface GenerationSeed {
  /** The summary set it came from. */
  set: string;
  /** What the summaries were built from, for the replay's log line. */
  source: string;
  partitions: string[];
  events: number;
  streamTime: number | null;
  connections: number;
}

/** Summaries rendered per statement while seeding. */
const SEED_PAGE = 2000;

/**
 * Creates a `building` generation seeded from summary set `set` (the compacted partitions' by
 * default), in one transaction that holds the summaries lock: a compaction cannot swap new summaries
 * in meanwhile, and once the generation exists it will not detach a partition before this generation
 * has read past it. `check` runs under the lock first (a replay from an archive checks there that the
 * archive covers every compacted partition).
 */
export async function createSeededGeneration(
  db: DataSource,
  options: {
    set?: string;
    /** What the set was built from (default: the compacted partitions). */
    source?: string;
    check?: (tx: Sql) => Promise<void>;
    progress?: (connections: number, total: number) => void;
  } = {},
): Promise<{ generation: number; seed: GenerationSeed | null }> {
  const name = options.set ?? COMPACTED;
  return db.transaction(async (tx) => {
    await lockSummaries(tx);
    if (options.check) await options.check(tx);
    const generation = await createBuildingGeneration(tx);
    const set = await readSummarySet(tx, name);
    if (set === null || (set.events === 0 && set.connections === 0)) return { generation, seed: null };
    let connections = 0;
    let after: ConnectionState | null = null;
    for (;;) {
      const page = await readSummaries(tx, name, after, SEED_PAGE);
      if (page.length === 0) break;
      await writeConnections(tx, generation, page, set.streamTime);
      await seedOrgVersions(
        tx,
        generation,
        page.map((s) => s.orgId),
      );
      connections += page.length;
      after = page[page.length - 1];
      options.progress?.(connections, set.connections);
    }
    await setGenerationSeed(tx, generation, { streamTime: set.streamTime, events: set.events });
    return {
      generation,
      seed: {
        set: name,
        source: options.source ?? `the summaries of ${set.partitions.length} compacted partition(s)`,
        partitions: set.partitions,
        events: set.events,
        streamTime: set.streamTime,
        connections,
      },
    };
  });
}
