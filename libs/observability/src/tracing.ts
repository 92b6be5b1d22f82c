import {
  context,
  Context,
  Link,
  ROOT_CONTEXT,
  Span,
  SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOnSampler,
  BatchSpanProcessor,
  NodeTracerProvider,
  SimpleSpanProcessor,
  SpanExporter,
} from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

/**
 * OpenTelemetry tracing (README, "Traces"). Off unless the process starts it: a process
 * calls `startTracing` first thing, and it starts the SDK only when `OTEL_EXPORTER_OTLP_ENDPOINT`
 * (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, exporting OTLP over HTTP there, with the http
 * (API requests), pg and ioredis instrumentations (their spans only under a span of ours or of an
 * HTTP request); the sampler comes
 * from the standard `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (the SDK's default:
 * parentbased_always_on). Off, `tracingOn()` is false and the service's code creates no span and
 * computes no link: the only cost left is a branch.
 *
 * The trace context travels in Kafka headers in the W3C format (`traceparent`, `tracestate`), and is
 * stored with each event (event_log.trace_context) and each outbox row as the `traceparent` text.
 */

/** Messaging semantic-convention attributes (incubating in @opentelemetry/semantic-conventions: copied, as it advises). */
export const MESSAGING = {
  system: 'messaging.system',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  destination: 'messaging.destination.name',
  batchCount: 'messaging.batch.message_count',
  consumerGroup: 'messaging.consumer.group.name',
} as const;

/** The most links one span gets (the SDK's default span limit: more would be dropped anyway). */
export const MAX_LINKS = 128;

const TRACER_NAME = 'psp-connections';
let provider: NodeTracerProvider | undefined;
let tracer: Tracer | undefined;

/** Whether this process traces: the service's spans and links are made only then. */
export function tracingOn(): boolean {
  return tracer !== undefined;
}

/** The service's tracer (only meaningful when tracingOn()). */
export function serviceTracer(): Tracer {
  return tracer ?? trace.getTracer(TRACER_NAME);
}

/**
 * Starts tracing for a process when the environment names an OTLP endpoint; does nothing otherwise.
 * Call it before the modules it instruments (pg, ioredis) are loaded, i.e. at the top of main.
 * Returns whether tracing was started.
 */
export function startTracing(serviceName: string): boolean {
  if (provider) return true;
  const env = process.env;
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT && !env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return false;
  // The exporter reads the endpoint, headers and timeout from the standard variables itself; the
  // sampler (no `sampler` given) likewise.
  start(serviceName, new BatchSpanProcessor(new OTLPTraceExporter()), undefined);
  registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      // Server spans of the API's requests (not of /metrics scrapes nor /healthz, /readyz probes); no
      // client spans (the service makes no HTTP calls but the exporter's).
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (request) => /^\/(metrics|healthz|readyz)/.test(request.url ?? ''),
        ignoreOutgoingRequestHook: () => true,
      }),
      new PgInstrumentation({ requireParentSpan: true }),
      new IORedisInstrumentation({ requireParentSpan: true }),
    ],
  });
  return true;
}

/**
 * For tests: traces every span (always on) into `exporter` synchronously, in this process (an
 * InMemorySpanExporter sees each span as it ends). Call `stopTracing` after.
 */
export function startTestTracing(exporter: SpanExporter, serviceName = 'psp-connections-test'): void {
  if (provider) throw new Error('tracing is already started in this process');
  start(serviceName, new SimpleSpanProcessor(exporter), new AlwaysOnSampler());
}

/** Flushes and stops tracing (process shutdown, tests). */
export async function stopTracing(): Promise<void> {
  const stopping = provider;
  provider = undefined;
  tracer = undefined;
  if (!stopping) return;
  await stopping.shutdown();
  trace.disable();
  context.disable();
}

