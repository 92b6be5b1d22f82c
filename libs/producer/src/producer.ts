import { context, Span, SpanKind, SpanStatusCode, trace, TraceFlags } from '@opentelemetry/api';
import { CompressionTypes, Message, Producer, RecordMetadata } from 'kafkajs';
import { ConnectionEvent, DlqReason, validateMessage } from '@psp/domain';
import { recommendedKey, WireEnvelope } from './envelope';
import { ProducerTopics, topicFor } from './topics';

/**
 * An event the service would not accept: the DLQ reason it would get there, the member at fault
 * (when there is one) and the service's own sentence. Neither the message nor `detail` ever repeats
 * a value from the event, so the error is safe to log.
 */
export class InvalidEventError extends Error {
  constructor(
    readonly reason: DlqReason,
    readonly detail: string,
    readonly field?: string,
    /** Position in the batch, for `sendBatch`. */
    readonly index?: number,
  ) {
    const where = field === undefined ? reason : `${reason} at ${field}`;
    const which = index === undefined ? 'event' : `event ${index} of the batch`;
    super(`${which} refused, not sent (${where}): ${detail}`);
    this.name = 'InvalidEventError';
  }
}

/** The exact bytes that will be sent, and the event as the service will hold it. */
export interface CheckedEnvelope {
  value: Buffer;
  event: ConnectionEvent;
}

/**
 * Serialises the envelope and applies the service's own `validateMessage` to the bytes, as if the
 * service consumed them at `nowMs`. Throws InvalidEventError naming the DLQ reason and the field.
 */
export function validateEnvelope(envelope: WireEnvelope, nowMs: number = Date.now(), index?: number): CheckedEnvelope {
  let text: string | undefined;
  try {
    text = JSON.stringify(envelope);
  } catch {
    throw new InvalidEventError('invalid_json', 'The envelope cannot be serialised as JSON.', undefined, index);
  }
  const value = Buffer.from(text ?? '', 'utf8');
  const checked = validateMessage(value, nowMs);
  if (!checked.ok) throw new InvalidEventError(checked.reason, checked.detail, checked.field, index);
  return { value, event: checked.event };
}

export interface ConnectionEventProducerOptions {
  /** Topic names when they are not the defaults (the service's `settings.topics` fits as is). */
  topics?: Partial<ProducerTopics>;
  /** Broker acknowledgements: -1 (all in-sync replicas, the default), 1 or 0. */
  acks?: number;
  /** How long the broker may wait for the acknowledgements, in ms. */
  timeout?: number;
  compression?: CompressionTypes;
  /** The clock the "not more than 5 minutes in the future" rule is checked against. */
  now?: () => number;
}

/**
 * Sends the contract's events through a kafkajs Producer. Every envelope is checked with the
 * service's own validation first, so an event the service would put in its DLQ never leaves: the
 * send throws InvalidEventError instead. Each message is keyed `<org_id>:<connection_id>` and goes to
 * its type's topic; its value is the exact JSON that was checked.
 *
 * The kafkajs Producer stays the caller's: connect it before sending (or call `connect()`), and
 * disconnect it when done. For idempotent retries keep the envelope and send it again: its
 * `event_id` makes the service count it once.
 */
export class ConnectionEventProducer {
  private readonly now: () => number;

  constructor(
    readonly producer: Producer,
    private readonly options: ConnectionEventProducerOptions = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  connect(): Promise<void> {
    return this.producer.connect();
  }

  disconnect(): Promise<void> {
    return this.producer.disconnect();
  }

  /** The topic and message (key, value) one envelope is sent as. Throws InvalidEventError for a bad one. */
  toMessage(envelope: WireEnvelope, index?: number): { topic: string; message: Message; event: ConnectionEvent } {
    const { value, event } = validateEnvelope(envelope, this.now(), index);
    const topic = topicFor(event.type, this.options.topics);
    return { topic, message: { key: recommendedKey(envelope), value }, event };
  }

  /**
   * Sends one envelope. When the caller has an active span (OpenTelemetry), the send is a `send`
   * span of kind PRODUCER under it, and the message carries that span's W3C trace context in its
   * `traceparent` (and `tracestate`) headers: the service links its spans to it.
   */
  async send(envelope: WireEnvelope): Promise<RecordMetadata[]> {
    const { topic, message } = this.toMessage(envelope);
    return traced([topic], 1, [message], () =>
      this.producer.send({
        topic,
        messages: [message],
        acks: this.options.acks ?? -1,
        timeout: this.options.timeout,
        compression: this.options.compression,
      }),
    );
  }

  /**
   * Sends many envelopes in one request, each to its type's topic, in the given order within each
   * topic. All are checked before any is sent: one bad envelope refuses the whole batch (the error's
   * `index` says which), so a batch is never half sent because of a bad event.
   */
  async sendBatch(envelopes: readonly WireEnvelope[]): Promise<RecordMetadata[]> {
    if (envelopes.length === 0) return [];
    const byTopic = new Map<string, Message[]>();
    envelopes.forEach((envelope, index) => {
      const { topic, message } = this.toMessage(envelope, index);
      const messages = byTopic.get(topic);
      if (messages) messages.push(message);
      else byTopic.set(topic, [message]);
    });
    const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    return traced(
      [...byTopic.keys()],
      envelopes.length,
      topicMessages.flatMap((t) => t.messages),
      () =>
        this.producer.sendBatch({
          topicMessages,
          acks: this.options.acks ?? -1,
          timeout: this.options.timeout,
          compression: this.options.compression,
        }),
    );
  }
}

/** The tracer of the kit (a no-op one unless the caller's process registered an OpenTelemetry SDK). */
const TRACER_NAME = '@psp/producer';

/**
 * Runs a send in a PRODUCER span when the caller has an active span, and puts that span's context
 * in each message's headers as W3C trace context (CONTRACT: `traceparent`, `tracestate`). Without
 * an active span, the send runs as is: no span, no header.
 */
async function traced<T>(topics: string[], count: number, messages: Message[], send: () => Promise<T>): Promise<T> {
  const active = context.active();
  if (trace.getSpan(active) === undefined) return send();
  const span = trace.getTracer(TRACER_NAME).startSpan(
    `send ${topics.length === 1 ? topics[0] : 'psp'}`,
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        'messaging.system': 'kafka',
        'messaging.operation.type': 'send',
        'messaging.operation.name': 'send',
        ...(topics.length === 1 ? { 'messaging.destination.name': topics[0] } : {}),
        ...(count > 1 ? { 'messaging.batch.message_count': count } : {}),
      },
    },
    active,
  );
  const headers = traceContextHeaders(span);
  for (const message of messages) message.headers = { ...message.headers, ...headers };
  try {
    return await context.with(trace.setSpan(active, span), send);
  } catch (error) {
    span.recordException(error as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
    throw error;
  } finally {
    span.end();
  }
}

/** W3C trace context headers of a span (https://www.w3.org/TR/trace-context/). */
export function traceContextHeaders(span: Span): { traceparent: string; tracestate?: string } {
  const c = span.spanContext();
  const flags = (c.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00';
  const traceparent = `00-${c.traceId}-${c.spanId}-${flags}`;
  const state = c.traceState?.serialize();
  return state ? { traceparent, tracestate: state } : { traceparent };
}
