import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Where a projection is stuck: the event it cannot get past, since when, and why. Written by the
 * projector outside the step that failed, read by /readyz and `ops lag`. See docs/read-model.md.
 */
export class ProjectionStall1732400000003 implements MigrationInterface {
  name = 'ProjectionStall1732400000003';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE projection_stall (
        generation integer PRIMARY KEY REFERENCES projection_generation (generation) ON DELETE CASCADE,
        event_id text NULL,
        log_transaction_id xid8 NULL,
        log_position bigint NULL,
        since timestamptz NOT NULL,
        attempts integer NOT NULL,
        error text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE projection_stall`);
  }
}
