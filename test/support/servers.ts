import { execFileSync } from 'node:child_process';
import { Socket } from 'node:net';

/** Where the integration tests find PostgreSQL, Redis and Kafka (set by global-setup). */
export interface TestServers {
  databaseUrl: string; // of the `postgres` database; each test file creates its own database
  redisUrl: string;
  kafkaBrokers: string;
}

export const SERVERS_ENV = 'PSP_TEST_SERVERS';

export function testServers(): TestServers {
  const raw = process.env[SERVERS_ENV];
  if (!raw) throw new Error(`${SERVERS_ENV} is not set: run the integration tests through jest (global-setup sets it)`);
  return JSON.parse(raw) as TestServers;
}

export function answers(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, host, () => done(true));
  });
}

export function dockerAvailable(): boolean {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}
