import { DataSource } from 'typeorm';
import {
  buildingGeneration,
  dropRetiredGenerations,
  liveGeneration,
  readCheckpoint,
  switchLiveGeneration,
} from './generations';
import { DEFAULT_STATE_CACHE_BYTES, Projection } from './projection';
import { claimGenerationCatchUp } from './shard-leases';
import { RedisReadModel } from './redis-read-model';
import { createSeededGeneration, GenerationSeed } from './summary-seed';
import { foldLogByStream } from './stream-fold';

export interface ReplayOutcome {
  generation: number;
  previous: number;
  eventsApplied: number;
  switched: boolean;
  resumed: boolean;
  seconds: number;
  droppedGenerations: number[];
}

/** Where a replay reports how far it is (the ops command line draws it). */
export interface ReplayProgress {
  update(done: number, total: number, waiting: boolean): void;
  finish(): void;
}

export interface ReplayOptions {
  batchSize: number;
  shouldStop: () => boolean;
  log: (line: string) => void;
  progress?: ReplayProgress;
  /** Bound of the connection states kept in memory while building (PROJECTOR_STATE_CACHE_BYTES). */
  stateCacheBytes?: number;
  /** Shards folded at once by this process (DEFAULT_FOLD_PARALLELISM). */
  parallel?: number;
  /**
   * Creates the new generation (when none is being built), seeded with what the log no longer holds:
   * by default the summaries of the compacted partitions (`createSeededGeneration`).
   */
  createGeneration?: (db: DataSource) => Promise<{ generation: number; seed: GenerationSeed | null }>;
}

/**
 * The generation lifecycle of CONTRACT 3.4: rebuilds the read model from the event log (after
 * compaction: from the compacted partitions' summaries and the partitions still in the log) into a new
 * generation beside the live one (the API keeps serving the live one), then switches atomically.
 * Interrupted, it leaves the new generation 'building' with its checkpoint; run again, it resumes
 * there. Nothing of the generation being built goes to Redis (it is not served until the switch; the
 * API fills Redis from PostgreSQL afterwards, version-guarded); `redis` is only used to drop the keys
 * of generations retired for good.
 */
export async function replay(
  db: DataSource,
  redis: RedisReadModel | null,
  options: ReplayOptions,
): Promise<ReplayOutcome> {
  const started = Date.now();
  const previous = await liveGeneration(db);
  let generation = await buildingGeneration(db);
  const resumed = generation !== null;
  if (generation !== null) {
    options.log(`resuming read-model generation ${generation} (live is ${previous})`);
  } else {
    const created = await (options.createGeneration ?? createSeededGeneration)(db);
    generation = created.generation;
    const seed = created.seed;
    options.log(
      seed === null
        ? `building read-model generation ${generation} from the event log (live is ${previous}; the API keeps serving it)`
        : `building read-model generation ${generation} from ${seed.source} ` +
            `(${seed.events} events, ${seed.connections} connections) and the partitions in the log ` +
            `(live is ${previous}; the API keeps serving it)`,
    );
  }
  // The log up to now, folded connection by connection (each written once), then the steps catch up
  // with what was appended meanwhile.
  const fold = await foldLogByStream(db, generation, {
    pageSize: options.batchSize,
    shouldStop: options.shouldStop,
    log: options.log,
    progress: (done, total) => options.progress?.update(done, total, false),
    parallel: options.parallel,
  });
  const run: ReplayRun = { generation, previous, resumed, started };
  if (!fold.finished) return interrupted(options, run, (await readCheckpoint(db, generation)).eventsApplied);
  if (fold.connections > 0)
    options.log(`folded ${fold.folded} events into ${fold.connections} connections; catching up with the log`);
  // One replay catches up and switches; another that folded shards beside it waits, then finds it done.
  const catchUp = await claimGenerationCatchUp(db, generation);
  try {
    const now = await readCheckpoint(db, generation);
    if (now.status !== 'building') {
      options.progress?.finish();
      options.log(`generation ${generation} was switched by another replay (${now.status})`);
      return outcome(run, now.eventsApplied, now.status === 'live', []);
    }
    return await catchUpAndSwitch(db, redis, options, run);
  } finally {
    await catchUp.release();
  }
}

/** The steps from the fold's end to the log's end, then the switch (under the generation's catch-up lock). */
async function catchUpAndSwitch(
  db: DataSource,
  redis: RedisReadModel | null,
  options: ReplayOptions,
  run: ReplayRun,
): Promise<ReplayOutcome> {
  const { generation, previous } = run;
  // The steps grow from a tenth of the batch up to the batch while a shard is behind, within the
  // projector's bound of what a step may hold (nextStepLimit).
  const projection = new Projection(
    db,
    generation,
    null,
    Math.max(1, Math.floor(options.batchSize / 10)),
    options.stateCacheBytes ?? DEFAULT_STATE_CACHE_BYTES,
    { maxBatchSize: options.batchSize },
  );
  const start = await readCheckpoint(db, generation);
  let applied = start.eventsApplied;
  // What it holds (the events it was seeded with included) and what the log holds after its shards' checkpoints.
  let total = applied + (await projection.lag());
  let lastWaitNote = 0;
  for (;;) {
    if (options.shouldStop()) return interrupted(options, run, applied);
    const step = await projection.step();
    applied = step.checkpoint.eventsApplied;
    if (applied > total) total = applied;
    options.progress?.update(applied, total, step.applied === 0);
    if (step.applied === 0) {
      // Caught up only when no committed event is left after the checkpoint: a transaction still
      // open elsewhere in the cluster holds back the xmin the log is read below, so wait for it.
      const left = await projection.lag();
      if (left === 0) break;
      if (Date.now() - lastWaitNote > 5000) {
        lastWaitNote = Date.now();
        options.log(`waiting: ${left} events are committed but an older transaction is still open in the cluster`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  options.progress?.finish();
  // Caught up: switch in one transaction. The live projector follows the new generation from its checkpoint.
  await switchLiveGeneration(db, generation);
  options.log(`switched: generation ${generation} is live (${applied} events); generation ${previous} retired`);
  // Keep the generation just retired (API instances may read it for up to a second); drop older ones.
  const dropped = await dropRetiredGenerations(db, previous);
  for (const g of dropped) await redis?.dropGeneration(g).catch(() => 0);
  if (dropped.length > 0) options.log(`dropped retired generations ${dropped.join(', ')}`);
  return outcome(run, applied, true, dropped);
}

/** The replay under way: its generation, the one live when it began, and when it began. */
interface ReplayRun {
  generation: number;
  previous: number;
  resumed: boolean;
  started: number;
}

function outcome(run: ReplayRun, eventsApplied: number, switched: boolean, dropped: number[]): ReplayOutcome {
  return {
    generation: run.generation,
    previous: run.previous,
    eventsApplied,
    switched,
    resumed: run.resumed,
    seconds: (Date.now() - run.started) / 1000,
    droppedGenerations: dropped,
  };
}

/** Stopped when told to (Ctrl-C): what the generation holds stays; running again resumes it. */
function interrupted(options: ReplayOptions, run: ReplayRun, held: number): ReplayOutcome {
  options.progress?.finish();
  options.log(`interrupted: generation ${run.generation} holds ${held} events; run the replay again to resume`);
  return outcome(run, held, false, []);
}
