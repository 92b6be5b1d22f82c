import { hostname } from 'node:os';
import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { SETTINGS, Settings } from '@psp/config';
import { minuteBucket } from '@psp/domain';
import {
  REDIS_DOCUMENT_BYTES,
  clearProjectionStall,
  generationLag,
  liveGeneration,
  nextStepLimit,
  readCheckpoint,
  ProjectionStep,
  recordProjectionStall,
  RedisReadModel,
  ShardLeaseLost,
  ShardLeases,
  ShardProjection,
  shardsWithEvents,
  StateCache,
  STUCK_AFTER_MS,
} from '@psp/read-model';
import { projectorMetrics } from './metrics';

/** How a shard's steps go: the step size after failures, and whether it named a stall. */
interface ShardRun {
  projection: ShardProjection;
  limit: number;
  failures: number;
  stalled: boolean;
  saidStuck: boolean;
  /** The minute of stream time its latest step swept due connections at (null: not yet). */
  sweptMinute: number | null;
}

/**
 * Keeps the live read-model generation up to date with the event log, for the shards this process
 * holds (docs/read-model.md, "Sharded projection"): PostgreSQL decides who holds which shard
 * (ShardLeases: advisory locks, fair shares, fencing by lease); this process steps each of its shards
 * in turn while they have events, polls when all have caught up, and follows a replay's switch to a
 * new generation. Several projector processes share the shards; one alone holds them all.
 */
