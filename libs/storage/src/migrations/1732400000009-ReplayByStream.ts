import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A replay folds the log stream by stream (docs/read-model.md, "Replay by stream"): it reads the
 * events up to a fixed position `through`, sorted by connection, and writes each connection once,
 * rendered at the stream time of `through`. While it runs, the generation's checkpoint stays where
 * the fold started; these columns say how far the fold is, so an interrupted replay resumes after
 * the last connection it wrote, with the same `through` and stream time. `fold_events` is what the
 * generation holds once the fold ends (for progress). All null when no fold runs.
 */
export class ReplayByStream1732400000009 implements MigrationInterface {
  name = 'ReplayByStream1732400000009';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE projection_generation
        ADD COLUMN fold_through_transaction_id xid8 NULL,
        ADD COLUMN fold_through_position bigint NULL,
        ADD COLUMN fold_stream_time timestamptz NULL,
        ADD COLUMN fold_events bigint NULL,
        ADD COLUMN fold_after_org text NULL,
        ADD COLUMN fold_after_connection text NULL,
        ADD CONSTRAINT projection_generation_fold_whole CHECK (
          (fold_through_transaction_id IS NULL) = (fold_through_position IS NULL)
          AND (fold_through_transaction_id IS NULL) = (fold_events IS NULL)
          AND (fold_after_org IS NULL) = (fold_after_connection IS NULL))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE projection_generation
        DROP CONSTRAINT projection_generation_fold_whole,
        DROP COLUMN fold_through_transaction_id,
        DROP COLUMN fold_through_position,
        DROP COLUMN fold_stream_time,
        DROP COLUMN fold_events,
        DROP COLUMN fold_after_org,
        DROP COLUMN fold_after_connection`);
  }
}
