import { InvalidSettingError, loadSettings, Settings } from '@psp/config';
import { createDataSource, migrate } from '@psp/storage';
import { DataSource } from 'typeorm';
import { UsageError } from './output';

/** The settings from the environment (as the service reads them); invalid ones are a usage error. */
export function settingsFromEnv(): Settings {
  try {
    return loadSettings(process.env);
  } catch (error) {
    if (error instanceof InvalidSettingError) throw new UsageError(error.message);
    throw error;
  }
}

/** Runs `run` on a small pool to the database, created and migrated first when needed. */
export async function withDb<T>(settings: Settings, run: (db: DataSource) => Promise<T>): Promise<T> {
  await migrate(settings.databaseUrl);
  const db = await createDataSource(settings.databaseUrl, {
    poolSize: 3,
    applicationName: 'psp-connections-ops',
  }).initialize();
  try {
    return await run(db);
  } finally {
    await db.destroy();
  }
}
