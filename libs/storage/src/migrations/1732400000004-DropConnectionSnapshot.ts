import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The writer no longer folds connection state (it keeps only stream versions, which the log's
 * unique index answers), so the snapshots of that state are gone. See docs/decisions.md, "What the
 * write side holds".
 */
export class DropConnectionSnapshot1732400000004 implements MigrationInterface {
  name = 'DropConnectionSnapshot1732400000004';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS connection_snapshot`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE connection_snapshot (
        org_id text NOT NULL,
        connection_id text NOT NULL,
        stream_version integer NOT NULL,
        state json NOT NULL,
        taken_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (org_id, connection_id)
      )`);
  }
}
