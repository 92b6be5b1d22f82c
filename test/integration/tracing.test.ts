import { createServer, Server } from 'node:http';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, ReadableSpan } from '@opentelemetry/sdk-trace-node';
import { Test, TestingModule } from '@nestjs/testing';
import { SETTINGS } from '@psp/config';
import { spanContextOf, startTestTracing, stopTracing } from '@psp/observability';
import { callCompleted, ConnectionEventProducer, connectionConfigured } from '@psp/producer';
import { ProjectorModule } from '../../apps/projector/src/projector.module';
import { WriterModule } from '../../apps/writer/src/writer.module';
import { DlqCopy, readTopicToEnd } from '../support/dlq-reader';
import { eventually, IsolatedStack, openIsolatedStack } from '../support/isolated-stack';
import { startProcess, stopProcess } from '../support/processes';

const ORG = 'org_traced';
const CONNECTION = 'paystack_gh_primary';

/**
 * One call that flips a connection, followed through the service with an in-memory exporter: the
 * producers' kit's `send` span (under the caller's span), the writer's append span linked to it, the
 * projection step linked to it, and the relay's `send` span of the health change, a child of that
 * step, linked to the call, whose context the `connection.health_changed` message carries.
 */
describe('tracing: one call to the health change it caused', () => {
  const exporter = new InMemorySpanExporter();
  let stack: IsolatedStack;
  let service: TestingModule;

  beforeAll(async () => {
    startTestTracing(exporter);
    stack = await openIsolatedStack('tracing');
    service = await Test.createTestingModule({ imports: [WriterModule, ProjectorModule] })
      .overrideProvider(SETTINGS)
      .useValue(stack.settings)
      .compile();
    await service.init();
  });

  afterAll(async () => {
    await service?.close();
    await stack?.close();
    await stopTracing();
  });

  async function healthChanges(): Promise<DlqCopy[]> {
    return readTopicToEnd(stack.kafka, stack.settings.topics.health, `${stack.settings.writerGroupId}-health`);
  }

  it('links the producer, the append, the projection step and the health change', async () => {
    const events = new ConnectionEventProducer(stack.producer, { topics: stack.settings.topics });
    const at = Date.now() - 30_000;
    const where = { orgId: ORG, connectionId: CONNECTION, occurredAt: at };
    // Set-up, untraced: configured and three failed calls: score 100 * 5/8 = 62.5 with fewer than 20
    // calls, unknown (the first health change, null -> unknown).
    const failed = () => callCompleted({ ...where, outcome: 'failure', latencyMs: 100, errorCode: 'timeout' });
    await events.sendBatch([connectionConfigured({ ...where, provider: 'paystack' }), failed(), failed(), failed()]);
    await eventually(healthChanges, (m) => m.length === 1, 20_000, 'the first health change');
    expect(exporter.getFinishedSpans().filter((s) => s.name === `send ${stack.settings.topics.calls}`)).toHaveLength(0);

    // The traced call: a fourth failure, score 100 * 5/9 = 55.56 < 60: unknown -> unhealthy.
    const caller = trace.getTracer('router').startSpan('charge');
    await context.with(trace.setSpan(context.active(), caller), () => events.send(failed()));
    caller.end();
    const messages = await eventually(healthChanges, (m) => m.length === 2, 20_000, 'the second health change');
    const change = messages
      .map((m) => ({ ...m, value: JSON.parse(m.value!) }))
      .find((m) => m.value.data.sequence === 2)!;
    expect(change.value.data).toMatchObject({ from: 'unknown', to: 'unhealthy' });

    const spans = await eventually(
      async () => exporter.getFinishedSpans(),
      (s) => s.some((x) => x.name === `send ${stack.settings.topics.health}`),
      10_000,
      'the relay span',
    );
    const named = (name: string): ReadableSpan[] => spans.filter((s) => s.name === name);
    const callTrace = caller.spanContext().traceId;

    // The producers' kit: a PRODUCER span under the caller's.
    const [produced] = named(`send ${stack.settings.topics.calls}`);
    expect(produced.kind).toBe(SpanKind.PRODUCER);
    expect(produced.spanContext().traceId).toBe(callTrace);
    expect(produced.parentSpanContext?.spanId).toBe(caller.spanContext().spanId);
    const linksToCall = (s: ReadableSpan): boolean =>
      s.links.some((l) => l.context.traceId === callTrace && l.context.spanId === produced.spanContext().spanId);

    // The writer's append: a root span of its own, linked to the producer's; its statements are children.
    const appends = named('process event_log append').filter(linksToCall);
    expect(appends).toHaveLength(1);
    expect(appends[0].kind).toBe(SpanKind.CONSUMER);
    expect(appends[0].spanContext().traceId).not.toBe(callTrace);
    expect(appends[0].attributes['messaging.system']).toBe('kafka');

    // The projection step that applied the call: linked to the producer's span (from event_log.trace_context).
    const steps = named('process projection step').filter(linksToCall);
    expect(steps).toHaveLength(1);
    const step = steps[0];
    expect(step.attributes['messaging.batch.message_count']).toBeGreaterThanOrEqual(1);
    expect(step.attributes['psp.projection.health_changes']).toBeGreaterThanOrEqual(1);

    // The health change: sent in a PRODUCER span, child of the step, linked to the call; its message
    // carries that span's context (the step's trace).
    const relays = named(`send ${stack.settings.topics.health}`).filter(
      (s) => s.attributes['psp.health_change.event_id'] === change.value.event_id,
    );
    expect(relays).toHaveLength(1);
    const relay = relays[0];
    expect(relay.kind).toBe(SpanKind.PRODUCER);
    expect(relay.spanContext().traceId).toBe(step.spanContext().traceId);
    expect(relay.parentSpanContext?.spanId).toBe(step.spanContext().spanId);
    expect(linksToCall(relay)).toBe(true);
    const carried = spanContextOf(change.headers.traceparent)!;
    expect(carried.traceId).toBe(step.spanContext().traceId);
    expect(carried.spanId).toBe(relay.spanContext().spanId);

    // The first change (from untraced events) is traced too, in the trace of its step, which has no link.
    const first = spanContextOf(messages.find((m) => JSON.parse(m.value!).data.sequence === 1)!.headers.traceparent)!;
    const firstRelay = spans.find((s) => s.spanContext().spanId === first.spanId)!;
    const firstStep = spans.find((s) => s.spanContext().spanId === firstRelay.parentSpanContext?.spanId)!;
    expect(firstStep.name).toBe('process projection step');
    expect(firstStep.links).toEqual([]);
    expect(firstRelay.links).toEqual([]);
  });
});

