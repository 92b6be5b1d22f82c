import { DynamicModule, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import Redis from 'ioredis';
import { SETTINGS, Settings, SettingsModule } from '@psp/config';
import { createRedis } from './redis-client';
import { RedisReadModel } from './redis-read-model';

/** Closes the process's Redis client once everything that uses it has stopped. */
@Injectable()
class RedisClientLifecycle implements OnApplicationShutdown {
  constructor(@Inject(Redis) private readonly redis: Redis) {}

  onApplicationShutdown(): void {
    this.redis.disconnect();
  }
}

/**
 * The read model's Redis side as Nest providers: the process's Redis client (token: the ioredis
 * `Redis` class) and the `RedisReadModel` on it. `forProcess(name)` names the client in Redis's
 * CLIENT LIST (projector, api).
 */
@Module({})
export class ReadModelRedisModule {
  static forProcess(name: string): DynamicModule {
    return {
      module: ReadModelRedisModule,
      imports: [SettingsModule],
      providers: [
        { provide: Redis, inject: [SETTINGS], useFactory: (settings: Settings) => createRedis(settings, name) },
        {
          provide: RedisReadModel,
          inject: [Redis, SETTINGS],
          useFactory: (redis: Redis, settings: Settings) => new RedisReadModel(redis, settings.redisKeyPrefix),
        },
        RedisClientLifecycle,
      ],
      exports: [Redis, RedisReadModel],
    };
  }
}
