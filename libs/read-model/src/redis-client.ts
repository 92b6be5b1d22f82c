import Redis from 'ioredis';
import { Settings } from '@psp/config';

/**
 * A Redis client that fails fast instead of queueing while Redis is down, so callers can fall back to
 * PostgreSQL at once; it keeps reconnecting in the background.
 */
export function createRedis(settings: Settings, name: string): Redis {
  const redis = new Redis(settings.redisUrl, {
    connectionName: `psp-connections-${name}`,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: 1000,
    connectTimeout: 2000,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(1000, 50 * attempt),
  });
  redis.on('error', () => undefined); // reported through failed commands and /readyz, not as crashes
  return redis;
}
