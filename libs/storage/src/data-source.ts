import { DataSource } from 'typeorm';
import { EventLog1732400000000 } from './migrations/1732400000000-EventLog';
import { ReadModel1732400000001 } from './migrations/1732400000001-ReadModel';
import { ApiKeys1732400000002 } from './migrations/1732400000002-ApiKeys';
import { ProjectionStall1732400000003 } from './migrations/1732400000003-ProjectionStall';
import { DropConnectionSnapshot1732400000004 } from './migrations/1732400000004-DropConnectionSnapshot';
import { PartitionedEventLog1732400000005 } from './migrations/1732400000005-PartitionedEventLog';
import { HealthChanges1732400000006 } from './migrations/1732400000006-HealthChanges';
import { LogSummaries1732400000007 } from './migrations/1732400000007-LogSummaries';
import { ReplayByStream1732400000009 } from './migrations/1732400000009-ReplayByStream';
import { CheaperReadModelWrites1732400000010 } from './migrations/1732400000010-CheaperReadModelWrites';
import { ShardedProjection1732400000011 } from './migrations/1732400000011-ShardedProjection';
import { TraceContext1732400000012 } from './migrations/1732400000012-TraceContext';
import { ShardFolds1732400000013 } from './migrations/1732400000013-ShardFolds';
import { PackedStates1732400000014 } from './migrations/1732400000014-PackedStates';

export const MIGRATIONS = [
  EventLog1732400000000,
  ReadModel1732400000001,
  ApiKeys1732400000002,
  ProjectionStall1732400000003,
  DropConnectionSnapshot1732400000004,
  PartitionedEventLog1732400000005,
  HealthChanges1732400000006,
  LogSummaries1732400000007,
  ReplayByStream1732400000009,
  CheaperReadModelWrites1732400000010,
  ShardedProjection1732400000011,
  TraceContext1732400000012,
  ShardFolds1732400000013,
  PackedStates1732400000014,
];

/** A TypeORM DataSource on our PostgreSQL. Schema changes are migrations only, never `synchronize`. */
export function createDataSource(
  databaseUrl: string,
  options: { poolSize?: number; applicationName?: string } = {},
): DataSource {
  return new DataSource({
    type: 'postgres',
    url: databaseUrl,
    migrations: MIGRATIONS,
    migrationsTableName: 'schema_migration',
    synchronize: false,
    logging: false, // TypeORM would log failed queries with their parameters (key hashes): we log errors ourselves
    poolSize: options.poolSize ?? 10,
    applicationName: options.applicationName ?? 'psp-connections',
    extra: { max: options.poolSize ?? 10 },
  });
}

/** Creates the database named in the URL when missing (connects to `postgres` to do so). */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`database name must be A-Z a-z 0-9 _ (got an unusable name)`);
  url.pathname = '/postgres';
  const admin = new DataSource({ type: 'postgres', url: url.toString(), logging: false });
  await admin.initialize();
  try {
    const rows: unknown[] = await admin.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [name]);
    if (rows.length > 0) return false;
    try {
      await admin.query(`CREATE DATABASE "${name}"`);
    } catch (error) {
      if ((error as { code?: string }).code !== '42P04') throw error; // created concurrently
    }
    return true;
  } finally {
    await admin.destroy();
  }
}

/** Creates the database when missing and runs pending migrations; returns the names of those run. */
export async function migrate(databaseUrl: string): Promise<string[]> {
  await ensureDatabase(databaseUrl);
  const ds = createDataSource(databaseUrl, { poolSize: 2, applicationName: 'psp-connections-migrate' });
  await ds.initialize();
  // Several processes may start at once: one migrates, the others wait for it, then find nothing to do.
  const lock = ds.createQueryRunner();
  try {
    await lock.connect();
    await lock.query(`SELECT pg_advisory_lock(hashtext('psp-connections:migrate'))`);
    const ran = await ds.runMigrations({ transaction: 'each' });
    return ran.map((m) => m.name);
  } finally {
    await lock.query(`SELECT pg_advisory_unlock(hashtext('psp-connections:migrate'))`).catch(() => undefined);
    await lock.release();
    await ds.destroy();
  }
}
