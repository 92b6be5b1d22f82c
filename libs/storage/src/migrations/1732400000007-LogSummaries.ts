import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Roll-ups of the event log (docs/event-log.md, "Partitions, roll-ups and archives"): the events of
 * compacted partitions folded into one summary per connection (the domain's ConnectionState over
 * those events), plus the global stream time and the count of what was folded; and what became of
 * each partition (compacted, archived, dropped).
 *
 * A summary set is a named group of summaries: `compacted` (every compacted partition), `compacting`
 * (the partition being folded, on top of `compacted`, until it is swapped in), and `archive:<n>`
 * (built from an archive by a replay, then deleted).
 */
export class LogSummaries1732400000007 implements MigrationInterface {
  name = 'LogSummaries1732400000007';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE event_log_partition
        ADD COLUMN compacted_at timestamptz NULL,
        ADD COLUMN compacted_rows bigint NULL,
        ADD COLUMN archived_at timestamptz NULL,
        ADD COLUMN archived_rows bigint NULL,
        ADD COLUMN archive_file text NULL,
        ADD COLUMN archive_sha256 text NULL,
        ADD COLUMN dropped_at timestamptz NULL`);
    await q.query(`
      CREATE TABLE log_summary_set (
        name text PRIMARY KEY,
        -- greatest occurred_at of the events folded into the set (null: none yet)
        stream_time timestamptz NULL,
        -- events folded into the set
        events bigint NOT NULL DEFAULT 0,
        -- partitions whose events the set holds, oldest first
        partitions text[] NOT NULL DEFAULT '{}',
        -- while a partition is being folded (set compacting): which one, and the last row folded in
        -- the fold's order (org_id, connection_id, transaction_id, position)
        folding text NULL,
        folded_org_id text NULL,
        folded_connection_id text NULL,
        folded_transaction_id xid8 NULL,
        folded_position bigint NULL,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
    await q.query(`
      CREATE TABLE log_summary (
        summary_set text NOT NULL REFERENCES log_summary_set (name) ON DELETE CASCADE,
        org_id text NOT NULL,
        connection_id text NOT NULL,
        state json NOT NULL,
        PRIMARY KEY (summary_set, org_id, connection_id)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE log_summary`);
    await q.query(`DROP TABLE log_summary_set`);
    await q.query(`
      ALTER TABLE event_log_partition
        DROP COLUMN compacted_at, DROP COLUMN compacted_rows, DROP COLUMN archived_at, DROP COLUMN archived_rows,
        DROP COLUMN archive_file, DROP COLUMN archive_sha256, DROP COLUMN dropped_at`);
  }
}
