import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { SETTINGS, Settings } from '@psp/config';
import { createRedis, liveGeneration, Projection, ProjectionStep, RedisReadModel } from '@psp/read-model';
import { logLagAfter } from '@psp/storage';

/**
 * Keeps the live read-model generation up to date with the event log: steps the projection while
 * there are events, polls when caught up, and follows a replay's switch to a new generation.
 */
@Injectable()
export class Projector implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Projector');
  private readonly redis: Redis;
  private readonly readModel: RedisReadModel;
  private projection?: Projection;
  private running = false;
  private loop?: Promise<void>;
  private reporter?: NodeJS.Timeout;
  private applied = 0;
  private reportedApplied = 0;
  lastStep?: ProjectionStep;

  constructor(
    @Inject(DataSource) private readonly db: DataSource,
    @Inject(SETTINGS) private readonly settings: Settings,
  ) {
    this.redis = createRedis(settings, 'projector');
    this.readModel = new RedisReadModel(this.redis, settings.redisKeyPrefix);
  }

  onApplicationBootstrap(): void {
    this.running = true;
    this.loop = this.run();
    this.reporter = setInterval(() => void this.report(), 10000);
    this.reporter.unref();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      try {
        const generation = await liveGeneration(this.db);
        if (!this.projection || this.projection.generation !== generation) {
          this.logger.log(`projecting read-model generation ${generation}`);
          this.projection = new Projection(this.db, generation, this.readModel, this.settings.projectorBatchSize);
        }
        const step = await this.projection.step();
        this.lastStep = step;
        this.applied += step.applied;
        failures = 0;
        if (step.applied === 0) await sleep(this.settings.projectorIdleMs);
      } catch (error) {
        failures += 1;
        if (failures === 1 || failures % 50 === 0)
          this.logger.error(`projection step failed (${failures}x), retrying: ${(error as Error).message}`);
        await sleep(Math.min(5000, 100 * failures));
      }
    }
  }

  private async report(): Promise<void> {
    if (!this.projection || this.applied === this.reportedApplied) return;
    this.reportedApplied = this.applied;
    const at = this.lastStep?.checkpoint.at;
    const lag = at ? await logLagAfter(this.db, at).catch(() => null) : null;
    this.logger.log(
      `generation ${this.projection.generation}: applied ${this.applied} events this run` +
        (lag ? `; behind the log by ${lag.events} events, ${lag.seconds.toFixed(1)} s` : ''),
    );
  }

  async onApplicationShutdown(): Promise<void> {
    this.running = false;
    if (this.reporter) clearInterval(this.reporter);
    await this.loop;
    this.redis.disconnect();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
