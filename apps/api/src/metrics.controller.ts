import { Controller, Get, Module, Res } from '@nestjs/common';
import { ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { FastifyReply } from 'fastify';
import { METRICS_CONTENT_TYPE, metricsRegistry } from '@psp/observability';
import { ApiMetrics, apiMetrics } from './metrics';

/**
 * GET /metrics (CONTRACT 1.4): the process's registry in Prometheus text format, without auth. In the
 * dev process it holds the writer's and the projector's metrics as well.
 */
@Controller()
@ApiTags('health')
export class MetricsController {
  @Get('metrics')
  @ApiOperation({ summary: 'Prometheus metrics of this process (text format 0.0.4); no auth, no tenant data' })
  @ApiProduces('text/plain')
  async metrics(@Res() reply: FastifyReply): Promise<void> {
    const text = await metricsRegistry().metrics();
    void reply.status(200).header('content-type', METRICS_CONTENT_TYPE).header('cache-control', 'no-store').send(text);
  }
}

/** /metrics and the API's metrics (injectable as ApiMetrics, e.g. `metrics.rateLimited.inc({ reason })`). */
@Module({
  controllers: [MetricsController],
  providers: [{ provide: ApiMetrics, useFactory: apiMetrics }],
  exports: [ApiMetrics],
})
export class ApiMetricsModule {}
