import { Controller, Get, Inject, OnModuleDestroy, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { FastifyReply } from 'fastify';
import { Admin, Kafka } from 'kafkajs';
import { DataSource } from 'typeorm';
import { generationLag, isStuck, liveGeneration, readCheckpoint, readProjectionStall } from '@psp/read-model';
import { JSON_CONTENT_TYPE } from './api-error';
import { ConnectionReads } from './connection-reads';
import { FreshFor } from './single-flight';

const CHECK_TIMEOUT_MS = 2000;
/**
 * /readyz is unauthenticated and costs several PostgreSQL queries, a Redis PING and a Kafka request:
 * its answer is computed at most once per this long and shared by every caller meanwhile.
 */
export const READINESS_FRESH_MS = 1000;

/** A computed /readyz answer: its status and its body, serialised once for every caller. */
interface ReadinessAnswer {
  status: 200 | 503;
  body: string;
}

function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error('timed out')), ms).unref()),
  ]);
}

/** /healthz: the process is alive. /readyz: PostgreSQL, Redis and Kafka answer (CONTRACT 1.4). */
@Controller()
@ApiTags('health')
export class HealthController implements OnModuleDestroy {
  private admin?: Admin;
  private readonly readiness = new FreshFor<ReadinessAnswer>(READINESS_FRESH_MS, () => this.computeReadiness());

  constructor(
    @Inject(DataSource) private readonly db: DataSource,
    private readonly reads: ConnectionReads,
    @Inject(Kafka) private readonly kafka: Kafka,
  ) {}

  @Get('healthz')
  @ApiOperation({ summary: 'The process is alive' })
  healthz(@Res() reply: FastifyReply): void {
    void reply
      .status(200)
      .header('content-type', JSON_CONTENT_TYPE)
      .send(JSON.stringify({ status: 'ok' }));
  }

  @Get('readyz')
  @ApiOperation({
    summary: '200 when PostgreSQL, Redis and Kafka are reachable, else 503 naming what is not; also the projector lag',
  })
  async readyz(@Res() reply: FastifyReply): Promise<void> {
    const { value } = await this.readiness.get();
    void reply.status(value.status).header('content-type', JSON_CONTENT_TYPE).send(value.body);
  }

  /** What /readyz answers: the three checks, then (PostgreSQL being up) the projection's lag. */
  private async computeReadiness(): Promise<ReadinessAnswer> {
    const [postgres, redis, kafka] = await Promise.all([
      this.check(() => this.db.query('SELECT 1')),
      this.check(() => this.reads.redisClient.ping()),
      this.check(() => this.kafkaAdmin().then((a) => a.describeCluster())),
    ]);
    const checks = { postgres, redis, kafka };
    const unreachable = Object.entries(checks)
      .filter(([, ok]) => ok !== 'up')
      .map(([name]) => name);
    const projection = postgres === 'up' ? await this.projectionLag().catch(() => null) : null;
    // A projection that cannot get past an event serves an ever older read model: not ready either.
    const down = projection?.stuck ? [...unreachable, 'projection'] : unreachable;
    const problems = [
      ...(unreachable.length > 0 ? [`not reachable: ${unreachable.join(', ')}`] : []),
      ...(projection?.stuck
        ? [
            `projection of read-model generation ${projection.generation} is stuck on event ${projection.stuck.event_id}`,
          ]
        : []),
    ];
    const body = {
      status: down.length === 0 ? 'ready' : 'not_ready',
      ...(down.length > 0 ? { down, message: problems.join('; ') } : {}),
      checks,
      ...(projection ? { projection } : {}),
    };
    return { status: down.length === 0 ? 200 : 503, body: JSON.stringify(body) };
  }

  private async check(probe: () => Promise<unknown>): Promise<'up' | 'down'> {
    try {
      await within(probe(), CHECK_TIMEOUT_MS);
      return 'up';
    } catch {
      return 'down';
    }
  }

  private async kafkaAdmin(): Promise<Admin> {
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    return this.admin;
  }

  private async projectionLag(): Promise<{
    generation: number;
    lag_events: number;
    /** Present (true) when a shard's count stopped at LAG_COUNT_LIMIT: at least `lag_events` are waiting. */
    lag_events_at_least?: true;
    lag_seconds: number;
    stream_time: string | null;
    /** Present when the projection has failed on one event for STUCK_AFTER_MS or longer (the error text is for ops only). */
    stuck?: { event_id: string | null; since: string; seconds: number; attempts: number };
  }> {
    const generation = await liveGeneration(this.db);
    const [checkpoint, stall] = await Promise.all([
      readCheckpoint(this.db, generation),
      readProjectionStall(this.db, generation),
    ]);
    const lag = await within(generationLag(this.db, generation), CHECK_TIMEOUT_MS);
    return {
      generation,
      lag_events: lag.events,
      ...(lag.atLeast ? { lag_events_at_least: true as const } : {}),
      lag_seconds: Math.round(lag.seconds * 1000) / 1000,
      stream_time: checkpoint.streamTime === null ? null : new Date(checkpoint.streamTime).toISOString(),
      ...(isStuck(stall)
        ? {
            stuck: {
              event_id: stall.eventId,
              since: stall.since.toISOString(),
              seconds: Math.round(stall.stuckForMs / 100) / 10,
              attempts: stall.attempts,
            },
          }
        : {}),
    };
  }

  async onModuleDestroy(): Promise<void> {
    await this.admin?.disconnect().catch(() => undefined);
  }
}
