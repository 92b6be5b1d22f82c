import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What a projection step writes per connection (docs/read-model.md, "What a write costs PostgreSQL").
 * The stored state moves from `state` (its JSON, ~1-5 KB, compressed and moved out of line by TOAST
 * at every write) to `packed_state`: the same JSON deflated by the projector (zlib level 1, ~0.4-0.6
 * KB: the bytes its state cache holds anyway), kept in the row (storage MAIN: compressed in place
 * first, out of line only as a last resort). The document is kept in the row the same way. A row then
 * fits its page without TOAST in the common case: one heap tuple written per connection, not a tuple
 * and four TOAST chunks. Rows written before keep their `state` (read as before); each write from now
 * on stores `packed_state` and clears `state`.
 */
export class PackedStates1732400000014 implements MigrationInterface {
  name = 'PackedStates1732400000014';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE connection_read_model
        ADD COLUMN packed_state bytea,
        ALTER COLUMN state DROP NOT NULL,
        ALTER COLUMN packed_state SET STORAGE MAIN,
        ALTER COLUMN document SET STORAGE MAIN`);
    await q.query(`
      ALTER TABLE connection_read_model
        ADD CONSTRAINT connection_read_model_stored_state CHECK (state IS NOT NULL OR packed_state IS NOT NULL)`);
  }

  async down(q: QueryRunner): Promise<void> {
    // Rows written since hold only packed_state: a down migration cannot unpack them in SQL.
    await q.query(`DELETE FROM connection_read_model WHERE state IS NULL`);
    await q.query(`ALTER TABLE connection_read_model DROP CONSTRAINT connection_read_model_stored_state`);
    await q.query(`
      ALTER TABLE connection_read_model
        DROP COLUMN packed_state,
        ALTER COLUMN state SET NOT NULL,
        ALTER COLUMN document SET STORAGE EXTENDED`);
  }
}
