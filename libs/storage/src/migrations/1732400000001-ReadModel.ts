import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The projector's read model, by generation so a replay can build a new one beside the live one.
 * See docs/read-model.md.
 */
export class ReadModel1732400000001 implements MigrationInterface {
  name = 'ReadModel1732400000001';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE projection_generation (
        generation integer PRIMARY KEY,
        status text NOT NULL CHECK (status IN ('building', 'live', 'retired')),
        checkpoint_transaction_id xid8 NOT NULL DEFAULT '0',
        checkpoint_position bigint NOT NULL DEFAULT 0,
        stream_time timestamptz NULL,
        events_applied bigint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        switched_at timestamptz NULL,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
    await q.query(
      `CREATE UNIQUE INDEX projection_generation_one_live ON projection_generation (status) WHERE status = 'live'`,
    );
    await q.query(
      `INSERT INTO projection_generation (generation, status, switched_at) VALUES (1, 'live', clock_timestamp())`,
    );
    await q.query(`
      CREATE TABLE connection_read_model (
        generation integer NOT NULL REFERENCES projection_generation (generation) ON DELETE CASCADE,
        org_id text NOT NULL,
        connection_id text NOT NULL,
        listed boolean NOT NULL,
        provider text NULL,
        status text NULL,
        labels text[] NOT NULL DEFAULT '{}',
        health_score double precision NULL,
        health_status text NULL,
        created_at timestamptz NULL,
        updated_at timestamptz NULL,
        last_call_minute bigint NULL,
        document text NULL,
        state json NOT NULL,
        PRIMARY KEY (generation, org_id, connection_id)
      )`);
    await q.query(
      `CREATE INDEX connection_read_model_recent_calls ON connection_read_model (generation, last_call_minute) WHERE last_call_minute IS NOT NULL`,
    );
    await q.query(`
      CREATE TABLE org_read_model (
        generation integer NOT NULL REFERENCES projection_generation (generation) ON DELETE CASCADE,
        org_id text NOT NULL,
        version bigint NOT NULL,
        PRIMARY KEY (generation, org_id)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE org_read_model`);
    await q.query(`DROP TABLE connection_read_model`);
    await q.query(`DROP TABLE projection_generation`);
  }
}
