import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Health changes for payment routers (CONTRACT 2.5): per connection and generation, the chain's tail
 * (the `to` of the latest message, its sequence) and the minute at which its health changes next
 * without new events; and the outbox the projection writes messages to in its own transaction, which
 * the relay produces to Kafka. See docs/read-model.md, "Health changes".
 */
export class HealthChanges1732400000006 implements MigrationInterface {
  name = 'HealthChanges1732400000006';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE connection_read_model
                     ADD COLUMN health_reported text NULL,
                     ADD COLUMN health_sequence integer NOT NULL DEFAULT 0,
                     ADD COLUMN health_next_change bigint NULL`);
    await q.query(`CREATE INDEX connection_read_model_health_due ON connection_read_model (generation, health_next_change)
                     WHERE health_next_change IS NOT NULL`);
    await q.query(`
      CREATE TABLE health_change_outbox (
        id bigserial PRIMARY KEY,
        generation integer NOT NULL,
        org_id text NOT NULL,
        connection_id text NOT NULL,
        sequence integer NOT NULL,
        message text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE health_change_outbox`);
    await q.query(`DROP INDEX connection_read_model_health_due`);
    await q.query(`ALTER TABLE connection_read_model
                     DROP COLUMN health_reported, DROP COLUMN health_sequence, DROP COLUMN health_next_change`);
  }
}