@Injectable()
export class Projector implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('Projector');
  private readonly leases: ShardLeases;
  private readonly cache: StateCache;
  private readonly runs = new Map<number, ShardRun>();
  private generation: number | null = null;
  private running = false;
  private loop?: Promise<void>;
  private reporter?: NodeJS.Timeout;
  private applied = 0;
  /** Steps that applied events, and the connections they wrote, this run (the report's "events per write"). */
  private steps = 0;
  private connectionsWritten = 0;
  private reportedApplied = 0;
  private lastRebalance = 0;
  /** The rebalance under way, if any (steps in flight share it). */
  private rebalancing: Promise<void> | null = null;
  private lastShedLog = 0;
  lastStep?: ProjectionStep;

  constructor(
    @Inject(DataSource) private readonly db: DataSource,
    @Inject(SETTINGS) private readonly settings: Settings,
    @Inject(RedisReadModel) private readonly readModel: RedisReadModel,
  ) {
    this.leases = new ShardLeases(settings.databaseUrl, `${hostname()}:${process.pid}`);
    this.cache = new StateCache(settings.projectorStateCacheBytes);
  }

  /** The shards this process holds now (for ops, metrics and tests). */
  get shards(): number[] {
    return [...this.leases.leases.keys()].sort((a, b) => a - b);
  }

  onApplicationBootstrap(): void {
    this.running = true;
    this.loop = this.run();
    this.reporter = setInterval(() => void this.report(), 10000);
    this.reporter.unref();
  }

  private async run(): Promise<void> {
    let failures = 0;
    let idle = false;
    while (this.running) {
      try {
        const generation = await liveGeneration(this.db);
        if (this.generation !== generation) await this.follow(generation);
        if (Date.now() - this.lastRebalance >= this.settings.projectorRebalanceMs) await this.rebalance();
        failures = 0;
      } catch (error) {
        failures += 1;
        if (failures === 1 || failures % 50 === 0)
          this.logger.error(`projector cannot reach PostgreSQL (${failures}x), retrying: ${(error as Error).message}`);
        await sleep(Math.min(1000, 20 * failures));
        continue;
      }
      const applied = await this.stepShards(await this.shardsToStep(idle));
      idle = applied === 0;
      this.shedUnderPressure();
      if (idle) await sleep(this.settings.projectorIdleMs);
    }
  }

  /**
   * Steps each of `shards` once, up to PROJECTOR_CONCURRENCY of them at a time (each step is a
   * transaction of its own on a connection of the pool; the shards' rows, chains and Redis documents
   * are disjoint, and the state cache is keyed by connection): a shard waits for fewer steps of the
   * others before its turn comes, so what arrives is visible sooner. Shards change hands between
   * steps, not only between cycles: a cycle of a backlog's steps lasts up to PROJECTOR_STEP_MS per
   * shard held, and a shard left by a killed projector must not wait for it. A shard given up
   * meanwhile is not stepped (it has no lease here). Returns the events applied.
   */
  private async stepShards(shards: number[]): Promise<number> {
    let applied = 0;
    let next = 0;
    let rebalanceFailed = false;
    const worker = async () => {
      while (this.running && !rebalanceFailed && next < shards.length) {
        const shard = shards[next++];
        if (Date.now() - this.lastRebalance >= this.settings.projectorRebalanceMs) {
          this.rebalancing ??= this.rebalance().finally(() => (this.rebalancing = null));
          try {
            await this.rebalancing;
          } catch {
            rebalanceFailed = true; // the next cycle says what is wrong
            return;
          }
        }
        if (!this.leases.leases.has(shard)) continue;
        applied += await this.stepShard(shard);
        // Before the next step, not after the cycle: a step reads states into the cache.
        this.shedUnderPressure();
      }
    };
    const workers = Math.max(1, Math.min(this.settings.projectorConcurrency, shards.length));
    await Promise.all(Array.from({ length: workers }, worker));
    return applied;
  }

  /**
   * The shards to step now. After a cycle that applied events: all it holds. After an idle one, only
   * those with events waiting and those whose due connections were not swept at the generation's
   * current minute of stream time yet (two statements, not a transaction per shard).
   */
  private async shardsToStep(afterIdle: boolean): Promise<number[]> {
    const held = this.shards;
    if (!afterIdle || this.generation === null) return held;
    try {
      const [withEvents, progress] = await Promise.all([
        shardsWithEvents(this.db, this.generation, held),
        readCheckpoint(this.db, this.generation),
      ]);
      const minute = progress.streamTime === null ? null : minuteBucket(progress.streamTime);
      const busy = new Set(withEvents);
      return held.filter((shard) => {
        if (busy.has(shard)) return true;
        const run = this.runs.get(shard);
        return !run || run.failures > 0 || (minute !== null && run.sweptMinute !== minute);
      });
    } catch {
      return held; // the steps report what is wrong
    }
  }

  /**
   * Memory bounded by the process, not only by the cache's own bound: when resident memory passes
   * PROJECTOR_RSS_SHED_BYTES after a cycle, the state cache lets its least recently used half go (a
   * state let go is read back from the read model when its connection changes next).
   */
  private shedUnderPressure(): void {
    if (process.memoryUsage.rss() <= this.settings.projectorRssShedBytes) return;
    const bytes = this.cache.shed(0.5);
    if (bytes === 0) return;
    projectorMetrics().memorySheds.inc();
    const now = Date.now();
    if (now - this.lastShedLog > 60_000) {
      this.lastShedLog = now;
      this.logger.warn(
        `resident memory above PROJECTOR_RSS_SHED_BYTES (${Math.round(this.settings.projectorRssShedBytes / 1048576)} MiB): let ${Math.round(bytes / 1048576)} MiB of cached connection states go`,
      );
    }
  }

  /** A replay switched the live generation: the shards held go on in the new one. */
  private async follow(generation: number): Promise<void> {
    await Promise.all([...this.runs.values()].map((r) => r.projection.settled()));
    this.runs.clear();
    this.cache.clear();
    this.generation = generation;
    this.logger.log(`projecting read-model generation ${generation}`);
  }

  private async rebalance(): Promise<void> {
    this.lastRebalance = Date.now();
    const change = await this.leases.rebalance();
    for (const shard of [...change.released, ...change.lost]) await this.dropShard(shard);
    if (change.taken.length > 0 || change.released.length > 0 || change.lost.length > 0)
      this.logger.log(
        `shards: ${change.members} projector(s); took ${list(change.taken)}, released ${list(change.released)}` +
          (change.lost.length > 0 ? `, lost ${list(change.lost)} (connection to PostgreSQL broken)` : '') +
          `; holding ${list(this.shards)}`,
      );
    projectorMetrics().shardsHeld.set(this.shards.length);
  }

  private async dropShard(shard: number): Promise<void> {
    const run = this.runs.get(shard);
    this.runs.delete(shard);
    await run?.projection.settled();
  }

  /** What one step may hold: PROJECTOR_STEP_BYTES is shared by the steps in flight together. */
  private stepBytes(): number {
    return Math.floor(this.settings.projectorStepBytes / Math.max(1, this.settings.projectorConcurrency));
  }

  private runOf(shard: number): ShardRun {
    let run = this.runs.get(shard);
    if (!run) {
      run = {
        projection: new ShardProjection(
          this.db,
          this.generation!,
          shard,
          this.readModel,
          this.settings.projectorBatchSize,
          {
            cache: this.cache,
            // A quarter of a step's share of PROJECTOR_STEP_BYTES, up to REDIS_DOCUMENT_BYTES.
            redisDocumentBytes: Math.min(REDIS_DOCUMENT_BYTES, Math.floor(this.stepBytes() / 4)),
          },
        ),
        limit: this.settings.projectorBatchSize,
        failures: 0,
        stalled: false,
        saidStuck: false,
        sweptMinute: null,
      };
      this.runs.set(shard, run);
    }
    run.projection.lease = this.leases.leases.get(shard) ?? null;
    return run;
  }

  /**
   * One step of one shard; returns the events it applied. A shard that is behind reads more each
   * step, up to PROJECTOR_MAX_BATCH_SIZE and to what fits in PROJECTOR_STEP_BYTES (nextStepLimit). A failed step is retried, never skipped.
   * After a failure the shard's step size halves with each further failure, down to one event, and
   * doubles back with each success: the projection closes in on the event it cannot get past in a few
   * attempts, applies everything before it, and then fails on exactly that one event, which it names
   * in projection_stall (for /readyz and `ops lag`, which call it stuck after STUCK_AFTER_MS) and in
   * the log. The first step past it clears the stall. Other shards go on meanwhile.
   */
  private async stepShard(shard: number): Promise<number> {
    const run = this.runOf(shard);
    const full = this.settings.projectorBatchSize;
    const projection = run.projection;
    try {
      const step = await projection.step(run.limit);
      this.lastStep = step;
      this.applied += step.applied;
      if (step.applied > 0) {
        this.steps += 1;
        this.connectionsWritten += step.connectionsWritten;
      }
      projectorMetrics().eventsApplied.inc(step.applied);
      if (run.stalled) {
        run.stalled = false;
        run.saidStuck = false;
        await clearProjectionStall(this.db, projection.generation);
        this.logger.log(
          `projection of generation ${projection.generation} shard ${shard} got past the event it failed on`,
        );
      }
      run.failures = 0;
      run.limit = nextStepLimit(
        run.limit,
        step,
        full,
        this.settings.projectorMaxBatchSize,
        this.stepBytes(),
        this.settings.projectorStepMs,
      );
      // Swept at this minute for good only when the step found nothing to do: a sweep that changed
      // health may have stopped at its limit (SWEEP_LIMIT due connections), so look again.
      run.sweptMinute =
        step.applied > 0 || step.healthChanges > 0 || step.checkpoint.streamTime === null
          ? null
          : minuteBucket(step.checkpoint.streamTime);
      return step.applied;
    } catch (error) {
      if (error instanceof ShardLeaseLost) {
        // Another projector took the shard: nothing of the step was committed; let it go.
        this.logger.warn(error.message);
        await this.leases.releaseShard(shard).catch(() => undefined);
        await this.dropShard(shard);
        return 0;
      }
      run.failures += 1;
      projectorMetrics().stepFailures.inc();
      const message = (error as Error)?.message ?? String(error);
      const event = projection.firstAttempted;
      if (event && run.limit === 1) {
        // Failing on exactly one event: name it where ops look.
        const stall = await recordProjectionStall(this.db, projection.generation, {
          eventId: event.event.eventId,
          at: event.at,
          error: `shard ${shard}: ${message}`,
        }).catch(() => null);
        if (stall) run.stalled = true;
        const stuck = stall !== null && stall.stuckForMs >= STUCK_AFTER_MS;
        if (stall?.attempts === 1 || (stuck && !run.saidStuck) || run.failures % 50 === 0) {
          if (stuck) run.saidStuck = true;
          this.logger.error(
            `projection of generation ${projection.generation} ${stuck ? 'stuck' : 'failing'} on event ${event.event.eventId} (log position ${event.at.transactionId}/${event.at.position}, shard ${shard})` +
              (stall ? ` for ${(stall.stuckForMs / 1000).toFixed(1)} s, attempt ${stall.attempts}` : '') +
              `: ${message}`,
          );
        }
      } else if (run.failures === 1 || run.failures % 50 === 0) {
        this.logger.error(
          `projection step of shard ${shard} failed (${run.failures}x), retrying with smaller steps: ${message}`,
        );
      }
      run.limit = nextStepLimit(run.limit, 'failed', full, this.settings.projectorMaxBatchSize);
      await sleep(Math.min(1000, 20 * run.failures));
      return 0;
    }
  }

  private async report(): Promise<void> {
    if (this.generation === null || this.applied === this.reportedApplied) return;
    this.reportedApplied = this.applied;
    const lag = await generationLag(this.db, this.generation).catch(() => null);
    const mine = new Set(this.shards);
    const held = lag ? lag.shards.filter((s) => mine.has(s.shard)) : [];
    const behind = lag ? held.reduce((n, s) => n + s.behindEvents, 0) : null;
    const atLeast = held.some((s) => s.behindAtLeast) ? 'at least ' : '';
    this.logger.log(
      `generation ${this.generation}, shards ${list(this.shards)}: ${this.work()} this run` +
        (behind !== null ? `; these shards are behind the log by ${atLeast}${behind} events` : ''),
    );
  }

  /** What this run applied: events, steps, connections written (and events per connection written). */
  private work(): string {
    const perWrite = this.connectionsWritten > 0 ? (this.applied / this.connectionsWritten).toFixed(1) : '-';
    return `applied ${this.applied} events in ${this.steps} steps, writing ${this.connectionsWritten} connections (${perWrite} events per connection written)`;
  }

  /** Stops stepping, leaves the shards to the other projectors, before any client it uses is closed. */
  async beforeApplicationShutdown(): Promise<void> {
    this.running = false;
    if (this.reporter) clearInterval(this.reporter);
    await this.loop;
    // The last steps' Redis updates, before Redis is closed.
    await Promise.all([...this.runs.values()].map((r) => r.projection.settled()));
    await this.leases.leave();
    this.logger.log(`stopped: ${this.work()}`);
  }
}

function list(shards: number[]): string {
  return shards.length === 0 ? 'none' : shards.join(',');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
