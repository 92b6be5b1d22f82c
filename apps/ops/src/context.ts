import { InvalidSettingError, loadSettings, Settings } from '@psp/config';
import { createDataSource, migrate } from '@psp/storage';
import { DataSource } from 'typeorm';
import { EXIT, UsageError } from './output';

/** The settings from the environment (as the service reads them); invalid ones are a usage error. */
export function settingsFromEnv(): Settings {
  try {
    return loadSettings(process.env);
  } catch (error) {
    if (error instanceof InvalidSettingError) throw new UsageError(error.message);
    throw error;
  }
}

/**
 * Runs `run` on a small pool to the database (3 connections unless told), created and migrated first
 * when needed.
 */
export async function withDb<T>(
  settings: Settings,
  run: (db: DataSource) => Promise<T>,
  options: { poolSize?: number } = {},
): Promise<T> {
  await migrate(settings.databaseUrl);
  const db = await createDataSource(settings.databaseUrl, {
    poolSize: options.poolSize ?? 3,
    applicationName: 'psp-connections-ops',
  }).initialize();
  try {
    return await run(db);
  } finally {
    await db.destroy();
  }
}

/**
 * For a long run that can stop between batches: the first Ctrl-C (or SIGTERM) asks it to stop after
 * the current batch (a later run resumes), a second one aborts at once. Returns the run's `shouldStop`.
 */
export function stopOnSignal(): () => boolean {
  let stop = false;
  const onSignal = () => {
    if (stop) process.exit(EXIT.interrupted);
    stop = true;
    process.stderr.write('\nstopping after this batch (Ctrl-C again to abort at once)\n');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => stop;
}
