import { Inject, Injectable, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Counter, Gauge, Registry } from 'prom-client';
import { DataSource } from 'typeorm';
import {
  buildingGeneration,
  generationLag,
  liveGeneration,
  readCheckpoint,
  readProjectionStall,
} from '@psp/read-model';
import { oncePerProcess, readingFailures, ScrapeTimeReading } from '@psp/observability';

/** What the projector's gauges show, read from PostgreSQL at scrape time. */
export interface ProjectionReading {
  liveGeneration: number;
  eventsApplied: number;
  lagEvents: number;
  lagSeconds: number;
  /** Epoch ms; null before the first event. */
  streamTime: number | null;
  /** How long the live projection has been failing on one event (0: it is not). */
  stalledSeconds: number;
  /** Each shard of the live generation: events behind the log. */
  shards: { shard: number; behindEvents: number }[];
  /** The generation a replay is building, if any: its events applied, out of the log's events. */
  replay: { generation: number; eventsApplied: number; eventsTotal: number } | null;
}

/**
 * The projector's metrics. The gauges describe the live read-model generation (what the API serves)
 * and a replay's generation, read from PostgreSQL (checkpoints, the log, projection_stall) at scrape
 * time, so every projector (a standby too) reports the same figures, and a replay run by `ops replay`
 * in a process of its own shows its progress here: each of its steps updates its generation's
 * checkpoint, which these gauges read.
 */
export class ProjectorMetrics {
  readonly eventsApplied: Counter;
  readonly stepFailures: Counter;
  /** Times the state cache was halved because resident memory passed PROJECTOR_RSS_SHED_BYTES. */
  readonly memorySheds: Counter;
  /** Projection shards this process holds now. */
  readonly shardsHeld: Gauge;
  readonly shardLagEvents: Gauge;
  /** Reads the projection's state (set by ProjectorMetricsCollector; null when it could not). */
  reading: (() => Promise<ProjectionReading | null>) | null = null;

  constructor(registry: Registry) {
    const registers = [registry];
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    this.eventsApplied = new Counter({
      name: 'psp_projector_events_applied_total',
      help: 'Events this projector applied to the live read model (committed)',
      registers,
    });
    this.stepFailures = new Counter({
      name: 'psp_projector_step_failures_total',
      help: 'Projection steps that failed and were retried (PostgreSQL unreachable, an event that cannot be applied)',
      registers,
    });
    this.memorySheds = new Counter({
      name: 'psp_projector_memory_sheds_total',
      help: 'Times the projector let go of the least recently used half of its state cache because its resident memory passed PROJECTOR_RSS_SHED_BYTES',
      registers,
    });
    this.shardsHeld = new Gauge({
      name: 'psp_projector_held_shards',
      help: 'Projection shards this projector process holds now (of 16; PostgreSQL advisory locks)',
      registers,
    });
    this.shardLagEvents = new Gauge({
      name: 'psp_projector_shard_lag_events',
      help: 'Events of one projection shard committed to the log that the live read model has not applied yet',
      labelNames: ['shard'],
      registers,
      collect: async function (this: Gauge) {
        const reading = await self.reading?.();
        if (!reading) return;
        for (const s of reading.shards) this.set({ shard: String(s.shard) }, s.behindEvents);
      },
    });
    const failures = readingFailures();
    const gauge = (name: string, help: string, value: (r: ProjectionReading) => number | null, countFailure = false) =>
      new Gauge({
        name,
        help,
        registers,
        collect: async function (this: Gauge) {
          const reading = await self.reading?.();
          if (reading === undefined) return;
          if (reading === null) {
            if (countFailure) failures.inc({ reading: 'projection' });
            return;
          }
          const v = value(reading);
          if (v !== null) this.set(v);
        },
      });
    gauge(
      'psp_projector_lag_events',
      'Events committed to the log that the live read model has not applied yet',
      (r) => r.lagEvents,
      true,
    );
    gauge(
      'psp_projector_lag_seconds',
      'Age of the oldest logged event the live read model has not applied yet (0 when caught up)',
      (r) => r.lagSeconds,
    );
    gauge(
      'psp_projector_stream_time_seconds',
      "The live read model's stream time (the newest occurred_at applied), Unix seconds; 0 before any event",
      (r) => (r.streamTime === null ? 0 : r.streamTime / 1000),
    );
    gauge(
      'psp_projector_checkpoint_events',
      'Events applied to the live read-model generation since it was built',
      (r) => r.eventsApplied,
    );
    gauge('psp_read_model_live_generation', 'The read-model generation the API serves', (r) => r.liveGeneration);
    gauge(
      'psp_projector_stalled_seconds',
      'How long the live projection has been failing on one event (0: it is not; stuck from 5 s, /readyz then 503)',
      (r) => r.stalledSeconds,
    );
    gauge(
      'psp_replay_in_progress',
      '1 while a read-model generation is being built (a replay running, or interrupted and not resumed yet), else 0',
      (r) => (r.replay ? 1 : 0),
    );
    gauge(
      'psp_replay_applied_events',
      "Events applied to the generation a replay is building (0 when none); updated by each of the replay's steps",
      (r) => r.replay?.eventsApplied ?? 0,
    );
    gauge(
      'psp_replay_log_events',
      'Events in the log the replay has to apply (0 when no replay runs)',
      (r) => r.replay?.eventsTotal ?? 0,
    );
    gauge('psp_replay_progress_ratio', "A replay's progress, 0 to 1 (0 when no replay runs)", (r) =>
      r.replay ? (r.replay.eventsTotal === 0 ? 1 : Math.min(1, r.replay.eventsApplied / r.replay.eventsTotal)) : 0,
    );
  }
}

/** The projector's metrics, registered once per process. */
export const projectorMetrics = oncePerProcess((registry) => new ProjectorMetrics(registry));

/** Reads the projection's state for the gauges at scrape time: at most once a second, within 2 s. */
@Injectable()
export class ProjectorMetricsCollector implements OnModuleInit, OnApplicationShutdown {
  private readonly projection = new ScrapeTimeReading(() => this.read(), 1000, 2000);
  private readonly reading = () => this.projection.get();

  constructor(@Inject(DataSource) private readonly db: DataSource) {}

  onModuleInit(): void {
    projectorMetrics().reading = this.reading;
  }

  private async read(): Promise<ProjectionReading> {
    const generation = await liveGeneration(this.db);
    const checkpoint = await readCheckpoint(this.db, generation);
    const lag = await generationLag(this.db, generation);
    const stall = await readProjectionStall(this.db, generation);
    const building = await buildingGeneration(this.db);
    // The log's events: those the live generation applied and those after its checkpoint.
    const logged = checkpoint.eventsApplied + lag.events;
    const replay =
      building === null
        ? null
        : await readCheckpoint(this.db, building).then((c) => ({
            generation: building,
            eventsApplied: c.eventsApplied,
            eventsTotal: Math.max(logged, c.eventsApplied),
          }));
    return {
      liveGeneration: generation,
      eventsApplied: checkpoint.eventsApplied,
      lagEvents: lag.events,
      lagSeconds: lag.seconds,
      shards: lag.shards.map((s) => ({ shard: s.shard, behindEvents: s.behindEvents })),
      streamTime: checkpoint.streamTime,
      stalledSeconds: stall ? stall.stuckForMs / 1000 : 0,
      replay,
    };
  }

  onApplicationShutdown(): void {
    const metrics = projectorMetrics();
    if (metrics.reading === this.reading) metrics.reading = null;
  }
}
