import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The sharded projection (docs/read-model.md, "Sharded projection"). Every org belongs to one of 16
 * shards, `psp_shard(org_id)` (the same function as `shardOfOrg` in libs/domain); each shard of a
 * generation has its own checkpoint and stream time (`projection_shard`; a shard without a row stands
 * at its generation's checkpoint, which a replay's fold sets for all shards at once), and one lease
 * (`projection_shard_lease`): the fencing token of the process that holds the shard. The event log
 * and the due index of health changes are indexed by shard, so that a shard's step reads its own
 * events and due connections only. The view projection_progress sums a generation's events.
 */
export class ShardedProjection1732400000011 implements MigrationInterface {
  name = 'ShardedProjection1732400000011';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION psp_shard(org_id text) RETURNS integer
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT get_byte(decode(md5(org_id), 'hex'), 0) % 16 $$`);
    await q.query(`CREATE INDEX event_log_shard_tail ON event_log (psp_shard(org_id), transaction_id, position)`);
    await q.query(`
      CREATE TABLE projection_shard (
        generation integer NOT NULL REFERENCES projection_generation (generation) ON DELETE CASCADE,
        shard smallint NOT NULL CHECK (shard >= 0 AND shard < 16),
        checkpoint_transaction_id xid8 NOT NULL,
        checkpoint_position bigint NOT NULL,
        stream_time timestamptz NULL,
        events_applied bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (generation, shard)
      )`);
    await q.query(`
      CREATE TABLE projection_shard_lease (
        shard smallint PRIMARY KEY CHECK (shard >= 0 AND shard < 16),
        lease bigint NOT NULL DEFAULT 0,
        holder text NULL,
        taken_at timestamptz NULL
      )`);
    await q.query(`INSERT INTO projection_shard_lease (shard) SELECT generate_series(0, 15)`);
    // A generation as a whole (ops, tests, benches): the events its base and every shard applied.
    await q.query(`
      CREATE VIEW projection_progress AS
      SELECT g.generation, g.status, g.stream_time,
             g.events_applied + coalesce((SELECT sum(s.events_applied) FROM projection_shard s
                                           WHERE s.generation = g.generation), 0) AS events_applied
        FROM projection_generation g`);
    await q.query(`DROP INDEX IF EXISTS connection_read_model_health_due`);
    await q.query(`CREATE INDEX connection_read_model_health_due ON connection_read_model (generation, psp_shard(org_id), health_next_change)
                     WHERE health_next_change IS NOT NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX connection_read_model_health_due`);
    await q.query(`CREATE INDEX connection_read_model_health_due ON connection_read_model (generation, health_next_change)
                     WHERE health_next_change IS NOT NULL`);
    await q.query(`DROP VIEW projection_progress`);
    await q.query(`DROP TABLE projection_shard_lease`);
    await q.query(`DROP TABLE projection_shard`);
    await q.query(`DROP INDEX event_log_shard_tail`);
    await q.query(`DROP FUNCTION psp_shard(text)`);
  }
}
