import { Controller, Get, Inject, OnModuleDestroy, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { FastifyReply } from 'fastify';
import { Admin } from 'kafkajs';
import { DataSource } from 'typeorm';
import { SETTINGS, Settings } from '@psp/config';
import { createKafka } from '@psp/messaging';
import { liveGeneration, readCheckpoint } from '@psp/read-model';
import { logLagAfter } from '@psp/storage';
import { JSON_CONTENT_TYPE } from './api-error';
import { ConnectionReads } from './connection-reads';

const CHECK_TIMEOUT_MS = 2000;

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

  constructor(
    @Inject(DataSource) private readonly db: DataSource,
    @Inject(SETTINGS) private readonly settings: Settings,
    private readonly reads: ConnectionReads,
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
    const [postgres, redis, kafka] = await Promise.all([
      this.check(() => this.db.query('SELECT 1')),
      this.check(() => this.reads.redisClient.ping()),
      this.check(() => this.kafkaAdmin().then((a) => a.describeCluster())),
    ]);
    const checks = { postgres, redis, kafka };
    const down = Object.entries(checks)
      .filter(([, ok]) => ok !== 'up')
      .map(([name]) => name);
    const projection = postgres === 'up' ? await this.projectionLag().catch(() => null) : null;
    const body = {
      status: down.length === 0 ? 'ready' : 'not_ready',
      ...(down.length > 0 ? { down, message: `not reachable: ${down.join(', ')}` } : {}),
      checks,
      ...(projection ? { projection } : {}),
    };
    void reply
      .status(down.length === 0 ? 200 : 503)
      .header('content-type', JSON_CONTENT_TYPE)
      .send(JSON.stringify(body));
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
      const admin = createKafka(this.settings, 'api-readiness', () => undefined).admin();
      await admin.connect();
      this.admin = admin;
    }
    return this.admin;
  }

  private async projectionLag(): Promise<{
    generation: number;
    lag_events: number;
    lag_seconds: number;
    stream_time: string | null;
  }> {
    const generation = await liveGeneration(this.db);
    const checkpoint = await readCheckpoint(this.db, generation);
    const lag = await within(logLagAfter(this.db, checkpoint.at), CHECK_TIMEOUT_MS);
    return {
      generation,
      lag_events: lag.events,
      lag_seconds: Math.round(lag.seconds * 1000) / 1000,
      stream_time: checkpoint.streamTime === null ? null : new Date(checkpoint.streamTime).toISOString(),
    };
  }

  async onModuleDestroy(): Promise<void> {
    await this.admin?.disconnect().catch(() => undefined);
  }
}
