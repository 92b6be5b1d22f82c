import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A replay folds the shards in parallel (docs/read-model.md, "Replay by stream"): the fold's plan
 * (`through`, its stream time, the events the generation holds at its end) stays one per generation
 * in projection_generation, and how far each shard's fold is moves to `projection_shard_fold`, one
 * row per shard of the generation being folded: the last stream (org, connection) of that shard
 * written, and whether the shard's fold is done. Several folds (tasks of one process, or several
 * `ops replay` processes) then write different shards at once. The rows exist only while a fold
 * runs. A fold in progress when this migration runs continues shard by shard: every shard has
 * written the streams up to the single position recorded so far.
 */
export class ShardFolds1732400000013 implements MigrationInterface {
  name = 'ShardFolds1732400000013';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE projection_shard_fold (
        generation integer NOT NULL REFERENCES projection_generation (generation) ON DELETE CASCADE,
        shard smallint NOT NULL CHECK (shard >= 0 AND shard < 16),
        after_org text NULL,
        after_connection text NULL,
        finished boolean NOT NULL DEFAULT false,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (generation, shard),
        CHECK ((after_org IS NULL) = (after_connection IS NULL))
      )`);
    await q.query(`
      INSERT INTO projection_shard_fold (generation, shard, after_org, after_connection)
      SELECT g.generation, s, g.fold_after_org, g.fold_after_connection
        FROM projection_generation g, generate_series(0, 15) s
       WHERE g.fold_through_transaction_id IS NOT NULL`);
    await q.query(`
      ALTER TABLE projection_generation
        DROP CONSTRAINT projection_generation_fold_whole,
        DROP COLUMN fold_after_org,
        DROP COLUMN fold_after_connection,
        ADD CONSTRAINT projection_generation_fold_whole CHECK (
          (fold_through_transaction_id IS NULL) = (fold_through_position IS NULL)
          AND (fold_through_transaction_id IS NULL) = (fold_events IS NULL))`);
  }

  async down(q: QueryRunner): Promise<void> {
    const folding: unknown[] = await q.query(`SELECT 1 FROM projection_shard_fold LIMIT 1`);
    if (folding.length > 0)
      throw new Error('a replay is folding shards: finish it (ops replay) before reverting this migration');
    await q.query(`
      ALTER TABLE projection_generation
        DROP CONSTRAINT projection_generation_fold_whole,
        ADD COLUMN fold_after_org text NULL,
        ADD COLUMN fold_after_connection text NULL,
        ADD CONSTRAINT projection_generation_fold_whole CHECK (
          (fold_through_transaction_id IS NULL) = (fold_through_position IS NULL)
          AND (fold_through_transaction_id IS NULL) = (fold_events IS NULL)
          AND (fold_after_org IS NULL) = (fold_after_connection IS NULL))`);
    await q.query(`DROP TABLE projection_shard_fold`);
  }
}
