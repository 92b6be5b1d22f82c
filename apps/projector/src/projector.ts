import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { SETTINGS, Settings } from '@psp/config';
import {
  clearProjectionStall,
  liveGeneration,
  Projection,
  ProjectionStep,
  recordProjectionStall,
  RedisReadModel,
  STUCK_AFTER_MS,
} from '@psp/read-model';
import { logLagAfter } from '@psp/storage';
import { projectorMetrics } from './metrics';

/**
 * Keeps the live read-model generation up to date with the event log: steps the projection while
 * there are events, polls when caught up, and follows a replay's switch to a new generation.
 */
@Injectable()
export class Projector implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('Projector');
  private projection?: Projection;
  private running = false;
  private loop?: Promise<void>;
  private reporter?: NodeJS.Timeout;
  private applied = 0;
  private reportedApplied = 0;
  lastStep?: ProjectionStep;
  /** Whether the current stall was logged as stuck already. */
  private saidStuck = false;

  constructor(
    @Inject(DataSource) private readonly db: DataSource,
    @Inject(SETTINGS) private readonly settings: Settings,
    @Inject(RedisReadModel) private readonly readModel: RedisReadModel,
  ) {}

  onApplicationBootstrap(): void {
    this.running = true;
    this.loop = this.run();
    this.reporter = setInterval(() => void this.report(), 10000);
    this.reporter.unref();
  }

  /**
   * Steps the projection for as long as the process runs. A failed step is retried, never skipped.
   * After a failure the step size halves with each further failure, down to one event, and doubles
   * back with each success: the projection closes in on the event it cannot get past in a few
   * attempts, applies everything before it, and then fails on exactly that one event, which it names
   * in projection_stall (for /readyz and `ops lag`, which call it stuck after STUCK_AFTER_MS) and in
   * the log. The first step past it clears the stall.
   */
  private async run(): Promise<void> {
    const fullStep = this.settings.projectorBatchSize;
    let limit = fullStep;
    let failures = 0;
    let stalled = false;
    while (this.running) {
      let projection: Projection | undefined;
      try {
        const generation = await liveGeneration(this.db);
        if (!this.projection || this.projection.generation !== generation) {
          this.logger.log(`projecting read-model generation ${generation}`);
          this.projection = new Projection(
            this.db,
            generation,
            this.readModel,
            fullStep,
            this.settings.projectorStateCacheBytes,
          );
        }
        projection = this.projection;
        const step = await projection.step(limit);
        this.lastStep = step;
        this.applied += step.applied;
        projectorMetrics().eventsApplied.inc(step.applied);
        if (stalled) {
          stalled = false;
          this.saidStuck = false;
          await clearProjectionStall(this.db, projection.generation);
          this.logger.log(`projection of generation ${projection.generation} got past the event it failed on`);
        }
        failures = 0;
        limit = step.applied === 0 ? fullStep : Math.min(fullStep, limit * 2);
        if (step.applied === 0) await sleep(this.settings.projectorIdleMs);
      } catch (error) {
        failures += 1;
        projectorMetrics().stepFailures.inc();
        const message = (error as Error)?.message ?? String(error);
        const event = projection?.firstAttempted ?? null;
        if (projection && event && limit === 1) {
          // Failing on exactly one event: name it where ops look.
          const stall = await recordProjectionStall(this.db, projection.generation, {
            eventId: event.event.eventId,
            at: event.at,
            error: message,
          }).catch(() => null);
          if (stall) stalled = true;
          const stuck = stall !== null && stall.stuckForMs >= STUCK_AFTER_MS;
          if (stall?.attempts === 1 || (stuck && !this.saidStuck) || failures % 50 === 0) {
            if (stuck) this.saidStuck = true;
            this.logger.error(
              `projection of generation ${projection.generation} ${stuck ? 'stuck' : 'failing'} on event ${event.event.eventId} (log position ${event.at.transactionId}/${event.at.position})` +
                (stall ? ` for ${(stall.stuckForMs / 1000).toFixed(1)} s, attempt ${stall.attempts}` : '') +
                `: ${message}`,
            );
          }
        } else if (failures === 1 || failures % 50 === 0) {
          this.logger.error(`projection step failed (${failures}x), retrying with smaller steps: ${message}`);
        }
        limit = Math.max(1, Math.floor(limit / 2));
        await sleep(Math.min(1000, 20 * failures));
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

  /** Stops stepping before any client it uses is closed (those close in onApplicationShutdown). */
  async beforeApplicationShutdown(): Promise<void> {
    this.running = false;
    if (this.reporter) clearInterval(this.reporter);
    await this.loop;
    await this.projection?.settled(); // the last step's Redis update, before Redis is closed
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
