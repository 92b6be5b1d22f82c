import { context, SpanKind, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-node';
import { Producer, ProducerBatch, ProducerRecord } from 'kafkajs';
import { startTestTracing, stopTracing } from '@psp/observability';
import { callCompleted, validationCompleted } from './envelope';
import { ConnectionEventProducer } from './producer';

const NOW = Date.UTC(2026, 10, 24, 10, 20);
const AT = '2026-11-24T10:15:00.250Z';
const ids = { orgId: 'org_123', connectionId: 'paystack_gh_primary' };

/** A kafkajs Producer that records what it is asked to send. */
function fakeProducer(): { producer: Producer; sent: ProducerRecord[]; batches: ProducerBatch[] } {
  const sent: ProducerRecord[] = [];
  const batches: ProducerBatch[] = [];
  const producer = {
    send: async (record: ProducerRecord) => {
      sent.push(record);
      return [];
    },
    sendBatch: async (batch: ProducerBatch) => {
      batches.push(batch);
      return [];
    },
  };
  return { producer: producer as unknown as Producer, sent, batches };
}

describe('ConnectionEventProducer and trace context', () => {
  const exporter = new InMemorySpanExporter();
  beforeAll(() => startTestTracing(exporter));
  afterAll(() => stopTracing());
  beforeEach(() => exporter.reset());

  it('sends no header and makes no span when the caller has no active span', async () => {
    const { producer, sent } = fakeProducer();
    await new ConnectionEventProducer(producer, { now: () => NOW }).send(
      callCompleted({ ...ids, occurredAt: AT, outcome: 'success', latencyMs: 412 }),
    );
    expect(sent[0].messages[0].headers).toBeUndefined();
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });

  it("puts the W3C context of a PRODUCER span under the caller's span in each message's headers", async () => {
    const { producer, sent, batches } = fakeProducer();
    const events = new ConnectionEventProducer(producer, { now: () => NOW });
    const caller = trace.getTracer('test').startSpan('charge');
    await context.with(trace.setSpan(context.active(), caller), async () => {
      await events.send(callCompleted({ ...ids, occurredAt: AT, outcome: 'success', latencyMs: 412 }));
      await events.sendBatch([
        callCompleted({ ...ids, occurredAt: AT, outcome: 'success', latencyMs: 1 }),
        validationCompleted({ ...ids, occurredAt: AT, result: 'success' }),
      ]);
    });
    caller.end();
    const [one, batch, root] = exporter.getFinishedSpans();
    expect(root.name).toBe('charge');
    for (const span of [one, batch]) {
      expect(span.kind).toBe(SpanKind.PRODUCER);
      expect(span.parentSpanContext?.spanId).toBe(caller.spanContext().spanId);
      expect(span.spanContext().traceId).toBe(caller.spanContext().traceId);
    }
    expect(one.name).toBe('send psp.calls');
    expect(one.attributes['messaging.system']).toBe('kafka');
    expect(batch.attributes['messaging.batch.message_count']).toBe(2);
    const traceId = caller.spanContext().traceId;
    expect(sent[0].messages[0].headers).toEqual({ traceparent: `00-${traceId}-${one.spanContext().spanId}-01` });
    const batchHeaders = batches[0].topicMessages!.flatMap((t) => t.messages.map((m) => m.headers));
    expect(batchHeaders).toEqual([
      { traceparent: `00-${traceId}-${batch.spanContext().spanId}-01` },
      { traceparent: `00-${traceId}-${batch.spanContext().spanId}-01` },
    ]);
  });
});
