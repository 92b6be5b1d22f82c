import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The event log (source of truth) and the write side's aggregate snapshots. See docs/event-log.md.
 */
export class EventLog1732400000000 implements MigrationInterface {
  name = 'EventLog1732400000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE event_log (
        position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        event_id text NOT NULL,
        org_id text NOT NULL,
        connection_id text NOT NULL,
        stream_version integer NOT NULL CHECK (stream_version > 0),
        type text NOT NULL,
        occurred_at timestamptz NOT NULL,
        data json NOT NULL, -- json, not jsonb: keeps the producer's key order (free-form capabilities)
        source_topic text NOT NULL,
        source_partition integer NOT NULL,
        source_offset bigint NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
    await q.query(`CREATE UNIQUE INDEX event_log_event_id ON event_log (event_id)`);
    await q.query(`CREATE UNIQUE INDEX event_log_stream_version ON event_log (org_id, connection_id, stream_version)`);
    await q.query(`CREATE INDEX event_log_tail ON event_log (transaction_id, position)`);
    // Append-only: rows are never updated or deleted.
    await q.query(`
      CREATE FUNCTION event_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'event_log is append-only: % is not allowed', TG_OP;
      END $$`);
    await q.query(`
      CREATE TRIGGER event_log_append_only BEFORE UPDATE OR DELETE ON event_log
      FOR EACH ROW EXECUTE FUNCTION event_log_is_append_only()`);
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

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE connection_snapshot`);
    await q.query(`DROP TABLE event_log`);
    await q.query(`DROP FUNCTION event_log_is_append_only()`);
  }
}
