import { DataSource } from 'typeorm';
import { Projection, readCheckpoint, RedisReadModel } from '@psp/read-model';
import { logLagAfter } from '@psp/storage';
import { Progress } from './progress';

export interface ReplayOutcome {
  generation: number;
  previous: number;
  eventsApplied: number;
  switched: boolean;
  resumed: boolean;
  seconds: number;
  droppedGenerations: number[];
}

/**
 * Rebuilds the read model from the event log into a new generation beside the live one (the API
 * keeps serving the live one), then switches atomically. Interrupted, it leaves the new generation
 * 'building' with its checkpoint; run again, it resumes there.
 */
export async function replay(
  db: DataSource,
  redis: RedisReadModel | null,
  options: { batchSize: number; shouldStop: () => boolean; log: (line: string) => void; progress?: Progress },
): Promise<ReplayOutcome> {
  const started = Date.now();
  const live: { generation: number }[] = await db.query(
    `SELECT generation FROM projection_generation WHERE status = 'live'`,
  );
  const previous = live[0].generation;
  const building: { generation: number }[] = await db.query(
    `SELECT generation FROM projection_generation WHERE status = 'building' ORDER BY generation DESC LIMIT 1`,
  );
  let generation: number;
  const resumed = building.length > 0;
  if (resumed) {
    generation = building[0].generation;
    options.log(`resuming read-model generation ${generation} (live is ${previous})`);
  } else {
    const created: { generation: number }[] = await db.query(
      `INSERT INTO projection_generation (generation, status) SELECT max(generation) + 1, 'building' FROM projection_generation RETURNING generation`,
    );
    generation = created[0].generation;
    options.log(
      `building read-model generation ${generation} from the event log (live is ${previous}; the API keeps serving it)`,
    );
  }
  // The generation being built is not served until the switch, so nothing of it goes to Redis while
  // it is built: the API fills Redis from PostgreSQL on first read after the switch (version-guarded).
  const projection = new Projection(db, generation, null, options.batchSize);
  const totalRows: { n: string }[] = await db.query(`SELECT count(*)::text AS n FROM event_log`);
  let total = Number(totalRows[0].n);
  let applied = (await readCheckpoint(db, generation)).eventsApplied;
  let lastWaitNote = 0;
  for (;;) {
    if (options.shouldStop()) {
      options.progress?.finish();
      options.log(`interrupted: generation ${generation} holds ${applied} events; run the replay again to resume`);
      return {
        generation,
        previous,
        eventsApplied: applied,
        switched: false,
        resumed,
        seconds: (Date.now() - started) / 1000,
        droppedGenerations: [],
      };
    }
    const step = await projection.step();
    applied = step.checkpoint.eventsApplied;
    if (applied > total) total = applied;
    options.progress?.update(applied, total, step.applied === 0);
    if (step.applied === 0) {
      // Caught up only when no committed event is left after the checkpoint: a transaction still
      // open elsewhere in the cluster holds back the xmin the log is read below, so wait for it.
      const left = await logLagAfter(db, step.checkpoint.at);
      if (left.events === 0) break;
      if (Date.now() - lastWaitNote > 5000) {
        lastWaitNote = Date.now();
        options.log(
          `waiting: ${left.events} events are committed but an older transaction is still open in the cluster`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  options.progress?.finish();
  // Caught up: switch in one transaction. The live projector follows the new generation from its checkpoint.
  await db.transaction(async (tx) => {
    await tx.query(
      `UPDATE projection_generation SET status = 'retired', updated_at = clock_timestamp() WHERE status = 'live'`,
    );
    await tx.query(
      `UPDATE projection_generation SET status = 'live', switched_at = clock_timestamp(), updated_at = clock_timestamp() WHERE generation = $1`,
      [generation],
    );
  });
  options.log(`switched: generation ${generation} is live (${applied} events); generation ${previous} retired`);
  // Keep the generation just retired (API instances may read it for up to a second); drop older ones.
  // Wrapped in a SELECT: TypeORM answers a bare DELETE … RETURNING with [rows, rowCount].
  const old: { generation: number }[] = await db.query(
    `WITH dropped AS (DELETE FROM projection_generation WHERE status = 'retired' AND generation <> $1 RETURNING generation)
     SELECT generation FROM dropped ORDER BY generation`,
    [previous],
  );
  const dropped = old.map((o) => o.generation);
  for (const g of dropped) await redis?.dropGeneration(g).catch(() => 0);
  if (dropped.length > 0) options.log(`dropped retired generations ${dropped.join(', ')}`);
  return {
    generation,
    previous,
    eventsApplied: applied,
    switched: true,
    resumed,
    seconds: (Date.now() - started) / 1000,
    droppedGenerations: dropped,
  };
}
