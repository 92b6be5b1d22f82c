import { DataSource } from 'typeorm';
import { Sql } from '@psp/storage';
import { continueHealthChains } from './health-changes';

/**
 * The read model's generations (table projection_generation): one `live` generation that the API
 * serves, at most one `building` beside it during a replay, and `retired` ones kept briefly after a
 * switch. Every statement about generations is here.
 */

/** The generation being built by an interrupted replay, if any (the newest). */
export async function buildingGeneration(sql: Sql): Promise<number | null> {
  const rows: { generation: number }[] = await sql.query(
    `SELECT generation FROM projection_generation WHERE status = 'building' ORDER BY generation DESC LIMIT 1`,
  );
  return rows.length > 0 ? rows[0].generation : null;
}

/** Creates a new, empty generation in state `building`; returns its number. */
export async function createBuildingGeneration(sql: Sql): Promise<number> {
  const rows: { generation: number }[] = await sql.query(
    `INSERT INTO projection_generation (generation, status) SELECT max(generation) + 1, 'building' FROM projection_generation RETURNING generation`,
  );
  return rows[0].generation;
}

/**
 * Makes `generation` the live one and retires the one before it, in one transaction. It waits for a
 * step of the retired generation in flight (its advisory lock), and the new generation continues
 * every connection's chain of health changes where the retired one left it (CONTRACT 2.5).
 */
export async function switchLiveGeneration(db: DataSource, generation: number): Promise<void> {
  await db.transaction(async (tx) => {
    const live: { generation: number }[] = await tx.query(
      `SELECT generation FROM projection_generation WHERE status = 'live'`,
    );
    const previous = live[0].generation;
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('psp-connections:projection'), $1)`, [previous]);
    await tx.query(
      `UPDATE projection_generation SET status = 'retired', updated_at = clock_timestamp() WHERE status = 'live'`,
    );
    await tx.query(
      `UPDATE projection_generation SET status = 'live', switched_at = clock_timestamp(), updated_at = clock_timestamp() WHERE generation = $1`,
      [generation],
    );
    await continueHealthChains(tx, previous, generation);
  });
}

/** Drops the retired generations other than `keep` (their rows go with them); returns their numbers. */
export async function dropRetiredGenerations(sql: Sql, keep: number): Promise<number[]> {
  // Wrapped in a SELECT: TypeORM answers a bare DELETE … RETURNING with [rows, rowCount].
  const rows: { generation: number }[] = await sql.query(
    `WITH dropped AS (DELETE FROM projection_generation WHERE status = 'retired' AND generation <> $1 RETURNING generation)
     SELECT generation FROM dropped ORDER BY generation`,
    [keep],
  );
  return rows.map((r) => r.generation);
}

/** Every generation with its status, oldest first (for ops). */
export async function listGenerations(sql: Sql): Promise<{ generation: number; status: string }[]> {
  return sql.query(`SELECT generation, status FROM projection_generation ORDER BY generation`);
}
