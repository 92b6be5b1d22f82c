import { Settings } from '@psp/config';
import { stopOnSignal, withDb } from '../context';
import { EXIT, say } from '../output';
import { Progress } from '../progress';
import {
  createGenerationFromArchive,
  createRedis,
  DEFAULT_FOLD_PARALLELISM,
  RedisReadModel,
  replay,
} from '@psp/read-model';

/** A rebuild reads far more than the live projector: larger batches, fewer transactions. */
export const REPLAY_BATCH_SIZE = 50000;

/**
 * `ops replay`: rebuilds the read model beside the live one, then switches; Ctrl-C stops after the
 * batch. It starts from the compacted partitions' summaries, or with `fromArchive` from the archived
 * rows of the partitions no longer in the log (docs/event-log.md).
 */
export async function runReplay(
  settings: Settings,
  options: { batch: number; fromArchive?: string; parallel?: number },
): Promise<number> {
  const shouldStop = stopOnSignal();
  const redis = createRedis(settings, 'ops');
  try {
    return await withDb(
      settings,
      async (db) => {
        const outcome = await replay(db, new RedisReadModel(redis, settings.redisKeyPrefix), {
          batchSize: options.batch,
          shouldStop,
          log: say,
          progress: new Progress('replay', { unit: 'events' }),
          stateCacheBytes: settings.projectorStateCacheBytes,
          parallel: options.parallel,
          createGeneration: options.fromArchive
            ? (database) =>
                createGenerationFromArchive(database, options.fromArchive!, {
                  log: say,
                  progress: archiveProgress(),
                })
            : undefined,
        });
        const rate = outcome.seconds > 0 ? Math.round(outcome.eventsApplied / outcome.seconds) : 0;
        say(
          outcome.switched
            ? `replay done: generation ${outcome.generation} live with ${outcome.eventsApplied} events in ${outcome.seconds.toFixed(1)} s (${rate} events/s)`
            : `replay stopped: generation ${outcome.generation} not switched`,
        );
        return outcome.switched ? EXIT.ok : EXIT.interrupted;
      },
      // Each shard folded at once holds a connection; its writes and the rest share the others.
      { poolSize: Math.min(16, options.parallel ?? DEFAULT_FOLD_PARALLELISM) + 3 },
    );
  } finally {
    redis.disconnect();
  }
}

function archiveProgress(): { update(done: number, total: number): void; finish(): void } {
  const progress = new Progress('reading the archive', { unit: 'events' });
  return { update: (done, total) => progress.update(done, total), finish: () => progress.finish() };
}