function start(
  serviceName: string,
  processor: BatchSpanProcessor | SimpleSpanProcessor,
  sampler: AlwaysOnSampler | undefined,
): void {
  provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }),
    spanProcessors: [processor],
    ...(sampler ? { sampler } : {}),
  });
  // The global tracer provider, AsyncLocalStorage context and W3C propagation.
  provider.register();
  tracer = provider.getTracer(TRACER_NAME);
}

const W3C = new W3CTraceContextPropagator();
const TEXT_GETTER = {
  keys: (carrier: Record<string, string>) => Object.keys(carrier),
  get: (carrier: Record<string, string>, key: string) => carrier[key],
};

/** A header value of kafkajs (Buffer, string, or several) as text. */
function headerText(value: unknown): string | undefined {
  if (Array.isArray(value)) value = value[0];
  if (Buffer.isBuffer(value)) return value.toString('latin1');
  return typeof value === 'string' ? value : undefined;
}

/**
 * The W3C trace context of a Kafka message's headers, as its `traceparent` text (with the
 * `tracestate` after a space when there is one), or null when there is none or it is not valid.
 */
export function traceContextOfHeaders(headers: Record<string, unknown> | undefined): string | null {
  if (!headers) return null;
  const parent = headerText(headers.traceparent);
  if (parent === undefined) return null;
  const state = headerText(headers.tracestate);
  const text = state ? `${parent} ${state}` : parent;
  return spanContextOf(text) ? text : null;
}

/** The span context a stored trace context text stands for (null when it is not a valid one). */
export function spanContextOf(text: string | null | undefined): SpanContext | null {
  if (!text) return null;
  const space = text.indexOf(' ');
  const carrier: Record<string, string> =
    space < 0 ? { traceparent: text } : { traceparent: text.slice(0, space), tracestate: text.slice(space + 1) };
  const extracted = trace.getSpanContext(W3C.extract(ROOT_CONTEXT, carrier, TEXT_GETTER));
  return extracted && trace.isSpanContextValid(extracted) ? extracted : null;
}

/** The trace context text (`traceparent`, and ` tracestate` when there is one) of a span context. */
export function traceContextText(spanContext: SpanContext): string {
  const flags = (spanContext.traceFlags & TraceFlags.SAMPLED).toString(16).padStart(2, '0');
  const parent = `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
  const state = spanContext.traceState?.serialize();
  return state ? `${parent} ${state}` : parent;
}

/** Kafka headers (`traceparent`, `tracestate`) carrying a trace context text. */
export function traceHeaders(text: string): Record<string, string> {
  const space = text.indexOf(' ');
  return space < 0 ? { traceparent: text } : { traceparent: text.slice(0, space), tracestate: text.slice(space + 1) };
}

/**
 * Links to the distinct valid contexts among `texts`, at most MAX_LINKS (the first ones), with
 * `attributes` on each.
 */
export function linksTo(texts: Iterable<string | null | undefined>, attributes?: Link['attributes']): Link[] {
  const seen = new Set<string>();
  const links: Link[] = [];
  for (const text of texts) {
    if (!text || seen.has(text)) continue;
    seen.add(text);
    const spanContext = spanContextOf(text);
    if (spanContext) links.push(attributes ? { context: spanContext, attributes } : { context: spanContext });
    if (links.length === MAX_LINKS) break;
  }
  return links;
}

/** The context with `text`'s span as the remote parent (ROOT_CONTEXT when the text is not valid). */
export function contextOf(text: string | null | undefined): Context {
  const spanContext = spanContextOf(text);
  return spanContext ? trace.setSpanContext(ROOT_CONTEXT, spanContext) : ROOT_CONTEXT;
}

/**
 * Runs `work` in `span` (active for its duration, so instrumented calls are its children) and ends
 * the span when it settles, with an error status if it throws.
 */
export async function inSpan<T>(span: Span, work: () => Promise<T>): Promise<T> {
  try {
    return await context.with(trace.setSpan(context.active(), span), work);
  } catch (error) {
    span.recordException(error as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
    throw error;
  } finally {
    span.end();
  }
}

export { SpanKind };
