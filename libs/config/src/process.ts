import { INestApplicationContext } from '@nestjs/common';
import { InvalidSettingError, loadSettings } from './settings';

/**
 * Starts one of the service's processes. Settings are validated before anything else: a bad one
 * stops the process with exit code 2 and one line naming it. Any other start failure exits 1.
 */
export function runProcess(name: string, start: () => Promise<INestApplicationContext>): void {
  try {
    loadSettings(process.env);
  } catch (error) {
    if (error instanceof InvalidSettingError) {
      process.stderr.write(`${name}: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  start().catch((error: unknown) => {
    process.stderr.write(`${name}: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
