import { MigrationInterface, QueryRunner } from 'typeorm';

/** API keys: only a SHA-256 hash of each key is stored. See docs/api-keys.md. */
export class ApiKeys1732400000002 implements MigrationInterface {
  name = 'ApiKeys1732400000002';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE api_key (
        id text PRIMARY KEY,
        org_id text NOT NULL,
        environment text NOT NULL CHECK (environment IN ('live', 'test')),
        scopes text[] NOT NULL,
        key_hash bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        revoked_at timestamptz NULL
      )`);
    await q.query(`CREATE UNIQUE INDEX api_key_hash ON api_key (key_hash)`);
    await q.query(`CREATE INDEX api_key_org ON api_key (org_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE api_key`);
  }
}