/** A span as OTLP/JSON over HTTP carries it (the ids as hex). */
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  links?: { traceId: string; spanId: string }[];
}

/**
 * The standard variables in a real process: a writer started with OTEL_EXPORTER_OTLP_ENDPOINT sends
 * its spans as OTLP over HTTP to a receiver of the test's own, with the pg instrumentation's spans as
 * children of the append.
 */
describe('tracing: a writer process exports OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set', () => {
  const exporter = new InMemorySpanExporter();
  const received: OtlpSpan[] = [];
  let receiver: Server;
  let stack: IsolatedStack;

  beforeAll(async () => {
    startTestTracing(exporter);
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/v1/traces') {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
            resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[];
          };
          for (const r of body.resourceSpans) for (const s of r.scopeSpans) received.push(...s.spans);
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    stack = await openIsolatedStack('tracingotlp');
  });

  afterAll(async () => {
    await stack?.close();
    await new Promise((resolve) => receiver?.close(resolve));
    await stopTracing();
  });

  it('exports the append span, linked to the producer, with its statements as children', async () => {
    const port = (receiver.address() as { port: number }).port;
    const writer = startProcess('writer', {
      ...stack.env,
      METRICS_PORT: '0',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_TRACES_SAMPLER: 'always_on',
      OTEL_BSP_SCHEDULE_DELAY: '200',
    });
    try {
      const events = new ConnectionEventProducer(stack.producer, { topics: stack.settings.topics });
      const caller = trace.getTracer('router').startSpan('configure');
      await context.with(trace.setSpan(context.active(), caller), () =>
        events.send(connectionConfigured({ orgId: ORG, connectionId: CONNECTION, provider: 'paystack' })),
      );
      caller.end();
      const traceId = caller.spanContext().traceId;
      const spans = await eventually(
        async () => received,
        (r) => r.some((s) => s.name === 'process event_log append' && s.links?.some((l) => l.traceId === traceId)),
        45_000,
        `the writer's append span (writer output: ${writer.output.join('').slice(-500)})`,
      );
      const append = spans.find(
        (s) => s.name === 'process event_log append' && s.links?.some((l) => l.traceId === traceId),
      )!;
      expect(append.parentSpanId ?? '').toBe('');
      expect(spans.filter((s) => s.parentSpanId === append.spanId).length).toBeGreaterThan(0);
    } finally {
      await stopProcess(writer);
    }
  });
});
